// Cloud City client on @grpc/grpc-js (Node's http2 = nghttp2: :path as a
// Huffman literal without indexing on every call). Same interface as
// ../client.py: node client.js TARGET Method|Method*N|WAIT:FILE ...
// prints "<Method> <STATUS>" per call on ONE channel.
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const def = loader.loadSync(path.join(__dirname, '..', 'cloudcity.proto'));
const proto = grpc.loadPackageDefinition(def).cloudcity;

async function main() {
  const [target, ...calls] = process.argv.slice(2);
  const client = new proto.DoorManager(target, grpc.credentials.createInsecure());
  let n = 0;
  for (const spec of calls) {
    if (spec.startsWith('WAIT:')) {
      for (let i = 0; i < 600 && !fs.existsSync(spec.slice(5)); i++) await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const [name, times] = spec.split('*');
    for (let i = 0; i < Number(times || 1); i++) {
      n++;
      const line = await new Promise((resolve) => {
        const deadline = new Date(Date.now() + 5000);
        client[name]({ door_id: n }, { deadline }, (err) => {
          resolve(err ? `${name} ${grpc.status[err.code]} '${err.details}'` : `${name} OK`);
        });
      });
      console.log(line);
    }
  }
  client.close();
}

main().catch((e) => { console.error(e); process.exit(2); });

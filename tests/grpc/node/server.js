// Cloud City DoorManager server on @grpc/grpc-js (Node's http2 = nghttp2),
// the counterpart of ../server.py: logs one line per handler run
// ("handler <Method> <door_id>") so tests can tell whether a handler ran.
// node server.js [--addr HOST:PORT]. A request whose :path is not a valid
// HTTP/2 path (grpcwall's rewrite of a denied one starts with '%') is reset
// by nghttp2 itself (RST_STREAM PROTOCOL_ERROR), before any handler.
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const def = loader.loadSync(path.join(__dirname, '..', 'cloudcity.proto'));
const proto = grpc.loadPackageDefinition(def).cloudcity;

function handler(method) {
  return (call, callback) => {
    console.log(`handler ${method} ${call.request.door_id}`);
    callback(null, { text: `${method} ok` });
  };
}

const args = process.argv.slice(2);
const i = args.indexOf('--addr');
const addr = i >= 0 ? args[i + 1] : '0.0.0.0:50051';
const server = new grpc.Server();
server.addService(proto.DoorManager.service, {
  GetName: handler('GetName'),
  GetLocation: handler('GetLocation'),
  RequestMaintenance: handler('RequestMaintenance'),
  SetAccessCode: handler('SetAccessCode'),
});
server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(err);
    process.exit(2);
  }
  console.log(`listening ${addr}`);
});

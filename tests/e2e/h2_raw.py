"""Raw HTTP/2 gRPC client on the python h2 library, writing its bytes in
pieces: `--split 1` sends every byte in its own send() (TCP_NODELAY), so the
connection preface, frame headers and HEADERS frames reach the kernel in
fragments. Prints "<Method> <grpc-status>" per call, one stream each, on ONE
connection; "<Method> reset" if the stream was reset, "error ..." if the
connection failed. A call WAIT:FILE waits until FILE exists."""
import argparse
import os
import socket
import time

import h2.config
import h2.connection
import h2.events

REQ = b"\x00\x00\x00\x00\x02\x08\x01"  # gRPC frame: DoorRequest{door_id: 1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("calls", nargs="+")
    ap.add_argument("--split", type=int, default=0, help="bytes per send(); 0: whole")
    ap.add_argument("--metadata-bytes", type=int, default=0,
                    help="x-big header this long: on calls marked ^ (Method^), or on all if none is")
    ap.add_argument("--hold", help="send the first frame of the first call's header block, then wait for"
                    " this file to exist before sending the rest")
    ap.add_argument("--abrupt", action="store_true",
                    help="after the last call's request, send nothing more (no acks) and close")
    ap.add_argument("--cut-headers", action="store_true",
                    help="send every frame in two pieces, its header cut after 4 bytes (the preface after"
                    " 10): headers straddle TCP segments, payloads do not")
    a = ap.parse_args()
    s = socket.create_connection((a.host, a.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()

    first_flush = [True]

    def flush():
        data = conn.data_to_send()
        if a.cut_headers:
            i = 0
            pieces = []
            if first_flush[0]:
                pieces += [data[:10], data[10:24]]
                i = 24
            while i + 9 <= len(data):
                n = int.from_bytes(data[i:i + 3], "big")
                pieces += [data[i:i + 4], data[i + 4:i + 9 + n]]
                i += 9 + n
            if i < len(data):
                pieces.append(data[i:])
            first_flush[0] = False
            for p in pieces:
                s.sendall(p)
                time.sleep(0.02)
            return
        if not a.split:
            s.sendall(data)
            return
        for i in range(0, len(data), a.split):
            s.sendall(data[i:i + a.split])
            time.sleep(0.0005)

    try:
        flush()
        marked = any(c.endswith("^") for c in a.calls)
        for n, spec in enumerate(a.calls):
            last = n == len(a.calls) - 1
            if spec.startswith("WAIT:"):  # wait until the file exists
                for _ in range(600):
                    if os.path.exists(spec[5:]):
                        break
                    time.sleep(0.05)
                continue
            method = spec.rstrip("^")
            big = spec.endswith("^") or not marked
            sid = conn.get_next_available_stream_id()
            headers = [(":method", "POST"), (":scheme", "http"), (":path", f"/cloudcity.DoorManager/{method}"),
                       (":authority", f"{a.host}:{a.port}"), ("content-type", "application/grpc"), ("te", "trailers")]
            if a.metadata_bytes and big:
                headers.append(("x-big", "b" * a.metadata_bytes))
            conn.send_headers(sid, headers)
            conn.send_data(sid, REQ, end_stream=True)
            if a.hold:
                data = conn.data_to_send()
                first = 9 + int.from_bytes(data[:3], "big")
                s.sendall(data[:first])
                for _ in range(600):
                    if os.path.exists(a.hold):
                        break
                    time.sleep(0.05)
                s.sendall(data[first:])
                a.hold = None
            flush()
            status = None
            while status is None:
                data = s.recv(65536)
                if not data:
                    print("error connection closed", flush=True)
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and ev.stream_id == sid:
                        for k, v in ev.headers:
                            if k == b"grpc-status":
                                status = v.decode()
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                        status = "reset"
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if not (a.abrupt and last):
                    flush()
            print(f"{method} {status}", flush=True)
    except OSError as e:
        print(f"error {e.strerror or e}", flush=True)


if __name__ == "__main__":
    main()

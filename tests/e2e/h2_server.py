"""A minimal gRPC server on the python h2 library, one thread, that can write
its answers in pieces: `--split-calls 1,3` writes everything it has to send
while answering the 1st and 3rd calls one byte per send() (TCP_NODELAY), so
each byte is a write of its own. /cloudcity.DoorManager/<Method> is answered
OK (response headers, an empty message, trailers with grpc-status 0) and
logged "handler <Method>"; any other path gets the Trailers-Only answer of a
gRPC server that lacks the method (grpc-status 12), as C-core writes it."""
import argparse
import socket
import threading

import h2.config
import h2.connection
import h2.events

METHODS = {"GetName", "GetLocation", "RequestMaintenance", "SetAccessCode"}


def serve(conn_sock, split, counter, lock):
    conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn_sock.sendall(conn.data_to_send())
    paths = {}
    while True:
        data = conn_sock.recv(65536)
        if not data:
            return
        pieces = False
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                paths[ev.stream_id] = dict(ev.headers).get(b":path", b"").decode("latin-1")
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                with lock:
                    counter[0] += 1
                    n = counter[0]
                pieces = pieces or n in split
                path = paths.pop(ev.stream_id, "")
                method = path.rsplit("/", 1)[-1]
                if path.startswith("/cloudcity.DoorManager/") and method in METHODS:
                    print(f"handler {method} 0", flush=True)
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                    conn.send_data(ev.stream_id, b"\x00\x00\x00\x00\x00")
                    conn.send_headers(ev.stream_id, [("grpc-status", "0")], end_stream=True)
                else:
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                                     ("grpc-status", "12"),
                                                     ("grpc-message", "Method not found!")], end_stream=True)
        out = conn.data_to_send()
        if pieces:
            for i in range(len(out)):
                conn_sock.sendall(out[i:i + 1])
        elif out:
            conn_sock.sendall(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--split-calls", default="", help="calls (1 = the first received) answered a byte per send")
    a = ap.parse_args()
    split = {int(x) for x in a.split_calls.split(",") if x}
    s = socket.socket(socket.AF_INET6 if ":" in a.addr else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.addr, a.port))
    s.listen(16)
    print(f"listening {a.addr}:{a.port}", flush=True)
    counter, lock = [0], threading.Lock()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, split, counter, lock), daemon=True).start()


if __name__ == "__main__":
    main()

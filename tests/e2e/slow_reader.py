"""A gRPC caller that stops reading (python h2, one connection): a small
receive buffer, HTTP/2 flow control opened wide, every call written at
once, then --pause seconds without reading, so that the server's answers
pile up in its send buffer and its writes meet a full one. Then it reads
all and prints, in the order the calls were sent, "<Method> <grpc-status>
<message bytes>" (the status of the block that ends the stream; "reset" for
a reset stream), or "error ..." when the connection fails (an HPACK or
framing error in what arrived included)."""
import argparse
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

REQ = b"\x00\x00\x00\x00\x02\x08\x01"  # gRPC frame: DoorRequest{door_id: 1}
WIDE = 2**31 - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("calls", nargs="+", help="method names, one stream each")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds without reading after the calls")
    ap.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF, set before connecting")
    a = ap.parse_args()
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    s.settimeout(10)
    s.connect((a.host, a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WIDE})
    conn.initiate_connection()
    conn.increment_flow_control_window(WIDE - 65535)
    sids = []
    for method in a.calls:
        sid = conn.get_next_available_stream_id()
        sids.append((method, sid))
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                (":path", f"/cloudcity.DoorManager/{method}"),
                                (":authority", f"{a.host}:{a.port}"), ("content-type", "application/grpc"),
                                ("te", "trailers")])
        conn.send_data(sid, REQ, end_stream=True)
    s.sendall(conn.data_to_send())
    time.sleep(a.pause)
    status, body = {}, {}
    deadline = time.time() + 60
    try:
        while len(status) < len(sids) and time.time() < deadline:
            data = s.recv(65536)
            if not data:
                print("error connection closed", flush=True)
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_ended is None:
                        continue  # response headers: the status is the trailers'
                    for k, v in ev.headers:
                        if k == b"grpc-status":
                            status[ev.stream_id] = v.decode()
                elif isinstance(ev, h2.events.StreamReset):
                    status[ev.stream_id] = "reset"
                elif isinstance(ev, h2.events.DataReceived):
                    body[ev.stream_id] = body.get(ev.stream_id, 0) + len(ev.data)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    print(f"error GOAWAY {ev.error_code}", flush=True)
                    return
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    except (OSError, h2.exceptions.ProtocolError) as e:
        print(f"error {type(e).__name__} {e}", flush=True)
        return
    for method, sid in sids:
        print(f"{method} {status.get(sid, 'none')} {body.get(sid, 0)}", flush=True)


if __name__ == "__main__":
    main()

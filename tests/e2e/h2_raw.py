"""Raw HTTP/2 gRPC client on the python h2 library, writing its bytes in
pieces: `--split 1` sends every byte in its own send() (TCP_NODELAY), so the
connection preface, frame headers and HEADERS frames reach the kernel in
fragments. Prints "<Method> <grpc-status>" per call, one stream each, on ONE
connection; "<Method> reset" if the stream was reset, "error ..." if the
connection failed. A call WAIT:FILE waits until FILE exists."""
import argparse
import os
import select
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
    ap.add_argument("--cut-in-headers", type=int, default=0, metavar="K",
                    help="send every HEADERS frame in K pieces cut inside its payload, the first with all"
                    " that precedes it in the write, the last with all that follows")
    ap.add_argument("--lead-bytes", type=int, default=0,
                    help="write this many bytes of frames of an unknown type (which servers ignore) in"
                    " front of every call's HEADERS, in the same send")
    ap.add_argument("--stall", metavar="FILE",
                    help="send the first call's HEADERS frame only up to the middle of its payload, then wait"
                    " for FILE to exist; 'close' instead of a file: close the connection there")
    ap.add_argument("--cut-last-headers", action="store_true",
                    help="send each write in two pieces, cut in the middle of its last HEADERS frame's payload;"
                    " a call A+B+C writes the three requests in one write")
    ap.add_argument("--mptcp", action="store_true", help="connect with an MPTCP socket (IPPROTO_MPTCP)")
    ap.add_argument("--sport", type=int, default=0, help="connect from this source port")
    a = ap.parse_args()
    if a.mptcp:
        fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM, 262)  # IPPROTO_MPTCP
        s.settimeout(5)
        s.connect((a.host, a.port))
    else:
        s = socket.create_connection((a.host, a.port), timeout=5,
                                     source_address=("", a.sport) if a.sport else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()

    first_flush = [True]
    lead = [b""]

    def cut_in(data):
        """pieces of data: every HEADERS frame cut inside its payload"""
        pieces, cur, i = [], b"", 0
        if first_flush[0]:
            cur, i = data[:24], 24
        while i + 9 <= len(data):
            n = int.from_bytes(data[i:i + 3], "big")
            frame = data[i:i + 9 + n]
            if data[i + 3] == 1 and n >= a.cut_in_headers:
                cuts = [0] + [9 + n * j // a.cut_in_headers for j in range(1, a.cut_in_headers)] + [9 + n]
                parts = [frame[x:y] for x, y in zip(cuts, cuts[1:])]
                pieces.append(cur + parts[0])
                pieces += parts[1:-1]
                cur = parts[-1]
            else:
                cur += frame
            i += 9 + n
        pieces.append(cur + data[i:])
        return pieces

    def cut_last(data):
        """data in two pieces, cut inside its last HEADERS frame's payload"""
        i, last = 24 if first_flush[0] else 0, None
        while i + 9 <= len(data):
            n = int.from_bytes(data[i:i + 3], "big")
            if data[i + 3] == 1 and n >= 2:
                last = i + 9 + n // 2
            i += 9 + n
        return [data] if last is None else [data[:last], data[last:]]

    def flush():
        data = lead[0] + conn.data_to_send()
        lead[0] = b""
        if a.cut_last_headers:
            for p in cut_last(data):
                s.sendall(p)
                time.sleep(0.02)
            first_flush[0] = False
            return
        if a.cut_in_headers:
            pieces = cut_in(data)
            first_flush[0] = False
            for p in pieces:
                s.sendall(p)
                time.sleep(0.02)
            return
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
            big = spec.endswith("^") or not marked
            methods = spec.rstrip("^").split("+")  # A+B: both requests in one write
            sids = []
            for method in methods:
                sid = conn.get_next_available_stream_id()
                sids.append(sid)
                headers = [(":method", "POST"), (":scheme", "http"), (":path", f"/cloudcity.DoorManager/{method}"),
                           (":authority", f"{a.host}:{a.port}"), ("content-type", "application/grpc"),
                           ("te", "trailers")]
                if a.metadata_bytes and big:  # a value of its own per call: no indexed repeat
                    headers.append(("x-big", (f"{sid}-" + "b" * a.metadata_bytes)[:a.metadata_bytes]))
                conn.send_headers(sid, headers)
                conn.send_data(sid, REQ, end_stream=True)
            left = a.lead_bytes
            while left > 0:  # unknown frames (type 0xfa) on stream 0, payloads under 16 KiB
                n = min(left - 9, 16000) if left > 9 else 0
                lead[0] += n.to_bytes(3, "big") + b"\xfa\x00\x00\x00\x00\x00" + b"u" * n
                left -= 9 + n
            if a.stall:
                data = lead[0] + conn.data_to_send()
                lead[0] = b""
                mid = 9 + int.from_bytes(data[:3], "big") // 2
                s.sendall(data[:mid])
                if a.stall == "close":
                    time.sleep(0.3)
                    s.close()
                    print("closed", flush=True)
                    return
                for _ in range(600):  # reading what the server sends meanwhile
                    if os.path.exists(a.stall):
                        break
                    if select.select([s], [], [], 0.05)[0]:
                        got = s.recv(65536)
                        if not got:
                            print("error connection closed", flush=True)
                            return
                        conn.receive_data(got)
                s.sendall(data[mid:])
                a.stall = None
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
            status = {}
            while len(status) < len(sids):
                data = s.recv(65536)
                if not data:
                    print("error connection closed", flush=True)
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and ev.stream_id in sids:
                        # the status is the trailers' (END_STREAM): response
                        # headers that do not end the stream carry none
                        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_ended is None:
                            continue
                        for k, v in ev.headers:
                            if k == b"grpc-status":
                                status[ev.stream_id] = v.decode()
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id in sids:
                        status[ev.stream_id] = "reset"
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if not (a.abrupt and last):
                    flush()
            for method, sid in zip(methods, sids):
                print(f"{method} {status[sid]}", flush=True)
    except OSError as e:
        print(f"error {e.strerror or e}", flush=True)


if __name__ == "__main__":
    main()

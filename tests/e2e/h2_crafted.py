"""HTTP/2 gRPC client that writes its frames by hand, in the shapes real
clients rarely use but the protocol allows, all on ONE connection (the
HPACK table carries over from call to call). Calls are CASE:METHOD:

  plain:M         HEADERS (END_HEADERS), DATA (END_STREAM)
  padded:M        HEADERS with PADDED and PRIORITY (pad and priority fields
                  around the header block; pad length from H2_PAD, default 7)
  prioflag:M      HEADERS with PRIORITY (priority fields before the block)
  priority:M      a PRIORITY frame for the stream, then plain
  resize:M        the header block starts with a dynamic table size update
  trailers:M      HEADERS, DATA, then a trailing HEADERS block (END_STREAM)
  continuation:M  the header block in HEADERS + CONTINUATION
  batch:M+M+...   several plain calls written in one send()

A METHOD that starts with '/' or '%' is the whole :path. Prints
"<Method> <grpc-status>" per call in order ("<Method> reset" if the
server reset the stream), "error ..." for each call left when the
connection ended first (calls after it are not sent)."""
import os
import socket
import sys

import hpack

REQ = b"\x00\x00\x00\x00\x02\x08\x01"  # gRPC frame: DoorRequest{door_id: 1}
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 2, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def main():
    host, port, calls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enc, dec = hpack.Encoder(), hpack.Decoder()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b""))
    next_stream = [1]
    order = []      # (method, stream) in call order
    status = {}     # stream -> "0", "12", "reset"
    buf = b""
    block = {}      # stream -> header bytes of a response block not ended yet

    def request(case, method):
        sid = next_stream[0]
        next_stream[0] += 2
        order.append((method, sid))
        if case == "resize":
            enc.header_table_size = 2048 if enc.header_table_size != 2048 else 3072
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", method if method[:1] in "/%" else "/cloudcity.DoorManager/" + method),
                (":authority", f"{host}:{port}"), ("content-type", "application/grpc"), ("te", "trailers")]
        blk = enc.encode(hdrs, huffman=True)
        out = b""
        if case == "priority":
            out += frame(PRIORITY, 0, sid, (0).to_bytes(4, "big") + b"\x10")
        if case == "padded":
            pad = int(os.environ.get("H2_PAD", "7"))
            out += frame(HEADERS, END_HEADERS | PADDED | PRIO, sid,
                         bytes([pad]) + (0).to_bytes(4, "big") + b"\x20" + blk + b"\x00" * pad)
        elif case == "prioflag":
            out += frame(HEADERS, END_HEADERS | PRIO, sid, (0).to_bytes(4, "big") + b"\x20" + blk)
        elif case == "continuation":
            half = len(blk) // 2
            out += frame(HEADERS, 0, sid, blk[:half]) + frame(CONTINUATION, END_HEADERS, sid, blk[half:])
        else:
            out += frame(HEADERS, END_HEADERS, sid, blk)
        if case == "trailers":
            out += frame(DATA, 0, sid, REQ)
            out += frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode([("x-request-trailer", "1")]))
        else:
            out += frame(DATA, END_STREAM, sid, REQ)
        return out

    def pump(until_sid):
        """read frames until stream until_sid is done; False if the connection ended"""
        nonlocal buf
        while until_sid not in status:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                try:
                    chunk = s.recv(65536)
                except OSError as e:
                    raise ConnectionError(str(e))
                if not chunk:
                    raise ConnectionError("connection closed")
                buf += chunk
            n = int.from_bytes(buf[:3], "big")
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if ftype == SETTINGS and not flags & 1:
                s.sendall(frame(SETTINGS, 1, 0, b""))
            elif ftype == PING and not flags & 1:
                s.sendall(frame(PING, 1, 0, payload))
            elif ftype == GOAWAY:
                raise ConnectionError("GOAWAY")
            elif ftype == RST_STREAM:
                status.setdefault(sid, "reset")
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    if flags & PADDED:
                        payload = payload[1:len(payload) - payload[0]]
                    if flags & PRIO:
                        payload = payload[5:]
                    block[sid] = (b"", flags & END_STREAM)
                data, es = block[sid]
                data += payload
                block[sid] = (data, es)
                if flags & END_HEADERS:
                    fields = dict(dec.decode(data))
                    # the status is the trailers' (END_STREAM): a block
                    # without it is the response headers
                    if es and "grpc-status" in fields:
                        status[sid] = fields["grpc-status"]
                    elif es:
                        status[sid] = "no-status"
            elif ftype == DATA and flags & END_STREAM:
                status.setdefault(sid, "no-status")
        return True

    done = 0
    try:
        for spec in calls:
            case, methods = spec.split(":", 1)
            if case == "batch":
                s.sendall(b"".join(request("plain", m) for m in methods.split("+")))
            else:
                s.sendall(request(case, methods))
            for method, sid in order[done:]:
                pump(sid)
                print(method, status[sid], flush=True)
            done = len(order)
    except (ConnectionError, OSError) as e:
        for method, sid in order[done:]:
            if sid in status:
                print(method, status[sid], flush=True)
                done += 1
            else:
                break
        for _ in order[done:]:
            print("error", e, flush=True)
    s.close()


if __name__ == "__main__":
    main()

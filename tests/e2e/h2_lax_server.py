"""A gRPC-shaped HTTP/2 server that counts a stream id as used only once its
request is accepted, the way grpc-go's server does: a HEADERS block with a
malformed field (an uppercase name) is answered with RST_STREAM and its id
stays free, so a later HEADERS frame on a lower id opens a new stream. A
HEADERS frame on an id at or below the last accepted one is trailers.

Logs "handler <Method> 0" for each request to /cloudcity.DoorManager/<Method>
(one of the four) and answers it grpc-status 0; any other path gets
grpc-status 12. Options, the ways a server may be laxer still:
  fold-case       route service and method names ignoring ASCII case, as
                  ASP.NET Core's routing does under grpc-dotnet (its log
                  names the method it routed to)
  percent-decode  percent-decode :path before routing, as a server that
                  treats it as a URL path may
  dot-segments    clean :path before routing (Go's path.Clean: "a/../b" is
                  "b"); it routes as grpc-go does, a leading '/' optional
  names-any-case  take field names in any case (":PATH" as ":path") instead
                  of refusing the stream
Usage: h2_lax_server.py ADDR PORT [OPTION...]"""
import socket
import sys
import posixpath
import threading
import urllib.parse

import hpack

DATA, HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 0, 1, 3, 4, 6, 9
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20
METHODS = {"GetName", "GetLocation", "RequestMaintenance", "SetAccessCode"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FOLD_CASE = "fold-case" in sys.argv[3:]
PERCENT_DECODE = "percent-decode" in sys.argv[3:]
NAMES_ANY_CASE = "names-any-case" in sys.argv[3:]
DOT_SEGMENTS = "dot-segments" in sys.argv[3:]


def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def serve(s):
    dec, enc = hpack.Decoder(), hpack.Encoder()
    s.sendall(frame(SETTINGS, 0, 0, b""))
    buf, max_stream, paths, cont = b"", 0, {}, None  # cont: (stream, flags, block so far)

    def answer(sid):
        path = paths.pop(sid, "")
        if PERCENT_DECODE:
            path = urllib.parse.unquote(path)
        if DOT_SEGMENTS and path:
            path = posixpath.normpath(path)
        if FOLD_CASE:
            routed = {f"/cloudcity.DoorManager/{m}".lower(): f"/cloudcity.DoorManager/{m}" for m in METHODS}
            path = routed.get(path.lower(), path)
        # grpc-go: one leading '/' taken off if there, service and method
        # split at the last '/'
        service, _, method = (path[1:] if path.startswith("/") else path).rpartition("/")
        if service == "cloudcity.DoorManager" and method in METHODS:
            print(f"handler {method} 0", flush=True)
            out = frame(HEADERS, END_HEADERS, sid, enc.encode([(":status", "200"), ("content-type", "application/grpc")]))
            out += frame(DATA, 0, sid, b"\x00\x00\x00\x00\x00")
            out += frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode([("grpc-status", "0")]))
        else:
            out = frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(
                [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")]))
        s.sendall(out)

    while True:
        data = s.recv(65536)
        if not data:
            return
        buf += data
        if buf.startswith(PREFACE):
            buf = buf[len(PREFACE):]
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if ftype == SETTINGS and not flags & 1:
                s.sendall(frame(SETTINGS, 1, 0, b""))
            elif ftype == PING and not flags & 1:
                s.sendall(frame(PING, 1, 0, payload))
            elif ftype == HEADERS or ftype == CONTINUATION:
                if ftype == HEADERS:
                    if flags & PADDED:
                        payload = payload[1:len(payload) - payload[0]]
                    if flags & PRIO:
                        payload = payload[5:]
                    cont = (sid, flags, payload)
                else:
                    cont = (cont[0], cont[1], cont[2] + payload)
                if not flags & END_HEADERS:
                    continue
                sid, flags, payload = cont
                fields = dec.decode(payload, raw=True)  # the whole block: the table stays in step
                if NAMES_ANY_CASE:
                    fields = [(k.lower(), v) for k, v in fields]
                if any(k != k.lower() for k, _ in fields):
                    s.sendall(frame(RST_STREAM, 0, sid, (1).to_bytes(4, "big")))  # the id is not taken
                    continue
                if sid > max_stream:
                    max_stream = sid
                    paths[sid] = dict(fields).get(b":path", b"").decode("latin-1")
                if flags & END_STREAM and sid in paths:
                    answer(sid)
            elif ftype == DATA and flags & END_STREAM and sid in paths:
                answer(sid)


def main():
    ls = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((sys.argv[1], int(sys.argv[2])))
    ls.listen(16)
    print(f"listening {sys.argv[1]}:{sys.argv[2]}", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()

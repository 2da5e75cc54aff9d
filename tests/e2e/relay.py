"""A TCP relay in front of a local server: listens on PORT (with
--mptcp, an IPPROTO_MPTCP listener, as Go 1.24 servers make by default)
and copies every accepted connection both ways to 127.0.0.1:TO. Run in a
server's cgroup, it is a server of that cgroup reading what callers send."""
import argparse
import socket
import threading


def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("to", type=int)
    ap.add_argument("--mptcp", action="store_true")
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, 262 if a.mptcp else 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", a.port))
    ls.listen(64)
    print("listening", flush=True)
    while True:
        c, _ = ls.accept()
        u = socket.create_connection(("127.0.0.1", a.to))
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()


main()

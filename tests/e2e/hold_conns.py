"""Opens N TCP connections to HOST:PORT one after another (each connect
waits at most --timeout s), writes the HTTP/2 preface and an empty
SETTINGS frame on each one that connects, prints "connected K", then keeps
them open until FILE exists and closes them."""
import argparse
import os
import socket
import time

H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("file")
    ap.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args()
    held = []
    for _ in range(a.n):
        try:
            s = socket.create_connection((a.host, a.port), timeout=a.timeout)
            s.sendall(H2_HELLO)
            held.append(s)
        except OSError:
            pass
    print("connected", len(held), flush=True)
    while not os.path.exists(a.file):
        time.sleep(0.1)
    for s in held:
        s.close()


main()

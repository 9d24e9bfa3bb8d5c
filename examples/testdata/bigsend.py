"""A blocking server answering each request with one sendall of a large
body (issue 16, case 8). It prints, per request, its own time from having
read the request to sendall's return: the part of the request the agent
must cover."""
import json
import socket
import sys
import threading
import time

BODY = b"x" * int(sys.argv[2]) if len(sys.argv) > 2 else b"x" * (8 << 20)


def serve(conn):
    with conn:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[buf.index(b"\r\n\r\n") + 4:]
            t0 = time.monotonic()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
            took = time.monotonic() - t0
            print(json.dumps({"server_seconds": took}), flush=True)


def main():
    ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ln.bind(("127.0.0.1", int(sys.argv[1])))
    ln.listen(16)
    print(json.dumps({"listening": ln.getsockname()[1]}), flush=True)
    while True:
        conn, _ = ln.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()

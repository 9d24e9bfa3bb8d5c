"""A pre-fork server (issue 16, case 6): the parent listens, then, when told
on stdin, forks workers without exec that accept on the inherited socket
and answer each request on its own connection. It prints, per worker, the
requests it answered when its stdin closes."""
import os
import socket
import sys

WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def work(ln):
    n = 0
    ln.settimeout(0.2)
    while True:
        try:
            conn, _ = ln.accept()
        except socket.timeout:
            if os.getppid() == 1:
                os._exit(0)
            continue
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    break
                buf += data
            if b"\r\n\r\n" in buf:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                n += 1


ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ln.bind(("127.0.0.1", int(sys.argv[1])))
ln.listen(128)
print("listening", flush=True)
sys.stdin.readline()  # fork once the agent tracks this process
kids = []
for _ in range(WORKERS):
    pid = os.fork()
    if pid == 0:
        work(ln)
    kids.append(pid)
print(" ".join(str(k) for k in kids), flush=True)
sys.stdin.readline()
for k in kids:
    os.kill(k, 9)

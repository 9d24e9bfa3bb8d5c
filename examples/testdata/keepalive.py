"""A keep-alive HTTP/1.1 server whose main thread blocks in accept()
(issue 16, case 12): a thread per connection answers requests until the
client closes. Prints its port once it listens."""
import socket
import sys
import threading


def serve(conn):
    with conn:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            _, _, buf = buf.partition(b"\r\n\r\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")


ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ln.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
ln.listen(128)
print(ln.getsockname()[1], flush=True)
while True:
    conn, _ = ln.accept()  # blocking: the thread sits in accept4()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()

"""A line server whose last write of an answer races the client's next
request: each answer is several small writes (TCP_NODELAY: each is sent
at once), or with argv[1] == "greet" a greeting on accept and one write
per answer. A client spinning on the other CPU has the answer's last
bytes and sends its next line before the server's send has returned
(sock:sock_send_length): the agent must not take that late-completing
write as the next request's response."""
import json
import socket
import sys
import threading

GREET = sys.argv[1] == "greet"


def serve(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if GREET:
            conn.sendall(b"220 hello\n")
        buf = b""
        while True:
            while b"\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[buf.index(b"\n") + 1:]
            if GREET:
                conn.sendall(b"250 ok\n")
                continue
            for _ in range(8):
                conn.sendall(b"part ")
            conn.sendall(b"end\n")


def main():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    print(json.dumps({"listening": ls.getsockname()[1]}), flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()

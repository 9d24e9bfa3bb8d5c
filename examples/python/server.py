"""A small standard-library HTTP service that builds reference cycles on
every request and in the background, so CPython's cyclic collector runs
many times a second (run: python3 server.py [port] [--pause-every S]
[--no-churn]). pausewatch shows each collection, its generation, and how
many objects it freed. --pause-every makes long pauses on purpose:
gc.collect() over a large live heap."""
import gc
import http.server
import sys
import threading
import time


class Node:
    def __init__(self):
        self.peer = None


def churn():
    keep = []
    while True:
        for _ in range(2000):
            a, b = Node(), Node()
            a.peer, b.peer = b, a
        keep.append([Node() for _ in range(50)])
        if len(keep) > 500:
            keep.clear()
        time.sleep(0.001)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle the body waits for
    # the client's delayed ACK (40-200 ms) after the server is done with
    # the request, a wait no server-side measurement can see.
    disable_nagle_algorithm = True

    def do_GET(self):
        cycles = []
        for _ in range(200):
            a, b = Node(), Node()
            a.peer, b.peer = b, a
            cycles.append(a)
        body = b"ok %d\n" % len(cycles)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def pauser(every):
    # Many live container objects: a full collection must traverse them all.
    ballast = [[i] for i in range(400_000)]
    while True:
        time.sleep(every)
        t0 = time.perf_counter()
        gc.collect()
        print("deliberate pause: %.1f ms" % ((time.perf_counter() - t0) * 1e3), flush=True)
    del ballast


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8082
    args = sys.argv[2:]
    if "--pause-every" in args:
        every = float(args[args.index("--pause-every") + 1])
        threading.Thread(target=pauser, args=(every,), daemon=True).start()
    if "--no-churn" not in args:
        threading.Thread(target=churn, daemon=True).start()
    # socketserver's default accept queue is 5 deep: a load generator's
    # burst of 64 connects overflows it while a collection holds the GIL,
    # the kernel drops handshakes, and requests wait 0.2-1 s for TCP
    # retransmits before the server can see them. Servers in production
    # use hundreds (gunicorn: 2048).
    http.server.ThreadingHTTPServer.request_queue_size = 128
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("example service on http://127.0.0.1:%d/" % port, flush=True)
    srv.serve_forever()

"""The Python integration tests' workload.

Waits for "go" on stdin (so the agent is attached first), builds reference
cycles for CHURN_SECONDS while timing every collection through gc.callbacks
(the interpreter's own account), prints it as one JSON line, and exits when
stdin closes.
"""
import gc
import json
import os
import sys
import time

secs = float(os.environ.get("CHURN_SECONDS", "3"))
print("ready", os.getpid(), flush=True)
if not sys.stdin.readline():
    sys.exit(1)

count = 0
total_ns = 0
gens = {}
started = 0


def timer(phase, info):
    global count, total_ns, started
    if phase == "start":
        started = time.perf_counter_ns()
    else:
        total_ns += time.perf_counter_ns() - started
        count += 1
        g = "gen%d" % info["generation"]
        gens[g] = gens.get(g, 0) + 1


class Node:
    def __init__(self):
        self.other = None


gc.callbacks.append(timer)
end = time.monotonic() + secs
keep = []
while time.monotonic() < end:
    for _ in range(500):
        a, b = Node(), Node()
        a.other, b.other = b, a
    keep.append([Node() for _ in range(20)])
    if len(keep) > 200:
        keep.clear()
gc.callbacks.remove(timer)
print(json.dumps({"count": count, "total_seconds": total_ns / 1e9, "generations": gens}), flush=True)
sys.stdin.readline()

"""The Python integration tests' workload (CPython 3.8+).

Waits for "go" on stdin (so the agent is attached first), then builds
reference cycles until CHURN_COLLECTIONS collections have run (or
CHURN_SECONDS passed), recording every collection through gc.callbacks (the
interpreter's own account: count, time, generation, objects), prints it as
one JSON line, and exits when stdin closes.

Automatic collection is off outside that window (gc.disable), so every
collection the agent sees in it is one gc.callbacks saw. Besides the
automatic path it collects through gc.collect(generation) and the C API's
PyGC_Collect (via ctypes): each reaches the collector through another
caller, and on some builds another compiler clone of it.
"""
import gc
import json
import os
import sys
import time

try:
    import ctypes

    pyapi = ctypes.pythonapi
except ImportError:  # an interpreter built without libffi
    pyapi = None

target = int(os.environ.get("CHURN_COLLECTIONS", "400"))
cap = float(os.environ.get("CHURN_SECONDS", "10"))

gc.disable()
print("ready", os.getpid(), flush=True)
if not sys.stdin.readline():
    sys.exit(1)

count = 0
total_ns = 0
objects = 0
gens = {}
started = 0


def timer(phase, info):
    global count, total_ns, started, objects
    if phase == "start":
        started = time.perf_counter_ns()
        return
    total_ns += time.perf_counter_ns() - started
    count += 1
    objects += info["collected"] + info["uncollectable"]
    g = "gen%d" % info["generation"]
    gens[g] = gens.get(g, 0) + 1


class Node:
    def __init__(self):
        self.other = None


keep = []
capi = 0
gc.callbacks.append(timer)
gc.enable()
end = time.monotonic() + cap
i = 0
while count < target and time.monotonic() < end:
    for _ in range(500):
        a, b = Node(), Node()
        a.other, b.other = b, a
    keep.append([Node() for _ in range(20)])
    if len(keep) > 200:
        keep.clear()
    i += 1
    if i % 20 == 0:
        gc.collect(i // 20 % 3)
    if i % 50 == 0 and pyapi is not None:
        pyapi.PyGC_Collect()
        capi += 1
gc.disable()
gc.callbacks.remove(timer)
print(json.dumps({"count": count, "total_seconds": total_ns / 1e9, "generations": gens,
                  "objects": objects, "capi": capi, "version": sys.version.split()[0]}), flush=True)
sys.stdin.readline()

"""The GC CPU test's CPython workload.

Waits for "go" on stdin (so the agent is attached first), then for
GCCPU_SECONDS keeps a large live heap of container objects (so that each
collection has real work) and makes garbage cycles, with automatic
collections and a full gc.collect() now and then. gc.callbacks record the
calling thread's CPU time (time.thread_time_ns, the kernel's per-thread
clock) at the start and the end of every collection: the interpreter's
own account of the CPU its collector used. Prints it as one JSON line and
exits when stdin closes.
"""
import gc
import json
import os
import sys
import time

seconds = float(os.environ.get("GCCPU_SECONDS", "6"))

# The live heap every full collection traverses: about 300,000 objects.
live = [[{"k": i}, [i]] for i in range(100_000)]

gc.disable()
print("ready", os.getpid(), flush=True)
if not sys.stdin.readline():
    sys.exit(1)

count = 0
cpu_ns = 0
wall_ns = 0
started_cpu = started_wall = 0


def timer(phase, info):
    global count, cpu_ns, wall_ns, started_cpu, started_wall
    if phase == "start":
        started_wall = time.perf_counter_ns()
        started_cpu = time.thread_time_ns()
        return
    cpu_ns += time.thread_time_ns() - started_cpu
    wall_ns += time.perf_counter_ns() - started_wall
    count += 1


class Node:
    def __init__(self):
        self.other = None


gc.callbacks.append(timer)
gc.enable()
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    for _ in range(200):
        a, b = Node(), Node()
        a.other, b.other = b, a
    i += 1
    if i % 100 == 0:
        gc.collect()
gc.disable()
gc.callbacks.remove(timer)
print(json.dumps({"count": count, "cpu_seconds": cpu_ns / 1e9, "wall_seconds": wall_ns / 1e9,
                  "version": sys.version.split()[0]}), flush=True)
sys.stdin.readline()

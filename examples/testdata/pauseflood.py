# A gen-0 collection loop for the pause budget tests: says ready, waits
# for a line on stdin (so the agent is attached first), collects for
# FLOOD_SECONDS with FLOOD_FORKS children doing the same, and prints the
# collections the interpreter itself counted in the loop (its own, not
# the children's: those start untracked). Exits when stdin closes.
import gc
import os
import sys
import time

secs = float(os.environ.get("FLOOD_SECONDS", "4"))
forks = int(os.environ.get("FLOOD_FORKS", "0"))
print("ready", flush=True)
sys.stdin.readline()
kids = []
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        end = time.time() + secs
        while time.time() < end:
            gc.collect(0)
        os._exit(0)
    kids.append(pid)
before = sum(s["collections"] for s in gc.get_stats())
end = time.time() + secs
while time.time() < end:
    gc.collect(0)
after = sum(s["collections"] for s in gc.get_stats())
for pid in kids:
    os.waitpid(pid, 0)
print(after - before, flush=True)
sys.stdin.read()

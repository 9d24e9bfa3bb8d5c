# A short-lived interpreter for the lifecycle test: says ready, waits for a
# line on stdin (so the agent is attached first), makes N full collections
# and prints how many gc.callbacks saw.
import gc
import sys

n = [0]
gc.callbacks.append(lambda phase, info: phase == "stop" and n.__setitem__(0, n[0] + 1))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    gc.collect()
print(n[0], flush=True)
# Exit only when told: the interpreter's own shutdown collects again, and
# those collections are not in the window gc.callbacks counted.
sys.stdin.readline()

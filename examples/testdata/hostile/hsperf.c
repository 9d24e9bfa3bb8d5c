// hsperf is a hostile "JVM" for the agent's tests: a process of no runtime
// that maps a file named libjvm.so (so the agent takes it for a JVM whose
// probes cannot attach, and falls back to hsperfdata) and owns a sparse
// hsperfdata file of argv[2] MiB, mapped shared under the name a JVM gives
// its own (hsperfdata_<user>/<pid>), whose first 2 MiB (the most the agent
// reads) are valid counters, rewritten every 10 ms: thousands of
// collectors that each run once per 100 ms (the agent's poll), and a GC
// cause that is new every time. It prints "ready <pid>" and runs until killed.
//
// usage: hsperf DIR SIZE_MIB COLLECTORS   (DIR holds libjvm.so and
// hsperfdata_pwtest/; at most 8190 collectors fit in 2 MiB)
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define USED (2u << 20)
#define ENTRY 64

static unsigned char *m;

static void be32(size_t off, uint32_t v) {
	m[off] = v >> 24; m[off + 1] = v >> 16; m[off + 2] = v >> 8; m[off + 3] = v;
}

static void be64(size_t off, uint64_t v) {
	be32(off, (uint32_t)(v >> 32));
	be32(off + 4, (uint32_t)v);
}

// entry writes one counter at off: a long ('J') or a string ('B') whose
// value starts at byte 40 of the entry.
static size_t entry(size_t off, const char *name, char type) {
	be32(off, ENTRY);
	be32(off + 4, 20);
	be32(off + 8, type == 'B' ? 24 : 0);
	m[off + 12] = type;
	be32(off + 16, type == 'B' ? 40 : 56);
	snprintf((char *)m + off + 20, type == 'B' ? 20 : 36, "%s", name);
	return off + (type == 'B' ? 40 : 56);
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: hsperf DIR SIZE_MIB COLLECTORS\n");
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/libjvm.so", argv[1]);
	int lf = open(path, O_RDWR | O_CREAT, 0644);
	if (lf < 0 || write(lf, "not an ELF file\n", 16) != 16) {
		perror("libjvm.so");
		return 1;
	}
	/* Executable, as a loader maps a library's text: the agent learns of a
	 * library mapped after exec from its executable mapping, and this
	 * process maps it after the agent has seen its exec. */
	if (mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, lf, 0) == MAP_FAILED) {
		perror("mmap libjvm.so");
		return 1;
	}
	snprintf(path, sizeof path, "%s/hsperfdata_pwtest", argv[1]);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/hsperfdata_pwtest/%d", argv[1], (int)getpid());
	size_t size = (size_t)atol(argv[2]) << 20;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
		perror("hsperfdata");
		return 1;
	}
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		perror("mmap hsperfdata");
		return 1;
	}
	size_t n = USED / ENTRY - 1;
	size_t collectors = (size_t)atol(argv[3]);
	if (collectors > (n - 4) / 4)
		collectors = (n - 4) / 4;
	// Prologue: magic, big endian, version 2.0, accessible, used,
	// overflow, modification time, entry offset, entries.
	be32(0, 0xcafec0c0);
	m[4] = 0; m[5] = 2; m[6] = 0; m[7] = 1;
	be32(8, USED);
	be32(24, 32);
	be32(28, (uint32_t)(4 + collectors * 4));
	size_t off = 32;
	size_t safepoints = entry(off, "sun.rt.safepoints", 'J');
	off += ENTRY;
	size_t sptime = entry(off, "sun.rt.safepointTime", 'J');
	off += ENTRY;
	be64(entry(off, "sun.os.hrt.frequency", 'J'), 1000000000);
	off += ENTRY;
	size_t cause = entry(off, "sun.gc.lastCause", 'B');
	off += ENTRY;
	size_t *inv = calloc(collectors, sizeof *inv), *lastEntry = calloc(collectors, sizeof *lastEntry),
	       *lastExit = calloc(collectors, sizeof *lastExit);
	char name[64];
	for (size_t i = 0; i < collectors; i++) {
		snprintf(name, sizeof name, "sun.gc.collector.%zu.invocations", i);
		inv[i] = entry(off, name, 'J');
		off += ENTRY;
		snprintf(name, sizeof name, "sun.gc.collector.%zu.time", i);
		entry(off, name, 'J');
		off += ENTRY;
		snprintf(name, sizeof name, "sun.gc.collector.%zu.lastEntryTime", i);
		lastEntry[i] = entry(off, name, 'J');
		off += ENTRY;
		snprintf(name, sizeof name, "sun.gc.collector.%zu.lastExitTime", i);
		lastExit[i] = entry(off, name, 'J');
		off += ENTRY;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (uint64_t k = 1;; k++) {
		be64(safepoints, k * collectors);
		be64(sptime, k * collectors * 1000);
		snprintf((char *)m + cause, 24, "cause-%llu", (unsigned long long)k);
		for (size_t i = 0; i < collectors; i++) {
			be64(inv[i], k / 10); // +1 every 100 ms: a sample per poll, mostly
			be64(lastEntry[i], k * 1000);
			be64(lastExit[i], k * 1000 + 500);
		}
		// Somewhere in the rest of the 512 MiB, too: the file changes
		// everywhere, not only where the agent reads.
		m[USED + (k * 4096) % (size - USED)] = (unsigned char)k;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

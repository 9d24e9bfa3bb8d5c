/*
 * LD_PRELOAD library for the hsperfdata fallback test: the JVM maps its
 * hsperfdata file only LATE_HSPERF_SECONDS (default 5) after creating it,
 * long after it mapped libjvm.so, the way a JVM starting slowly on a
 * loaded node does. The JVM sizes the file with ftruncate before mapping
 * it; that call waits when its descriptor is a file under hsperfdata_*.
 * Every other call is passed through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int ftruncate64(int fd, off64_t length)
{
	static int (*real)(int, off64_t);
	if (!real)
		real = (int (*)(int, off64_t))dlsym(RTLD_NEXT, "ftruncate64");
	char link[64], path[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (length > 0 && n > 0) {
		path[n] = 0;
		if (strstr(path, "/hsperfdata_")) {
			const char *s = getenv("LATE_HSPERF_SECONDS");
			sleep(s ? (unsigned)atoi(s) : 5);
		}
	}
	return real(fd, length);
}

/* A native host that loads CPython late: it sleeps (argv[1] seconds, or
 * until a line on stdin when argv[1] is "-"), then dlopens a libpython
 * (argv[2]), says ready, waits for a line, makes
 * 200 full collections and prints what gc.callbacks saw, then waits for
 * another line before it finalizes (whose collections are not in that
 * window). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char line[16];
    if (argc < 3) {
        fprintf(stderr, "usage: pyhost SECONDS LIBPYTHON\n");
        return 2;
    }
    if (argv[1][0] == '-') {
        if (!fgets(line, sizeof line, stdin))
            return 1;
    } else {
        usleep((useconds_t)(atof(argv[1]) * 1e6));
    }
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void (*init)(void) = (void (*)(void))dlsym(lib, "Py_Initialize");
    int (*run)(const char *) = (int (*)(const char *))dlsym(lib, "PyRun_SimpleString");
    void (*fini)(void) = (void (*)(void))dlsym(lib, "Py_Finalize");
    if (!init || !run || !fini) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    init();
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    run("import gc\nn=[0]\ngc.callbacks.append(lambda p,i: p=='stop' and n.__setitem__(0,n[0]+1))\n"
        "for _ in range(200): gc.collect()\nprint(n[0], flush=True)\n");
    if (!fgets(line, sizeof line, stdin))
        return 1;
    fini();
    return 0;
}

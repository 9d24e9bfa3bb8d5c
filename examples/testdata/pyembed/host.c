/* An embedded, statically linked CPython: a C host linked with
 * libpython3.X.a, named nothing like python. It says ready, waits for a
 * line, makes 200 full collections and prints what gc.callbacks saw, then
 * waits for another line before it finalizes (whose collections are not in
 * that window). */
#include <Python.h>
#include <stdio.h>
int main(int argc, char **argv) {
    char line[16];
    Py_Initialize();
    printf("ready\n"); fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    PyRun_SimpleString("import gc\nn=[0]\ngc.callbacks.append(lambda p,i: p=='stop' and n.__setitem__(0,n[0]+1))\nfor _ in range(200): gc.collect()\nprint(n[0], flush=True)\n");
    if (!fgets(line, sizeof line, stdin)) return 1;
    Py_Finalize();
    return 0;
}

/*
 * A stand-in for libpython, for the symbol-lookup tests: only a
 * Py_Version and functions under the names each CPython version's
 * collector goes by (built per case with -DPY_VERSION_HEX and -DFUNCS).
 * Names with dots are how GCC names LTO/IPA clones, so asm labels.
 */
#ifndef PY_VERSION_HEX
#error define PY_VERSION_HEX
#endif
__attribute__((visibility("default"))) const unsigned long Py_Version = PY_VERSION_HEX;

#define FN(sym, id) __attribute__((noinline, used)) int fn_##id(int a, int b) __asm__(sym); \
	int fn_##id(int a, int b) { return a + b + id; }

FUNCS

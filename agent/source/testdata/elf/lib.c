extern int puts(const char *);
int napi_module_register(void) { return puts("x"); }

int counter;
static int helper(int x) { return x * 3; }
int runtime_gcStart(int x) { return helper(x) + counter; }
void _start(void) { for (;;) counter = runtime_gcStart(counter); }

/*
 * Fixture for the USDT parser: two probes written the way <sys/sdt.h>
 * writes them (that header is not installed here), one guarded by a
 * semaphore, with register, memory and constant arguments.
 * Rebuild: gcc -O0 -no-pie -o sdt.elf sdt.c
 */
__attribute__((section(".probes"))) volatile unsigned short pwtest_guarded_semaphore = 0;

#define NOTE(provider, name, sem, args)                                              \
	__asm__ __volatile__("990: nop\n"                                             \
			     ".pushsection .note.stapsdt,\"?\",\"note\"\n"           \
			     ".balign 4\n"                                           \
			     ".4byte 992f-991f, 994f-993f, 3\n"                      \
			     "991: .asciz \"stapsdt\"\n"                             \
			     "992: .balign 4\n"                                      \
			     "993: .8byte 990b\n"                                    \
			     ".8byte _.stapsdt.base\n"                               \
			     ".8byte " sem "\n"                                      \
			     ".asciz \"" provider "\"\n"                             \
			     ".asciz \"" name "\"\n"                                 \
			     ".asciz \"" args "\"\n"                                 \
			     "994: .balign 4\n"                                      \
			     ".popsection\n"                                         \
			     ".ifndef _.stapsdt.base\n"                              \
			     ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
			     ".weak _.stapsdt.base\n"                                \
			     ".hidden _.stapsdt.base\n"                              \
			     "_.stapsdt.base: .space 1\n"                            \
			     ".size _.stapsdt.base, 1\n"                             \
			     ".popsection\n"                                         \
			     ".endif\n")

int main(void)
{
	NOTE("pwtest", "plain", "0", "-4@%edi 8@-16(%rbp) 8@$5");
	if (pwtest_guarded_semaphore)
		NOTE("pwtest", "guarded", "pwtest_guarded_semaphore", "-4@112(%rsp) -8@%r12 1@%dil");
	return 0;
}

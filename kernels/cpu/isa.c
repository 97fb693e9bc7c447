/* Which clone of the ISA-cloned CPU loops (kernels/cpu/isa.h) runs. */
#include "isa.h"

#include <stdlib.h>
#include <string.h>

int kiln__cpu_isa(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
    int isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    int isa = 0;
#endif
    const char *cap = getenv("KILN_CPU_ISA");
    int lim = !cap ? 2 : !strcmp(cap, "sse2") ? 0 : !strcmp(cap, "avx2") ? 1 : 2;
    return isa < lim ? isa : lim;
}

/*
 * Which instruction set the products, attention and GELU run in: AVX-512 where the CPU has its
 * foundation (F: nothing else of AVX-512 is used), else AVX2 + FMA. Both paths form every element
 * with the same operations in the same order, so their results are identical to the bit (ranks on
 * different CPUs stay replicas).
 * LOCKSTEP_KERNELS=avx2 in the environment keeps a process on the AVX2 path (for comparisons).
 */
#include "lockstep_kernels.h"

#include <stdlib.h>
#include <string.h>

static int selected = -1;

int lk_isa_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

int lk_isa_avx512(void) {
    int s = __atomic_load_n(&selected, __ATOMIC_RELAXED);
    if (s < 0) {
        const char *forced = getenv("LOCKSTEP_KERNELS");
        s = lk_isa_avx512_available() && !(forced && strcmp(forced, "avx2") == 0);
        __atomic_store_n(&selected, s, __ATOMIC_RELAXED);
    }
    return s;
}

int lk_set_isa_avx512(int enabled) {
    const int s = enabled && lk_isa_avx512_available();
    __atomic_store_n(&selected, s, __ATOMIC_RELAXED);
    return s;
}

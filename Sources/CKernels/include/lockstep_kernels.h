#ifndef LOCKSTEP_KERNELS_H
#define LOCKSTEP_KERNELS_H
/*
 * Elementwise kernels whose speed depends on vectorisation the C compiler does reliably: plain
 * counted loops over a branch-free polynomial body, which it turns into unrolled AVX2/FMA code.
 */
#include <stdint.h>

/* out[i] = 0.5·x·(1 + erf(x/√2)) */
void lk_gelu_erf_forward(const float *x, float *out, int64_t n);
/* d[i] *= Φ(x[i]) + x[i]·φ(x[i])  (the erf GELU's derivative), in place */
void lk_gelu_erf_backward_inplace(const float *x, float *d, int64_t n);
#endif

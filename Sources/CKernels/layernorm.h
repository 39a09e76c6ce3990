/* One LayerNorm output element, (x − mean)·rstd·gamma + beta, at each width (private to CKernels):
 * lk_layernorm_forward forms its outputs with these, and lk_gemm_cols_normalized forms them again
 * from the LayerNorm's input as it reads it. Every width takes the same operations in the same
 * order (subtract, multiply, fused multiply-add), so both give the same bits. */
#ifndef LOCKSTEP_LAYERNORM_H
#define LOCKSTEP_LAYERNORM_H
#include <immintrin.h>
#include <math.h>

static inline float layernorm1(float x, float mean, float rstd, float gamma, float beta) {
    return fmaf((x - mean) * rstd, gamma, beta);
}

static inline __m256 layernorm8(__m256 x, __m256 mean, __m256 rstd, __m256 gamma, __m256 beta) {
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(x, mean), rstd), gamma, beta);
}

static inline __attribute__((target("avx512f"))) __m512 layernorm16(__m512 x, __m512 mean, __m512 rstd, __m512 gamma,
                                                                    __m512 beta) {
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(x, mean), rstd), gamma, beta);
}
#endif

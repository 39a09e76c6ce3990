/*
 * The one product every step of an attention head is made of (attention.c), at the width VW
 * (vec.h): block_product8 (inlined at its call sites) and block_product16 (AVX-512). For r < nr
 * and w < W,
 *     out[r·ldo + w] = Σ_{k<K} A[r·ar + k·ak] · B[k·ldb + w]   (· rowscale[r] when given),
 * for the MR rows of a block (nr ≤ MR of them stored). A's element steps are free (a block of
 * rows, or columns of a stored matrix read as rows); B's rows are contiguous, W wide. Register
 * tiles are RT rows × NV vectors (AVX2: 4 × 2, the block in two halves; AVX-512: 8 × 3); the
 * W-wide loop runs NV vectors at a time, then fewer, then (AVX-512) a half vector of eight lanes,
 * when W is a multiple of 8, and in plain loops otherwise. Every element is the same sequential
 * sum of fused multiply-adds at either width, so the two give identical results.
 */
#include "vec.h"

#if VW == 8
#define NV 2 /* 4 × 2 accumulators: more would spill the sixteen AVX2 registers */
#define RT 4
#define ATTRS static inline __attribute__((always_inline))
#else
#define NV 3 /* 8 × 3 accumulators of the 32 registers */
#define RT 8
#define ATTRS static __attribute__((noinline, target("avx512f")))
#endif

/* RT rows × n vectors of VW lanes at column w0, the last vector's lanes masked to `last` */
#define TILE(n, last)                                                                                  \
    do {                                                                                               \
        V c[RT][n];                                                                                    \
        for (int r = 0; r < RT; r++)                                                                   \
            for (int v = 0; v < n; v++) c[r][v] = VOP(setzero_ps)();                                   \
        for (int64_t k = 0; k < K; k++) {                                                              \
            const float *b = B + k * ldb + w0, *a = A + k * ak;                                        \
            V bv[n];                                                                                   \
            for (int v = 0; v < n; v++) bv[v] = LOAD(b + v * VW, v == n - 1 ? last : VW);              \
            for (int r = 0; r < RT; r++) {                                                             \
                const V x = VOP(set1_ps)(a[r * ar]);                                                   \
                for (int v = 0; v < n; v++) c[r][v] = VOP(fmadd_ps)(x, bv[v], c[r][v]);                \
            }                                                                                          \
        }                                                                                              \
        if (rowscale)                                                                                  \
            for (int r = 0; r < RT; r++)                                                               \
                for (int v = 0; v < n; v++) c[r][v] = VOP(mul_ps)(c[r][v], VOP(set1_ps)(rowscale[r])); \
        for (int64_t r = 0; r < nr && r < RT; r++)                                                     \
            for (int v = 0; v < n; v++) STORE(out + r * ldo + w0 + v * VW, c[r][v], v == n - 1 ? last : VW); \
    } while (0)

#if VW == 8
#define LOAD(p, lanes) _mm256_loadu_ps(p)
#define STORE(p, x, lanes) _mm256_storeu_ps(p, x)
#else
#define LOAD(p, lanes) _mm512_maskz_loadu_ps(first_lanes16(lanes), p)
#define STORE(p, x, lanes) _mm512_mask_storeu_ps(p, first_lanes16(lanes), x)
#endif

/* RT rows of the block (nr of them stored) */
ATTRS void VFN(tile_rows)(const float *A, int64_t ar, int64_t ak, int64_t K, const float *B, int64_t ldb, int64_t W,
                          float *out, int64_t ldo, int64_t nr, const float *rowscale) {
    int64_t w0 = 0;
    for (; w0 + NV * VW <= W; w0 += NV * VW) TILE(NV, VW);
#if VW == 16
    if (w0 + 2 * VW <= W) {
        TILE(2, VW);
        w0 += 2 * VW;
    }
#endif
    for (; w0 + VW <= W; w0 += VW) TILE(1, VW);
    if (w0 < W) TILE(1, 8); /* AVX-512 only: eight lanes left */
}

ATTRS void VFN(block_product)(const float *A, int64_t ar, int64_t ak, int64_t K, const float *B, int64_t ldb,
                              int64_t W, float *out, int64_t ldo, int64_t nr, const float *rowscale) {
    if (W % 8 != 0) {
        for (int64_t r = 0; r < nr; r++)
            for (int64_t w = 0; w < W; w++) {
                float s = 0;
                for (int64_t k = 0; k < K; k++) s += A[r * ar + k * ak] * B[k * ldb + w];
                out[r * ldo + w] = rowscale ? s * rowscale[r] : s;
            }
        return;
    }
    for (int64_t h = 0; h < MR && h < nr; h += RT)
        VFN(tile_rows)(A + h * ar, ar, ak, K, B, ldb, W, out + h * ldo, ldo, nr - h, rowscale ? rowscale + h : 0);
}

#undef NV
#undef RT
#undef ATTRS
#undef TILE
#undef LOAD
#undef STORE

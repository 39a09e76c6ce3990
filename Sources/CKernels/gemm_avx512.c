/*
 * The AVX-512 paths of lk_gemm_rows and lk_gemm_cols (see gemm.c and the header): the same
 * products with 16-lane registers and wider tiles. Each element still starts from the same value
 * and takes the same fused multiply-adds in the same order, so the results equal the AVX2 paths'
 * to the bit. Partial tiles are handled with lane masks.
 */
#include "gemm.h"
#include "lanes.h"
#include "layernorm.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

// MARK: - rows: y = (bias + init + x·B) ⊙ mul

enum { RR = 8, RH = 3 }; /* tile: 8 rows × up to 3 panels (48 columns) */

/* One tile of H panels (H ≤ RH, a constant after inlining) for rows n0 … n0 + nr − 1. */
INLINE AVX512 void rows_tile(const int H, const float *const x[RR], int nr, int64_t K, const float *panel,
                             int64_t o0, int64_t O, const float *bias, const float *init, int64_t ldi,
                             const float *mul, int64_t ldm, float *y, int64_t ldy) {
    __mmask16 mask[RH];
    __m512 c[RR * RH], b[RH];
    for (int h = 0; h < H; h++) {
        mask[h] = first_lanes16(O - o0 - 16 * h);
        b[h] = bias ? _mm512_maskz_loadu_ps(mask[h], bias + o0 + 16 * h) : _mm512_setzero_ps();
    }
    for (int r = 0; r < RR; r++)
        for (int h = 0; h < H; h++)
            c[r * H + h] = init && r < nr ? _mm512_add_ps(b[h], _mm512_maskz_loadu_ps(mask[h], init + r * ldi + o0 + 16 * h))
                                          : b[h];
    for (int64_t k = 0; k < K; k++) {
        __m512 w[RH];
        for (int h = 0; h < H; h++) w[h] = _mm512_loadu_ps(panel + h * K * GEMM_PANEL + k * GEMM_PANEL);
        for (int r = 0; r < RR; r++) {
            const __m512 a = _mm512_set1_ps(x[r][k]);
            for (int h = 0; h < H; h++) c[r * H + h] = _mm512_fmadd_ps(a, w[h], c[r * H + h]);
        }
    }
    for (int r = 0; r < nr && r < RR; r++)
        for (int h = 0; h < H; h++) {
            __m512 v = c[r * H + h];
            if (mul) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask[h], mul + r * ldm + o0 + 16 * h));
            _mm512_mask_storeu_ps(y + r * ldy + o0 + 16 * h, mask[h], v);
        }
}

/* Bytes of B used by all the rows before the next panels: they stay in L2 while the rows of x
 * stream past (the whole of B for the model's shapes; 1024³ ran at 2/3 of the speed without). */
enum { RB = 512 * 1024 };

AVX512 void lk_gemm_rows_avx512(const float *x, int64_t ldx, int64_t N, int64_t K, const float *packed, int64_t O,
                                const float *bias, const float *init, int64_t ldi, const float *mul, int64_t ldm,
                                float *y, int64_t ldy) {
    const int64_t panels = (O + GEMM_PANEL - 1) / GEMM_PANEL;
    const int64_t fit = RB / (4 * GEMM_PANEL * (K > 0 ? K : 1)) / RH * RH, chunk = fit > RH ? fit : RH;
    for (int64_t pa = 0; pa < panels; pa += chunk) {
        const int64_t pb = panels - pa < chunk ? panels : pa + chunk;
        for (int64_t n0 = 0; n0 < N; n0 += RR) {
            const int nr = N - n0 < RR ? (int)(N - n0) : RR;
            const float *rows[RR];
            for (int r = 0; r < RR; r++) rows[r] = x + (n0 + (r < nr ? r : nr - 1)) * ldx; /* past N: repeat the last row */
            const float *in = init ? init + n0 * ldi : 0, *m = mul ? mul + n0 * ldm : 0;
            float *out = y + n0 * ldy;
            int64_t p = pa;
            for (; p + RH <= pb; p += RH)
                rows_tile(RH, rows, nr, K, packed + p * K * GEMM_PANEL, p * GEMM_PANEL, O, bias, in, ldi, m, ldm, out, ldy);
            if (pb - p == 2)
                rows_tile(2, rows, nr, K, packed + p * K * GEMM_PANEL, p * GEMM_PANEL, O, bias, in, ldi, m, ldm, out, ldy);
            else if (pb - p == 1)
                rows_tile(1, rows, nr, K, packed + p * K * GEMM_PANEL, p * GEMM_PANEL, O, bias, in, ldi, m, ldm, out, ldy);
        }
    }
}

// MARK: - cols: w += aᵀ·b

enum { CR = 6, CH = 4 }; /* tile: 6 rows of w × up to 4 vectors (64 columns) */

/* w[r][j] += Σ_{n < N} a[n][r] · strip[n][j] for r < R and j < min(width, 16·H) (R ≤ CR and H ≤ CH,
 * constants after inlining); the strip's rows are 16·CH floats apart. */
INLINE AVX512 void cols_tile(const int R, const int H, const float *a, int64_t lda, const float *strip, int64_t N,
                             int64_t width, float *w, int64_t ldw) {
    __mmask16 mask[CH];
    __m512 c[CR * CH];
    for (int h = 0; h < H; h++) mask[h] = first_lanes16(width - 16 * h);
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) c[r * H + h] = _mm512_maskz_loadu_ps(mask[h], w + r * ldw + 16 * h);
    for (int64_t n = 0; n < N; n++) {
        const float *an = a + n * lda, *bn = strip + n * 16 * CH;
        __m512 v[CH];
        for (int h = 0; h < H; h++) v[h] = _mm512_load_ps(bn + 16 * h);
        for (int r = 0; r < R; r++) {
            const __m512 s = _mm512_set1_ps(an[r]);
            for (int h = 0; h < H; h++) c[r * H + h] = _mm512_fmadd_ps(s, v[h], c[r * H + h]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < H; h++) _mm512_mask_storeu_ps(w + r * ldw + 16 * h, mask[h], c[r * H + h]);
}

/* The tile of the `rows` (≤ CR) rows of w left at this point, at its own height: the last rows,
 * when O is not a multiple of CR, take no more work than they have. */
INLINE AVX512 void cols_tile_rows(const int H, int rows, const float *a, int64_t lda, const float *strip, int64_t N,
                                  int64_t width, float *w, int64_t ldw) {
    switch (rows) {
    case CR: cols_tile(CR, H, a, lda, strip, N, width, w, ldw); break;
    case 5: cols_tile(5, H, a, lda, strip, N, width, w, ldw); break;
    case 4: cols_tile(4, H, a, lda, strip, N, width, w, ldw); break;
    case 3: cols_tile(3, H, a, lda, strip, N, width, w, ldw); break;
    case 2: cols_tile(2, H, a, lda, strip, N, width, w, ldw); break;
    default: cols_tile(1, H, a, lda, strip, N, width, w, ldw); break;
    }
}

AVX512 void lk_gemm_cols_avx512(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O,
                                int64_t K, float *w, int64_t ldw, float *colsum, const gemm_norm *norm) {
    /* per pass of GEMM_COLS_CHUNK rows: a strip of b (the pass × 64 columns) is copied together
     * (rows of b lie a power of two apart and would share a few L1 sets) and stays in L1 while
     * every six rows of w take it in turn */
    float strip[GEMM_COLS_CHUNK * 16 * CH] __attribute__((aligned(64)));
    const int64_t tiles = (O + CR - 1) / CR, all = (K + 16 * CH - 1) / (16 * CH) * tiles;
    for (int64_t n0 = 0; n0 < N; n0 += GEMM_COLS_CHUNK) {
        const int64_t nn = N - n0 < GEMM_COLS_CHUNK ? N - n0 : GEMM_COLS_CHUNK;
        const float *ac = a + n0 * lda;
        gemm_column_sums(ac, lda, nn, O, colsum);
        int64_t tile = 0;
        for (int64_t k0 = 0; k0 < K; k0 += 16 * CH) {
            const int64_t H = (K - k0 + 15) / 16 < CH ? (K - k0 + 15) / 16 : CH;
            if (norm) { /* the LayerNorm's output, formed as lk_layernorm_forward forms it */
                __m512 g[CH], be[CH];
                for (int64_t h = 0; h < H; h++) {
                    g[h] = _mm512_maskz_loadu_ps(first_lanes16(K - k0 - 16 * h), norm->gamma + k0 + 16 * h);
                    be[h] = _mm512_maskz_loadu_ps(first_lanes16(K - k0 - 16 * h), norm->beta + k0 + 16 * h);
                }
                for (int64_t n = 0; n < nn; n++) {
                    const __m512 m = _mm512_set1_ps(norm->mean[n0 + n]), r = _mm512_set1_ps(norm->rstd[n0 + n]);
                    for (int64_t h = 0; h < H; h++) {
                        const __m512 v = _mm512_maskz_loadu_ps(first_lanes16(K - k0 - 16 * h), b + (n0 + n) * ldb + k0 + 16 * h);
                        _mm512_store_ps(strip + n * 16 * CH + 16 * h, layernorm16(v, m, r, g[h], be[h]));
                    }
                }
            } else {
                for (int64_t n = 0; n < nn; n++)
                    for (int64_t h = 0; h < H; h++)
                        _mm512_store_ps(strip + n * 16 * CH + 16 * h,
                                        _mm512_maskz_loadu_ps(first_lanes16(K - k0 - 16 * h), b + (n0 + n) * ldb + k0 + 16 * h));
            }
            const gemm_cols_ahead ahead = gemm_cols_next(a, lda, b, ldb, N, n0, nn, K, k0, 16 * CH);
            for (int64_t o0 = 0, t = 0; o0 < O; o0 += CR, t++, tile++) {
                gemm_cols_request(&ahead, lda, ldb, O, t, tiles, tile, all);
                const int orows = O - o0 < CR ? (int)(O - o0) : CR;
                const float *ao = ac + o0;
                float *wo = w + o0 * ldw + k0;
                const int64_t width = K - k0;
                if (H == CH) cols_tile_rows(CH, orows, ao, lda, strip, nn, width, wo, ldw);
                else if (H == 3) cols_tile_rows(3, orows, ao, lda, strip, nn, width, wo, ldw);
                else if (H == 2) cols_tile_rows(2, orows, ao, lda, strip, nn, width, wo, ldw);
                else cols_tile_rows(1, orows, ao, lda, strip, nn, width, wo, ldw);
            }
        }
    }
}

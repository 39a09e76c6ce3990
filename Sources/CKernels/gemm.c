/*
 * The Linear layers' products in AVX2 + FMA; gemm_avx512.c holds the AVX-512 paths, taken when
 * lk_isa_avx512() says so, with identical results.
 *
 * Row-streaming matrix product for the Linear layers' forward (x·Wᵀ + b) and input gradient
 * (dy·W): y = bias + init + x·B over N rows, with B (K × O) packed once per call into panels of
 * 16 columns and x read in place, six rows at a time (no copy of the large operand, which
 * OpenBLAS packs on every call). The output tile starts as the bias plus a matrix (a residual
 * stream, or y itself to accumulate) and may be multiplied elementwise by another on the way out
 * (the GELU derivative in the MLP's backward), so y is written once. Every element is the same
 * sequential sum over k wherever its row falls in a split of the rows.
 */
#include "lockstep_kernels.h"
#include "gemm.h"
#include "lanes.h"
#include "layernorm.h"

#include <immintrin.h>
#include <string.h>

enum { TR = 6, TC = GEMM_PANEL }; /* tile rows, tile columns (two 8-lane vectors) */

int64_t lk_gemm_pack_size(int64_t K, int64_t O) { return (O + TC - 1) / TC * TC * K; }

void lk_gemm_pack(const float *w, int64_t ldw, int transposed, int64_t K, int64_t O, float *packed) {
    for (int64_t p = 0; p < (O + TC - 1) / TC; p++) {
        float *panel = packed + p * K * TC;
        const int64_t o0 = p * TC, width = O - o0 < TC ? O - o0 : TC;
        if (transposed) { /* b[k][o] = w[o][k]: 8 × 8 register transposes, plain loops at the edges */
            const int64_t K8 = K & ~(int64_t)7;
            for (int64_t j0 = 0; j0 < TC; j0 += 8) {
                if (j0 + 8 <= width)
                    for (int64_t k = 0; k < K8; k += 8) transpose8x8(w + (o0 + j0) * ldw + k, ldw, panel + k * TC + j0, TC);
                for (int64_t j = j0; j < j0 + 8; j++)
                    for (int64_t k = j0 + 8 <= width ? K8 : 0; k < K; k++)
                        panel[k * TC + j] = j < width ? w[(o0 + j) * ldw + k] : 0;
            }
        } else if (width == TC) { /* b[k][o] = w[k][o]: sixteen floats a row, two vectors */
            for (int64_t k = 0; k < K; k++) {
                _mm256_storeu_ps(panel + k * TC, _mm256_loadu_ps(w + k * ldw + o0));
                _mm256_storeu_ps(panel + k * TC + 8, _mm256_loadu_ps(w + k * ldw + o0 + 8));
            }
        } else {
            for (int64_t k = 0; k < K; k++) {
                const float *row = w + k * ldw + o0;
                int64_t j = 0;
                for (; j < width; j++) panel[k * TC + j] = row[j];
                for (; j < TC; j++) panel[k * TC + j] = 0;
            }
        }
    }
}

/* c[2r], c[2r+1] += Σ_k x_r[k] · panel[k][0..16) for the six rows */
static inline __attribute__((always_inline)) void tile_product(const float *const x[TR], int64_t K,
                                                               const float *panel, __m256 c[2 * TR]) {
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(panel + k * TC), b1 = _mm256_loadu_ps(panel + k * TC + 8);
        for (int r = 0; r < TR; r++) {
            const __m256 a = _mm256_broadcast_ss(x[r] + k);
            c[2 * r] = _mm256_fmadd_ps(a, b0, c[2 * r]);
            c[2 * r + 1] = _mm256_fmadd_ps(a, b1, c[2 * r + 1]);
        }
    }
}

void lk_gemm_rows(const float *x, int64_t ldx, int64_t N, int64_t K, const float *packed, int64_t O,
                  const float *bias, const float *init, int64_t ldi, const float *mul, int64_t ldm, float *y,
                  int64_t ldy) {
    if (lk_isa_avx512()) {
        lk_gemm_rows_avx512(x, ldx, N, K, packed, O, bias, init, ldi, mul, ldm, y, ldy);
        return;
    }
    const int64_t panels = (O + TC - 1) / TC;
    for (int64_t n0 = 0; n0 < N; n0 += TR) {
        const int64_t nr = N - n0 < TR ? N - n0 : TR;
        const float *rows[TR];
        for (int r = 0; r < TR; r++) rows[r] = x + (n0 + (r < nr ? r : nr - 1)) * ldx; /* past N: repeat the last row */
        for (int64_t p = 0; p < panels; p++) {
            const int64_t o0 = p * TC, width = O - o0 < TC ? O - o0 : TC;
            const int full = nr == TR && width == TC;
            float *out = y + n0 * ldy + o0;
            float edge[TR * TC]; /* a partial tile goes through here */
            float *dst = full ? out : edge;
            const int64_t ldd = full ? ldy : TC;
            __m256 c[2 * TR];
            __m256 b0 = _mm256_setzero_ps(), b1 = b0;
            if (bias && width == TC) {
                b0 = _mm256_loadu_ps(bias + o0);
                b1 = _mm256_loadu_ps(bias + o0 + 8);
            } else if (bias) {
                float pad[TC] = {0};
                memcpy(pad, bias + o0, (size_t)width * sizeof(float));
                b0 = _mm256_loadu_ps(pad);
                b1 = _mm256_loadu_ps(pad + 8);
            }
            if (init) {
                const float *src = init + n0 * ldi + o0;
                int64_t lds = ldi;
                if (!full) {
                    for (int64_t r = 0; r < TR; r++)
                        for (int64_t j = 0; j < TC; j++) edge[r * TC + j] = r < nr && j < width ? src[r * ldi + j] : 0;
                    src = edge;
                    lds = TC;
                }
                for (int r = 0; r < TR; r++) {
                    c[2 * r] = _mm256_add_ps(b0, _mm256_loadu_ps(src + r * lds));
                    c[2 * r + 1] = _mm256_add_ps(b1, _mm256_loadu_ps(src + r * lds + 8));
                }
            } else {
                for (int r = 0; r < TR; r++) { c[2 * r] = b0; c[2 * r + 1] = b1; }
            }
            tile_product(rows, K, packed + p * K * TC, c);
            if (mul) {
                for (int r = 0; r < TR; r++) {
                    const int64_t rr = r < nr ? r : nr - 1;
                    const float *m = mul + (n0 + rr) * ldm + o0;
                    if (width == TC) {
                        c[2 * r] = _mm256_mul_ps(c[2 * r], _mm256_loadu_ps(m));
                        c[2 * r + 1] = _mm256_mul_ps(c[2 * r + 1], _mm256_loadu_ps(m + 8));
                    } else {
                        float pad[TC] = {0};
                        memcpy(pad, m, (size_t)width * sizeof(float));
                        c[2 * r] = _mm256_mul_ps(c[2 * r], _mm256_loadu_ps(pad));
                        c[2 * r + 1] = _mm256_mul_ps(c[2 * r + 1], _mm256_loadu_ps(pad + 8));
                    }
                }
            }
            for (int r = 0; r < TR; r++) {
                _mm256_storeu_ps(dst + r * ldd, c[2 * r]);
                _mm256_storeu_ps(dst + r * ldd + 8, c[2 * r + 1]);
            }
            if (!full)
                for (int64_t r = 0; r < nr; r++) memcpy(out + r * ldy, edge + r * TC, (size_t)width * sizeof(float));
        }
    }
}

/*
 * Column product w += aᵀ·b (a Linear layer's weight gradient dyᵀ·x): 6 rows of w × 16 columns per
 * tile, a[n][o] broadcast, b[n][k…] loaded, over the rows in passes of GEMM_COLS_CHUNK. A pass
 * copies its strip of b (the pass × 16 columns, zero-padded) together — rows of b lie a power of
 * two apart and would share a few L1 sets — and every six rows of w take it in turn, each tile
 * kept in registers through the pass.
 */
enum { CR2 = 6 };

static inline __attribute__((always_inline)) void cols_tile(const int full, const float *a, int64_t lda,
                                                            const float *strip, int64_t N, int orows,
                                                            int64_t width, float *w, int64_t ldw) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width > 8 ? 8 : (int)width), iota);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width > 16 ? 8 : width > 8 ? (int)width - 8 : 0), iota);
    __m256 c[2 * CR2];
    for (int r = 0; r < CR2; r++) {
        const int on = r < orows;
        c[2 * r] = on ? _mm256_maskload_ps(w + r * ldw, m0) : _mm256_setzero_ps();
        c[2 * r + 1] = on ? _mm256_maskload_ps(w + r * ldw + 8, m1) : _mm256_setzero_ps();
    }
    int off[CR2]; /* rows past the end read column 0 (computed, never stored); constants for a full tile */
    for (int r = 0; r < CR2; r++) off[r] = full || r < orows ? r : 0;
    for (int64_t n = 0; n < N; n++) {
        const float *an = a + n * lda, *bn = strip + n * TC;
        const __m256 v0 = _mm256_load_ps(bn), v1 = _mm256_load_ps(bn + 8);
        for (int r = 0; r < CR2; r++) {
            const __m256 s = _mm256_broadcast_ss(an + off[r]);
            c[2 * r] = _mm256_fmadd_ps(s, v0, c[2 * r]);
            c[2 * r + 1] = _mm256_fmadd_ps(s, v1, c[2 * r + 1]);
        }
    }
    for (int r = 0; r < orows; r++) {
        _mm256_maskstore_ps(w + r * ldw, m0, c[2 * r]);
        _mm256_maskstore_ps(w + r * ldw + 8, m1, c[2 * r + 1]);
    }
}

static void gemm_cols(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O, int64_t K,
                      float *w, int64_t ldw, float *colsum, const gemm_norm *norm) {
    if (lk_isa_avx512()) {
        lk_gemm_cols_avx512(a, lda, b, ldb, N, O, K, w, ldw, colsum, norm);
        return;
    }
    float strip[GEMM_COLS_CHUNK * TC] __attribute__((aligned(32)));
    const int64_t tiles = (O + CR2 - 1) / CR2, all = (K + TC - 1) / TC * tiles;
    for (int64_t n0 = 0; n0 < N; n0 += GEMM_COLS_CHUNK) {
        const int64_t nn = N - n0 < GEMM_COLS_CHUNK ? N - n0 : GEMM_COLS_CHUNK;
        gemm_column_sums(a + n0 * lda, lda, nn, O, colsum);
        int64_t tile = 0;
        for (int64_t k0 = 0; k0 < K; k0 += TC) {
            const int64_t width = K - k0;
            for (int64_t n = 0; n < nn; n++) {
                const float *src = b + (n0 + n) * ldb + k0;
                float *dst = strip + n * TC;
                if (norm) { /* the LayerNorm's output, formed as lk_layernorm_forward forms it */
                    const float m = norm->mean[n0 + n], r = norm->rstd[n0 + n];
                    if (width >= TC) {
                        const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(r);
                        for (int h = 0; h < TC; h += 8)
                            _mm256_store_ps(dst + h, layernorm8(_mm256_loadu_ps(src + h), vm, vr, _mm256_loadu_ps(norm->gamma + k0 + h),
                                                                _mm256_loadu_ps(norm->beta + k0 + h)));
                    } else {
                        for (int64_t j = 0; j < TC; j++)
                            dst[j] = j < width ? layernorm1(src[j], m, r, norm->gamma[k0 + j], norm->beta[k0 + j]) : 0;
                    }
                } else if (width >= TC) {
                    _mm256_store_ps(dst, _mm256_loadu_ps(src));
                    _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
                } else {
                    for (int64_t j = 0; j < TC; j++) dst[j] = j < width ? src[j] : 0;
                }
            }
            const gemm_cols_ahead ahead = gemm_cols_next(a, lda, b, ldb, N, n0, nn, K, k0, TC);
            for (int64_t o0 = 0, t = 0; o0 < O; o0 += CR2, t++, tile++) {
                gemm_cols_request(&ahead, lda, ldb, O, t, tiles, tile, all);
                const int orows = O - o0 < CR2 ? (int)(O - o0) : CR2;
                const float *ao = a + n0 * lda + o0;
                float *wo = w + o0 * ldw + k0;
                if (orows == CR2) cols_tile(1, ao, lda, strip, nn, CR2, width, wo, ldw);
                else cols_tile(0, ao, lda, strip, nn, orows, width, wo, ldw);
            }
        }
    }
}

void lk_gemm_cols(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O, int64_t K, float *w,
                  int64_t ldw, float *colsum) {
    gemm_cols(a, lda, b, ldb, N, O, K, w, ldw, colsum, 0);
}

void lk_gemm_cols_normalized(const float *a, int64_t lda, const float *x, int64_t ldx, const float *mean,
                             const float *rstd, const float *gamma, const float *beta, int64_t N, int64_t O, int64_t K,
                             float *w, int64_t ldw, float *colsum) {
    const gemm_norm norm = {mean, rstd, gamma, beta};
    gemm_cols(a, lda, x, ldx, N, O, K, w, ldw, colsum, &norm);
}

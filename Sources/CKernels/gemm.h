/* What gemm.c and gemm_avx512.c share (private to CKernels): the panel width, the weight-gradient
 * pass, its column sums, and the AVX-512 paths that lk_gemm_rows and lk_gemm_cols call when
 * lk_isa_avx512() says so (same arguments, same results to the bit). */
#ifndef LOCKSTEP_GEMM_H
#define LOCKSTEP_GEMM_H
#include <immintrin.h>
#include <stdint.h>

enum { GEMM_PANEL = 16 };            /* columns per packed panel of B */
enum { GEMM_COLS_CHUNK = 128 };      /* rows of a and b per pass of lk_gemm_cols */

void lk_gemm_rows_avx512(const float *x, int64_t ldx, int64_t N, int64_t K, const float *packed, int64_t O,
                         const float *bias, const float *init, int64_t ldi, const float *mul, int64_t ldm, float *y,
                         int64_t ldy);
/* A LayerNorm applied to b's rows as a pass copies them (lk_gemm_cols_normalized); NULL: b as it is. */
typedef struct {
    const float *mean, *rstd, *gamma, *beta;
} gemm_norm;

void lk_gemm_cols_avx512(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O, int64_t K,
                         float *w, int64_t ldw, float *colsum, const gemm_norm *norm);

/* Rows [from, to) of the rows × width block at p (rows ld floats apart) requested into the cache.
 * A pass of lk_gemm_cols spreads the requests for the next strip of b and the next pass's rows
 * of a over its tiles: the strip copy and the column sums then find them there instead of
 * waiting on each line (the activations come from far caches). */
static inline void gemm_prefetch_rows(const float *p, int64_t ld, int64_t width, int64_t from, int64_t to) {
    for (int64_t i = from; i < to; i++)
        for (int64_t j = 0; j < width; j += 16) _mm_prefetch((const char *)(p + i * ld + j), _MM_HINT_T0);
}

/* What a pass of lk_gemm_cols requests while it runs: the next strip of b (this pass's next
 * columns, or the next pass's first) and the next pass's rows of a. */
typedef struct {
    const float *b;
    int64_t brows, bwidth;
    const float *a;
    int64_t arows;
} gemm_cols_ahead;

static inline gemm_cols_ahead gemm_cols_next(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N,
                                             int64_t n0, int64_t nn, int64_t K, int64_t k0, int64_t strip) {
    gemm_cols_ahead g = {0, 0, 0, 0, 0};
    const int64_t next = n0 + nn, rows = N - next < GEMM_COLS_CHUNK ? N - next : GEMM_COLS_CHUNK;
    if (k0 + strip < K) {
        g.b = b + n0 * ldb + k0 + strip;
        g.brows = nn;
        g.bwidth = K - k0 - strip < strip ? K - k0 - strip : strip;
    } else if (rows > 0) {
        g.b = b + next * ldb;
        g.brows = rows;
        g.bwidth = K < strip ? K : strip;
    }
    if (rows > 0) {
        g.a = a + next * lda;
        g.arows = rows;
    }
    return g;
}

/* Tile t of `tiles` in this strip (and `tile` of `all` in the pass) requests its share. */
static inline void gemm_cols_request(const gemm_cols_ahead *g, int64_t lda, int64_t ldb, int64_t O, int64_t t,
                                     int64_t tiles, int64_t tile, int64_t all) {
    if (g->b) gemm_prefetch_rows(g->b, ldb, g->bwidth, g->brows * t / tiles, g->brows * (t + 1) / tiles);
    if (g->a) gemm_prefetch_rows(g->a, lda, O, g->arows * tile / all, g->arows * (tile + 1) / all);
}

/* colsum[o] += a[n][o] for the rows of one pass, in order (a pass of lk_gemm_cols reads them next,
 * from cache) */
static inline void gemm_column_sums(const float *a, int64_t lda, int64_t rows, int64_t O, float *colsum) {
    if (!colsum) return;
    for (int64_t n = 0; n < rows; n++)
        for (int64_t o = 0; o < O; o++) colsum[o] += a[n * lda + o];
}
#endif

/* What gemm.c and gemm_avx512.c share (private to CKernels): the panel width, the weight-gradient
 * pass, its column sums, and the AVX-512 paths that lk_gemm_rows and lk_gemm_cols call when
 * lk_isa_avx512() says so (same arguments, same results to the bit). */
#ifndef LOCKSTEP_GEMM_H
#define LOCKSTEP_GEMM_H
#include <stdint.h>

enum { GEMM_PANEL = 16 };            /* columns per packed panel of B */
enum { GEMM_COLS_CHUNK = 128 };      /* rows of a and b per pass of lk_gemm_cols */

void lk_gemm_rows_avx512(const float *x, int64_t ldx, int64_t N, int64_t K, const float *packed, int64_t O,
                         const float *bias, const float *init, int64_t ldi, const float *mul, int64_t ldm, float *y,
                         int64_t ldy);
void lk_gemm_cols_avx512(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O, int64_t K,
                         float *w, int64_t ldw, float *colsum);

/* colsum[o] += a[n][o] for the rows of one pass, in order (a pass of lk_gemm_cols reads them next,
 * from cache) */
static inline void gemm_column_sums(const float *a, int64_t lda, int64_t rows, int64_t O, float *colsum) {
    if (!colsum) return;
    for (int64_t n = 0; n < rows; n++)
        for (int64_t o = 0; o < O; o++) colsum[o] += a[n * lda + o];
}
#endif

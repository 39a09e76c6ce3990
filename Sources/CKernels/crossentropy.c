/*
 * Softmax cross-entropy over rows of logits (lk_cross_entropy_forward). Per row: the largest
 * logit m, the exponentials e^(x − m) written out with their sum s, the probabilities as those
 * times 1/s, and the loss −log p_t as log s − (x_t − m), added up in double. The sum runs in eight
 * lanes, one vector after another in order (sixteen lanes add their low half, then their high
 * half), the lanes then add one after another, and a row whose length is not a multiple of eight
 * adds its last exponentials one at a time: both widths give the same bits. A NaN logit makes its
 * row's sum, probabilities and loss NaN.
 */
#include "lockstep_kernels.h"
#include "lanes.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define VW 16
#include "vexp.h"
#undef VW
#include "vec.h" /* clears the width macros */

#define AVX512 __attribute__((noinline, target("avx512f")))

// MARK: - whole groups of sixteen (AVX-512); each returns where the eight-lane loop goes on

/* *m = the larger of *m and the largest of x[0..n rounded down to 16) that is not NaN */
static AVX512 int64_t max_groups16(const float *x, int64_t n, float *m) {
    __m512 v = _mm512_set1_ps(*m);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) v = _mm512_max_ps(_mm512_loadu_ps(x + i), v); /* a NaN element keeps v */
    *m = _mm512_reduce_max_ps(v);
    return i;
}

static AVX512 int64_t exp_groups16(const float *x, float *out, int64_t n, float shift, __m256 *sum) {
    const __m512 vm = _mm512_set1_ps(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(out + i, e);
        *sum = _mm256_add_ps(*sum, _mm512_castps512_ps256(e));
        *sum = _mm256_add_ps(*sum, high_half16(e));
    }
    return i;
}

static AVX512 int64_t scale_groups16(float *out, int64_t n, float by) {
    const __m512 vs = _mm512_set1_ps(by);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(out + i), vs));
    return i;
}

// MARK: - a row

static inline float row_max(const float *x, int64_t n, int wide) {
    float m = -INFINITY;
    int64_t i = wide ? max_groups16(x, n, &m) : 0;
    __m256 v = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8) v = _mm256_max_ps(_mm256_loadu_ps(x + i), v);
    m = hmax8(v);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* out[i] = e^(x[i] − shift); returns their sum */
static inline float exp_sum_row(const float *x, float *out, int64_t n, float shift, int wide) {
    __m256 sum = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(shift);
    int64_t i = wide ? exp_groups16(x, out, n, shift, &sum) : 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(out + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float l[8];
    _mm256_storeu_ps(l, sum);
    float total = l[0];
    for (int k = 1; k < 8; k++) total += l[k];
    if (i < n) { /* the last n − i (< 8) through the same vector code, padded */
        float pad[8] = {0}, e[8];
        memcpy(pad, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(e, exp8(_mm256_sub_ps(_mm256_loadu_ps(pad), vm)));
        for (int64_t k = 0; k < n - i; k++) {
            out[i + k] = e[k];
            total += e[k];
        }
    }
    return total;
}

static inline void scale_row(float *out, int64_t n, float by, int wide) {
    int64_t i = wide ? scale_groups16(out, n, by) : 0;
    for (; i < n; i++) out[i] *= by;
}

int64_t lk_cross_entropy_forward(const float *logits, const int32_t *targets, float *probs, int64_t N, int64_t V,
                                 int32_t ignore, double *loss, int64_t *count) {
    const int wide = lk_isa_avx512();
    double total = *loss;
    int64_t counted = *count;
    for (int64_t n = 0; n < N; n++) {
        const float *x = logits + n * V;
        float *p = probs + n * V;
        const float m = row_max(x, V, wide);
        const float s = exp_sum_row(x, p, V, m, wide);
        scale_row(p, V, 1 / s, wide);
        const int32_t t = targets[n];
        if (t == ignore) continue;
        if (t < 0 || t >= V) return n;
        total += (double)(logf(s) - (x[t] - m));
        counted++;
    }
    *loss = total;
    *count = counted;
    return -1;
}

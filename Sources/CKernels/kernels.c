/*
 * The exact (erf) GELU, forward and forward-with-derivative, eight lanes at a time. A length that
 * is not a multiple of eight finishes through the same vector code on a padded copy, so every
 * element's result is the same wherever a split of the array puts it.
 */
#include "lockstep_kernels.h"
#include "lanes.h"

#include <immintrin.h>
#include <string.h>

/*
 * Φ(x) = P(X ≤ x) for a standard normal X, and e^(−x²/2), sharing one exponential:
 * erfc(z) = t·P(t)·e^(−z²) with z = |x|/√2, t = 1/(1 + z/2) and P a degree-9 polynomial fitted
 * to erfc(z)·e^(z²)/t over all z ≥ 0 (relative error < 8e-8; launch/pytorch/fit_erfc.py),
 * evaluated by Estrin's scheme (a short dependency chain instead of nine serial steps).
 */
static inline __m256 normal_cdf8(__m256 x, __m256 *gauss) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), one));
    const __m256 t2 = _mm256_mul_ps(t, t), t4 = _mm256_mul_ps(t2, t2), t8 = _mm256_mul_ps(t4, t4);
#define PAIR(lo, hi) _mm256_fmadd_ps(_mm256_set1_ps(hi), t, _mm256_set1_ps(lo))
    const __m256 q0 = PAIR(0.2820911357849623f, 0.28223157456100284f);
    const __m256 q1 = PAIR(0.24478865874056713f, 0.19236501668226524f);
    const __m256 q2 = PAIR(0.010557372388122294f, 0.1951810556536266f);
    const __m256 q3 = PAIR(-0.3715914489374934f, 0.18642580507057313f);
    const __m256 q4 = PAIR(-0.012717529896355717f, -0.009331714248152665f);
#undef PAIR
    const __m256 low = _mm256_fmadd_ps(_mm256_fmadd_ps(q3, t2, q2), t4, _mm256_fmadd_ps(q1, t2, q0));
    const __m256 p = _mm256_fmadd_ps(q4, t8, low);
    const __m256 e = exp8(_mm256_mul_ps(_mm256_xor_ps(z, sign), z));
    const __m256 half_erfc = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(t, _mm256_set1_ps(0.5f)), p), e);
    *gauss = e;
    /* x < 0: the tail beyond |x|; otherwise 1 − that tail */
    return _mm256_blendv_ps(_mm256_sub_ps(one, half_erfc), half_erfc, x);
}

static inline __m256 gelu8(__m256 x) {
    __m256 e;
    return _mm256_mul_ps(x, normal_cdf8(x, &e));
}

/* gelu(x), and gelu'(x) = Φ(x) + x·φ(x) into *derivative */
static inline __m256 gelu_derivative8(__m256 x, __m256 *derivative) {
    __m256 e;
    const __m256 cdf = normal_cdf8(x, &e);
    *derivative = _mm256_fmadd_ps(x, _mm256_mul_ps(e, _mm256_set1_ps(0.39894228040143268f)), cdf);
    return _mm256_mul_ps(x, cdf);
}

void lk_gelu_erf_forward(const float *restrict x, float *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* two independent groups per step keep both FMA pipes busy */
        __m256 a = gelu8(_mm256_loadu_ps(x + i)), b = gelu8(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(out + i, a);
        _mm256_storeu_ps(out + i + 8, b);
    }
    for (; i < n; i += 8) {
        float in[8] = {0}, res[8];
        const int64_t m = n - i < 8 ? n - i : 8;
        memcpy(in, x + i, (size_t)m * sizeof(float));
        _mm256_storeu_ps(res, gelu8(_mm256_loadu_ps(in)));
        memcpy(out + i, res, (size_t)m * sizeof(float));
    }
}

void lk_gelu_erf_forward_derivative(float *restrict x, float *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 da, db;
        __m256 a = gelu_derivative8(_mm256_loadu_ps(x + i), &da), b = gelu_derivative8(_mm256_loadu_ps(x + i + 8), &db);
        _mm256_storeu_ps(out + i, a);
        _mm256_storeu_ps(out + i + 8, b);
        _mm256_storeu_ps(x + i, da);
        _mm256_storeu_ps(x + i + 8, db);
    }
    for (; i < n; i += 8) {
        float in[8] = {0}, res[8], der[8];
        const int64_t m = n - i < 8 ? n - i : 8;
        memcpy(in, x + i, (size_t)m * sizeof(float));
        __m256 d;
        _mm256_storeu_ps(res, gelu_derivative8(_mm256_loadu_ps(in), &d));
        _mm256_storeu_ps(der, d);
        memcpy(out + i, res, (size_t)m * sizeof(float));
        memcpy(x + i, der, (size_t)m * sizeof(float));
    }
}

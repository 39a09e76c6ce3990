#include "lockstep_kernels.h"

#include <stdint.h>
#include <string.h>

/* e^x: Cephes-style range reduction by ln 2, degree-6 polynomial, exponent bits. */
static inline float exp_body(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.37f ? 88.37f : x);
    const float magic = 12582912.0f; /* 1.5·2^23: adding it rounds to the nearest integer */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    x = x - n * 0.693359375f;
    x = x + n * 2.12194440e-4f;
    float x2 = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * x2 + x + 1.0f;
    uint32_t tb, k;
    memcpy(&tb, &t, sizeof tb);
    k = ((tb - 0x4B400000u) + 127u) << 23; /* 2^n from the integer in t's low mantissa bits */
    float scale;
    memcpy(&scale, &k, sizeof scale);
    return y * scale;
}

/*
 * Φ(x) = P(X ≤ x) for a standard normal X, and e^(−x²/2), sharing one exponential:
 * erfc(z) = t·P(t)·e^(−z²) with z = |x|/√2, t = 1/(1 + z/2) and P a degree-9 polynomial fitted
 * to erfc(z)·e^(z²)/t over all z ≥ 0 (relative error < 8e-8; launch/pytorch/fit_erfc.py).
 */
static inline float normal_cdf(float x, float *gauss) {
    float z = (x < 0 ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = -0.009331714248152665f;
    p = p * t - 0.012717529896355717f;
    p = p * t + 0.18642580507057313f;
    p = p * t - 0.3715914489374934f;
    p = p * t + 0.1951810556536266f;
    p = p * t + 0.010557372388122294f;
    p = p * t + 0.19236501668226524f;
    p = p * t + 0.24478865874056713f;
    p = p * t + 0.28223157456100284f;
    p = p * t + 0.2820911357849623f;
    float e = exp_body(-z * z);
    float half_erfc = 0.5f * t * p * e; /* erfc(z)/2: the normal tail beyond |x| */
    *gauss = e;
    return x < 0 ? half_erfc : 1.0f - half_erfc;
}

void lk_gelu_erf_forward(const float *restrict x, float *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], e;
        out[i] = v * normal_cdf(v, &e);
    }
}

void lk_gelu_erf_forward_derivative(float *restrict x, float *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], e;
        float cdf = normal_cdf(v, &e);
        out[i] = v * cdf;
        x[i] = cdf + v * (0.39894228040143268f * e); /* Φ(x) + x·φ(x) */
    }
}

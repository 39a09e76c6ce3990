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

/* erf(x) via erfc's Chebyshev fit (fractional error < 1.2e-7): 1 − t·e^(−x² + P(t)), t = 1/(1 + |x|/2). */
static inline float erf_body(float x) {
    float z = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float r = 1.0f - t * exp_body(p - z * z);
    return x < 0 ? -r : r;
}

void lk_gelu_erf_forward(const float *restrict x, float *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + erf_body(v * 0.70710678118654752f));
    }
}

void lk_gelu_erf_forward_derivative(float *restrict x, float *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_body(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * exp_body(-0.5f * v * v);
        out[i] = v * cdf;
        x[i] = cdf + v * pdf;
    }
}

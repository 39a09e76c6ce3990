/*
 * LayerNorm over rows of C floats, forward and backward. Row sums run in eight lanes (then a
 * fixed pairwise order), so the per-row reductions vectorise instead of forming one serial chain.
 */
#include "lockstep_kernels.h"
#include "lanes.h"
#include "layernorm.h"

#include <immintrin.h>
#include <math.h>

void lk_layernorm_forward(const float *x, float *out, float *mean, float *rstd, const float *w, const float *b,
                          int64_t N, int64_t C, float eps) {
    const int64_t C8 = C & ~(int64_t)7;
    const float invC = 1.0f / (float)C;
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *o = out + n * C;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t c = 0; c < C8; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr + c));
        float s = hsum8(acc);
        for (int64_t c = C8; c < C; c++) s += xr[c];
        const float m = s * invC;
        const __m256 vm = _mm256_set1_ps(m);
        acc = _mm256_setzero_ps();
        for (int64_t c = 0; c < C8; c += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + c), vm);
            acc = _mm256_fmadd_ps(d, d, acc);
        }
        float v = hsum8(acc);
        for (int64_t c = C8; c < C; c++) { float d = xr[c] - m; v += d * d; }
        const float r = 1.0f / sqrtf(v * invC + eps);
        const __m256 vr = _mm256_set1_ps(r);
        for (int64_t c = 0; c < C8; c += 8)
            _mm256_storeu_ps(o + c, layernorm8(_mm256_loadu_ps(xr + c), vm, vr, _mm256_loadu_ps(w + c), _mm256_loadu_ps(b + c)));
        for (int64_t c = C8; c < C; c++) o[c] = layernorm1(xr[c], m, r, w[c], b[c]);
        mean[n] = m;
        rstd[n] = r;
    }
}

void lk_layernorm_backward(const float *dout, const float *x, const float *mean, const float *rstd, const float *w,
                           float *dw, float *db, float *dx, const float *base, int64_t N, int64_t C) {
    const int64_t C8 = C & ~(int64_t)7;
    const float invC = 1.0f / (float)C;
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dout + n * C, *b0 = base ? base + n * C : 0;
        float *d = dx + n * C;
        const float m = mean[n], r = rstd[n];
        const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(r);
        __m256 aG = _mm256_setzero_ps(), aGX = aG;
        for (int64_t c = 0; c < C8; c += 8) {
            __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vr);
            __m256 gc = _mm256_loadu_ps(g + c);
            __m256 gw = _mm256_mul_ps(gc, _mm256_loadu_ps(w + c));
            aG = _mm256_add_ps(aG, gw);
            aGX = _mm256_fmadd_ps(gw, xhat, aGX);
            _mm256_storeu_ps(db + c, _mm256_add_ps(_mm256_loadu_ps(db + c), gc));
            _mm256_storeu_ps(dw + c, _mm256_fmadd_ps(gc, xhat, _mm256_loadu_ps(dw + c)));
        }
        float sumG = hsum8(aG), sumGX = hsum8(aGX);
        for (int64_t c = C8; c < C; c++) {
            float xhat = (xr[c] - m) * r, gw = g[c] * w[c];
            sumG += gw;
            sumGX += gw * xhat;
            db[c] += g[c];
            dw[c] += g[c] * xhat;
        }
        const float meanG = sumG * invC, meanGX = sumGX * invC;
        /* dx may be base itself: each lane group is read before it is written */
        const __m256 vG = _mm256_set1_ps(meanG), vGX = _mm256_set1_ps(meanGX);
        for (int64_t c = 0; c < C8; c += 8) {
            __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vr);
            __m256 gw = _mm256_mul_ps(_mm256_loadu_ps(g + c), _mm256_loadu_ps(w + c));
            __m256 t = _mm256_mul_ps(_mm256_fnmadd_ps(xhat, vGX, _mm256_sub_ps(gw, vG)), vr);
            if (b0) t = _mm256_add_ps(_mm256_loadu_ps(b0 + c), t);
            _mm256_storeu_ps(d + c, t);
        }
        for (int64_t c = C8; c < C; c++) {
            float xhat = (xr[c] - m) * r;
            d[c] = (b0 ? b0[c] : 0.0f) + (g[c] * w[c] - meanG - xhat * meanGX) * r;
        }
    }
}

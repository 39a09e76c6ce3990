/* The Adam / AdamW update over a contiguous run of parameters (one weight-decay group). */
#include "lockstep_kernels.h"

#include <math.h>

void lk_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                    float grad_scale, float l2, float beta1, float beta2, float one_minus_beta1, float one_minus_beta2,
                    float decay, float step_size, float inv_bc2_sqrt, float eps) {
    for (int64_t i = 0; i < n; i++) {
        float grad = g[i] * grad_scale + l2 * p[i];
        float mi = beta1 * m[i] + one_minus_beta1 * grad;
        float vi = beta2 * v[i] + one_minus_beta2 * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_bc2_sqrt + eps);
    }
}

/*
 * The exact GELU at the width VW (vec.h): gelu_rows8/16 and gelu_derivative_rows8/16 over n
 * floats. Included once per width by kernels.c; the AVX-512 and AVX2 results are identical.
 */
#include "vec.h"
#include "vexp.h"

/*
 * Φ(x) = P(X ≤ x) for a standard normal X, and e^(−x²/2), sharing one exponential:
 * erfc(z) = t·P(t)·e^(−z²) with z = |x|/√2, t = 1/(1 + z/2) and P a degree-9 polynomial fitted
 * to erfc(z)·e^(z²)/t over all z ≥ 0 (relative error < 8e-8; launch/pytorch/fit_erfc.py),
 * evaluated by Estrin's scheme (a short dependency chain instead of nine serial steps).
 */
static inline VTARGET V VFN(normal_cdf)(V x, V *gauss) {
    const V sign = VOP(set1_ps)(-0.0f), one = VOP(set1_ps)(1.0f);
    const V z = VOP(mul_ps)(VOP(andnot_ps)(sign, x), VOP(set1_ps)(0.70710678118654752f));
    const V t = VOP(div_ps)(one, VOP(fmadd_ps)(z, VOP(set1_ps)(0.5f), one));
    const V t2 = VOP(mul_ps)(t, t), t4 = VOP(mul_ps)(t2, t2), t8 = VOP(mul_ps)(t4, t4);
#define PAIR(lo, hi) VOP(fmadd_ps)(VOP(set1_ps)(hi), t, VOP(set1_ps)(lo))
    const V q0 = PAIR(0.2820911357849623f, 0.28223157456100284f);
    const V q1 = PAIR(0.24478865874056713f, 0.19236501668226524f);
    const V q2 = PAIR(0.010557372388122294f, 0.1951810556536266f);
    const V q3 = PAIR(-0.3715914489374934f, 0.18642580507057313f);
    const V q4 = PAIR(-0.012717529896355717f, -0.009331714248152665f);
#undef PAIR
    const V low = VOP(fmadd_ps)(VOP(fmadd_ps)(q3, t2, q2), t4, VOP(fmadd_ps)(q1, t2, q0));
    const V p = VOP(fmadd_ps)(q4, t8, low);
    const V e = VFN(exp)(VOP(mul_ps)(VOP(xor_ps)(z, sign), z));
    const V half_erfc = VOP(mul_ps)(VOP(mul_ps)(VOP(mul_ps)(t, VOP(set1_ps)(0.5f)), p), e);
    *gauss = e;
    /* x < 0: the tail beyond |x|; otherwise 1 − that tail */
    return VSIGNSELECT(half_erfc, VOP(sub_ps)(one, half_erfc), x);
}

static inline VTARGET V VFN(gelu)(V x) {
    V e;
    return VOP(mul_ps)(x, VFN(normal_cdf)(x, &e));
}

/* gelu(x), and gelu'(x) = Φ(x) + x·φ(x) into *derivative */
static inline VTARGET V VFN(gelu_derivative)(V x, V *derivative) {
    V e;
    const V cdf = VFN(normal_cdf)(x, &e);
    *derivative = VOP(fmadd_ps)(x, VOP(mul_ps)(e, VOP(set1_ps)(0.39894228040143268f)), cdf);
    return VOP(mul_ps)(x, cdf);
}

static VTARGET void VFN(gelu_rows)(const float *restrict x, float *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) { /* two independent groups per step keep both FMA pipes busy */
        V a = VFN(gelu)(VOP(loadu_ps)(x + i)), b = VFN(gelu)(VOP(loadu_ps)(x + i + VW));
        VOP(storeu_ps)(out + i, a);
        VOP(storeu_ps)(out + i + VW, b);
    }
    for (; i < n; i += VW) { /* the tail through the same code on a padded copy */
        float in[VW] = {0}, res[VW];
        const int64_t m = n - i < VW ? n - i : VW;
        memcpy(in, x + i, (size_t)m * sizeof(float));
        VOP(storeu_ps)(res, VFN(gelu)(VOP(loadu_ps)(in)));
        memcpy(out + i, res, (size_t)m * sizeof(float));
    }
}

static VTARGET void VFN(gelu_derivative_rows)(float *restrict x, float *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        V da, db;
        V a = VFN(gelu_derivative)(VOP(loadu_ps)(x + i), &da), b = VFN(gelu_derivative)(VOP(loadu_ps)(x + i + VW), &db);
        VOP(storeu_ps)(out + i, a);
        VOP(storeu_ps)(out + i + VW, b);
        VOP(storeu_ps)(x + i, da);
        VOP(storeu_ps)(x + i + VW, db);
    }
    for (; i < n; i += VW) {
        float in[VW] = {0}, res[VW], der[VW];
        const int64_t m = n - i < VW ? n - i : VW;
        memcpy(in, x + i, (size_t)m * sizeof(float));
        V d;
        VOP(storeu_ps)(res, VFN(gelu_derivative)(VOP(loadu_ps)(in), &d));
        VOP(storeu_ps)(der, d);
        memcpy(out + i, res, (size_t)m * sizeof(float));
        memcpy(x + i, der, (size_t)m * sizeof(float));
    }
}

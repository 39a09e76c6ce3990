/*
 * The exact GELU at the width VW (vec.h): gelu_rows8/16 and gelu_derivative_rows8/16 over n
 * floats. Included once per width by kernels.c; the AVX-512 and AVX2 results are identical.
 */
#include "vec.h"
#include "vexp.h"

/*
 * erf(z) = z·P(z²)/Q(z²) with z clamped to [−3.92, 3.92], P of degree 6 and Q of degree 4
 * (launch/pytorch/fit_erf.py: worst absolute error 4.3e-8 in exact arithmetic, about 2e-7 as
 * evaluated here). At the clamp the quotient rounds to exactly ±1, as erf does in single precision
 * from there on, so large |z| needs no branch of its own (checked over every float: the results
 * equal those of selecting ±1 beyond 3.92, bit for bit). No exponential: the forward GELU is two
 * short polynomials and a division.
 */
static inline VTARGET V VFN(erf)(V z) {
    const V zc = VOP(min_ps)(VOP(max_ps)(z, VOP(set1_ps)(-3.92f)), VOP(set1_ps)(3.92f)), s = VOP(mul_ps)(zc, zc);
    V p = VOP(fmadd_ps)(VOP(set1_ps)(1.9918426019671642e-08f), s, VOP(set1_ps)(-1.9942426661145873e-06f));
    p = VOP(fmadd_ps)(p, s, VOP(set1_ps)(0.0001490087597630918f));
    p = VOP(fmadd_ps)(p, s, VOP(set1_ps)(0.003974105231463909f));
    p = VOP(fmadd_ps)(p, s, VOP(set1_ps)(0.05140150710940361f));
    p = VOP(fmadd_ps)(p, s, VOP(set1_ps)(0.20614439249038696f));
    p = VOP(fmadd_ps)(p, s, VOP(set1_ps)(1.1283787488937378f));
    V q = VOP(fmadd_ps)(VOP(set1_ps)(0.001024391152895987f), s, VOP(set1_ps)(0.014891844242811203f));
    q = VOP(fmadd_ps)(q, s, VOP(set1_ps)(0.1175772026181221f));
    q = VOP(fmadd_ps)(q, s, VOP(set1_ps)(0.5160194635391235f));
    q = VOP(fmadd_ps)(q, s, VOP(set1_ps)(1.0f));
    return VOP(div_ps)(VOP(mul_ps)(zc, p), q);
}

/* gelu(x) = x·Φ(x) = h + h·erf(x/√2) with h = x/2 */
static inline VTARGET V VFN(gelu_erf)(V x, V *erf) {
    const V h = VOP(mul_ps)(x, VOP(set1_ps)(0.5f));
    *erf = VFN(erf)(VOP(mul_ps)(x, VOP(set1_ps)(0.70710678118654752f)));
    return VOP(fmadd_ps)(h, *erf, h);
}

static inline VTARGET V VFN(gelu)(V x) {
    V e;
    return VFN(gelu_erf)(x, &e);
}

/* gelu(x) (the same bits as VFN(gelu)), and gelu'(x) = Φ(x) + x·φ(x) into *derivative, with
 * Φ = (1 + erf)/2 and φ(x) = e^(−x²/2)/√(2π) */
static inline VTARGET V VFN(gelu_derivative)(V x, V *derivative) {
    V erf;
    const V g = VFN(gelu_erf)(x, &erf), half = VOP(set1_ps)(0.5f);
    const V cdf = VOP(fmadd_ps)(erf, half, half);
    const V density = VFN(exp)(VOP(mul_ps)(VOP(mul_ps)(x, x), VOP(set1_ps)(-0.5f)));
    *derivative = VOP(fmadd_ps)(x, VOP(mul_ps)(density, VOP(set1_ps)(0.39894228040143268f)), cdf);
    return g;
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

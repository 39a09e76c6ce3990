/* e^x at the width VW (vec.h): exp8 or exp16. Cephes-style range reduction by ln 2, degree-6
 * polynomial, 2^n from exponent bits. (Guarded per width.) */
#include "vec.h"

#if (VW == 8 && !defined(LOCKSTEP_VEXP8)) || (VW == 16 && !defined(LOCKSTEP_VEXP16))
#if VW == 8
#define LOCKSTEP_VEXP8
#else
#define LOCKSTEP_VEXP16
#endif

static inline VTARGET V VFN(exp)(V x) {
    x = VOP(min_ps)(VOP(set1_ps)(88.37f), VOP(max_ps)(VOP(set1_ps)(-87.3f), x)); /* a NaN stays NaN */
    const V magic = VOP(set1_ps)(12582912.0f);
    V t = VOP(fmadd_ps)(x, VOP(set1_ps)(1.44269504088896341f), magic);
    V n = VOP(sub_ps)(t, magic);
    x = VOP(fnmadd_ps)(n, VOP(set1_ps)(0.693359375f), x);
    x = VOP(fmadd_ps)(n, VOP(set1_ps)(2.12194440e-4f), x);
    V x2 = VOP(mul_ps)(x, x);
    V y = VOP(set1_ps)(1.9875691500e-4f);
    y = VOP(fmadd_ps)(y, x, VOP(set1_ps)(1.3981999507e-3f));
    y = VOP(fmadd_ps)(y, x, VOP(set1_ps)(8.3334519073e-3f));
    y = VOP(fmadd_ps)(y, x, VOP(set1_ps)(4.1665795894e-2f));
    y = VOP(fmadd_ps)(y, x, VOP(set1_ps)(1.6666665459e-1f));
    y = VOP(fmadd_ps)(y, x, VOP(set1_ps)(5.0000001201e-1f));
    y = VOP(fmadd_ps)(y, x2, VOP(add_ps)(x, VOP(set1_ps)(1.0f)));
    VI k = VOP(slli_epi32)(VOP(add_epi32)(VOP(sub_epi32)(VBITS(t), VOP(set1_epi32)(0x4B400000)), VOP(set1_epi32)(127)), 23);
    return VOP(mul_ps)(y, VFLOATS(k));
}
#endif

/*
 * The exact (erf) GELU, forward and forward-with-derivative (gelu.h), in sixteen lanes where the
 * CPU has AVX-512 and eight otherwise, with identical results. A length that is not a multiple of
 * the width finishes through the same vector code on a padded copy, so every element's result is
 * the same wherever a split of the array puts it.
 */
#include "lockstep_kernels.h"

#include <immintrin.h>
#include <string.h>

#define VW 16
#include "gelu.h"
#undef VW
#define VW 8
#include "gelu.h"
#undef VW
#include "vec.h" /* clears the width macros */

void lk_gelu_erf_forward(const float *restrict x, float *restrict out, int64_t n) {
    if (lk_isa_avx512()) gelu_rows16(x, out, n);
    else gelu_rows8(x, out, n);
}

void lk_gelu_erf_forward_derivative(float *restrict x, float *restrict out, int64_t n) {
    if (lk_isa_avx512()) gelu_derivative_rows16(x, out, n);
    else gelu_derivative_rows8(x, out, n);
}

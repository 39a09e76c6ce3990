/*
 * Width-generic vector operations (private to CKernels), for code written once and compiled at
 * two widths: define VW as 8 (AVX2) or 16 (AVX-512) and include this file; it (re)defines
 *   V        the float vector type        VOP(name)  _mm256_name or _mm512_name
 *   VFN(f)   f8 or f16 (the function name at this width)
 *   VTARGET  the function attribute the width needs
 *   VBITS / VFLOATS  reinterpret floats as ints and back
 * Included with VW undefined, it only clears them: a file that instantiates a template does
 * so when done, so that no V or VOP reaches the code that follows.
 * Both widths then take the same operations in the same order on every lane: elementwise
 * results are identical to the bit.
 */
#undef V
#undef VI
#undef VOP
#undef VFN
#undef VTARGET
#undef VBITS
#undef VFLOATS
#if VW == 8
#define V __m256
#define VI __m256i
#define VOP(name) _mm256_##name
#define VFN(f) f##8
#define VTARGET
#define VBITS(x) _mm256_castps_si256(x)
#define VFLOATS(x) _mm256_castsi256_ps(x)
#elif VW == 16
#define V __m512
#define VI __m512i
#define VOP(name) _mm512_##name
#define VFN(f) f##16
#define VTARGET __attribute__((target("avx512f")))
#define VBITS(x) _mm512_castps_si512(x)
#define VFLOATS(x) _mm512_castsi512_ps(x)
#elif defined(VW)
#error "VW must be 8 or 16"
#endif

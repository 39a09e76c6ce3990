/*
 * Scaled dot-product attention of one head, forward and backward, in blocks of MR query rows.
 *
 * q, k, v (T × hs) are strided views (row stride ld) into the fused qkv activation. Keys and
 * values are first copied transposed into the work buffer, so that a block's scores are a small
 * register-blocked product (attention_product.h: no horizontal sums). A causal block of
 * rows [t0, t0 + MR) only meets keys [0, t0 + MR): the products above the diagonal are skipped.
 * Forward normalises after the value product (y = (E·V)/Σ with E = e^(scores − max)) and keeps one
 * number per query row, lse = log Σ e^(scores). Backward recomputes the probabilities in one pass
 * as e^(scores − lse), takes Σ_j P·dP as dY·y (the FlashAttention identity), and holds one head's
 * P and dS (T × T) in the work buffer for the key-side products dK = dSᵀ·Q, dV = Pᵀ·dY.
 *
 * The hs-wide loops run eight lanes at a time when hs is a multiple of 8 and fall back to plain
 * loops otherwise; the key-wide loops always run eight lanes (the transposed copies are padded).
 * The products run sixteen lanes wide where the CPU has AVX-512, with identical results.
 */
#include "lockstep_kernels.h"
#include "lanes.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

enum { MR = 8 }; /* rows per block: AVX-512 register tiles take all eight, AVX2 ones four at a time */

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t lk_attention_work_size(int64_t T, int64_t hs) {
    int64_t Tp = round_up(T, 16), Tr = round_up(T, MR);
    return 2 * hs * Tp + 2 * Tr * Tp + 2 * MR * hs;
}

/* Rows [from, to) of a T-row strided view requested into the cache ahead of their use: the
 * activations come from far caches, and the block loop would otherwise wait for each row. */
static inline void prefetch_rows(const float *src, int64_t ld, int64_t from, int64_t to, int64_t T, int64_t hs) {
    for (int64_t t = from; t < to && t < T; t++)
        for (int64_t d = 0; d < hs; d += 16) _mm_prefetch((const char *)(src + t * ld + d), _MM_HINT_T0);
}

/* dst[d][j] = src[j·ld + d] for j < T, zero for T <= j < Tp; 8 × 8 tiles in registers. */
static void transpose_in(const float *src, int64_t ld, int64_t T, int64_t hs, float *dst, int64_t Tp) {
    const int64_t T8 = T & ~(int64_t)7, hs8 = hs & ~(int64_t)7;
    for (int64_t j = 0; j < T8; j += 8) {
        prefetch_rows(src, ld, j + 8, j + 16, T, hs);
        for (int64_t d = 0; d < hs8; d += 8) transpose8x8(src + j * ld + d, ld, dst + d * Tp + j, Tp);
        for (int64_t d = hs8; d < hs; d++)
            for (int64_t jj = j; jj < j + 8; jj++) dst[d * Tp + jj] = src[jj * ld + d];
    }
    for (int64_t d = 0; d < hs; d++) {
        float *row = dst + d * Tp;
        for (int64_t j = T8; j < T; j++) row[j] = src[j * ld + d];
        for (int64_t j = T; j < Tp; j++) row[j] = 0;
    }
}

/* The MR rows starting at t0 copied into a dense MR × hs block; rows past T are zero. (Measured
 * faster than reading the block in place; plain loops: a library memcpy call per 128-byte row
 * costs more than the copy.) */
static void rows_in(const float *src, int64_t ld, int64_t t0, int64_t nr, int64_t hs, float *dst) {
    for (int64_t r = 0; r < MR; r++) {
        float *d = dst + r * hs;
        const float *s = src + (t0 + r) * ld;
        int64_t c = 0;
        if (r < nr) {
            for (; c + 8 <= hs; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c));
            for (; c < hs; c++) d[c] = s[c];
        } else {
            for (; c + 8 <= hs; c += 8) _mm256_storeu_ps(d + c, _mm256_setzero_ps());
            for (; c < hs; c++) d[c] = 0;
        }
    }
}

#define VW 16
#include "attention_product.h"
#undef VW
#define VW 8
#include "attention_product.h"
#undef VW
#include "vec.h" /* clears the width macros */

/* The head's products run in AVX-512 where the CPU has it (identical results); `wide` is read
 * once per call of the head. */
#define block_product(...) (wide ? block_product16(__VA_ARGS__) : block_product8(__VA_ARGS__))

/* out[j][:] = Σ_{t0 <= t < T} W[t][j] · X[t][:] for j < n, where t0 = j rounded down to MR when
 * causal (W is zero above the diagonal) and 0 otherwise. W rows Tp apart, the MR columns of each
 * key block written in every row read; X rows ldx apart; out rows ldo apart, hs wide. */
static void cols_times_rows(const float *W, int64_t Tp, const float *X, int64_t ldx, int64_t T, int64_t n,
                            int64_t hs, int causal, float *out, int64_t ldo, int wide) {
    for (int64_t j0 = 0; j0 < n; j0 += MR) {
        const int64_t nj = n - j0 < MR ? n - j0 : MR, t0 = causal ? j0 : 0;
        block_product(W + t0 * Tp + j0, 1, Tp, T - t0, X + t0 * ldx, ldx, hs, out + j0 * ldo, ldo, nj, NULL);
    }
}

/* Lanes [0, len) of the 8-lane group at j kept, the rest zero (len − j may exceed 8 or be ≤ 0). */
static inline __m256 keep_below(__m256 x, int64_t j, int64_t len) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int64_t left = len - j < 0 ? 0 : (len - j > 8 ? 8 : len - j);
    return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), lane)));
}

// MARK: - the rows' elementwise passes in sixteen lanes (AVX-512), for whole groups of sixteen

#define VW 16
#include "vexp.h"
#undef VW
#include "vec.h"
#define AVX512 __attribute__((noinline, target("avx512f")))

/* s[j] ← exp(scale·s[j] − shift) (zero from len on) for j < n rounded down to 16: exp_row's
 * exponentials, with their sum added into *sum in the eight-lane order (low half, then high
 * half), and probabilities_row's (sum NULL). Returns where the eight-lane loop goes on. */
static AVX512 int64_t exp_groups16(float *s, int64_t len, int64_t n, float scale, float shift, __m256 *sum) {
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(shift);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vs, vm));
        if (j + 16 > len) e = _mm512_maskz_mov_ps(first_lanes16(len - j), e);
        _mm512_storeu_ps(s + j, e);
        if (sum) {
            *sum = _mm256_add_ps(*sum, _mm512_castps512_ps256(e));
            *sum = _mm256_add_ps(*sum, high_half16(e));
        }
    }
    return j;
}

/* dS = P ⊙ (dP − D)·scale for j < n rounded down to 16; returns where the eight-lane loop goes on */
static AVX512 int64_t scores_gradient_groups16(const float *p, float *dp, int64_t n, float d, float scale) {
    const __m512 vd = _mm512_set1_ps(d), vs = _mm512_set1_ps(scale);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(dp + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(p + j),
                                                             _mm512_sub_ps(_mm512_loadu_ps(dp + j), vd)), vs));
    return j;
}

// MARK: - rows

/* The largest of s[0..len) (−∞ for none): eight lanes, then the tail. */
static inline float row_max(const float *s, int64_t len) {
    int64_t j = 0;
    float m = -INFINITY;
    if (len >= 8) {
        __m256 mv = _mm256_loadu_ps(s);
        for (j = 8; j + 8 <= len; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
        m = hmax8(mv);
    }
    for (; j < len; j++) m = s[j] > m ? s[j] : m;
    return m;
}

/* s[0..len) ← exp(scale·s − shift), s[len..n) ← 0 (n a multiple of 8); returns their sum in
 * eight lanes (added in order of j). */
static inline __m256 exp_sum_row(float *s, int64_t len, int64_t n, float scale, float shift, int wide) {
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(shift);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = wide ? exp_groups16(s, len, n, scale, shift, &sum) : 0; j < n; j += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, vm));
        if (j + 8 > len) e = keep_below(e, j, len);
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    return sum;
}

/* The softmax numerators of a block's nr rows (rows Tp apart; row r has len(r) = t0 + r + 1 keys
 * when causal, T otherwise, and is n wide): s ← exp(scale·s − scale·max s) with zeros past len,
 * the reciprocal of each row's sum into inv[r] and, with lse, the log of its softmax denominator,
 * scale·max + log Σ, into lse[r]. Every row takes its own operations in its own order; the rows go
 * through each pass side by side (maxima, then exponentials, then divisions and logarithms), so one
 * row's chain of dependent steps does not hold up the next. */
static void exp_rows(float *P, int64_t Tp, int64_t nr, int64_t t0, int causal, int64_t T, int64_t n, float scale,
                     float *inv, float *lse, int wide) {
    float m[MR], total[MR];
    for (int64_t r = 0; r < nr; r++) m[r] = row_max(P + r * Tp, causal ? t0 + r + 1 : T);
    for (int64_t r = 0; r < nr; r++)
        total[r] = hsum8(exp_sum_row(P + r * Tp, causal ? t0 + r + 1 : T, n, scale, scale * m[r], wide));
    for (int64_t r = 0; r < nr; r++) inv[r] = 1.0f / total[r];
    if (lse)
        for (int64_t r = 0; r < nr; r++) {
            float top = scale * m[r];
            __asm__("" : "+x"(top)); /* rounded before the sum (no fused multiply-add), as always */
            lse[r] = top + logf(total[r]);
        }
}

/* s[0..len) ← exp(scale·s − lse) (the probabilities, from the forward's row statistic),
 * s[len..n) ← 0. */
static inline void probabilities_row(float *s, int64_t len, int64_t n, float scale, float lse, int wide) {
    const __m256 vs = _mm256_set1_ps(scale), vl = _mm256_set1_ps(lse);
    for (int64_t j = wide ? exp_groups16(s, len, n, scale, lse, NULL) : 0; j < n; j += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, vl));
        if (j + 8 > len) e = keep_below(e, j, len);
        _mm256_storeu_ps(s + j, e);
    }
}

/* Σ_d a[d]·b[d] in eight lanes (then the tail). */
static inline float dot(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= n; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
    float s = hsum8(acc);
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}

void lk_attention_forward(const float *q, const float *k, const float *v, int64_t ld, float *y, int64_t ldy,
                          int64_t T, int64_t hs, int causal, float scale, float *lse, float *work) {
    /* Per block: S = Q·Kᵀ, E = exp(scale·S − row max), y = (E·V) / row sums. */
    const int64_t Tp = round_up(T, 16);
    const int wide = lk_isa_avx512();
    float *KT = work, *P = KT + hs * Tp, *QB = P + MR * Tp;
    transpose_in(k, ld, T, hs, KT, Tp);
    for (int64_t t0 = 0; t0 < T; t0 += MR) {
        const int64_t nr = T - t0 < MR ? T - t0 : MR;
        const int64_t keys = causal ? t0 + nr : T, n = round_up(keys, 8);
        prefetch_rows(q, ld, t0 + MR, t0 + 2 * MR, T, hs);
        if (causal) prefetch_rows(v, ld, t0 + MR, t0 + 2 * MR, T, hs);
        rows_in(q, ld, t0, nr, hs, QB);
        block_product(QB, hs, 1, hs, KT, Tp, n, P, Tp, MR, NULL);
        float inv[MR] = {0};
        exp_rows(P, Tp, nr, t0, causal, T, n, scale, inv, lse ? lse + t0 : NULL, wide);
        block_product(P, Tp, 1, keys, v, ld, hs, y + t0 * ldy, ldy, nr, inv);
    }
}

void lk_attention_backward(const float *q, const float *k, const float *v, int64_t ld, const float *y, int64_t ldy,
                           const float *lse, const float *dy, int64_t lddy, float *dq, float *dk, float *dv,
                           int64_t ldd, int64_t T, int64_t hs, int causal, float scale, float *work) {
    /* Per block of query rows: P = exp(scale·S − lse) and dS = P ⊙ (dP − D)·scale with dP = dY·Vᵀ
     * and D = Σ_d dY ⊙ Y (= Σ_j P·dP), into whole-head matrices (rows Tp apart); dQ = dS·K.
     * Then dK = dSᵀ·Q and dV = Pᵀ·dY over the whole head. */
    const int64_t Tp = round_up(T, 16), Tr = round_up(T, MR);
    const int wide = lk_isa_avx512();
    float *KT = work, *VT = KT + hs * Tp, *Pall = VT + hs * Tp, *dSall = Pall + Tr * Tp;
    float *QB = dSall + Tr * Tp, *DYB = QB + MR * hs;
    transpose_in(k, ld, T, hs, KT, Tp);
    transpose_in(v, ld, T, hs, VT, Tp);
    for (int64_t t0 = 0; t0 < T; t0 += MR) {
        const int64_t nr = T - t0 < MR ? T - t0 : MR;
        const int64_t keys = causal ? t0 + nr : T, n = round_up(keys, 8);
        float *P = Pall + t0 * Tp, *dP = dSall + t0 * Tp;
        prefetch_rows(q, ld, t0 + MR, t0 + 2 * MR, T, hs);
        prefetch_rows(dy, lddy, t0 + MR, t0 + 2 * MR, T, hs);
        prefetch_rows(y, ldy, t0 + MR, t0 + 2 * MR, T, hs);
        rows_in(q, ld, t0, nr, hs, QB);
        rows_in(dy, lddy, t0, nr, hs, DYB);
        block_product(QB, hs, 1, hs, KT, Tp, n, P, Tp, MR, NULL);  /* S = Q · Kᵀ */
        block_product(DYB, hs, 1, hs, VT, Tp, n, dP, Tp, MR, NULL); /* dP = dY · Vᵀ */
        for (int64_t r = 0; r < MR; r++) {
            float *pr = P + r * Tp, *dr = dP + r * Tp;
            if (r >= nr) {
                memset(pr, 0, (size_t)n * sizeof(float));
                memset(dr, 0, (size_t)n * sizeof(float));
                continue;
            }
            const int64_t t = t0 + r;
            probabilities_row(pr, causal ? t + 1 : T, n, scale, lse[t], wide);
            const float D = dot(dy + t * lddy, y + t * ldy, hs);
            const __m256 vd = _mm256_set1_ps(D), vs = _mm256_set1_ps(scale);
            for (int64_t j = wide ? scores_gradient_groups16(pr, dr, n, D, scale) : 0; j < n; j += 8) {
                __m256 p = _mm256_loadu_ps(pr + j);
                _mm256_storeu_ps(dr + j, _mm256_mul_ps(_mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dr + j), vd)), vs));
            }
        }
        block_product(dP, Tp, 1, keys, k, ld, hs, dq + t0 * ldd, ldd, nr, NULL); /* dQ = dS · K */
    }
    cols_times_rows(dSall, Tp, q, ld, T, T, hs, causal, dk, ldd, wide);   /* dK = dSᵀ · Q */
    cols_times_rows(Pall, Tp, dy, lddy, T, T, hs, causal, dv, ldd, wide); /* dV = Pᵀ · dY */
}

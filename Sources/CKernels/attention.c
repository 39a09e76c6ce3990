/*
 * Scaled dot-product attention of one head, forward and backward, in blocks of MR query rows.
 *
 * q, k, v (T × hs) are strided views (row stride ld) into the fused qkv activation. Keys and
 * values are first copied transposed into the work buffer, so that a block's scores are a small
 * register-blocked product (MR rows × 16 keys per step, no horizontal sums). A causal block of
 * rows [t0, t0 + MR) only meets keys [0, t0 + MR): the products above the diagonal are skipped.
 * Probabilities are never stored across blocks: backward recomputes each block's from q and k.
 *
 * The hs-wide loops run eight lanes at a time when hs is a multiple of 8 and fall back to plain
 * loops otherwise; the key-wide loops always run eight lanes (the transposed copies are padded).
 */
#include "lockstep_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

enum { MR = 4 };

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t lk_attention_work_size(int64_t T, int64_t hs) {
    int64_t Tp = round_up(T, 16);
    return 2 * hs * Tp + 2 * MR * Tp + 2 * MR * hs;
}

/* Vector e^x (same reduction and polynomial as the scalar exp in kernels.c). */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), x);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i k = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t),
                                                                    _mm256_set1_epi32(0x4B400000)),
                                                   _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(k));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* dst[d][j] = src[j·ld + d] for j < T, zero for T <= j < Tp. */
static void transpose_in(const float *src, int64_t ld, int64_t T, int64_t hs, float *dst, int64_t Tp) {
    for (int64_t d = 0; d < hs; d++) {
        float *row = dst + d * Tp;
        for (int64_t j = 0; j < T; j++) row[j] = src[j * ld + d];
        for (int64_t j = T; j < Tp; j++) row[j] = 0;
    }
}

/* The MR rows starting at t0 copied into a dense MR × hs block; rows past T are zero. */
static void rows_in(const float *src, int64_t ld, int64_t t0, int64_t nr, int64_t hs, float *dst) {
    for (int64_t r = 0; r < MR; r++) {
        if (r < nr) memcpy(dst + r * hs, src + (t0 + r) * ld, (size_t)hs * sizeof(float));
        else memset(dst + r * hs, 0, (size_t)hs * sizeof(float));
    }
}

/* S[r][j] = Σ_d A[r][d] · BT[d][j] for r < MR, j < n (n a multiple of 8, BT padded to it). */
static void rows_times_cols(const float *A, int64_t hs, const float *BT, int64_t Tp, float *S, int64_t n) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
        __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        for (int64_t d = 0; d < hs; d++) {
            const float *b = BT + d * Tp + j;
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
            __m256 a = _mm256_broadcast_ss(A + d);
            c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
            a = _mm256_broadcast_ss(A + hs + d);
            c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
            a = _mm256_broadcast_ss(A + 2 * hs + d);
            c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
            a = _mm256_broadcast_ss(A + 3 * hs + d);
            c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        }
        _mm256_storeu_ps(S + j, c00); _mm256_storeu_ps(S + j + 8, c01);
        _mm256_storeu_ps(S + Tp + j, c10); _mm256_storeu_ps(S + Tp + j + 8, c11);
        _mm256_storeu_ps(S + 2 * Tp + j, c20); _mm256_storeu_ps(S + 2 * Tp + j + 8, c21);
        _mm256_storeu_ps(S + 3 * Tp + j, c30); _mm256_storeu_ps(S + 3 * Tp + j + 8, c31);
    }
    for (; j < n; j += 8) {
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t d = 0; d < hs; d++) {
            __m256 b = _mm256_loadu_ps(BT + d * Tp + j);
            c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + d), b, c0);
            c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + hs + d), b, c1);
            c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + 2 * hs + d), b, c2);
            c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + 3 * hs + d), b, c3);
        }
        _mm256_storeu_ps(S + j, c0); _mm256_storeu_ps(S + Tp + j, c1);
        _mm256_storeu_ps(S + 2 * Tp + j, c2); _mm256_storeu_ps(S + 3 * Tp + j, c3);
    }
}

/* out[r][:] = Σ_{j<n} P[r][j] · B[j][:] for r < nr (B rows ld apart, hs wide; out rows ldo apart). */
static void rows_times_rows(const float *P, int64_t Tp, const float *B, int64_t ld, int64_t n, int64_t hs,
                            float *out, int64_t ldo, int64_t nr) {
    if (hs % 8 != 0) {
        for (int64_t r = 0; r < nr; r++)
            for (int64_t d = 0; d < hs; d++) {
                float s = 0;
                for (int64_t j = 0; j < n; j++) s += P[r * Tp + j] * B[j * ld + d];
                out[r * ldo + d] = s;
            }
        return;
    }
    int64_t d0 = 0;
    for (; d0 + 16 <= hs; d0 += 16) {
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
        __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        for (int64_t j = 0; j < n; j++) {
            const float *b = B + j * ld + d0;
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
            __m256 p = _mm256_broadcast_ss(P + j);
            c00 = _mm256_fmadd_ps(p, b0, c00); c01 = _mm256_fmadd_ps(p, b1, c01);
            p = _mm256_broadcast_ss(P + Tp + j);
            c10 = _mm256_fmadd_ps(p, b0, c10); c11 = _mm256_fmadd_ps(p, b1, c11);
            p = _mm256_broadcast_ss(P + 2 * Tp + j);
            c20 = _mm256_fmadd_ps(p, b0, c20); c21 = _mm256_fmadd_ps(p, b1, c21);
            p = _mm256_broadcast_ss(P + 3 * Tp + j);
            c30 = _mm256_fmadd_ps(p, b0, c30); c31 = _mm256_fmadd_ps(p, b1, c31);
        }
        __m256 c[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
        for (int64_t r = 0; r < nr; r++) {
            _mm256_storeu_ps(out + r * ldo + d0, c[r][0]);
            _mm256_storeu_ps(out + r * ldo + d0 + 8, c[r][1]);
        }
    }
    for (; d0 < hs; d0 += 8) {
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t j = 0; j < n; j++) {
            __m256 b = _mm256_loadu_ps(B + j * ld + d0);
            c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + j), b, c0);
            c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + Tp + j), b, c1);
            c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + 2 * Tp + j), b, c2);
            c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(P + 3 * Tp + j), b, c3);
        }
        __m256 c[MR] = {c0, c1, c2, c3};
        for (int64_t r = 0; r < nr; r++) _mm256_storeu_ps(out + r * ldo + d0, c[r]);
    }
}

/* acc[j][:] += Σ_{r<MR} W[r][j] · X[r][:] for j < n (X dense MR × hs; acc rows ld apart). */
static void cols_times_rows_acc(const float *W, int64_t Tp, const float *X, int64_t hs, float *acc, int64_t ld,
                                int64_t n) {
    if (hs % 8 != 0) {
        for (int64_t j = 0; j < n; j++)
            for (int64_t d = 0; d < hs; d++) {
                float s = acc[j * ld + d];
                for (int64_t r = 0; r < MR; r++) s += W[r * Tp + j] * X[r * hs + d];
                acc[j * ld + d] = s;
            }
        return;
    }
    for (int64_t d0 = 0; d0 < hs; d0 += 8) {
        __m256 x0 = _mm256_loadu_ps(X + d0), x1 = _mm256_loadu_ps(X + hs + d0);
        __m256 x2 = _mm256_loadu_ps(X + 2 * hs + d0), x3 = _mm256_loadu_ps(X + 3 * hs + d0);
        for (int64_t j = 0; j < n; j++) {
            float *a = acc + j * ld + d0;
            __m256 s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(W + j), x0, _mm256_loadu_ps(a));
            __m256 s1 = _mm256_mul_ps(_mm256_broadcast_ss(W + Tp + j), x1);
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(W + 2 * Tp + j), x2, s0);
            s1 = _mm256_fmadd_ps(_mm256_broadcast_ss(W + 3 * Tp + j), x3, s1);
            _mm256_storeu_ps(a, _mm256_add_ps(s0, s1));
        }
    }
}

/* s[0..len) ← softmax(scale · s[0..len)), s[len..n) ← 0 (n a multiple of 8). */
static void softmax_row(float *s, int64_t len, int64_t n, float scale) {
    int64_t j = 0;
    float m = -INFINITY;
    if (len >= 8) {
        __m256 mv = _mm256_loadu_ps(s);
        for (j = 8; j + 8 <= len; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
        m = hmax8(mv);
    }
    for (; j < len; j++) m = s[j] > m ? s[j] : m;
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(scale * m);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= len; j += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, vm));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (j < len) { /* the partial last group: lanes past len become 0 */
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)(len - j)), lane));
        __m256 e = _mm256_and_ps(exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, vm)), keep);
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
        j += 8;
    }
    for (; j < n; j += 8) _mm256_storeu_ps(s + j, _mm256_setzero_ps());
    const __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
    for (j = 0; j < round_up(len, 8); j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
}

/* Softmax probabilities of the MR query rows at t0 (queries in QB) against keys [0, n). */
static void block_probabilities(const float *QB, const float *KT, float *P, int64_t Tp, int64_t hs, int64_t t0,
                                int64_t nr, int64_t T, int64_t n, int causal, float scale) {
    rows_times_cols(QB, hs, KT, Tp, P, n);
    for (int64_t r = 0; r < MR; r++) {
        if (r < nr) softmax_row(P + r * Tp, causal ? t0 + r + 1 : T, n, scale);
        else memset(P + r * Tp, 0, (size_t)n * sizeof(float));
    }
}

void lk_attention_forward(const float *q, const float *k, const float *v, int64_t ld, float *y, int64_t ldy,
                          int64_t T, int64_t hs, int causal, float scale, float *work) {
    const int64_t Tp = round_up(T, 16);
    float *KT = work, *P = KT + hs * Tp, *QB = P + MR * Tp;
    transpose_in(k, ld, T, hs, KT, Tp);
    for (int64_t t0 = 0; t0 < T; t0 += MR) {
        const int64_t nr = T - t0 < MR ? T - t0 : MR;
        const int64_t keys = causal ? t0 + nr : T;
        rows_in(q, ld, t0, nr, hs, QB);
        block_probabilities(QB, KT, P, Tp, hs, t0, nr, T, round_up(keys, 8), causal, scale);
        rows_times_rows(P, Tp, v, ld, keys, hs, y + t0 * ldy, ldy, nr);
    }
}

void lk_attention_backward(const float *q, const float *k, const float *v, int64_t ld, const float *dy,
                           int64_t lddy, float *dq, float *dk, float *dv, int64_t ldd, int64_t T, int64_t hs,
                           int causal, float scale, float *work) {
    const int64_t Tp = round_up(T, 16);
    float *KT = work, *VT = KT + hs * Tp, *P = VT + hs * Tp, *dP = P + MR * Tp;
    float *QB = dP + MR * Tp, *DYB = QB + MR * hs;
    transpose_in(k, ld, T, hs, KT, Tp);
    transpose_in(v, ld, T, hs, VT, Tp);
    for (int64_t j = 0; j < T; j++) {
        memset(dk + j * ldd, 0, (size_t)hs * sizeof(float));
        memset(dv + j * ldd, 0, (size_t)hs * sizeof(float));
    }
    for (int64_t t0 = 0; t0 < T; t0 += MR) {
        const int64_t nr = T - t0 < MR ? T - t0 : MR;
        const int64_t keys = causal ? t0 + nr : T, n = round_up(keys, 8);
        rows_in(q, ld, t0, nr, hs, QB);
        rows_in(dy, lddy, t0, nr, hs, DYB);
        block_probabilities(QB, KT, P, Tp, hs, t0, nr, T, n, causal, scale);
        rows_times_cols(DYB, hs, VT, Tp, dP, n); /* dP = dY · Vᵀ */
        for (int64_t r = 0; r < MR; r++) {       /* dS = P ⊙ (dP − Σ P·dP) · scale */
            float *pr = P + r * Tp, *dr = dP + r * Tp;
            if (r >= nr) { memset(dr, 0, (size_t)n * sizeof(float)); continue; }
            __m256 acc = _mm256_setzero_ps();
            for (int64_t j = 0; j < n; j += 8) /* P is zero past the row's keys */
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(pr + j), _mm256_loadu_ps(dr + j), acc);
            const __m256 dot = _mm256_set1_ps(hsum8(acc)), vs = _mm256_set1_ps(scale);
            for (int64_t j = 0; j < n; j += 8) {
                __m256 p = _mm256_loadu_ps(pr + j);
                _mm256_storeu_ps(dr + j, _mm256_mul_ps(_mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dr + j), dot)), vs));
            }
        }
        rows_times_rows(dP, Tp, k, ld, keys, hs, dq + t0 * ldd, ldd, nr); /* dQ = dS · K */
        cols_times_rows_acc(dP, Tp, QB, hs, dk, ldd, keys);               /* dK += dSᵀ · Q */
        cols_times_rows_acc(P, Tp, DYB, hs, dv, ldd, keys);               /* dV += Pᵀ · dY */
    }
}

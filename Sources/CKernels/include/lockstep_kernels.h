#ifndef LOCKSTEP_KERNELS_H
#define LOCKSTEP_KERNELS_H
/*
 * The numeric kernels written in C with AVX2/FMA: GELU, cross-entropy, Adam/AdamW, LayerNorm,
 * attention, and the products behind the Linear layers' forward, input gradient and weight
 * gradient (these also in AVX-512, chosen at run time, with identical results); and SHA-256's
 * compression, for the checksums.
 */
#include <stdint.h>

/* isa.c: 1 when the products, attention, GELU and cross-entropy run in AVX-512 (the CPU has it and
 * LOCKSTEP_KERNELS is not avx2) */
int lk_isa_avx512(void);
int lk_isa_avx512_available(void);
/* chooses the path (AVX-512 only where available); returns the path now in use */
int lk_set_isa_avx512(int enabled);

/* out[i] = 0.5·x·(1 + erf(x/√2)) */
void lk_gelu_erf_forward(const float *x, float *out, int64_t n);
/* out[i] = gelu(x[i]) and x[i] replaced by gelu'(x[i]): backward's recomputation in one pass */
void lk_gelu_erf_forward_derivative(float *x, float *out, int64_t n);

/* Softmax cross-entropy of N rows of V logits (crossentropy.c): probs = softmax of each row;
 * *loss += Σ −log probs[target] over the rows whose target is not `ignore` (in order of the rows,
 * continuing the sum given: a batch's rows may come in several calls), *count += their number.
 * Returns −1, or the first row whose target is neither in 0..<V nor `ignore` (*loss, *count unchanged). */
int64_t lk_cross_entropy_forward(const float *logits, const int32_t *targets, float *probs, int64_t N, int64_t V,
                                 int32_t ignore, double *loss, int64_t *count);

/* Adam over n parameters (optim.c): γ = g·s + l2·p; m = β1·m + (1−β1)·γ; v = β2·v + (1−β2)·γ²;
 * p = p·decay − step_size·m / (√v·inv_bc2_sqrt + eps). AdamW: l2 = 0, decay = 1 − lr·wd;
 * Adam with L2: l2 = wd, decay = 1. */
void lk_adam_update(float *p, const float *g, float *m, float *v, int64_t n, float grad_scale, float l2, float beta1,
                    float beta2, float one_minus_beta1, float one_minus_beta2, float decay, float step_size,
                    float inv_bc2_sqrt, float eps);

/* LayerNorm of N rows of C (layernorm.c): out = (x − mean)·rstd·w + b, saving mean and rstd per row */
void lk_layernorm_forward(const float *x, float *out, float *mean, float *rstd, const float *w, const float *b,
                          int64_t N, int64_t C, float eps);
/* dx = base + ∂L/∂x (base NULL: dx = ∂L/∂x; base may be dx); dw, db accumulate */
void lk_layernorm_backward(const float *dout, const float *x, const float *mean, const float *rstd, const float *w,
                           float *dw, float *db, float *dx, const float *base, int64_t N, int64_t C);

/*
 * y = (bias + init + x·B) ⊙ mul for N rows of x (row stride ldx, K wide), B (K × O) packed by
 * lk_gemm_pack (gemm.c); a NULL bias, init (N × O, row stride ldi; may be y) or mul (row stride
 * ldm) is left out.
 */
int64_t lk_gemm_pack_size(int64_t K, int64_t O);
/* B[k][o] = w[o·ldw + k] when transposed (w is O × K: x·wᵀ), else w[k·ldw + o] (w is K × O) */
void lk_gemm_pack(const float *w, int64_t ldw, int transposed, int64_t K, int64_t O, float *packed);
void lk_gemm_rows(const float *x, int64_t ldx, int64_t N, int64_t K, const float *packed, int64_t O,
                  const float *bias, const float *init, int64_t ldi, const float *mul, int64_t ldm, float *y,
                  int64_t ldy);

/*
 * w (O × K, row stride ldw) += aᵀ·b over N rows: a is N × O (row stride lda), b is N × K (row
 * stride ldb) — a Linear layer's weight gradient dyᵀ·x — and, when colsum is not NULL,
 * colsum[o] += Σ_n a[n][o] (its bias gradient). Every element is the sequential sum over the rows
 * n = 0, 1, … added to its old value, whatever part of O a call covers.
 */
void lk_gemm_cols(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t N, int64_t O, int64_t K, float *w,
                  int64_t ldw, float *colsum);
/* The same with b the LayerNorm of x's rows (x N × K, row stride ldx, with the statistics the
 * forward saved): b[n][k] = ((x[n][k] − mean[n])·rstd[n])·gamma[k] + beta[k], formed with
 * lk_layernorm_forward's operations as the rows are read (the same bits as its output), so that
 * backward needs no second pass to recompute it. */
void lk_gemm_cols_normalized(const float *a, int64_t lda, const float *x, int64_t ldx, const float *mean,
                             const float *rstd, const float *gamma, const float *beta, int64_t N, int64_t O, int64_t K,
                             float *w, int64_t ldw, float *colsum);

/*
 * One head of scaled dot-product attention (attention.c). q, k, v are T × hs views with row
 * stride ld; `work` holds lk_attention_work_size(T, hs) floats. causal: query t meets keys ≤ t.
 */
int64_t lk_attention_work_size(int64_t T, int64_t hs);
/* y (row stride ldy) = softmax(scale · q·kᵀ) · v; lse[t] (when not NULL) = log Σ_j e^(scale·q_t·k_j),
 * the row statistic backward takes */
void lk_attention_forward(const float *q, const float *k, const float *v, int64_t ld, float *y, int64_t ldy,
                          int64_t T, int64_t hs, int causal, float scale, float *lse, float *work);
/* dq, dk, dv (row stride ldd, overwritten) from dy (row stride lddy), given the forward's output y
 * and lse: the probabilities are recomputed as e^(scale·q·kᵀ − lse) */
void lk_attention_backward(const float *q, const float *k, const float *v, int64_t ld, const float *y, int64_t ldy,
                           const float *lse, const float *dy, int64_t lddy, float *dq, float *dk, float *dv,
                           int64_t ldd, int64_t T, int64_t hs, int causal, float scale, float *work);

/* SHA-256 (sha256.c): the compression function over `blocks` 64-byte blocks, updating the eight
 * state words; with the CPU's SHA instructions when it has them. */
void lk_sha256_blocks(uint32_t state[8], const void *data, int64_t blocks);
/* chooses the SHA instructions (only where available) or the plain rounds; returns the choice in use */
int lk_sha256_set_hardware(int enabled);
#endif

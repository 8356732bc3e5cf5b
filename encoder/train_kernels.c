#include "train_kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

// Columns per task of the column-parallel sums: one cache line of floats,
// so two threads never write the same line of an accumulator.
#define COL_BLOCK 16

// -march=native on Sapphire Rapids defaults GCC to 256-bit vectors; the
// element-wise loops here (GELU, exp) are compute-bound, so ask for 512.
// A no-op without AVX-512.
#pragma GCC target("prefer-vector-width=512")

// Below this many elements an element-wise loop is not worth a fork.
#define PAR_MIN 32768

// --- helpers -------------------------------------------------------------------

void phrex_train_sum_rows(float *acc, const float *x, int n, int c) {
    int blocks = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int b = 0; b < blocks; b++) {
        int j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < c ? j0 + COL_BLOCK : c;
        float s[COL_BLOCK] = {0};
        for (int r = 0; r < n; r++) {
            const float *row = x + (size_t)r * c;
            for (int j = j0; j < j1; j++) s[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++) acc[j] += s[j - j0];
    }
}

// --- linear --------------------------------------------------------------------

void phrex_train_linear_forward(float *out, const float *inp, const float *w, const float *bias, int n, int ic,
                                int oc) {
    // out (n, oc) = inp (n, ic) · wᵀ (ic, oc)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, ic, 1.0f, inp, ic, w, ic, 0.0f, out, oc);
    if (!bias) return;
#pragma omp parallel for schedule(static) if ((size_t)n * oc >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        float *o = out + (size_t)r * oc;
        for (int j = 0; j < oc; j++) o[j] += bias[j];
    }
}

void phrex_train_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                 const float *w, int n, int ic, int oc, int accumulate) {
    // dinp (n, ic) = dout (n, oc) · w (oc, ic)
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, ic, oc, 1.0f, dout, oc, w, ic,
                    accumulate ? 1.0f : 0.0f, dinp, ic);
    // dw (oc, ic) += doutᵀ (oc, n) · inp (n, ic)
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, ic, n, 1.0f, dout, oc, inp, ic, 1.0f, dw, ic);
    if (dbias) phrex_train_sum_rows(dbias, dout, n, oc);
}

// --- LayerNorm -----------------------------------------------------------------

// Two passes (mean, then variance of the centred values): no cancellation
// when |mean| >> std, which the embedding sums can have.
void phrex_train_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                                   const float *beta, int n, int c, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        const float *x = inp + (size_t)r * c;
        float *o = out + (size_t)r * c;
        float m = 0.0f;
        for (int j = 0; j < c; j++) m += x[j];
        m /= (float)c;
        float v = 0.0f;
        for (int j = 0; j < c; j++) v += (x[j] - m) * (x[j] - m);
        float s = 1.0f / sqrtf(v / (float)c + eps);
        for (int j = 0; j < c; j++) o[j] = (x[j] - m) * s * gamma[j] + beta[j];
        mean[r] = m;
        rstd[r] = s;
    }
}

// dgamma += Σ_r dout·x̂, dbeta += Σ_r dout, by column blocks (see top of header).
static void layernorm_param_grads(float *dgamma, float *dbeta, const float *dout, const float *inp,
                                  const float *mean, const float *rstd, int n, int c) {
    int blocks = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int b = 0; b < blocks; b++) {
        int j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < c ? j0 + COL_BLOCK : c;
        float sg[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
        for (int r = 0; r < n; r++) {
            const float *d = dout + (size_t)r * c, *x = inp + (size_t)r * c;
            for (int j = j0; j < j1; j++) {
                sg[j - j0] += d[j] * (x[j] - mean[r]) * rstd[r];
                sb[j - j0] += d[j];
            }
        }
        for (int j = j0; j < j1; j++) {
            if (dgamma) dgamma[j] += sg[j - j0];
            if (dbeta) dbeta[j] += sb[j - j0];
        }
    }
}

void phrex_train_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, const float *gamma, int n, int c) {
    // Parameter gradients first: dinp may overwrite dout below.
    if (dgamma || dbeta) layernorm_param_grads(dgamma, dbeta, dout, inp, mean, rstd, n, c);
    // With y = x̂·γ + β, x̂ = (x - μ)·rstd and g = dy·γ:
    //   dx = rstd · (g - mean(g) - x̂ · mean(g·x̂))
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        const float *d = dout + (size_t)r * c, *x = inp + (size_t)r * c;
        float *dx = dinp + (size_t)r * c;
        float m = mean[r], s = rstd[r], g_mean = 0.0f, gx_mean = 0.0f;
        for (int j = 0; j < c; j++) {
            float g = d[j] * gamma[j];
            g_mean += g;
            gx_mean += g * (x[j] - m) * s;
        }
        g_mean /= (float)c;
        gx_mean /= (float)c;
        for (int j = 0; j < c; j++) {
            float xhat = (x[j] - m) * s;
            dx[j] = s * (d[j] * gamma[j] - g_mean - xhat * gx_mean);
        }
    }
}

// --- exp and erf, vectorisable -------------------------------------------------------

// libm's expf and erff are scalar calls that GCC cannot vectorise without
// -ffast-math, and GELU (2 per FFN element, forward and backward) and
// softmax (one per attention weight) call them ~100 M times per MiniLM step.
// These two are written branch-free (selects, a magic-number round, memcpy
// bit casts, explicit fmaf) so that `#pragma omp simd` loops vectorise.

// e^x for x <= 0 (softmax after its max, GELU's Gaussian), ~2 ulp; 0 below
// -87 (where e^x leaves the normal floats). e^x = 2^k·e^r, k = round(x/ln2),
// |r| <= ln2/2, e^r by its degree-7 Taylor polynomial (truncation
// 0.35^8/8! = 6e-9 relative, below float rounding).
static inline float exp_nonpos(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float k = fmaf(xc, 1.44269504088896341f, 12582912.0f) - 12582912.0f; // 1.5·2^23 rounds to an integer
    float r = fmaf(k, -0.693145751953125f, xc);                          // ln2, high bits: k·hi is exact
    r = fmaf(k, -1.42860682030941723e-6f, r);                            // ln2, the rest
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t bits; // p·2^k: add k to the exponent field (k >= -126 keeps it normal)
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)k * (1 << 23);
    memcpy(&p, &bits, sizeof p);
    return x < -87.0f ? 0.0f : p;
}

// Φ(x) = (1 + erf(x/√2))/2 and φ(x) = e^{-x²/2}/√(2π) together: they share
// the exponential. erf(z) for z >= 0 by Abramowitz & Stegun 7.1.26,
// 1 - t·(a1 + t·(a2 + ...))·e^{-z²} with t = 1/(1 + p·z), absolute error
// below 1.5e-7 (2.5 float ulps near 1); erf is odd for z < 0.
static inline void gauss_cdf_pdf(float x, float *cdf, float *pdf) {
    float z = fabsf(x) * 0.70710678118654752f;
    float e = exp_nonpos(-0.5f * x * x); // e^{-z²}
    float t = 1.0f / fmaf(0.3275911f, z, 1.0f);
    float poly = fmaf(t, 1.061405429f, -1.453152027f);
    poly = fmaf(t, poly, 1.421413741f);
    poly = fmaf(t, poly, -0.284496736f);
    poly = fmaf(t, poly, 0.254829592f);
    float erf_abs = 1.0f - t * poly * e;
    float erf = x < 0.0f ? -erf_abs : erf_abs;
    *cdf = 0.5f + 0.5f * erf;
    *pdf = 0.39894228040143268f * e;
}

// --- GELU ----------------------------------------------------------------------

void phrex_train_gelu_forward(float *out, const float *inp, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) {
        float cdf, pdf;
        gauss_cdf_pdf(inp[i], &cdf, &pdf);
        out[i] = inp[i] * cdf;
    }
}

void phrex_train_gelu_backward(float *dinp, const float *dout, const float *inp, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) {
        float cdf, pdf, x = inp[i];
        gauss_cdf_pdf(x, &cdf, &pdf);
        dinp[i] = dout[i] * fmaf(x, pdf, cdf); // gelu'(x) = Φ(x) + x·φ(x)
    }
}

// --- ReLU ------------------------------------------------------------------------

void phrex_train_relu_forward(float *out, const float *inp, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void phrex_train_relu_backward(float *dinp, const float *dout, const float *inp, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

// --- embeddings ----------------------------------------------------------------

void phrex_train_embed_forward(float *out, const int32_t *ids, const int32_t *pos, const int32_t *type_ids,
                               const float *wte, const float *wpe, const float *wtt, int n, int c) {
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        const float *w = wte + (size_t)ids[r] * c, *p = wpe + (size_t)pos[r] * c;
        const float *t = wtt + (size_t)(type_ids ? type_ids[r] : 0) * c;
        float *o = out + (size_t)r * c;
        for (int j = 0; j < c; j++) o[j] = w[j] + p[j] + t[j];
    }
}

// Rows repeat (a token id, every position 0), so a row-parallel scatter
// would race; each thread owns a block of columns and walks all rows in order.
void phrex_train_embed_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *ids,
                                const int32_t *pos, const int32_t *type_ids, int n, int c) {
    int blocks = (c + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)n * c >= PAR_MIN)
    for (int b = 0; b < blocks; b++) {
        int j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < c ? j0 + COL_BLOCK : c;
        for (int r = 0; r < n; r++) {
            const float *d = dout + (size_t)r * c;
            float *w = dwte ? dwte + (size_t)ids[r] * c : NULL;
            float *p = dwpe ? dwpe + (size_t)pos[r] * c : NULL;
            float *t = dwtt ? dwtt + (size_t)(type_ids ? type_ids[r] : 0) * c : NULL;
            for (int j = j0; j < j1; j++) {
                if (w) w[j] += d[j];
                if (p) p[j] += d[j];
                if (t) t[j] += d[j];
            }
        }
    }
}

// --- attention -----------------------------------------------------------------

size_t phrex_train_packing_index(size_t *probs_start, const int32_t *seq_start, int n_seqs, int H) {
    size_t at = 0;
    for (int s = 0; s < n_seqs; s++) {
        size_t L = (size_t)(seq_start[s + 1] - seq_start[s]);
        probs_start[s] = at;
        at += (size_t)H * L * L;
    }
    return at;
}

// softmax(scale · row) in place; the max is subtracted first so exp <= 1.
static void softmax_row(float *x, int d, float scale) {
    float max = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : max)
    for (int j = 0; j < d; j++) max = x[j] > max ? x[j] : max;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < d; j++) {
        x[j] = exp_nonpos((x[j] - max) * scale);
        sum += x[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < d; j++) x[j] *= inv;
}

// The weights p (n) with dropout applied, into out: element k of p is
// element first + k of the probs buffer for the mask.
static void drop_weights(float *out, const float *p, size_t n, uint64_t site_key, uint64_t first, float attn_p) {
#pragma omp simd
    for (size_t k = 0; k < n; k++) out[k] = p[k] * phrex_train_dropout_scale(site_key, first + k, attn_p);
}

// One head over one sequence of L tokens. qkv: (L, 3C) at row stride 3C;
// ctx: (L, C); p: (L, L) at probs offset p_off; drop: (L, L) scratch, used
// when attn_p > 0.
static void attend_forward(float *ctx, float *p, const float *qkv, int L, int C, int D, int h, float attn_p,
                           uint64_t site_key, size_t p_off, float *drop) {
    const float *q = qkv + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    // p (L, L) = q (L, D) · kᵀ (D, L); scaled inside the softmax
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, q, 3 * C, k, 3 * C, 0.0f, p, L);
    float scale = 1.0f / sqrtf((float)D);
    for (int i = 0; i < L; i++) softmax_row(p + (size_t)i * L, L, scale);
    const float *w = p;
    if (attn_p > 0) {
        drop_weights(drop, p, (size_t)L * L, site_key, p_off, attn_p);
        w = drop;
    }
    // ctx_h (L, D) = w (L, L) · v (L, D)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, 1.0f, w, L, v, 3 * C, 0.0f, ctx + (size_t)h * D,
                C);
}

void phrex_train_attention_forward(float *ctx, float *probs, const float *qkv, const phrex_train_packing *pk, int C,
                                   int H, float attn_p, uint64_t site_key, float *scratch, size_t slot_floats,
                                   int n_slots) {
    int D = C / H, tasks = pk->n_seqs * H;
    int threads = omp_get_max_threads() < n_slots ? omp_get_max_threads() : n_slots;
    // Each (sequence, head) writes its own block of probs and its own
    // columns of its own rows of ctx: no two tasks share an output.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int task = 0; task < tasks; task++) {
        int s = task / H, h = task % H;
        int start = pk->seq_start[s], L = pk->seq_start[s + 1] - start;
        size_t p_off = pk->probs_start[s] + (size_t)h * L * L;
        attend_forward(ctx + (size_t)start * C, probs + p_off, qkv + (size_t)start * 3 * C, L, C, D, h, attn_p,
                       site_key, p_off, scratch + (size_t)omp_get_thread_num() * slot_floats);
    }
}

// Backward of one head over one sequence. dp, drop: (L, L) scratch.
//   S = q·kᵀ·scale, P = softmax(S), W = dropout(P), ctx = W·v
//   dW = dctx·vᵀ,  dv = Wᵀ·dctx,  dP = dropout(dW) (same mask),
//   dS = P ⊙ (dP - rowsum(P ⊙ dP)),  dq = dS·k·scale,  dk = dSᵀ·q·scale
static void attend_backward(float *dqkv, const float *dctx, const float *p, const float *qkv, int L, int C, int D,
                            int h, float attn_p, uint64_t site_key, size_t p_off, float *dp, float *drop) {
    const float *q = qkv + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + (size_t)h * D, *dk = dq + C, *dv = dq + 2 * C;
    const float *dc = dctx + (size_t)h * D;
    float scale = 1.0f / sqrtf((float)D);
    const float *w = p;
    if (attn_p > 0) {
        drop_weights(drop, p, (size_t)L * L, site_key, p_off, attn_p);
        w = drop;
    }
    // dp (L, L) = dctx_h (L, D) · vᵀ (D, L)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, dc, C, v, 3 * C, 0.0f, dp, L);
    // dv (L, D) = wᵀ (L, L) · dctx_h (L, D)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, 1.0f, w, L, dc, C, 0.0f, dv, 3 * C);
    if (attn_p > 0) drop_weights(dp, dp, (size_t)L * L, site_key, p_off, attn_p);
    for (int i = 0; i < L; i++) {
        const float *pr = p + (size_t)i * L;
        float *dr = dp + (size_t)i * L, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < L; j++) dot += pr[j] * dr[j];
#pragma omp simd
        for (int j = 0; j < L; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
    // dq (L, D) = dS (L, L) · k (L, D) · scale;  dk = dSᵀ · q · scale
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, scale, dp, L, k, 3 * C, 0.0f, dq, 3 * C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, scale, dp, L, q, 3 * C, 0.0f, dk, 3 * C);
}

void phrex_train_attention_backward(float *dqkv, const float *dctx, const float *probs, const float *qkv,
                                    const phrex_train_packing *pk, int C, int H, float attn_p, uint64_t site_key,
                                    float *scratch, size_t slot_floats, int n_slots) {
    int D = C / H, tasks = pk->n_seqs * H;
    int threads = omp_get_max_threads() < n_slots ? omp_get_max_threads() : n_slots;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int task = 0; task < tasks; task++) {
        int s = task / H, h = task % H;
        int start = pk->seq_start[s], L = pk->seq_start[s + 1] - start;
        size_t p_off = pk->probs_start[s] + (size_t)h * L * L;
        float *dp = scratch + (size_t)omp_get_thread_num() * slot_floats;
        attend_backward(dqkv + (size_t)start * 3 * C, dctx + (size_t)start * C, probs + p_off,
                        qkv + (size_t)start * 3 * C, L, C, D, h, attn_p, site_key, p_off, dp, dp + (size_t)L * L);
    }
}

// --- dropout ---------------------------------------------------------------------

void phrex_train_dropout(float *x, size_t count, uint64_t site_key, uint64_t first, float p) {
    if (!(p > 0)) return;
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) x[i] *= phrex_train_dropout_scale(site_key, first + i, p);
}

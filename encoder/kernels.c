#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// The element-wise functions below are written branch-free in plain C so
// that GCC vectorises the loops calling them (16 lanes with AVX-512) without
// -ffast-math: selects instead of branches, a magic-number round instead of
// rintf, memcpy for bit casts, fmaf for contractions (-std=c11 turns off
// implicit FMA contraction). `#pragma omp simd` on each loop tells GCC that
// rows never overlap in a way that matters (out may equal x), which it
// could not prove, and lets it reorder the reductions.
//
// -march=native on Sapphire Rapids defaults GCC to 256-bit vectors; these
// loops are compute-bound (GELU is ~40 operations per element), so ask for
// 512. The option is a no-op on machines without AVX-512.
#pragma GCC target("prefer-vector-width=512")

// --- exp -----------------------------------------------------------------------

// Below this 2^k would need a subnormal scale; e^-86.9 ~ 2e-38 is zero for
// every use here (softmax weights, GELU tails).
#define EXP_LO -86.9f
#define EXP_HI 88.3f // keeps 2^k finite; only NaN-ish inputs come near

// exp(x) = 2^k · e^r with k = round(x/ln2) and |r| <= ln2/2. The degree-7
// Taylor polynomial's truncation error there is 5e-9 relative, below float
// rounding, so the result is within ~2 ulp of expf.
static inline float exp_f(float x) {
    float xc = x < EXP_LO ? EXP_LO : x;
    xc = xc > EXP_HI ? EXP_HI : xc;
    // Adding 1.5·2^23 rounds to an integer in the low mantissa bits.
    float k = fmaf(xc, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
    float r = fmaf(k, -0.693145751953125f, xc); // ln2 high part: k·hi is exact
    r = fmaf(k, -1.42860682030941723e-6f, r);   // ln2 low part
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    // Scale by 2^k by adding k to the exponent field: p is in [0.7, 1.42]
    // and k >= -125, so the exponent stays normal.
    int32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)k * (1 << 23);
    memcpy(&p, &bits, sizeof p);
    return x < EXP_LO ? 0.0f : p;
}

// --- GELU ----------------------------------------------------------------------

// gelu(x) = x·Φ(x) = x·erfc(-x/√2)/2. Going through erfc(|x|/√2) keeps the
// left tail accurate in relative terms (x·Φ(x) is tiny there), and for x > 0
// x - x·erfc(z)/2 subtracts a small correction from x, losing nothing.
// erfc uses the Chebyshev fit of Numerical Recipes (erfcc, "fractional
// error everywhere less than 1.2e-7"): erfc(z) = t·exp(-z² + P(t)),
// t = 1/(1 + z/2). The absolute error of gelu is then below 0.5·|x|·erfc·1.2e-7
// which peaks near 2e-8.
static inline float gelu_f(float x) {
    float z = fabsf(x) * 0.707106781186547524f;
    z = z < 10.0f ? z : 10.0f; // erfc(10) ~ 2e-45: already zero
    float t = 1.0f / fmaf(0.5f, z, 1.0f);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    float erfc = t * exp_f(fmaf(-z, z, p));
    float h = 0.5f * x * erfc;
    return x > 0.0f ? x - h : h;
}

#if defined(__AVX512F__)
// --- the same, 16 lanes at a time ------------------------------------------------

// exp_f's arithmetic in intrinsics (GCC vectorises exp_f fine in plain
// loops, but softmax and the GELU epilogue want it on registers they hold).
// Same constants and operation order, so both agree bit for bit.
static inline __m512 exp_v(__m512 x) {
    const __m512 lo = _mm512_set1_ps(EXP_LO), hi = _mm512_set1_ps(EXP_HI), magic = _mm512_set1_ps(12582912.0f);
    // max(lo, x) and min(hi, ·) return their second operand when it is NaN,
    // so NaN still propagates as in the scalar version.
    __m512 xc = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
    __m512 k = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic), magic);
    __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693145751953125f), xc);
    r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(_mm512_cvttps_epi32(k), 23));
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    return _mm512_mask_mov_ps(_mm512_castsi512_ps(bits), under, _mm512_setzero_ps());
}

// gelu_f in intrinsics, except that t = 1/(1 + z/2) comes from rcp14 and
// one Newton step (relative error ~2^-28, under float rounding) instead of
// a division, whose throughput bounded the scalar-loop version.
static inline __m512 gelu_v(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.707106781186547524f));
    z = _mm512_min_ps(_mm512_set1_ps(10.0f), z);
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one);
    __m512 t = _mm512_rcp14_ps(d);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f))); // t·(2 - d·t)
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    __m512 erfc = _mm512_mul_ps(t, exp_v(_mm512_fnmadd_ps(z, z, p)));
    __m512 h = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), erfc);
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_sub_ps(h, pos, x, h); // x > 0 ? x - h : h
}

// The tail mask for the last n % 16 (or 16) elements.
static inline __mmask16 tail_mask(size_t left) { return left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1); }

static void exp_map(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp_v(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void gelu_map(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, gelu_v(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
#else
static void exp_map(float *y, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = exp_f(x[i]);
}

static void gelu_map(float *y, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = gelu_f(x[i]);
}
#endif

void phrex_exp_forward(float *y, const float *x, size_t n) { exp_map(y, x, n); }

void phrex_gelu_forward(float *y, const float *x, size_t n) { gelu_map(y, x, n); }

void phrex_bias_gelu_forward(float *x, const float *bias, int n, int d) {
    for (int i = 0; i < n; i++) {
        float *row = x + (size_t)i * d;
        if (bias) {
#pragma omp simd
            for (int j = 0; j < d; j++) row[j] += bias[j];
        }
        gelu_map(row, row, (size_t)d);
    }
}

// --- linear --------------------------------------------------------------------

// What a linear kernel does with an output tile once it is summed.
typedef enum {
    EPI_STORE, // y = acc + bias
    EPI_ACC,   // y += acc
    EPI_GELU,  // y = gelu(acc + bias)
} epilogue;

// --- row-major f32 via OpenBLAS --------------------------------------------------

// y (n, rows) = beta·y + x (n, cols) · Wᵀ. CblasTrans reads nn.Linear's
// (out, in) layout in place; OpenBLAS packs it either way.
static void sgemm_linear(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                         const float *bias, epilogue epi) {
    // The bias is written into y first and sgemm accumulates onto it (beta
    // = 1): with beta = 0 OpenBLAS would make a pass zeroing y anyway.
    if (epi != EPI_ACC && bias)
        for (int i = 0; i < n; i++) memcpy(y + (size_t)i * ldy, bias, (size_t)w->rows * sizeof *y);
    float beta = epi == EPI_ACC || bias ? 1.0f : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w->rows, w->cols, 1.0f, x, ldx, (const float *)w->data,
                w->ld, beta, y, ldy);
    if (epi == EPI_GELU)
        for (int i = 0; i < n; i++) gelu_map(y + (size_t)i * ldy, y + (size_t)i * ldy, (size_t)w->rows);
}

// --- packed panels ---------------------------------------------------------------

size_t phrex_matrix_panels_floats(int rows, int cols) {
    size_t panels = ((size_t)rows + PHREX_PANEL - 1) / PHREX_PANEL;
    return panels * PHREX_PANEL * (size_t)cols;
}

phrex_matrix phrex_matrix_pack_panels(float *dst, const float *w, int rows, int cols, int ld) {
    int panels = (rows + PHREX_PANEL - 1) / PHREX_PANEL;
    for (int p = 0; p < panels; p++) {
        float *panel = dst + (size_t)p * PHREX_PANEL * cols;
        for (int k = 0; k < cols; k++)
            for (int j = 0; j < PHREX_PANEL; j++) {
                int r = p * PHREX_PANEL + j;
                panel[(size_t)k * PHREX_PANEL + j] = r < rows ? w[(size_t)r * ld + k] : 0.0f;
            }
    }
    return (phrex_matrix){PHREX_MATRIX_F32_PANELS, rows, cols, PHREX_PANEL * cols, dst};
}

phrex_matrix phrex_matrix_pack_panels_t(float *dst, const float *wt, int rows, int cols, int ld) {
    int panels = (rows + PHREX_PANEL - 1) / PHREX_PANEL;
    for (int p = 0; p < panels; p++) {
        float *panel = dst + (size_t)p * PHREX_PANEL * cols;
        int r0 = p * PHREX_PANEL, valid = rows - r0 < PHREX_PANEL ? rows - r0 : PHREX_PANEL;
        // Panel row k is a run of row k of wt: a copy, padded with zeros.
        for (int k = 0; k < cols; k++) {
            memcpy(panel + (size_t)k * PHREX_PANEL, wt + (size_t)k * ld + r0, (size_t)valid * sizeof *dst);
            for (int j = valid; j < PHREX_PANEL; j++) panel[(size_t)k * PHREX_PANEL + j] = 0.0f;
        }
    }
    return (phrex_matrix){PHREX_MATRIX_F32_PANELS, rows, cols, PHREX_PANEL * cols, dst};
}

// Rows of x per micro-tile: 12 rows x 32 columns is 24 accumulators, which
// with the two weight vectors and a broadcast fits AVX-512's 32 registers.
#define TILE_ROWS 12
#define PREFETCH_MAX_ROWS (4 * TILE_ROWS)

#if defined(__AVX512F__)
// One micro-tile: y[r][0..valid) for r < rows (a constant at every call
// site, so the loops unroll into registers) from x rows and one panel.
// Per k: two aligned loads of the panel, one broadcast per row, 2·rows FMAs.
// next: the panel to prefetch into L2 meanwhile, or NULL.
static inline __attribute__((always_inline)) void tile_avx512(const int rows, const float *x, int ldx,
                                                              const float *panel, const float *next, int K,
                                                              float *y, int ldy, const float *bias, int valid,
                                                              epilogue epi) {
    __m512 acc0[TILE_ROWS], acc1[TILE_ROWS];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    // Rows 3i, 3i+1, 3i+2 are read through one pointer per group plus the
    // row stride (x86 addresses base + stride·4 and base + stride·8), so the
    // 12 rows need 4 pointers and 1 stride instead of 12 registers.
    const float *xg[TILE_ROWS / 3];
    for (int g = 0; g < TILE_ROWS / 3; g++) xg[g] = x + (size_t)(3 * g) * ldx;
    const size_t s = (size_t)ldx;
#pragma GCC unroll 4
    for (int k = 0; k < K; k++) {
        if (next) { // the same two lines of the next panel: keeps memory busy while we compute
            _mm_prefetch((const char *)(next + (size_t)k * PHREX_PANEL), _MM_HINT_T1);
            _mm_prefetch((const char *)(next + (size_t)k * PHREX_PANEL + 16), _MM_HINT_T1);
        }
        __m512 w0 = _mm512_load_ps(panel + (size_t)k * PHREX_PANEL);
        __m512 w1 = _mm512_load_ps(panel + (size_t)k * PHREX_PANEL + 16);
        for (int r = 0; r < rows; r++) {
            __m512 b = _mm512_set1_ps(xg[r / 3][(r % 3) * s + k]);
            acc0[r] = _mm512_fmadd_ps(w0, b, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(w1, b, acc1[r]);
        }
    }
    __mmask16 m0 = valid >= 16 ? 0xffff : (__mmask16)((1u << valid) - 1);
    __mmask16 m1 = valid >= 32 ? 0xffff : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (bias && epi != EPI_ACC) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * ldy;
        __m512 v0 = _mm512_add_ps(acc0[r], b0), v1 = _mm512_add_ps(acc1[r], b1);
        if (epi == EPI_ACC) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
    // GELU once every accumulator is stored: its ~20 constants then have
    // the registers to themselves (interleaved with the stores it spilled
    // and ran 2.5x slower). The tile is still in L1.
    if (epi == EPI_GELU)
        for (int r = 0; r < rows; r++) {
            float *yr = y + (size_t)r * ldy;
            _mm512_mask_storeu_ps(yr, m0, gelu_v(_mm512_maskz_loadu_ps(m0, yr)));
            _mm512_mask_storeu_ps(yr + 16, m1, gelu_v(_mm512_maskz_loadu_ps(m1, yr + 16)));
        }
}

#define TILE(R) tile_avx512(R, x, ldx, panel, next, K, y, ldy, bias, valid, epi)
#else

// Portable fallback with the same contract and the same arithmetic (each
// output a chain of FMAs over k ascending, then the bias), so results match
// the AVX-512 tiles bit for bit. The j loop is innermost so it vectorises.
static void tile_scalar(int rows, const float *x, int ldx, const float *panel, int K, float *y, int ldy,
                        const float *bias, int valid, epilogue epi) {
    for (int r = 0; r < rows; r++) {
        float acc[PHREX_PANEL] = {0};
        for (int k = 0; k < K; k++) {
            float xk = x[(size_t)r * ldx + k];
            for (int j = 0; j < PHREX_PANEL; j++) acc[j] = fmaf(panel[(size_t)k * PHREX_PANEL + j], xk, acc[j]);
        }
        float *yr = y + (size_t)r * ldy;
        for (int j = 0; j < valid; j++) yr[j] = acc[j] + (epi == EPI_ACC ? yr[j] : bias ? bias[j] : 0.0f);
        if (epi == EPI_GELU) gelu_map(yr, yr, (size_t)valid);
    }
}

#define TILE(R) tile_scalar(R, x, ldx, panel, K, y, ldy, bias, valid, epi) /* no prefetch */
#endif

// Rows r0.. of one panel (columns 32p..) in micro-tiles of TILE_ROWS. The
// first tile streams the panel from memory and prefetches `next`; the others
// find both in cache.
static void panel_rows(const float *x, int ldx, int n, const float *panel, const float *next, int K, float *y,
                       int ldy, const float *bias, int valid, epilogue epi) {
    (void)next; // unused by the portable tile
    for (int r0 = 0; r0 < n; r0 += TILE_ROWS, x += (size_t)TILE_ROWS * ldx, y += (size_t)TILE_ROWS * ldy,
             next = NULL) {
        switch (n - r0 < TILE_ROWS ? n - r0 : TILE_ROWS) {
        case 12: TILE(12); break;
        case 11: TILE(11); break;
        case 10: TILE(10); break;
        case 9: TILE(9); break;
        case 8: TILE(8); break;
        case 7: TILE(7); break;
        case 6: TILE(6); break;
        case 5: TILE(5); break;
        case 4: TILE(4); break;
        case 3: TILE(3); break;
        case 2: TILE(2); break;
        default: TILE(1); break;
        }
    }
}

// Panel-outer: a panel (K x 32 floats, 48 KB at K = 384) is read from
// memory once and reused from L1/L2 by every row tile; the x rows are
// re-read per panel, from L2. Outside a parallel region the panels are
// split between threads, each streaming its share of the weights: that is
// what bounds a short batch.
static void panels_linear(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                          const float *bias, epilogue epi) {
    int panels = (w->rows + PHREX_PANEL - 1) / PHREX_PANEL, K = w->cols;
    // With few rows each panel is used by a tile or two and the kernel waits
    // on memory: prefetching the next panel makes a short batch ~25% faster.
    // With many rows the panel is reused from cache and prefetches only
    // take load slots (~2% slower).
    int prefetch = n <= PREFETCH_MAX_ROWS;
#pragma omp parallel for schedule(static) if (panels > 1 && !omp_in_parallel() && omp_get_max_threads() > 1)
    for (int p = 0; p < panels; p++) {
        int c0 = p * PHREX_PANEL, valid = w->rows - c0 < PHREX_PANEL ? w->rows - c0 : PHREX_PANEL;
        const float *panel = (const float *)w->data + (size_t)p * w->ld;
        const float *next = prefetch && p + 1 < panels ? panel + w->ld : NULL;
        panel_rows(x, ldx, n, panel, next, K, y + c0, ldy, bias ? bias + c0 : NULL, valid, epi);
    }
}

static void linear(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w, const float *bias,
                   epilogue epi) {
    if (n <= 0) return;
    switch (w->dtype) {
    case PHREX_MATRIX_F32:
        sgemm_linear(y, ldy, x, ldx, n, w, bias, epi);
        break;
    case PHREX_MATRIX_F32_PANELS:
        panels_linear(y, ldy, x, ldx, n, w, bias, epi);
        break;
    }
}

void phrex_linear_forward(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                          const float *bias) {
    linear(y, ldy, x, ldx, n, w, bias, EPI_STORE);
}

void phrex_linear_forward_acc(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w) {
    linear(y, ldy, x, ldx, n, w, NULL, EPI_ACC);
}

void phrex_linear_gelu_forward(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                               const float *bias) {
    linear(y, ldy, x, ldx, n, w, bias, EPI_GELU);
}

// --- LayerNorm -----------------------------------------------------------------

// Over the (L1-resident) row: the sum, then the variance of the centred
// values, which stays exact where E[x²] - E[x]² would cancel.
static void add_layernorm_row(float *out, const float *x, const float *r, const float *gamma, const float *beta,
                              int d, float eps, float *mean_out, float *rstd_out) {
    float sum = 0.0f;
    if (r) {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < d; j++) {
            float v = x[j] + r[j];
            out[j] = v;
            sum += v;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < d; j++) {
            out[j] = x[j];
            sum += x[j];
        }
    }
    float mean = sum / (float)d;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int j = 0; j < d; j++) {
        float c = out[j] - mean;
        sq = fmaf(c, c, sq);
    }
    float rstd = 1.0f / sqrtf(sq / (float)d + eps);
#pragma omp simd
    for (int j = 0; j < d; j++) out[j] = fmaf((out[j] - mean) * rstd, gamma[j], beta[j]);
    if (mean_out) *mean_out = mean;
    if (rstd_out) *rstd_out = rstd;
}

void phrex_add_layernorm_forward(float *out, const float *x, const float *r, const float *gamma, const float *beta,
                                 int n, int d, float eps, float *mean, float *rstd) {
    for (int i = 0; i < n; i++) {
        size_t o = (size_t)i * d;
        add_layernorm_row(out + o, x + o, r ? r + o : NULL, gamma, beta, d, eps, mean ? mean + i : NULL,
                          rstd ? rstd + i : NULL);
    }
}

// --- softmax -------------------------------------------------------------------

// softmax(scale · x): the max is taken before scaling (scale > 0), so the
// largest exponent is exactly 0. Three passes over an L1-resident row.
#if defined(__AVX512F__)
static void softmax_row(float *x, int d, float scale) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < d; j += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail_mask((size_t)(d - j)), x + j));
    __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), s = _mm512_set1_ps(scale), sum = _mm512_setzero_ps();
    for (int j = 0; j < d; j += 16) {
        __mmask16 m = tail_mask((size_t)(d - j));
        __m512 e = exp_v(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), max), s));
        _mm512_mask_storeu_ps(x + j, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum)); // sum >= 1: the max gives exp(0)
    for (int j = 0; j < d; j += 16) {
        __mmask16 m = tail_mask((size_t)(d - j));
        _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), inv));
    }
}
#else
static void softmax_row(float *x, int d, float scale) {
    float max = -INFINITY;
#pragma omp simd reduction(max : max)
    for (int j = 0; j < d; j++) max = x[j] > max ? x[j] : max;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < d; j++) {
        float e = exp_f((x[j] - max) * scale);
        x[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum; // sum >= 1: the max contributes exp(0)
#pragma omp simd
    for (int j = 0; j < d; j++) x[j] *= inv;
}
#endif

void phrex_softmax_forward(float *x, int n, int d, int ld, float scale) {
    for (int i = 0; i < n; i++) softmax_row(x + (size_t)i * ld, d, scale);
}

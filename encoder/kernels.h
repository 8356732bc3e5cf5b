// Numeric kernels of the transformer forward pass. Row-major throughout;
// `n` rows of `d` columns. Each works on the rows it is given; only the
// linear layers spawn threads, and only when called outside a parallel
// region, so callers parallelise by handing disjoint row blocks to
// different threads (OpenBLAS's OpenMP build, like our kernels, then runs
// single-threaded).
//
// Every forward kernel keeps what a backward kernel would need recoverable
// (LayerNorm can hand back its mean and 1/std), so backward passes can sit
// beside these later.
#ifndef PHREX_KERNELS_H
#define PHREX_KERNELS_H

#include <stddef.h>

// Storage of a weight matrix. A bf16 or int8 path adds a dtype here (with its
// scales) and a branch in the linear kernels.
typedef enum {
    // Row-major (rows, ld), multiplied with OpenBLAS sgemm. OpenBLAS packs
    // the weights into its own layout on every call, which for a layer's
    // 7 MB (L3, not L2) costs ~15% of the call at a few hundred rows.
    PHREX_MATRIX_F32 = 0,
    // Packed once at load: panels of PHREX_PANEL rows (output features),
    // each k-major, i.e. panel p holds W[32p + j][k] at [k·32 + j]. Our own
    // kernel streams a panel with two aligned vector loads per k and never
    // repacks; rows are zero-padded to a multiple of 32.
    PHREX_MATRIX_F32_PANELS = 1,
} phrex_matrix_dtype;

#define PHREX_PANEL 32 // two AVX-512 vectors

// A weight matrix as nn.Linear stores it, (rows = out features, cols = in
// features), so y = x·Wᵀ. ld: F32: elements between rows; PANELS: elements
// between panels. With ld a slice of a bigger matrix is a matrix too.
typedef struct {
    phrex_matrix_dtype dtype;
    int rows;
    int cols;
    int ld;
    const void *data; // 64-byte aligned for PANELS
} phrex_matrix;

static inline phrex_matrix phrex_matrix_f32(const float *data, int rows, int cols) {
    return (phrex_matrix){PHREX_MATRIX_F32, rows, cols, cols, data};
}

// Floats a packed copy of a (rows, cols) matrix takes.
size_t phrex_matrix_panels_floats(int rows, int cols);

// Packs w (rows, cols), row stride ld, into dst (phrex_matrix_panels_floats
// floats, 64-byte aligned) and describes the result.
phrex_matrix phrex_matrix_pack_panels(float *dst, const float *w, int rows, int cols, int ld);

// The same from wt = Wᵀ, stored (cols, rows) at row stride ld: packs
// activations used as weights (attention's values) without a transpose.
phrex_matrix phrex_matrix_pack_panels_t(float *dst, const float *wt, int rows, int cols, int ld);

// Rows [row0, row0 + rows) and columns [col0, col0 + cols) of w. For PANELS
// row0 must be a multiple of PHREX_PANEL.
static inline phrex_matrix phrex_matrix_slice(const phrex_matrix *w, int row0, int rows, int col0, int cols) {
    const float *p = (const float *)w->data;
    if (w->dtype == PHREX_MATRIX_F32_PANELS)
        p += (size_t)(row0 / PHREX_PANEL) * w->ld + (size_t)col0 * PHREX_PANEL;
    else
        p += (size_t)row0 * w->ld + col0;
    return (phrex_matrix){w->dtype, rows, cols, w->ld, p};
}

// y = x·Wᵀ + bias.
// x: (n, w->cols), row stride ldx; y: (n, w->rows), row stride ldy;
// bias: (w->rows) or NULL (then y = x·Wᵀ).
// Called outside a parallel region, splits the work over phrex_get_threads()
// threads (OpenBLAS, or our kernel over panels); inside one, runs on the
// calling thread.
void phrex_linear_forward(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                          const float *bias);

// y += x·Wᵀ, same shapes: sums a linear layer over slices of its inputs.
void phrex_linear_forward_acc(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w);

// y = gelu(x·Wᵀ + bias), same shapes: the FFN's first layer with its
// activation applied while the output tile is still in registers or L1.
void phrex_linear_gelu_forward(float *y, int ldy, const float *x, int ldx, int n, const phrex_matrix *w,
                               const float *bias);

// x = gelu(x + bias), in place, with the exact (erf) GELU of BERT.
// x: (n, d); bias: (d) or NULL.
void phrex_bias_gelu_forward(float *x, const float *bias, int n, int d);

// out = LayerNorm(x + r) · gamma + beta, normalising each row of d.
// x, r, out: (n, d), contiguous; out may be x or r. r may be NULL (plain LN).
// mean, rstd: (n) or NULL, saved for a backward pass.
void phrex_add_layernorm_forward(float *out, const float *x, const float *r, const float *gamma, const float *beta,
                                 int n, int d, float eps, float *mean, float *rstd);

// Each of n rows of d, at row stride ld, replaced by softmax(scale · row)
// (scale > 0: attention's 1/√D folded in).
void phrex_softmax_forward(float *x, int n, int d, int ld, float scale);

// Element-wise approximations used above, exposed so tests can hold them to
// libm: y[i] = exp(x[i]) (relative error ~2 ulp; 0 below -87.3) and
// y[i] = gelu(x[i]) = x·Φ(x) (absolute error below 1e-7 for |x| < 10).
void phrex_exp_forward(float *y, const float *x, size_t n);
void phrex_gelu_forward(float *y, const float *x, size_t n);

#endif

// The training machinery around the gradients: the training forward equals
// the inference forward (phrex_encoder_forward) on MiniLM, checkpoints load
// back through phrex_bert_init, a smaller model takes the base's lower
// layers, AdamW matches a double-precision transcription of its formula,
// the safetensors writer round-trips through our reader, and a run that is
// stopped, saved and resumed ends bit-identical to one that never stopped.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka after the standard headers it needs
#include <cmocka.h>

#include "common/error.h"
#include "tests/support/test_support.h"
#include "encoder/adamw.h"
#include "encoder/bert.h"
#include "encoder/checkpoint.h"
#include "encoder/safetensors.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"
#include "encoder/wordpiece.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Training forward vs inference forward: same f32 math, different kernels
// (sgemm + libm erf/exp vs packed-panel kernels + polynomial exp/GELU) and
// summation orders. Outputs are LayerNorm'd (|x| ~ 1); measured ~2e-6.
#define FORWARD_TOL 2e-5f

static char tmp_dir[256];

// --- helpers ---------------------------------------------------------------------

// Up to max_seqs real texts tokenized as [CLS] text [SEP] (cut at max_len):
// NQ questions and SQuAD paragraphs from the shared data dir.
typedef struct {
    int32_t ids[4096], types[4096], lens[16];
    int n_seqs, n_tokens;
} batch;

static void add_line(batch *b, const phrex_wordpiece *wp, const char *text, int max_len, int type_split) {
    phrex_tokens t;
    assert_int_equal(phrex_tokens_init(&t, 64), PHREX_OK);
    assert_int_equal(phrex_wordpiece_encode(wp, text, strlen(text), &t), PHREX_OK);
    int n = t.n < max_len - 2 ? t.n : max_len - 2, at = b->n_tokens;
    b->ids[at] = phrex_wordpiece_special(wp, PHREX_SPECIAL_CLS);
    for (int i = 0; i < n; i++) b->ids[at + 1 + i] = t.ids[i];
    b->ids[at + n + 1] = phrex_wordpiece_special(wp, PHREX_SPECIAL_SEP);
    for (int i = 0; i < n + 2; i++) b->types[at + i] = type_split && i > (n + 2) / 2 ? 1 : 0;
    b->lens[b->n_seqs++] = n + 2;
    b->n_tokens += n + 2;
    phrex_tokens_free(&t);
}

static void real_batch(batch *b) {
    memset(b, 0, sizeof *b);
    phrex_wordpiece *wp;
    assert_int_equal(phrex_wordpiece_init(&wp, PHREX_BASE_MODEL_DIR "/vocab.txt", 1), PHREX_OK);
    char line[16384];
    FILE *f = fopen(PHREX_SHARED_DIR "/data/odqa-qa-lists/jsonl/nq-test.jsonl", "r");
    assert_non_null(f);
    for (int i = 0; i < 3 && fgets(line, sizeof line, f); i++) add_line(b, wp, line, 64, i == 2);
    fclose(f);
    f = fopen(PHREX_SHARED_DIR "/data/wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv", "r");
    assert_non_null(f);
    for (int i = 0; i < 3 && fgets(line, sizeof line, f); i++)
        if (i > 0) add_line(b, wp, line, i == 1 ? 384 : 200, 0); // line 0 is the TSV header
    fclose(f);
    phrex_wordpiece_free(wp);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

// Inference forward of the model in dir on b, into a fresh (N, C) array.
static float *infer(const char *dir, const batch *b) {
    phrex_bert *m;
    if (phrex_bert_init(&m, dir) != PHREX_OK) fail_msg("%s", phrex_last_error());
    phrex_encoder *enc;
    assert_int_equal(phrex_encoder_init(&enc, m, b->n_tokens), PHREX_OK);
    float *out = malloc((size_t)b->n_tokens * phrex_bert_get_config(m)->hidden_size * sizeof *out);
    assert_int_equal(phrex_encoder_forward(enc, b->ids, b->types, b->lens, b->n_seqs, out), PHREX_OK);
    phrex_encoder_free(enc);
    phrex_bert_free(m);
    return out;
}

static float *train_forward(phrex_train_bert *m, const batch *b) {
    phrex_train_encoder *e;
    assert_int_equal(phrex_train_encoder_init(&e, m, b->n_tokens, 384), PHREX_OK);
    const float *out;
    if (phrex_train_encoder_forward(e, b->ids, b->types, b->lens, b->n_seqs, &out) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    size_t n = (size_t)b->n_tokens * phrex_train_bert_config(m)->hidden_size;
    float *copy = malloc(n * sizeof *copy);
    memcpy(copy, out, n * sizeof *copy);
    phrex_train_encoder_free(e);
    return copy;
}

// --- the training forward is the inference forward ----------------------------------

static void test_forward_matches_inference(void **state) {
    (void)state;
    batch b;
    real_batch(&b);
    phrex_train_bert *m;
    if (phrex_train_bert_init(&m, PHREX_BASE_MODEL_DIR, NULL) != PHREX_OK) fail_msg("%s", phrex_last_error());
    float *train = train_forward(m, &b), *ref = infer(PHREX_BASE_MODEL_DIR, &b);
    float d = max_abs_diff(train, ref, (size_t)b.n_tokens * 384);
    printf("  %d sequences, %d tokens: max |train - inference| = %.2e\n", b.n_seqs, b.n_tokens, d);
    assert_true(d <= FORWARD_TOL);
    free(train), free(ref);
    phrex_train_bert_free(m);
}

static void test_backward_deterministic(void **state) {
    (void)state;
    // Real sizes (MiniLM's lower 2 layers, 403 real tokens, 2 threads: the
    // sgemms and column sums do split over threads here): two backward
    // passes give bit-identical gradients, as resuming relies on.
    batch b;
    real_batch(&b);
    phrex_train_bert *m;
    phrex_train_bert_options two = {.num_layers = 2};
    assert_int_equal(phrex_train_bert_init(&m, PHREX_BASE_MODEL_DIR, &two), PHREX_OK);
    phrex_train_encoder *e;
    assert_int_equal(phrex_train_encoder_init(&e, m, b.n_tokens, 384), PHREX_OK);
    phrex_train_params p = phrex_train_bert_params(m);
    size_t n = (size_t)b.n_tokens * 384;
    float *dout = malloc(n * sizeof *dout), *first = malloc(p.n_grads * sizeof *first);
    phrex_rng rng = phrex_rng_init(5);
    for (size_t i = 0; i < n; i++) dout[i] = phrex_rng_symmetric(&rng);
    for (int run = 0; run < 2; run++) {
        const float *out;
        phrex_train_bert_zero_grads(m);
        assert_int_equal(phrex_train_encoder_forward(e, b.ids, b.types, b.lens, b.n_seqs, &out), PHREX_OK);
        assert_int_equal(phrex_train_encoder_backward(e, dout), PHREX_OK);
        if (run == 0) memcpy(first, p.grads, p.n_grads * sizeof *first);
    }
    assert_memory_equal(first, p.grads, p.n_grads * sizeof *first);
    free(dout), free(first);
    phrex_train_encoder_free(e);
    phrex_train_bert_free(m);
}

// --- checkpoints --------------------------------------------------------------------

static void test_checkpoint_round_trip(void **state) {
    (void)state;
    batch b;
    real_batch(&b);
    phrex_train_bert *m;
    assert_int_equal(phrex_train_bert_init(&m, PHREX_BASE_MODEL_DIR, NULL), PHREX_OK);
    // Perturb the weights so that the check cannot pass by reading the base.
    phrex_train_params p = phrex_train_bert_params(m);
    phrex_rng rng = phrex_rng_init(3);
    for (size_t i = 0; i < p.n_params; i++) p.params[i] += 1e-3f * phrex_rng_symmetric(&rng);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/ckpt_f32", tmp_dir);
    if (phrex_checkpoint_save_model(dir, m, PHREX_DTYPE_F32, PHREX_BASE_MODEL_DIR) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    // F32: the inference model is the one we trained, bit for bit, so its
    // forward is exactly what phrex_bert_init of the same weights gives.
    phrex_train_bert *back;
    assert_int_equal(phrex_train_bert_init(&back, dir, NULL), PHREX_OK);
    assert_memory_equal(phrex_train_bert_params(back).params, p.params, p.n_params * sizeof(float));
    float *train = train_forward(m, &b), *ref = infer(dir, &b);
    float d = max_abs_diff(train, ref, (size_t)b.n_tokens * 384);
    printf("  F32 checkpoint: max |train - inference of checkpoint| = %.2e\n", d);
    assert_true(d <= FORWARD_TOL);
    // The tokenizer files came along: the directory is a complete model.
    struct stat st;
    char path[400];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    assert_int_equal(stat(path, &st), 0);
    // F16 halves the file and rounds each weight by <= 2^-11 relative.
    snprintf(dir, sizeof dir, "%s/ckpt_f16", tmp_dir);
    assert_int_equal(phrex_checkpoint_save_model(dir, m, PHREX_DTYPE_F16, NULL), PHREX_OK);
    float *half = infer(dir, &b);
    d = max_abs_diff(train, half, (size_t)b.n_tokens * 384);
    printf("  F16 checkpoint: max |train - inference of checkpoint| = %.2e\n", d);
    assert_true(d <= 0.1f);
    free(train), free(ref), free(half);
    phrex_train_bert_free(back);
    phrex_train_bert_free(m);
}

static void test_lower_layers(void **state) {
    (void)state;
    // A 2-layer model from the base: its buffer is the base buffer's prefix
    // (embeddings, then layers in order), and a checkpoint of it is a
    // 2-layer BERT that the inference path runs the same.
    batch b;
    real_batch(&b);
    phrex_train_bert *base, *small;
    phrex_train_bert_options two = {.num_layers = 2, .freeze_word_embeddings = 1};
    assert_int_equal(phrex_train_bert_init(&base, PHREX_BASE_MODEL_DIR, NULL), PHREX_OK);
    assert_int_equal(phrex_train_bert_init(&small, PHREX_BASE_MODEL_DIR, &two), PHREX_OK);
    phrex_train_params pb = phrex_train_bert_params(base), ps = phrex_train_bert_params(small);
    assert_int_equal(phrex_train_bert_config(small)->num_hidden_layers, 2);
    assert_true(ps.n_params < pb.n_params);
    assert_memory_equal(ps.params, pb.params, ps.n_params * sizeof(float));
    char dir[300];
    snprintf(dir, sizeof dir, "%s/ckpt_2layers", tmp_dir);
    assert_int_equal(phrex_checkpoint_save_model(dir, small, PHREX_DTYPE_F32, PHREX_BASE_MODEL_DIR), PHREX_OK);
    float *train = train_forward(small, &b), *ref = infer(dir, &b);
    assert_true(max_abs_diff(train, ref, (size_t)b.n_tokens * 384) <= FORWARD_TOL);
    free(train), free(ref);
    phrex_train_bert_free(base);
    phrex_train_bert_free(small);
}

// --- safetensors writer --------------------------------------------------------------

static void test_f16_conversion(void **state) {
    (void)state;
    // Every finite half and infinity converts back to itself...
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; // NaN payloads
        assert_int_equal(phrex_f32_to_f16(phrex_f16_to_f32((uint16_t)h)), h);
    }
    // ...and halfway values round to the even neighbour, above it away.
    float one = 1.0f, ulp = 0x1p-10f;
    assert_int_equal(phrex_f32_to_f16(one + ulp / 2), 0x3c00);          // tie -> even (1.0)
    assert_int_equal(phrex_f32_to_f16(one + 1.5f * ulp), 0x3c02);       // tie -> even (1 + 2ulp)
    assert_int_equal(phrex_f32_to_f16(one + ulp / 2 + 0x1p-20f), 0x3c01);
    assert_int_equal(phrex_f32_to_f16(65520.0f), 0x7c00);               // past the largest half
    assert_int_equal(phrex_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(phrex_f32_to_f16(0x1p-25f), 0x0000);               // tie with 0 -> 0
    assert_int_equal(phrex_f32_to_f16(0x1.8p-24f), 0x0002);             // tie 1.5 -> 2
    assert_int_equal(phrex_f32_to_f16(-0x1p-14f), 0x8400);              // smallest normal
    assert_true((phrex_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (phrex_f32_to_f16(NAN) & 0x3ff));
}

static void test_safetensors_write(void **state) {
    (void)state;
    float a[6] = {1, -2, 3.5f, 1e-3f, 70000.0f, -0.0f}, b[3] = {0.1f, 0.2f, 0.3f};
    phrex_safetensors_entry e[2] = {{.name = "a.weight", .data = a, .ndim = 2, .shape = {2, 3}},
                                    {.name = "b", .data = b, .ndim = 1, .shape = {3}}};
    static const char *const meta[] = {"format", "pt"};
    char path[300];
    for (int k = 0; k < 2; k++) {
        phrex_dtype dt = k ? PHREX_DTYPE_F16 : PHREX_DTYPE_F32;
        snprintf(path, sizeof path, "%s/t%d.safetensors", tmp_dir, k);
        assert_int_equal(phrex_safetensors_write(path, e, 2, dt, meta, 1), PHREX_OK);
        phrex_safetensors st;
        if (phrex_safetensors_init(&st, path) != PHREX_OK) fail_msg("%s", phrex_last_error());
        const phrex_safetensors_tensor *t = phrex_safetensors_find(&st, "a.weight");
        assert_non_null(t);
        assert_int_equal(t->dtype, dt);
        assert_true(t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
        assert_int_equal((size_t)(st.data - st.map) % 8, 0); // data section 8-byte aligned
        float got[6];
        int64_t shape[2] = {2, 3};
        assert_int_equal(phrex_safetensors_read_f32(&st, "a.weight", 2, shape, got), PHREX_OK);
        for (int i = 0; i < 6; i++) {
            float want = k ? phrex_f16_to_f32(phrex_f32_to_f16(a[i])) : a[i];
            assert_memory_equal(&got[i], &want, sizeof want); // -0 stays -0; 70000 -> inf in F16
        }
        // __metadata__ is in the header.
        assert_non_null(memmem(st.map, st.data - st.map, "\"__metadata__\":{\"format\":\"pt\"}", 30));
        phrex_safetensors_free(&st);
    }
    // Duplicate names and other dtypes are refused.
    phrex_safetensors_entry dup[2] = {{.name = "x", .data = b, .ndim = 1, .shape = {3}},
                                      {.name = "x", .data = b, .ndim = 1, .shape = {3}}};
    assert_int_equal(phrex_safetensors_write(path, dup, 2, PHREX_DTYPE_F32, NULL, 0), PHREX_ERR_INPUT);
    assert_int_equal(phrex_safetensors_write(path, e, 2, PHREX_DTYPE_BF16, NULL, 0), PHREX_ERR_INPUT);
}

// --- AdamW ------------------------------------------------------------------------

static void test_lr_schedule(void **state) {
    (void)state;
    phrex_adamw_config c = {.lr = 1.0f, .warmup_steps = 4, .total_steps = 12};
    const float want[13] = {0, 0.25f, 0.5f, 0.75f, 1.0f, 0.875f, 0.75f, 0.625f, 0.5f, 0.375f, 0.25f, 0.125f, 0};
    for (int t = 1; t <= 12; t++) assert_float_equal(phrex_adamw_lr_at(&c, t), want[t], 1e-7);
    assert_float_equal(phrex_adamw_lr_at(&c, 20), 0.0f, 0);
    c.total_steps = 0; // constant after warm-up
    assert_float_equal(phrex_adamw_lr_at(&c, 100), 1.0f, 0);
}

static void test_adamw_step(void **state) {
    (void)state;
    // Two tensors: a decayed weight (4) and an undecayed bias (2); three
    // updates with clipping active on the first, against the formula in
    // double. Step 1 also by hand: m̂ = g, v̂ = g², so each element moves
    // by lr₁·g/(|g| + eps) ≈ lr₁·sign(g) after decay.
    phrex_param_tensor t[2] = {{.name = "w", .ndim = 1, .shape = {4}, .offset = 0, .numel = 4, .decay = 1, .trainable = 1},
                               {.name = "b", .ndim = 1, .shape = {2}, .offset = 4, .numel = 2, .decay = 0, .trainable = 1}};
    float params[6] = {1.0f, -0.5f, 0.25f, 2.0f, 0.1f, -0.3f}, grads[6];
    phrex_train_params p = {params, 6, grads, 6, 0, t, 2};
    phrex_adamw_config cfg = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                              .warmup_steps = 2, .total_steps = 4, .max_grad_norm = 1.0f};
    phrex_adamw *opt;
    assert_int_equal(phrex_adamw_init(&opt, &cfg, &p), PHREX_OK);
    const float g_steps[3][6] = {{3, -4, 0, 0, 0, 0}, {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, -0.6f}, {0.01f, 0, 0, 0, -0.02f, 0}};
    double ref_p[6], m[6] = {0}, v[6] = {0};
    for (int i = 0; i < 6; i++) ref_p[i] = params[i];
    for (int s = 0; s < 3; s++) {
        memcpy(grads, g_steps[s], sizeof grads);
        float norm;
        assert_int_equal(phrex_adamw_step(opt, &p, &norm), PHREX_OK);
        double n2 = 0;
        for (int i = 0; i < 6; i++) n2 += (double)g_steps[s][i] * g_steps[s][i];
        assert_float_equal(norm, sqrt(n2), 1e-6);
        double clip = sqrt(n2) > 1.0 ? 1.0 / (sqrt(n2) + 1e-6) : 1.0;
        int step = s + 1;
        double lr = step <= 2 ? 0.1 * step / 2 : 0.1 * (4 - step) / 2.0;
        for (int i = 0; i < 6; i++) {
            double g = g_steps[s][i] * clip;
            if (i < 4) ref_p[i] *= 1 - lr * 0.01;
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            double mhat = m[i] / (1 - pow(0.9, step)), vhat = v[i] / (1 - pow(0.999, step));
            ref_p[i] -= lr * mhat / (sqrt(vhat) + 1e-8);
        }
        if (s == 0) {
            // By hand: lr₁ = 0.05; the gradient (3, -4) has norm 5, clipped to
            // (0.6, -0.8); decay 1 - 0.05·0.01 = 0.9995.
            assert_float_equal(params[0], 1.0f * 0.9995f - 0.05f, 1e-6);
            assert_float_equal(params[1], -0.5f * 0.9995f + 0.05f, 1e-6);
            assert_float_equal(params[2], 0.25f * 0.9995f, 1e-7);       // zero gradient: decay only
            assert_float_equal(params[4], 0.1f, 0);                     // bias, zero gradient: untouched
            assert_float_equal(grads[0], 0.6f, 1e-6);                   // clipped in place
        }
        for (int i = 0; i < 6; i++) assert_float_equal(params[i], ref_p[i], 1e-6 * fmax(1.0, fabs(ref_p[i])));
    }
    assert_int_equal(phrex_adamw_steps(opt), 3);
    // A non-finite gradient is refused and changes nothing.
    float before[6];
    memcpy(before, params, sizeof before);
    grads[2] = NAN;
    assert_int_equal(phrex_adamw_step(opt, &p, NULL), PHREX_ERR_INPUT);
    assert_memory_equal(params, before, sizeof before);
    assert_int_equal(phrex_adamw_steps(opt), 3);
    phrex_adamw_free(opt);
}

static void test_clip_joint(void **state) {
    (void)state;
    // Two "models" of 3 and 2 gradients clipped as one: norm 13 from
    // (3, 4, 0) and (12, 0) — every gradient scaled by 1.3/13 = 0.1.
    phrex_param_tensor ta = {.name = "a", .ndim = 1, .shape = {3}, .numel = 3, .trainable = 1};
    phrex_param_tensor tb = {.name = "b", .ndim = 1, .shape = {2}, .numel = 2, .trainable = 1};
    float pa[3] = {0}, pb[2] = {0}, ga[3] = {3, 4, 0}, gb[2] = {12, 0};
    phrex_train_params a = {pa, 3, ga, 3, 0, &ta, 1}, b = {pb, 2, gb, 2, 0, &tb, 1};
    phrex_adamw_config cfg = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    phrex_adamw *oa, *ob;
    assert_int_equal(phrex_adamw_init(&oa, &cfg, &a), PHREX_OK);
    assert_int_equal(phrex_adamw_init(&ob, &cfg, &b), PHREX_OK);
    phrex_adamw *opts[2] = {oa, ob};
    float *grads[2] = {ga, gb};
    assert_float_equal(phrex_adamw_clip_joint(opts, grads, 2, 1.3f), 13.0, 1e-6);
    assert_float_equal(ga[0], 0.3f, 1e-6);
    assert_float_equal(ga[1], 0.4f, 1e-6);
    assert_float_equal(gb[0], 1.2f, 1e-6);
    // Below the limit: untouched.
    assert_float_equal(phrex_adamw_clip_joint(opts, grads, 2, 5.0f), 1.3, 1e-6);
    assert_float_equal(gb[0], 1.2f, 1e-6);
    phrex_adamw_free(oa);
    phrex_adamw_free(ob);
}

// --- resume -------------------------------------------------------------------------

static const phrex_bert_config tiny = {
    .vocab_size = 50, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 2, .head_dim = 8,
    .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2, .layer_norm_eps = 1e-12f};

// A toy run: each step draws a batch from the data list at data_pos (ids
// from a table, so the data position matters), a random target direction
// from the run's RNG (so the RNG state matters) and dropout masks keyed by
// the step, and takes one AdamW step on loss = Σ out·target.
typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
    phrex_adamw *opt;
    phrex_train_progress prog;
} run;

static const phrex_adamw_config run_cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                           .weight_decay = 0.01f, .warmup_steps = 3, .total_steps = 10,
                                           .max_grad_norm = 1.0f};

static void run_init(run *r, uint64_t init_seed, int freeze) {
    phrex_train_bert_options o = {.freeze_word_embeddings = freeze};
    assert_int_equal(phrex_train_bert_init_random(&r->m, &tiny, init_seed, 0.5f, &o), PHREX_OK);
    assert_int_equal(phrex_train_encoder_init(&r->e, r->m, 32, 16), PHREX_OK);
    phrex_train_params p = phrex_train_bert_params(r->m);
    assert_int_equal(phrex_adamw_init(&r->opt, &run_cfg, &p), PHREX_OK);
    memset(&r->prog, 0, sizeof r->prog);
    r->prog.rng_state = 12345;
}

static void run_free(run *r) {
    phrex_adamw_free(r->opt);
    phrex_train_encoder_free(r->e);
    phrex_train_bert_free(r->m);
}

static void run_steps(run *r, int n) {
    static const int32_t data[7][8] = {{2, 5, 7, 9, 11, 3, 1, 4},   {8, 8, 2, 40, 41, 6, 3, 2},
                                       {1, 2, 3, 4, 5, 6, 7, 8},    {30, 31, 32, 33, 9, 9, 9, 9},
                                       {12, 13, 14, 1, 0, 49, 2, 3}, {5, 4, 3, 2, 1, 0, 6, 7},
                                       {20, 21, 22, 23, 24, 25, 26, 27}};
    for (int s = 0; s < n; s++) {
        int32_t ids[24], lens[3] = {8, 8, 8};
        for (int k = 0; k < 3; k++) {
            memcpy(ids + 8 * k, data[r->prog.data_pos % 7], sizeof data[0]);
            if (++r->prog.data_pos % 7 == 0) r->prog.data_epoch++;
        }
        const float *out;
        // Dropout masks keyed by the step: a resumed run draws them again.
        assert_int_equal(phrex_train_encoder_set_dropout(r->e, 0.1f, 0.1f, phrex_rng_hash(0xabcull ^ r->prog.step)),
                         PHREX_OK);
        assert_int_equal(phrex_train_encoder_forward(r->e, ids, NULL, lens, 3, &out), PHREX_OK);
        phrex_rng rng = {r->prog.rng_state};
        float target[24 * 16];
        for (int i = 0; i < 24 * 16; i++) target[i] = phrex_rng_symmetric(&rng);
        r->prog.rng_state = rng.state;
        phrex_train_bert_zero_grads(r->m);
        assert_int_equal(phrex_train_encoder_backward(r->e, target), PHREX_OK);
        phrex_train_params p = phrex_train_bert_params(r->m);
        assert_int_equal(phrex_adamw_step(r->opt, &p, NULL), PHREX_OK);
        r->prog.step++;
    }
}

static void resume_case(int freeze) {
    char path[300];
    snprintf(path, sizeof path, "%s/state%d.bin", tmp_dir, freeze);
    run straight, first, resumed;
    run_init(&straight, 7, freeze);
    run_steps(&straight, 9);
    run_init(&first, 7, freeze);
    run_steps(&first, 4);
    if (phrex_checkpoint_save_state(path, first.m, first.opt, &first.prog) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    run_steps(&first, 2); // what happened after the save is lost with the "crash"
    run_free(&first);
    run_init(&resumed, 99, freeze); // other weights: everything must come from the file
    if (phrex_checkpoint_load_state(path, resumed.m, resumed.opt, &resumed.prog) != PHREX_OK)
        fail_msg("%s", phrex_last_error());
    assert_int_equal(resumed.prog.step, 4);
    assert_int_equal(phrex_adamw_steps(resumed.opt), 4);
    run_steps(&resumed, 5);
    phrex_train_params a = phrex_train_bert_params(straight.m), b = phrex_train_bert_params(resumed.m);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_memory_equal(phrex_adamw_m(straight.opt), phrex_adamw_m(resumed.opt), a.n_grads * sizeof(float));
    assert_memory_equal(phrex_adamw_v(straight.opt), phrex_adamw_v(resumed.opt), a.n_grads * sizeof(float));
    assert_true(memcmp(&straight.prog, &resumed.prog, sizeof straight.prog) == 0);
    run_free(&straight);
    run_free(&resumed);
}

static void test_resume_bit_identical(void **state) {
    (void)state;
    resume_case(0);
    resume_case(1);
}

static void test_state_file_damage(void **state) {
    (void)state;
    char path[300], other[300];
    snprintf(path, sizeof path, "%s/state_damage.bin", tmp_dir);
    snprintf(other, sizeof other, "%s/state_other.bin", tmp_dir);
    run r, x;
    run_init(&r, 7, 0);
    run_steps(&r, 2);
    assert_int_equal(phrex_checkpoint_save_state(path, r.m, r.opt, &r.prog), PHREX_OK);
    // No temp file is left behind.
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    // A flipped byte in the body: FORMAT, and the model is untouched.
    FILE *f = fopen(path, "r+b");
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    run_init(&x, 5, 0);
    phrex_train_params px = phrex_train_bert_params(x.m);
    float first = px.params[0];
    assert_int_equal(phrex_checkpoint_load_state(path, x.m, x.opt, &x.prog), PHREX_ERR_FORMAT);
    assert_non_null(strstr(phrex_last_error(), "checksum"));
    assert_true(px.params[0] == first);
    // Truncated: FORMAT.
    assert_int_equal(phrex_checkpoint_save_state(path, r.m, r.opt, &r.prog), PHREX_OK);
    assert_int_equal(truncate(path, 1000), 0);
    assert_int_equal(phrex_checkpoint_load_state(path, x.m, x.opt, &x.prog), PHREX_ERR_FORMAT);
    // Another layout (frozen embeddings): MISMATCH.
    run y;
    run_init(&y, 7, 1);
    assert_int_equal(phrex_checkpoint_save_state(other, y.m, y.opt, &y.prog), PHREX_OK);
    assert_int_equal(phrex_checkpoint_load_state(other, x.m, x.opt, &x.prog), PHREX_ERR_MISMATCH);
    run_free(&r);
    run_free(&x);
    run_free(&y);
}

// --- setup --------------------------------------------------------------------------

static int rm_tree_setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/phrex_test_train_XXXXXX");
    return test_make_tmpdir(tmp_dir);
}

static int rm_tree_teardown(void **state) {
    (void)state;
    return test_remove_tree(tmp_dir) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_inference),
        cmocka_unit_test(test_backward_deterministic),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_lower_layers),
        cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_safetensors_write),
        cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_adamw_step),
        cmocka_unit_test(test_clip_joint),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_state_file_damage),
    };
    return cmocka_run_group_tests(tests, rm_tree_setup, rm_tree_teardown);
}

// phrex train-phrase: trains a phrase encoder and two query encoders (start
// and end) with the DensePhrases objective on SQuAD articles named by a
// title list, checkpoints the whole training state so that --resume after a
// kill continues bit-identically, evaluates reading comprehension on the
// validation articles and saves the three encoders:
//
//   DIR/phrase/, DIR/query_start/, DIR/query_end/   HF layout (phrex_bert_init loads each)
//   DIR/phrex_model.json                            format "phrex-densephrases", version 1
//   DIR/valid_metrics.json                          EM / F1 on the validation articles
//   DIR/train_state.bin                             the last checkpoint (--resume reads it)
//   DIR/train.log                                   one line per --log-every steps (appended)
//
// Data order, dropout masks and the pre-batch cache are functions of the
// saved state (the epoch's permutation is drawn from seed and epoch number,
// dropout keys from seed and step), which is what makes resume exact.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/metrics.h"
#include "data/squad_windows.h"
#include "encoder/adamw.h"
#include "encoder/checkpoint.h"
#include "encoder/phrase_train.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SEQ 384   // window tokens incl. [CLS]/[SEP] (DensePhrases max_seq_length)
#define DOC_STRIDE 128
#define MAX_QUERY 64
#define MODEL_FORMAT "phrex-densephrases"
#define MODEL_VERSION 1

typedef struct {
    const char *out_dir, *model_dir, *squad, *train_titles, *valid_titles, *log_path;
    int steps;           // 0: from epochs
    double epochs;
    int batch;
    float lr, warmup_frac, weight_decay, clip, neg_weight, dropout;
    int pre_batch, max_answer_len, freeze_embeddings, layers, threads;
    int checkpoint_every, log_every, limit_valid, kill_after;
    unsigned long long seed;
    int resume, eval_only;
} train_options;

// One encoder under training.
typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
    phrex_adamw *opt;
} encoder;

enum { PHRASE = 0, QSTART = 1, QEND = 2, N_ENC = 3 };
static const char *const enc_names[N_ENC] = {"phrase", "query_start", "query_end"};

// Everything a step needs, allocated once.
typedef struct {
    const train_options *o;
    encoder enc[N_ENC];
    int C;
    phrex_phrase_loss *loss;
    int32_t *pids, *qids;          // (B·MAX_SEQ), (B·MAX_QUERY)
    int32_t *plens, *qlens, *gs, *ge; // (B)
    float *dh, *dq_tok[2];         // (B·MAX_SEQ, C), (B·MAX_QUERY, C) x2
    float *qv[2], *dq[2];          // (B, C) x2: [CLS] rows and their gradients
    uint32_t *perm;                // (n_train) this epoch's order
    uint64_t perm_epoch;           // the epoch perm was drawn for (UINT64_MAX: none)
    void *extra;                   // the pre-batch cache as saved
    size_t cache_floats, extra_bytes;
} trainer;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex train-phrase --out DIR [options]\n\n"
            "  --out DIR              where the model, checkpoints, log and metrics go\n"
            "  --model DIR            base encoder, HF layout (default %s)\n"
            "  --squad FILE           SQuAD v1.1 JSON (default ../shared/data/squad-v1.1/dev-v1.1.40-articles.json)\n"
            "  --train-titles FILE    training articles, one title a line\n"
            "                         (default data/splits/squad_train_titles.txt)\n"
            "  --valid-titles FILE    validation articles (default data/splits/squad_valid_titles.txt)\n"
            "  --steps N | --epochs E updates, or passes over the training questions (default 5 epochs:\n"
            "                         about 50 minutes on 2 cores, see docs/RESULTS.md)\n"
            "  --batch N              questions per update (default 16)\n"
            "  --lr X                 peak learning rate (default 1e-4)\n"
            "  --warmup-frac X        linear warm-up share of the updates (default 0.1)\n"
            "  --weight-decay X       AdamW decoupled decay (default 0.01)\n"
            "  --clip X               joint gradient-norm clipping, 0 = none (default 1.0)\n"
            "  --pre-batch C          earlier batches used as negatives after warm-up (default 2)\n"
            "  --neg-weight X         weight of the in-batch + pre-batch loss (default 1.0)\n"
            "  --dropout X            hidden and attention dropout (default 0.1)\n"
            "  --max-answer-len N     longest answer in tokens (default 10)\n"
            "  --freeze-embeddings    freeze the phrase encoder's word embeddings (the default; the query\n"
            "                         encoders' are always frozen, and a packed model stores no table)\n"
            "  --train-embeddings     train the phrase encoder's word embeddings\n"
            "  --layers K             use the lower K layers of the base model (default all)\n"
            "  --seed S               data order and dropout (default 2024)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --checkpoint-every N   save DIR/train_state.bin every N updates (default 100; 0 = never)\n"
            "  --log FILE             append progress lines here (default DIR/train.log)\n"
            "  --log-every N          updates per log line (default 10)\n"
            "  --limit-valid N        evaluate the first N validation questions only (default all)\n"
            "  --resume               continue from DIR/train_state.bin with the same options\n"
            "                         (and the same --threads, for a bit-identical result)\n"
            "  --eval-only            evaluate DIR's model (or --model when DIR has none), no training\n",
            phrex_cli_base_model_dir());
}

static int parse_one(int c, train_options *o) {
    switch (c) {
    case 'o': o->out_dir = optarg; return 0;
    case 'm': o->model_dir = optarg; return 0;
    case 'q': o->squad = optarg; return 0;
    case 'T': o->train_titles = optarg; return 0;
    case 'V': o->valid_titles = optarg; return 0;
    case 's': return phrex_cli_parse_int("--steps", optarg, 1, 1 << 30, &o->steps);
    case 'E': return phrex_cli_parse_double("--epochs", optarg, 1e-6, 1e6, &o->epochs);
    case 'b': return phrex_cli_parse_int("--batch", optarg, 1, 256, &o->batch);
    case 'l': return phrex_cli_parse_float("--lr", optarg, 0, 1, &o->lr);
    case 'w': return phrex_cli_parse_float("--warmup-frac", optarg, 0, 1, &o->warmup_frac);
    case 'd': return phrex_cli_parse_float("--weight-decay", optarg, 0, 1, &o->weight_decay);
    case 'c': return phrex_cli_parse_float("--clip", optarg, 0, 1e6, &o->clip);
    case 'p': return phrex_cli_parse_int("--pre-batch", optarg, 0, 64, &o->pre_batch);
    case 'n': return phrex_cli_parse_float("--neg-weight", optarg, 0, 100, &o->neg_weight);
    case 'D': return phrex_cli_parse_float("--dropout", optarg, 0, 0.9, &o->dropout);
    case 'a': return phrex_cli_parse_int("--max-answer-len", optarg, 1, MAX_SEQ - 2, &o->max_answer_len);
    case 'f': o->freeze_embeddings = 1; return 0;
    case 'W': o->freeze_embeddings = 0; return 0;
    case 'L': return phrex_cli_parse_int("--layers", optarg, 1, 64, &o->layers);
    case 'S': return phrex_cli_parse_seed(optarg, &o->seed);
    case 'j': return phrex_cli_parse_int("--threads", optarg, 1, 1024, &o->threads);
    case 'k': return phrex_cli_parse_int("--checkpoint-every", optarg, 0, 1 << 30, &o->checkpoint_every);
    case 'g': o->log_path = optarg; return 0;
    case 'G': return phrex_cli_parse_int("--log-every", optarg, 1, 1 << 30, &o->log_every);
    case 'v': return phrex_cli_parse_int("--limit-valid", optarg, 1, 1 << 30, &o->limit_valid);
    case 'K': return phrex_cli_parse_int("--kill-after-checkpoint", optarg, 1, 1 << 30, &o->kill_after);
    case 'r': o->resume = 1; return 0;
    case 'e': o->eval_only = 1; return 0;
    case 'h': print_help(stdout); return -1;
    default: print_help(stderr); return 2;
    }
}

static int parse_options(int argc, char **argv, train_options *o) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},          {"model", required_argument, 0, 'm'},
        {"squad", required_argument, 0, 'q'},        {"train-titles", required_argument, 0, 'T'},
        {"valid-titles", required_argument, 0, 'V'}, {"steps", required_argument, 0, 's'},
        {"epochs", required_argument, 0, 'E'},       {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},           {"warmup-frac", required_argument, 0, 'w'},
        {"weight-decay", required_argument, 0, 'd'}, {"clip", required_argument, 0, 'c'},
        {"pre-batch", required_argument, 0, 'p'},    {"neg-weight", required_argument, 0, 'n'},
        {"dropout", required_argument, 0, 'D'},      {"max-answer-len", required_argument, 0, 'a'},
        {"freeze-embeddings", no_argument, 0, 'f'},
        {"train-embeddings", no_argument, 0, 'W'},  {"layers", required_argument, 0, 'L'},
        {"seed", required_argument, 0, 'S'},         {"threads", required_argument, 0, 'j'},
        {"checkpoint-every", required_argument, 0, 'k'}, {"log", required_argument, 0, 'g'},
        {"log-every", required_argument, 0, 'G'},    {"limit-valid", required_argument, 0, 'v'},
        {"kill-after-checkpoint", required_argument, 0, 'K'}, // tests: SIGKILL itself after that checkpoint
        {"resume", no_argument, 0, 'r'},             {"eval-only", no_argument, 0, 'e'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    *o = (train_options){.model_dir = phrex_cli_base_model_dir(),
                         .squad = "../shared/data/squad-v1.1/dev-v1.1.40-articles.json",
                         .train_titles = "data/splits/squad_train_titles.txt",
                         .valid_titles = "data/splits/squad_valid_titles.txt",
                         .epochs = 5, .batch = 16, .freeze_embeddings = 1, .lr = 1e-4f, .warmup_frac = 0.1f, .weight_decay = 0.01f,
                         .clip = 1.0f, .neg_weight = 1.0f, .dropout = 0.1f, .pre_batch = 2, .max_answer_len = 10,
                         .seed = 2024, .checkpoint_every = 100, .log_every = 10};
    int c, steps_given = 0, epochs_given = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        steps_given |= c == 's', epochs_given |= c == 'E';
        int rc = parse_one(c, o);
        if (rc) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex train-phrase: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->out_dir) {
        fprintf(stderr, "phrex train-phrase: --out DIR is required\n");
        return 2;
    }
    if (steps_given && epochs_given) {
        fprintf(stderr, "phrex train-phrase: give --steps or --epochs, not both\n");
        return 2;
    }
    if (o->resume && o->eval_only) {
        fprintf(stderr, "phrex train-phrase: --resume and --eval-only exclude each other\n");
        return 2;
    }
    return 0;
}


static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// --- data --------------------------------------------------------------------------

static int load_split(const char *titles_path, const train_options *o, const phrex_wordpiece *wp,
                      phrex_squad_windows **out) {
    char **titles;
    int n;
    int rc = phrex_squad_read_titles(titles_path, &titles, &n);
    if (rc) return rc;
    phrex_squad_window_options wo = {MAX_SEQ, DOC_STRIDE, MAX_QUERY};
    rc = phrex_squad_windows_init(out, o->squad, wp, (const char *const *)titles, n, &wo);
    free(titles);
    if (rc) return rc;
    const phrex_squad_window_stats *st = phrex_squad_windows_stats(*out);
    fprintf(stderr, "%s: %zu articles, %zu paragraphs, %zu windows; %zu questions, %zu kept (%zu text mismatch, "
                    "%zu empty, %zu outside every window, %zu without answer)\n",
            titles_path, st->articles, st->paragraphs, st->windows, st->questions, st->kept, st->mismatch, st->empty,
            st->outside, st->no_answer);
    if (st->kept == 0) return phrex_fail(PHREX_ERR_INPUT, "%s: no usable question in these articles", titles_path);
    return PHREX_OK;
}

// --- encoders ------------------------------------------------------------------

static int encoder_init(encoder *x, const char *dir, const train_options *o, int freeze, int max_tokens, int max_seq,
                        const phrex_adamw_config *cfg) {
    phrex_train_bert_options bo = {.num_layers = o->layers, .freeze_word_embeddings = freeze};
    int rc = phrex_train_bert_init(&x->m, dir, &bo);
    if (rc) return phrex_fail_context(rc, "%s", dir), rc;
    if ((rc = phrex_train_encoder_init(&x->e, x->m, max_tokens, max_seq))) return rc;
    phrex_train_params p = phrex_train_bert_params(x->m);
    return phrex_adamw_init(&x->opt, cfg, &p);
}

static void encoder_free(encoder *x) {
    phrex_adamw_free(x->opt);
    phrex_train_encoder_free(x->e);
    phrex_train_bert_free(x->m);
}

static void trainer_free(trainer *t) {
    for (int i = 0; i < N_ENC; i++) encoder_free(&t->enc[i]);
    phrex_phrase_loss_free(t->loss);
    free(t->pids), free(t->qids), free(t->plens), free(t->qlens), free(t->gs), free(t->ge), free(t->dh);
    for (int k = 0; k < 2; k++) free(t->dq_tok[k]), free(t->qv[k]), free(t->dq[k]);
    free(t->perm), free(t->extra);
}

// Encoders from `dirs` (phrase, query start, query end), buffers for
// batches of B, and the loss.
static int trainer_init(trainer *t, const train_options *o, const char *const dirs[N_ENC], int64_t steps,
                        int n_train) {
    memset(t, 0, sizeof *t);
    t->o = o;
    int B = o->batch;
    phrex_adamw_config cfg = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                              .weight_decay = o->weight_decay,
                              .warmup_steps = (int64_t)llround(o->warmup_frac * (double)steps),
                              .total_steps = steps + 1, // the last update keeps a non-zero rate
                              .max_grad_norm = 0};      // clipped jointly over the three encoders
    int rc = encoder_init(&t->enc[PHRASE], dirs[PHRASE], o, o->freeze_embeddings, B * MAX_SEQ, MAX_SEQ, &cfg);
    if (!rc) rc = encoder_init(&t->enc[QSTART], dirs[QSTART], o, 1, B * MAX_QUERY, MAX_QUERY, &cfg);
    if (!rc) rc = encoder_init(&t->enc[QEND], dirs[QEND], o, 1, B * MAX_QUERY, MAX_QUERY, &cfg);
    if (rc) return rc;
    t->C = phrex_train_bert_config(t->enc[PHRASE].m)->hidden_size;
    for (int i = 1; i < N_ENC; i++)
        if (phrex_train_bert_config(t->enc[i].m)->hidden_size != t->C)
            return phrex_fail(PHREX_ERR_MISMATCH, "%s: hidden size differs from the phrase encoder's", dirs[i]);
    phrex_phrase_loss_config lc = {.lambda_single = 1, .lambda_neg = o->neg_weight, .pre_batches = o->pre_batch,
                                   .pre_batch_warmup = cfg.warmup_steps, .max_answer_len = o->max_answer_len};
    if ((rc = phrex_phrase_loss_init(&t->loss, &lc, t->C, B))) return rc;
    size_t C = (size_t)t->C;
    t->pids = malloc((size_t)B * MAX_SEQ * 4), t->qids = malloc((size_t)B * MAX_QUERY * 4);
    t->plens = malloc((size_t)B * 4), t->qlens = malloc((size_t)B * 4);
    t->gs = malloc((size_t)B * 4), t->ge = malloc((size_t)B * 4);
    t->dh = malloc((size_t)B * MAX_SEQ * C * 4);
    for (int k = 0; k < 2; k++) {
        t->dq_tok[k] = malloc((size_t)B * MAX_QUERY * C * 4);
        t->qv[k] = malloc((size_t)B * C * 4), t->dq[k] = malloc((size_t)B * C * 4);
    }
    t->perm = malloc((size_t)(n_train > 0 ? n_train : 1) * 4);
    t->perm_epoch = UINT64_MAX;
    phrex_phrase_loss_cache(t->loss, &t->cache_floats);
    t->extra_bytes = t->cache_floats * 4 + (size_t)(2 + o->pre_batch) * 4;
    t->extra = malloc(t->extra_bytes);
    if (!t->pids || !t->qids || !t->plens || !t->qlens || !t->gs || !t->ge || !t->dh || !t->dq_tok[0] ||
        !t->dq_tok[1] || !t->qv[0] || !t->qv[1] || !t->dq[0] || !t->dq[1] || !t->perm || !t->extra)
        return phrex_fail(PHREX_ERR_MEMORY, "train-phrase: out of memory for batches of %d", B);
    return PHREX_OK;
}

// --- one update ----------------------------------------------------------------------

// This epoch's order: Fisher-Yates from a generator seeded by (seed, epoch),
// so a resumed run redraws it from the saved epoch number alone.
static void draw_permutation(trainer *t, uint64_t epoch, int n) {
    if (t->perm_epoch == epoch) return;
    phrex_rng r = phrex_rng_init(t->o->seed ^ phrex_rng_hash(epoch + 1));
    for (int i = 0; i < n; i++) t->perm[i] = (uint32_t)i;
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = phrex_rng_below(&r, (uint32_t)i + 1), tmp = t->perm[i];
        t->perm[i] = t->perm[j], t->perm[j] = tmp;
    }
    t->perm_epoch = epoch;
}

// Packs the next B examples (wrapping into the next epoch) and advances
// the data position. Returns tokens: *np phrase, *nq query.
static void fill_batch(trainer *t, const phrex_squad_windows *train, phrex_train_progress *pr, int *np, int *nq) {
    int n = phrex_squad_windows_count(train);
    *np = *nq = 0;
    for (int b = 0; b < t->o->batch; b++) {
        if (pr->data_pos >= (uint64_t)n) pr->data_epoch++, pr->data_pos = 0;
        draw_permutation(t, pr->data_epoch, n);
        const phrex_squad_example *e = phrex_squad_windows_example(train, (int)t->perm[pr->data_pos++]);
        t->plens[b] = phrex_squad_windows_fill(train, e->window, t->pids + *np, NULL, NULL);
        memcpy(t->qids + *nq, phrex_squad_windows_query(train, e), (size_t)e->query_len * 4);
        t->qlens[b] = e->query_len, t->gs[b] = e->gold_start, t->ge[b] = e->gold_end;
        *np += t->plens[b], *nq += e->query_len;
    }
}

// dL/d(query token states): the [CLS] rows get the loss's gradient, every
// other row zero. dq (B, C) -> dtok (nq, C).
static void scatter_cls(const float *dq, const int32_t *qlens, int B, int C, int nq, float *dtok) {
    memset(dtok, 0, (size_t)nq * (size_t)C * 4);
    for (int b = 0, at = 0; b < B; at += qlens[b], b++)
        memcpy(dtok + (size_t)at * C, dq + (size_t)b * C, (size_t)C * 4);
}

static void gather_cls(const float *h, const int32_t *qlens, int B, int C, float *q) {
    for (int b = 0, at = 0; b < B; at += qlens[b], b++) memcpy(q + (size_t)b * C, h + (size_t)at * C, (size_t)C * 4);
}

static int train_step(trainer *t, const phrex_squad_windows *train, phrex_train_progress *pr,
                      phrex_phrase_loss_parts *parts, float *grad_norm) {
    int np, nq, B = t->o->batch, C = t->C;
    fill_batch(t, train, pr, &np, &nq);
    int64_t step = pr->step + 1;
    uint64_t key = phrex_rng_hash(t->o->seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ull));
    const float *h, *hq[2];
    int rc = 0;
    for (int i = 0; i < N_ENC && !rc; i++)
        rc = phrex_train_encoder_set_dropout(t->enc[i].e, t->o->dropout, t->o->dropout, key + (uint64_t)i);
    if (!rc) rc = phrex_train_encoder_forward(t->enc[PHRASE].e, t->pids, NULL, t->plens, B, &h);
    for (int k = 0; k < 2 && !rc; k++) {
        rc = phrex_train_encoder_forward(t->enc[1 + k].e, t->qids, NULL, t->qlens, B, &hq[k]);
        if (!rc) gather_cls(hq[k], t->qlens, B, C, t->qv[k]);
    }
    if (!rc) rc = phrex_phrase_loss_step(t->loss, h, t->plens, B, t->qv[0], t->qv[1], t->gs, t->ge, step, t->dh,
                                         t->dq[0], t->dq[1], parts);
    if (rc) return rc;
    for (int i = 0; i < N_ENC; i++) phrex_train_bert_zero_grads(t->enc[i].m);
    rc = phrex_train_encoder_backward(t->enc[PHRASE].e, t->dh);
    for (int k = 0; k < 2 && !rc; k++) {
        scatter_cls(t->dq[k], t->qlens, B, C, nq, t->dq_tok[k]);
        rc = phrex_train_encoder_backward(t->enc[1 + k].e, t->dq_tok[k]);
    }
    if (rc) return rc;
    phrex_adamw *opts[N_ENC];
    float *grads[N_ENC];
    phrex_train_params p[N_ENC];
    for (int i = 0; i < N_ENC; i++) {
        p[i] = phrex_train_bert_params(t->enc[i].m);
        opts[i] = t->enc[i].opt, grads[i] = p[i].grads;
    }
    double norm = phrex_adamw_clip_joint(opts, grads, N_ENC, t->o->clip > 0 ? t->o->clip : INFINITY);
    if (!isfinite(norm))
        return phrex_fail(PHREX_ERR_INPUT, "train-phrase: step %lld: gradient norm is not finite (loss %g); lower --lr",
                          (long long)step, parts->total);
    *grad_norm = (float)norm;
    for (int i = 0; i < N_ENC && !rc; i++) rc = phrex_adamw_step(opts[i], &p[i], NULL);
    pr->step = step;
    return rc;
}

// --- checkpoints ----------------------------------------------------------------------

// A hash of every option that changes the run, so --resume refuses a
// state written by a different command line.
static uint64_t options_hash(const train_options *o, int64_t steps) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s|%s|%s|%s|%lld|%d|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%d|%d|%d|%d|%llu", o->model_dir,
             o->squad, o->train_titles, o->valid_titles, (long long)steps, o->batch, o->lr, o->warmup_frac,
             o->weight_decay, o->clip, o->neg_weight, o->dropout, o->pre_batch, o->max_answer_len,
             o->freeze_embeddings, o->layers, o->seed);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = buf; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

static void slots_of(trainer *t, phrex_train_slot slots[N_ENC]) {
    for (int i = 0; i < N_ENC; i++) slots[i] = (phrex_train_slot){t->enc[i].m, t->enc[i].opt};
}

static int save_state(trainer *t, const char *path, const phrex_train_progress *pr) {
    size_t floats;
    float *cache = phrex_phrase_loss_cache(t->loss, &floats);
    if (floats) memcpy(t->extra, cache, floats * 4);
    int rc = phrex_phrase_loss_cache_meta(t->loss, (int32_t *)((char *)t->extra + floats * 4), 2 + t->o->pre_batch);
    if (rc) return rc;
    phrex_train_slot slots[N_ENC];
    slots_of(t, slots);
    return phrex_checkpoint_save_states(path, slots, N_ENC, pr, t->extra, t->extra_bytes);
}

static int load_state(trainer *t, const char *path, phrex_train_progress *pr, uint64_t hash) {
    phrex_train_slot slots[N_ENC];
    slots_of(t, slots);
    int rc = phrex_checkpoint_load_states(path, slots, N_ENC, pr, t->extra, t->extra_bytes);
    if (rc) return phrex_fail_context(rc, "%s", path), rc;
    if (pr->user[0] != hash)
        return phrex_fail(PHREX_ERR_MISMATCH,
                          "%s was written by a run with different options; resume with the same ones", path);
    size_t floats;
    float *cache = phrex_phrase_loss_cache(t->loss, &floats);
    if (floats) memcpy(cache, t->extra, floats * 4);
    return phrex_phrase_loss_set_cache_meta(t->loss, (const int32_t *)((const char *)t->extra + floats * 4),
                                            2 + t->o->pre_batch);
}

// --- evaluation --------------------------------------------------------------------------

// [CLS] vectors of the examples' questions under query encoder x: (n, C).
static int encode_queries(encoder *x, const phrex_squad_windows *s, int n, int B, int C, float *out) {
    int32_t ids[MAX_QUERY * 256], lens[256];
    phrex_train_encoder_set_dropout(x->e, 0, 0, 0);
    for (int i0 = 0; i0 < n; i0 += B) {
        int nb = n - i0 < B ? n - i0 : B, at = 0;
        for (int b = 0; b < nb; b++) {
            const phrex_squad_example *e = phrex_squad_windows_example(s, i0 + b);
            memcpy(ids + at, phrex_squad_windows_query(s, e), (size_t)e->query_len * 4);
            lens[b] = e->query_len, at += e->query_len;
        }
        const float *h;
        int rc = phrex_train_encoder_forward(x->e, ids, NULL, lens, nb, &h);
        if (rc) return rc;
        gather_cls(h, lens, nb, C, out + (size_t)i0 * C);
    }
    return PHREX_OK;
}

typedef struct {
    double em, f1; // percent
    int n;
} rc_metrics;

// Reading comprehension: for each question, the best phrase
// (i <= j < i + max_len, [CLS]/[SEP] excluded) over every window of its
// gold paragraph, scored against all gold answers.
static int evaluate(trainer *t, const phrex_squad_windows *s, int limit, rc_metrics *m) {
    int n = phrex_squad_windows_count(s), C = t->C;
    if (limit > 0 && limit < n) n = limit;
    float *qs = malloc((size_t)n * C * 4), *qe = malloc((size_t)n * C * 4), *best = malloc((size_t)n * 4);
    int32_t *bs = malloc((size_t)n * 4), *be = malloc((size_t)n * 4);
    int32_t ids[MAX_SEQ], os[MAX_SEQ], oe[MAX_SEQ];
    int rc = (!qs || !qe || !best || !bs || !be) ? phrex_fail(PHREX_ERR_MEMORY, "evaluate: out of memory") : 0;
    if (!rc) rc = encode_queries(&t->enc[QSTART], s, n, t->o->batch, C, qs);
    if (!rc) rc = encode_queries(&t->enc[QEND], s, n, t->o->batch, C, qe);
    phrex_train_encoder_set_dropout(t->enc[PHRASE].e, 0, 0, 0);
    double em = 0, f1 = 0;
    char pred[4096];
    // Questions of a paragraph are consecutive: encode its windows once.
    for (int i0 = 0, i1; !rc && i0 < n; i0 = i1) {
        int par = phrex_squad_windows_example(s, i0)->paragraph;
        for (i1 = i0; i1 < n && phrex_squad_windows_example(s, i1)->paragraph == par; i1++) best[i1] = -INFINITY;
        const phrex_squad_paragraph *p = phrex_squad_windows_paragraph(s, par);
        for (int w = p->first_window; !rc && w < p->first_window + p->n_windows; w++) {
            int L = phrex_squad_windows_fill(s, w, ids, os, oe);
            const float *h;
            if ((rc = phrex_train_encoder_forward(t->enc[PHRASE].e, ids, NULL, &L, 1, &h))) break;
            for (int i = i0; i < i1; i++) {
                int a, b;
                float score;
                phrex_phrase_best_span(h + C, L - 2, C, qs + (size_t)i * C, qe + (size_t)i * C, t->o->max_answer_len,
                                       &a, &b, &score);
                if (score > best[i]) best[i] = score, bs[i] = os[a + 1], be[i] = oe[b + 1];
            }
        }
        for (int i = i0; !rc && i < i1; i++) {
            const phrex_squad_example *e = phrex_squad_windows_example(s, i);
            int len = be[i] - bs[i];
            snprintf(pred, sizeof pred, "%.*s", len < (int)sizeof pred - 1 ? len : (int)sizeof pred - 1,
                     p->context + bs[i]);
            em += phrex_metric_max_exact_match(pred, e->answers, e->n_answers);
            f1 += phrex_metric_max_f1(pred, e->answers, e->n_answers);
        }
    }
    free(qs), free(qe), free(best), free(bs), free(be);
    *m = (rc_metrics){100.0 * em / n, 100.0 * f1 / n, n};
    return rc;
}

static int write_metrics(const char *dir, const rc_metrics *m, const train_options *o, int64_t steps,
                         const phrex_squad_windows *valid) {
    char path[4096];
    phrex_cli_path_join(path, sizeof path, dir, "valid_metrics.json");
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f,
            "{\"task\": \"reading-comprehension\", \"exact_match\": %.4f, \"f1\": %.4f, \"questions\": %d, "
            "\"articles\": %zu, \"max_answer_len\": %d, \"steps\": %lld, \"titles\": ",
            m->em, m->f1, m->n, phrex_squad_windows_stats(valid)->articles, o->max_answer_len, (long long)steps);
    phrex_json_write_string(f, o->valid_titles, strlen(o->valid_titles));
    fputs("}\n", f);
    return fclose(f) ? phrex_fail(PHREX_ERR_IO, "%s: write failed", path) : PHREX_OK;
}

// --- the final model ------------------------------------------------------------------------

static int save_model(trainer *t, const train_options *o, int64_t steps) {
    char path[4096];
    int rc = 0;
    for (int i = 0; i < N_ENC && !rc; i++) {
        phrex_cli_path_join(path, sizeof path, o->out_dir, enc_names[i]);
        rc = phrex_checkpoint_save_model(path, t->enc[i].m, PHREX_DTYPE_F32, o->model_dir);
    }
    if (rc) return rc;
    phrex_cli_path_join(path, sizeof path, o->out_dir, "phrex_model.json");
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f,
            "{\"format\": \"%s\", \"version\": %d,\n"
            " \"encoders\": {\"phrase\": \"phrase\", \"query_start\": \"query_start\", \"query_end\": \"query_end\"},\n"
            " \"vectors\": \"phrase: every token's last hidden state is its start and end vector; "
            "query_start/query_end: the [CLS] last hidden state\",\n"
            " \"hidden_size\": %d, \"max_seq_len\": %d, \"doc_stride\": %d, \"max_query_len\": %d, "
            "\"max_answer_len\": %d,\n \"dtype\": \"f32\", \"steps\": %lld, \"base_model\": ",
            MODEL_FORMAT, MODEL_VERSION, t->C, MAX_SEQ, DOC_STRIDE, MAX_QUERY, o->max_answer_len, (long long)steps);
    phrex_json_write_string(f, o->model_dir, strlen(o->model_dir));
    fputs("}\n", f);
    return fclose(f) ? phrex_fail(PHREX_ERR_IO, "%s: write failed", path) : PHREX_OK;
}

// --- the run ---------------------------------------------------------------------------

static void log_line(FILE *log, const phrex_train_progress *pr, int64_t steps, double loss,
                     const phrex_phrase_loss_parts *parts, float lr, float gnorm, double ex_per_s) {
    if (!log) return;
    fprintf(log, "step %lld/%lld epoch %llu loss %.5f single %.5f negatives %.5f candidates %d lr %.4g grad_norm %.4f "
                 "examples/s %.2f\n",
            (long long)pr->step, (long long)steps, (unsigned long long)pr->data_epoch, loss, parts->single,
            parts->negative, parts->n_candidates, lr, gnorm, ex_per_s);
    fflush(log);
}

static int train_loop(trainer *t, const phrex_squad_windows *train, int64_t steps, phrex_train_progress *pr,
                      const char *state_path, FILE *log) {
    const train_options *o = t->o;
    phrex_progress bar;
    phrex_progress_init(&bar, "train", "steps", steps);
    bar.done = pr->step;
    double t0 = phrex_now_seconds(), loss_sum = 0;
    int64_t first = pr->step, since_log = 0;
    char extra[160];
    while (pr->step < steps) {
        phrex_phrase_loss_parts parts;
        float gnorm = 0;
        int rc = train_step(t, train, pr, &parts, &gnorm);
        if (rc) return phrex_progress_finish(&bar), rc;
        loss_sum += parts.total, since_log++;
        double ex_s = (double)(pr->step - first) * o->batch / (phrex_now_seconds() - t0);
        snprintf(extra, sizeof extra, "loss %.3f  %.1f ex/s", parts.total, ex_s);
        phrex_progress_add(&bar, 1, extra);
        if (pr->step % o->log_every == 0 || pr->step == steps) {
            float lr = phrex_adamw_lr_at(phrex_adamw_get_config(t->enc[PHRASE].opt), pr->step);
            log_line(log, pr, steps, loss_sum / (double)since_log, &parts, lr, gnorm, ex_s);
            loss_sum = 0, since_log = 0;
        }
        if (o->checkpoint_every && (pr->step % o->checkpoint_every == 0 || pr->step == steps)) {
            if ((rc = save_state(t, state_path, pr))) return phrex_progress_finish(&bar), rc;
            if (o->kill_after && pr->step == o->kill_after) raise(SIGKILL);
        }
    }
    phrex_progress_finish(&bar);
    double secs = phrex_now_seconds() - t0;
    if (pr->step > first)
        printf("trained %lld updates of %d in %.1f s: %.2f examples/s\n", (long long)(pr->step - first), o->batch, secs,
               (double)(pr->step - first) * o->batch / secs);
    return PHREX_OK;
}

static int64_t total_steps(const train_options *o, int n_train) {
    if (o->steps) return o->steps;
    double s = ceil(o->epochs * (double)n_train / o->batch);
    return s < 1 ? 1 : (int64_t)s;
}

// Where the encoders come from: DIR's saved model (eval-only on a trained
// DIR), else the base model for all three.
static void encoder_dirs(const train_options *o, char bufs[N_ENC][4096], const char *dirs[N_ENC]) {
    char meta[4096];
    phrex_cli_path_join(meta, sizeof meta, o->out_dir, "phrex_model.json");
    int trained = o->eval_only && file_exists(meta);
    for (int i = 0; i < N_ENC; i++) {
        if (trained) phrex_cli_path_join(bufs[i], 4096, o->out_dir, enc_names[i]);
        else snprintf(bufs[i], 4096, "%s", o->model_dir);
        dirs[i] = bufs[i];
    }
}

static int run(const train_options *o) {
    if (o->threads) phrex_set_threads(o->threads);
    if (mkdir(o->out_dir, 0777) && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", o->out_dir, strerror(errno));
    char state_path[4096], vocab[4096];
    phrex_cli_path_join(state_path, sizeof state_path, o->out_dir, "train_state.bin");
    if (!o->eval_only && !o->resume && file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "%s exists: pass --resume to continue that run, or choose another --out",
                          state_path);
    if (o->resume && !file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "--resume: %s does not exist", state_path);
    phrex_cli_path_join(vocab, sizeof vocab, o->model_dir, "vocab.txt");
    phrex_wordpiece *wp;
    int rc = phrex_wordpiece_init(&wp, vocab, 1);
    if (rc) return rc;
    phrex_squad_windows *train = NULL, *valid = NULL;
    if (!o->eval_only) rc = load_split(o->train_titles, o, wp, &train);
    if (!rc) rc = load_split(o->valid_titles, o, wp, &valid);
    phrex_wordpiece_free(wp);
    int64_t steps = train ? total_steps(o, phrex_squad_windows_count(train)) : 0;
    char bufs[N_ENC][4096];
    const char *dirs[N_ENC];
    encoder_dirs(o, bufs, dirs);
    trainer t;
    memset(&t, 0, sizeof t);
    if (!rc) rc = trainer_init(&t, o, dirs, steps ? steps : 1, train ? phrex_squad_windows_count(train) : 0);
    phrex_train_progress pr = {.user = {options_hash(o, steps)}};
    if (!rc && o->resume) {
        rc = load_state(&t, state_path, &pr, pr.user[0]);
        if (!rc) fprintf(stderr, "resuming at update %lld of %lld\n", (long long)pr.step, (long long)steps);
    }
    FILE *log = NULL;
    if (!rc && !o->eval_only) rc = phrex_cli_open_train_log(o->log_path, o->out_dir, &log);
    if (!rc && !o->eval_only) rc = train_loop(&t, train, steps, &pr, state_path, log);
    if (log) fclose(log);
    if (!rc && !o->eval_only) rc = save_model(&t, o, steps);
    rc_metrics m;
    if (!rc) rc = evaluate(&t, valid, o->limit_valid, &m);
    if (!rc) rc = write_metrics(o->out_dir, &m, o, steps, valid);
    if (!rc)
        printf("validation (%zu articles, %d questions): EM %.2f  F1 %.2f\n",
               phrex_squad_windows_stats(valid)->articles, m.n, m.em, m.f1);
    trainer_free(&t);
    phrex_squad_windows_free(train);
    phrex_squad_windows_free(valid);
    return rc;
}

int cmd_train_phrase(int argc, char **argv) {
    train_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (run(&o)) {
        fprintf(stderr, "phrex train-phrase: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}

// phrex train-query: query-side fine-tuning over a built dump, as
// DensePhrases' train_query.py does (Lee et al. 2021, §4.3 "query-side
// fine-tuning"; loss in search/query_train.h). For each batch of training
// questions (SQuAD, the training articles only):
//   1. encode them with the current query encoders ([CLS] of query_start
//      and query_end, dropout off) and retrieve the top-k phrases from the
//      dump (phrex_search, unit phrase);
//   2. mark the phrases whose text matches a gold answer (SQuAD EM);
//      questions with none are skipped and counted. That is DensePhrases'
//      top-k setting and the default. With --add-gold the annotated answer
//      span is also added as a candidate when the top-k lack it and its
//      paragraph is in the dump (found by exact text; "top-k + gold"), so a
//      poorly started query encoder still gets a signal;
//   3. encode the kept questions again with dropout, score the retrieved
//      phrases' stored start/end vectors (reconstructed from the index, so
//      exactly what search scores) and take an AdamW step on the query
//      encoders only. The phrase vectors and the dump never change.
// Output DIR: query_start/ and query_end/ (HF layout, f32) and
// phrex_model.json whose phrase encoder is the original one (absolute
// path); valid_metrics.json with open-domain EM/F1 on the validation
// articles before and after; train_state.bin (--resume) and train.log.
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
#include "encoder/model_dir.h"
#include "encoder/train_bert.h"
#include "encoder/train_rng.h"
#include "search/query_train.h"
#include "search/search.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_QUERY 64 // question tokens incl. [CLS]/[SEP] (DensePhrases max_query_length)
#define MODEL_FORMAT PHREX_MODEL_FORMAT
#define MODEL_VERSION 1
#define EVAL_TOP_K 100 // as phrex eval: unit passage, top 100, its first result's phrase

typedef struct {
    const char *dump_dir, *model_dir, *out_dir, *squad, *train_titles, *valid_titles, *log_path;
    int steps;
    double epochs;
    int batch, top_k, nprobe, max_answer_len, threads;
    float lr, warmup_frac, weight_decay, clip, dropout;
    int checkpoint_every, log_every, limit_valid, kill_after, resume, no_eval_before, add_gold;
    unsigned long long seed;
} tq_options;

// Where the encoders come from (see resolve_model).
typedef struct {
    char phrase[PATH_MAX], query[2][PATH_MAX], vocab_dir[PATH_MAX];
    int trained;
} model_parts;

typedef struct {
    phrex_train_bert *m;
    phrex_train_encoder *e;
    phrex_adamw *opt;
} encoder;

// Everything a step needs, allocated once.
typedef struct {
    const tq_options *o;
    encoder enc[2]; // query_start, query_end
    int C, K;
    phrex_searcher *searcher;
    phrex_search *h_train, *h_eval;
    int32_t *qids, *qlens;     // (B·MAX_QUERY), (B)
    int32_t *sel;              // (B) examples of the batch with a gold candidate
    float *qv[2], *dq[2];      // (B, C)
    float *dq_tok[2];          // (B·MAX_QUERY, C)
    float *va, *vb;            // (B, K + 1, C) start and end vectors of the candidates
    uint8_t *gold;             // (B, K + 1): the top k, and the added gold span (--add-gold)
    int *nk;                   // (B) candidates per question
    float *scratch;            // (4K)
    uint32_t *perm;            // (n_train)
    uint64_t perm_epoch;
    int64_t *par_passage;      // (training paragraphs) the dump passage with that text, or -1
    int64_t gold_added, gold_missing;
} trainer;

// Totals kept in the checkpoint (so a resumed run's log goes on counting).
typedef struct {
    int64_t used, skipped, updates;
} tq_counts;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex train-query --dump DUMP --out DIR [options]\n\n"
            "  --dump DUMP            phrase dump built by 'phrex build' (not changed)\n"
            "  --out DIR              where query_start/, query_end/, phrex_model.json go\n"
            "  --model DIR            the model the dump was built with: a phrex model folder\n"
            "                         (its query encoders are the start) or an HF folder (the\n"
            "                         phrase model's [CLS] is the start) (default %s)\n"
            "  --squad FILE           SQuAD v1.1 JSON (default ../shared/data/squad-v1.1/dev-v1.1.40-articles.json)\n"
            "  --train-titles FILE    training articles (default data/splits/squad_train_titles.txt)\n"
            "  --valid-titles FILE    validation articles (default data/splits/squad_valid_titles.txt)\n"
            "  --top-k K              phrases retrieved per question (default 100)\n"
            "  --steps N | --epochs E batches, or passes over the training questions (default 5 epochs)\n"
            "  --batch N              questions per batch (default 12)\n"
            "  --lr X                 peak learning rate (default 3e-5)\n"
            "  --warmup-frac X        linear warm-up share (default 0.1)\n"
            "  --weight-decay X       AdamW decoupled decay (default 0.01)\n"
            "  --clip X               joint gradient-norm clipping, 0 = none (default 1.0)\n"
            "  --dropout X            query encoder dropout while training (default 0.1)\n"
            "  --nprobe N             inverted lists visited (IVF dumps; default 256)\n"
            "  --max-answer-len N     longest phrase in word pieces (default 10)\n"
            "  --seed S               data order and dropout (default 2024)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --checkpoint-every N   save DIR/train_state.bin every N batches (default 100; 0 = never)\n"
            "  --log FILE             append progress lines here (default DIR/train.log)\n"
            "  --log-every N          batches per log line (default 10)\n"
            "  --limit-valid N        evaluate the first N validation questions only (default all)\n"
            "  --no-eval-before       skip the validation run before training\n"
            "  --add-gold             add the annotated answer span when the top-k miss it (its\n"
            "                         paragraph must be in the dump); default: top-k only\n"
            "  --resume               continue from DIR/train_state.bin with the same options\n",
            phrex_cli_default_model_dir());
}

static int parse_one(int c, tq_options *o) {
    switch (c) {
    case 'd': o->dump_dir = optarg; return 0;
    case 'o': o->out_dir = optarg; return 0;
    case 'm': o->model_dir = optarg; return 0;
    case 'q': o->squad = optarg; return 0;
    case 'T': o->train_titles = optarg; return 0;
    case 'V': o->valid_titles = optarg; return 0;
    case 't': return phrex_cli_parse_int("--top-k", optarg, 1, 4096, &o->top_k);
    case 's': return phrex_cli_parse_int("--steps", optarg, 1, 1 << 30, &o->steps);
    case 'E': return phrex_cli_parse_double("--epochs", optarg, 1e-6, 1e6, &o->epochs);
    case 'b': return phrex_cli_parse_int("--batch", optarg, 1, 256, &o->batch);
    case 'l': return phrex_cli_parse_float("--lr", optarg, 0, 1, &o->lr);
    case 'w': return phrex_cli_parse_float("--warmup-frac", optarg, 0, 1, &o->warmup_frac);
    case 'W': return phrex_cli_parse_float("--weight-decay", optarg, 0, 1, &o->weight_decay);
    case 'c': return phrex_cli_parse_float("--clip", optarg, 0, 1e6, &o->clip);
    case 'D': return phrex_cli_parse_float("--dropout", optarg, 0, 0.9, &o->dropout);
    case 'n': return phrex_cli_parse_int("--nprobe", optarg, 1, 1 << 20, &o->nprobe);
    case 'a': return phrex_cli_parse_int("--max-answer-len", optarg, 1, 256, &o->max_answer_len);
    case 'S': return phrex_cli_parse_seed(optarg, &o->seed);
    case 'j': return phrex_cli_parse_int("--threads", optarg, 1, 1024, &o->threads);
    case 'k': return phrex_cli_parse_int("--checkpoint-every", optarg, 0, 1 << 30, &o->checkpoint_every);
    case 'g': o->log_path = optarg; return 0;
    case 'G': return phrex_cli_parse_int("--log-every", optarg, 1, 1 << 30, &o->log_every);
    case 'v': return phrex_cli_parse_int("--limit-valid", optarg, 1, 1 << 30, &o->limit_valid);
    case 'K': return phrex_cli_parse_int("--kill-after-checkpoint", optarg, 1, 1 << 30, &o->kill_after);
    case 'N': o->no_eval_before = 1; return 0;
    case 'A': o->add_gold = 1; return 0;
    case 'r': o->resume = 1; return 0;
    case 'h': print_help(stdout); return -1;
    default: print_help(stderr); return 2;
    }
}

static int parse_options(int argc, char **argv, tq_options *o) {
    static const struct option longopts[] = {
        {"dump", required_argument, 0, 'd'},         {"out", required_argument, 0, 'o'},
        {"model", required_argument, 0, 'm'},        {"squad", required_argument, 0, 'q'},
        {"train-titles", required_argument, 0, 'T'}, {"valid-titles", required_argument, 0, 'V'},
        {"top-k", required_argument, 0, 't'},        {"steps", required_argument, 0, 's'},
        {"epochs", required_argument, 0, 'E'},       {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},           {"warmup-frac", required_argument, 0, 'w'},
        {"weight-decay", required_argument, 0, 'W'}, {"clip", required_argument, 0, 'c'},
        {"dropout", required_argument, 0, 'D'},      {"nprobe", required_argument, 0, 'n'},
        {"max-answer-len", required_argument, 0, 'a'}, {"seed", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 'j'},      {"checkpoint-every", required_argument, 0, 'k'},
        {"log", required_argument, 0, 'g'},          {"log-every", required_argument, 0, 'G'},
        {"limit-valid", required_argument, 0, 'v'},  {"no-eval-before", no_argument, 0, 'N'},
        {"kill-after-checkpoint", required_argument, 0, 'K'}, // tests: SIGKILL itself after that checkpoint
        {"resume", no_argument, 0, 'r'},             {"help", no_argument, 0, 'h'},
        {"add-gold", no_argument, 0, 'A'},
        {0, 0, 0, 0}};
    *o = (tq_options){.model_dir = phrex_cli_default_model_dir(),
                      .squad = "../shared/data/squad-v1.1/dev-v1.1.40-articles.json",
                      .train_titles = "data/splits/squad_train_titles.txt",
                      .valid_titles = "data/splits/squad_valid_titles.txt",
                      .epochs = 5, .batch = 12, .top_k = 100, .max_answer_len = PHREX_SEARCH_DEFAULT_MAX_ANSWER_LEN,
                      .lr = 3e-5f, .warmup_frac = 0.1f, .weight_decay = 0.01f, .clip = 1.0f, .dropout = 0.1f,
                      .seed = 2024, .checkpoint_every = 100, .log_every = 10};
    int c, steps_given = 0, epochs_given = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        steps_given |= c == 's', epochs_given |= c == 'E';
        int rc = parse_one(c, o);
        if (rc) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex train-query: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->dump_dir || !o->out_dir) {
        fprintf(stderr, "phrex train-query: --dump DUMP and --out DIR are required\n");
        return 2;
    }
    if (steps_given && epochs_given) {
        fprintf(stderr, "phrex train-query: give --steps or --epochs, not both\n");
        return 2;
    }
    return 0;
}


static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// --- the model ---------------------------------------------------------------------

// --model DIR (encoder/model_dir.h): a phrex model folder starts from its
// trained query encoders; a plain HF folder from the phrase model itself
// (DensePhrases initialises its query encoders as copies of it), with
// [CLS] pooling either way.
static int resolve_model(const char *dir, model_parts *mp) {
    phrex_model_paths paths;
    int rc = phrex_model_dir_resolve(dir, &paths);
    if (rc) return rc;
    memset(mp, 0, sizeof *mp);
    mp->trained = paths.trained;
    snprintf(mp->phrase, PATH_MAX, "%s", paths.phrase);
    snprintf(mp->query[0], PATH_MAX, "%s", paths.trained ? paths.query_start : paths.phrase);
    snprintf(mp->query[1], PATH_MAX, "%s", paths.trained ? paths.query_end : paths.phrase);
    // The tokenizer: the query encoder's vocab.txt, else (delta folders) the phrase model's.
    char vocab[PATH_MAX + 16];
    phrex_cli_path_join(vocab, sizeof vocab, mp->query[0], "vocab.txt");
    snprintf(mp->vocab_dir, PATH_MAX, "%s", file_exists(vocab) ? mp->query[0] : mp->phrase);
    return PHREX_OK;
}

// --- data ------------------------------------------------------------------------------

static int load_split(const char *titles_path, const tq_options *o, const phrex_wordpiece *wp,
                      phrex_squad_windows **out) {
    char **titles;
    int n;
    int rc = phrex_squad_read_titles(titles_path, &titles, &n);
    if (rc) return rc;
    phrex_squad_window_options wo = {384, 128, MAX_QUERY};
    rc = phrex_squad_windows_init(out, o->squad, wp, (const char *const *)titles, n, &wo);
    free(titles);
    if (rc) return rc;
    const phrex_squad_window_stats *st = phrex_squad_windows_stats(*out);
    fprintf(stderr, "%s: %zu articles, %zu questions, %zu usable\n", titles_path, st->articles, st->questions,
            st->kept);
    if (st->kept == 0) return phrex_fail(PHREX_ERR_INPUT, "%s: no usable question in these articles", titles_path);
    return PHREX_OK;
}

// --- search: the query encoders live here, so the searcher gets a stub ------------

static int stub_worker_init(void *model, void **worker) {
    *worker = model;
    return PHREX_OK;
}
static void stub_worker_free(void *worker) { (void)worker; }
static int stub_encode(void *w, const char *t, size_t n, float *qs, float *qe, int *tr) {
    (void)w, (void)t, (void)n, (void)qs, (void)qe, (void)tr;
    return phrex_fail(PHREX_ERR_INTERNAL, "train-query encodes questions itself");
}

static int open_search(trainer *t, const model_parts *mp) {
    static int dummy;
    phrex_query_backend b = {"train-query", t->C, &dummy, stub_worker_init, stub_worker_free, stub_encode, NULL};
    phrex_query_model *qm;
    int rc = phrex_query_model_init_backend(&qm, &b);
    if (rc) return rc;
    phrex_searcher_options so;
    phrex_searcher_options_default(&so);
    so.dump_dir = t->o->dump_dir;
    so.model_dir = mp->phrase;
    so.nprobe = t->o->nprobe;
    so.open_flags = PHREX_DUMP_OPEN_QUICK;
    if ((rc = phrex_searcher_init_with_model(&t->searcher, &so, qm))) return rc;
    if (phrex_searcher_info(t->searcher)->metric != PHREX_METRIC_INNER_PRODUCT)
        return phrex_fail(PHREX_ERR_INPUT, "%s: an L2 dump; query-side training scores by inner product",
                          t->o->dump_dir);
    phrex_search_options ho = {PHREX_UNIT_PHRASE, t->o->top_k, 0, t->o->max_answer_len};
    if ((rc = phrex_search_init(&t->h_train, t->searcher, &ho))) return rc;
    phrex_search_options eo = {PHREX_UNIT_PASSAGE, EVAL_TOP_K, 0, t->o->max_answer_len};
    return phrex_search_init(&t->h_eval, t->searcher, &eo);
}

// --- the trainer ---------------------------------------------------------------------

static void trainer_free(trainer *t) {
    for (int i = 0; i < 2; i++) {
        phrex_adamw_free(t->enc[i].opt);
        phrex_train_encoder_free(t->enc[i].e);
        phrex_train_bert_free(t->enc[i].m);
        free(t->qv[i]), free(t->dq[i]), free(t->dq_tok[i]);
    }
    phrex_search_free(t->h_train);
    phrex_search_free(t->h_eval);
    phrex_searcher_free(t->searcher);
    free(t->qids), free(t->qlens), free(t->sel), free(t->va), free(t->vb), free(t->gold), free(t->nk);
    free(t->scratch), free(t->perm), free(t->par_passage);
}

static int map_paragraphs(trainer *t, const phrex_squad_windows *train);

static int trainer_init(trainer *t, const tq_options *o, const model_parts *mp, int64_t updates,
                        const phrex_squad_windows *train) {
    int n_train = phrex_squad_windows_count(train);
    memset(t, 0, sizeof *t);
    t->o = o;
    int B = o->batch;
    phrex_adamw_config cfg = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                              .weight_decay = o->weight_decay,
                              .warmup_steps = (int64_t)llround(o->warmup_frac * (double)updates),
                              .total_steps = updates + 1, .max_grad_norm = 0}; // clipped jointly
    phrex_train_bert_options bo = {.num_layers = 0, .freeze_word_embeddings = 1};
    for (int i = 0; i < 2; i++) {
        encoder *x = &t->enc[i];
        int rc = phrex_train_bert_init(&x->m, mp->query[i], &bo);
        if (rc) return phrex_fail_context(rc, "%s", mp->query[i]), rc;
        if ((rc = phrex_train_encoder_init(&x->e, x->m, B * MAX_QUERY, MAX_QUERY))) return rc;
        phrex_train_params p = phrex_train_bert_params(x->m);
        if ((rc = phrex_adamw_init(&x->opt, &cfg, &p))) return rc;
    }
    t->C = phrex_train_bert_config(t->enc[0].m)->hidden_size;
    if (phrex_train_bert_config(t->enc[1].m)->hidden_size != t->C)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s and %s differ in hidden size", mp->query[0], mp->query[1]);
    int rc = open_search(t, mp);
    if (rc) return rc;
    if (o->add_gold && (rc = map_paragraphs(t, train))) return rc;
    t->K = o->top_k;
    size_t C = (size_t)t->C, K = (size_t)t->K;
    t->qids = malloc((size_t)B * MAX_QUERY * 4), t->qlens = malloc((size_t)B * 4), t->sel = malloc((size_t)B * 4);
    for (int i = 0; i < 2; i++) {
        t->qv[i] = malloc((size_t)B * C * 4), t->dq[i] = malloc((size_t)B * C * 4);
        t->dq_tok[i] = malloc((size_t)B * MAX_QUERY * C * 4);
    }
    K++; // room for the added gold span
    t->va = malloc((size_t)B * K * C * 4), t->vb = malloc((size_t)B * K * C * 4);
    t->gold = malloc((size_t)B * K), t->nk = malloc((size_t)B * sizeof *t->nk);
    t->scratch = malloc(4 * K * 4);
    t->perm = malloc((size_t)(n_train > 0 ? n_train : 1) * 4);
    t->perm_epoch = UINT64_MAX;
    if (!t->qids || !t->qlens || !t->sel || !t->qv[0] || !t->qv[1] || !t->dq[0] || !t->dq[1] || !t->dq_tok[0] ||
        !t->dq_tok[1] || !t->va || !t->vb || !t->gold || !t->nk || !t->scratch || !t->perm)
        return phrex_fail(PHREX_ERR_MEMORY, "train-query: out of memory for batches of %d x %d candidates", B, t->K);
    return PHREX_OK;
}

// --- encoding ----------------------------------------------------------------------------

static void gather_cls(const float *h, const int32_t *lens, int n, int C, float *q) {
    for (int b = 0, at = 0; b < n; at += lens[b], b++) memcpy(q + (size_t)b * C, h + (size_t)at * C, (size_t)C * 4);
}

static void scatter_cls(const float *dq, const int32_t *lens, int n, int C, int ntok, float *dtok) {
    memset(dtok, 0, (size_t)ntok * (size_t)C * 4);
    for (int b = 0, at = 0; b < n; at += lens[b], b++)
        memcpy(dtok + (size_t)at * C, dq + (size_t)b * C, (size_t)C * 4);
}

// Packs examples idx[0, n) into qids/qlens; returns the tokens.
static int pack_queries(trainer *t, const phrex_squad_windows *s, const int *idx, int n) {
    int at = 0;
    for (int b = 0; b < n; b++) {
        const phrex_squad_example *e = phrex_squad_windows_example(s, idx[b]);
        memcpy(t->qids + at, phrex_squad_windows_query(s, e), (size_t)e->query_len * 4);
        t->qlens[b] = e->query_len, at += e->query_len;
    }
    return at;
}

// [CLS] of both encoders over the packed batch; dropout p with `key`.
static int encode_packed(trainer *t, int n, float p, uint64_t key) {
    for (int i = 0; i < 2; i++) {
        const float *h;
        int rc = phrex_train_encoder_set_dropout(t->enc[i].e, p, p, key + (uint64_t)i);
        if (!rc) rc = phrex_train_encoder_forward(t->enc[i].e, t->qids, NULL, t->qlens, n, &h);
        if (rc) return rc;
        gather_cls(h, t->qlens, n, t->C, t->qv[i]);
    }
    return PHREX_OK;
}

// --- validation --------------------------------------------------------------------------

typedef struct {
    double em, f1; // percent
    int n;
} od_metrics;

// Open-domain EM/F1 of the top phrase over the dump, as phrex eval counts it.
static int evaluate(trainer *t, const phrex_squad_windows *s, int limit, od_metrics *m) {
    int n = phrex_squad_windows_count(s), B = t->o->batch, idx[256];
    if (limit > 0 && limit < n) n = limit;
    double em = 0, f1 = 0;
    phrex_progress bar;
    phrex_progress_init(&bar, "valid", "questions", n);
    for (int i0 = 0; i0 < n; i0 += B) {
        int nb = n - i0 < B ? n - i0 : B;
        for (int b = 0; b < nb; b++) idx[b] = i0 + b;
        pack_queries(t, s, idx, nb);
        int rc = encode_packed(t, nb, 0, 0);
        for (int b = 0; !rc && b < nb; b++) {
            phrex_search_output out;
            rc = phrex_search_vectors(t->h_eval, t->qv[0] + (size_t)b * t->C, t->qv[1] + (size_t)b * t->C, &out);
            if (rc) break;
            const phrex_squad_example *e = phrex_squad_windows_example(s, i0 + b);
            const char *pred = out.n > 0 ? out.results[0].answer : "";
            em += phrex_metric_max_exact_match(pred, e->answers, e->n_answers);
            f1 += phrex_metric_max_f1(pred, e->answers, e->n_answers);
        }
        if (rc) return phrex_progress_finish(&bar), rc;
        phrex_progress_add(&bar, nb, NULL);
    }
    phrex_progress_finish(&bar);
    *m = (od_metrics){100.0 * em / n, 100.0 * f1 / n, n};
    return PHREX_OK;
}

// --- one batch ---------------------------------------------------------------------------

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

// --- top-k + gold -------------------------------------------------------------------------

static uint64_t text_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

// For --add-gold: the dump passage holding each training paragraph's exact
// text (-1: none), from one pass over the dump's passages.
static int map_paragraphs(trainer *t, const phrex_squad_windows *train) {
    phrex_dump *d = phrex_searcher_dump(t->searcher);
    int64_t np = phrex_dump_get_info(d)->passages;
    size_t size = 16;
    while (size < 2 * (size_t)np) size *= 2;
    uint64_t *keys = calloc(size, sizeof *keys);
    int64_t *vals = malloc(size * sizeof *vals);
    int n_par = (int)phrex_squad_windows_stats(train)->paragraphs, rc = PHREX_OK, found = 0;
    t->par_passage = malloc((size_t)(n_par > 0 ? n_par : 1) * sizeof *t->par_passage);
    if (!keys || !vals || !t->par_passage) rc = phrex_fail(PHREX_ERR_MEMORY, "train-query: cannot map paragraphs");
    for (int64_t i = 0; !rc && i < np; i++) {
        phrex_dump_passage p;
        if ((rc = phrex_dump_get_passage(d, i, &p))) break;
        uint64_t h = text_hash(p.text, p.text_len) | 1; // 0 marks an empty slot
        size_t b = h & (size - 1);
        while (keys[b] && keys[b] != h) b = (b + 1) & (size - 1);
        if (!keys[b]) keys[b] = h, vals[b] = i; // the first passage of a text
    }
    for (int i = 0; !rc && i < n_par; i++) {
        const phrex_squad_paragraph *q = phrex_squad_windows_paragraph(train, i);
        uint64_t h = text_hash(q->context, q->context_len) | 1;
        size_t b = h & (size - 1);
        while (keys[b] && keys[b] != h) b = (b + 1) & (size - 1);
        t->par_passage[i] = -1;
        phrex_dump_passage p;
        if (!keys[b] || (rc = phrex_dump_get_passage(d, vals[b], &p))) continue;
        if (p.text_len == q->context_len && !memcmp(p.text, q->context, p.text_len)) t->par_passage[i] = vals[b], found++;
    }
    free(keys), free(vals);
    if (!rc) fprintf(stderr, "--add-gold: %d of %d training paragraphs are in the dump\n", found, n_par);
    return rc;
}

// The vector ids of example e's annotated span in the dump, or -1 when its
// paragraph is not there or a boundary token has no vector.
static int gold_span_ids(trainer *t, const phrex_squad_windows *train, const phrex_squad_example *e, int64_t *sid,
                         int64_t *eid) {
    *sid = *eid = -1;
    int64_t number = t->par_passage[e->paragraph];
    if (number < 0) return (t->gold_missing++, PHREX_OK);
    int32_t ids[512], os[512], oe[512];
    phrex_squad_windows_fill(train, e->window, ids, os, oe);
    int32_t bs = os[e->gold_start], be = oe[e->gold_end], ts = -1, te = -1;
    phrex_dump *d = phrex_searcher_dump(t->searcher);
    phrex_dump_passage p;
    int rc = phrex_dump_get_passage(d, number, &p);
    if (rc) return rc;
    for (int32_t k = 0; k < p.n_tokens; k++) {
        if (ts < 0 && p.start[k] == bs) ts = k;
        if (p.end[k] == be) te = k;
    }
    if (ts < 0 || te < ts || te - ts >= t->o->max_answer_len) return (t->gold_missing++, PHREX_OK);
    if ((rc = phrex_dump_vector_id(d, number, ts, sid)) || (rc = phrex_dump_vector_id(d, number, te, eid))) return rc;
    if (*sid < 0 || *eid < 0) *sid = *eid = -1, t->gold_missing++;
    return PHREX_OK;
}

// Retrieves the top-k phrases of question b (vectors in qv[.] row b), marks
// the gold ones and reconstructs their vectors. Returns 1 when one is gold.
static int retrieve(trainer *t, const phrex_squad_windows *train, const phrex_squad_example *e, int b, int *rc) {
    phrex_search_output out;
    size_t C = (size_t)t->C, K = (size_t)t->K + 1;
    *rc = phrex_search_vectors(t->h_train, t->qv[0] + b * C, t->qv[1] + b * C, &out);
    if (*rc) return 0;
    uint8_t *gold = t->gold + (size_t)b * K;
    int any = 0, n = out.n;
    int64_t sid = -1, eid = -1;
    if (t->o->add_gold && (*rc = gold_span_ids(t, train, e, &sid, &eid))) return 0;
    int have_span = sid < 0;
    for (int r = 0; r < n; r++) {
        any |= gold[r] = (uint8_t)phrex_metric_max_exact_match(out.results[r].answer, e->answers, e->n_answers);
        have_span |= out.results[r].start_id == sid && out.results[r].end_id == eid;
    }
    for (int r = 0; any && r < n && !*rc; r++) {
        *rc = phrex_searcher_reconstruct(t->searcher, out.results[r].start_id, t->va + ((size_t)b * K + r) * C);
        if (!*rc)
            *rc = phrex_searcher_reconstruct(t->searcher, out.results[r].end_id, t->vb + ((size_t)b * K + r) * C);
    }
    if (!have_span && !*rc) { // top-k + gold: the annotated span as one more candidate
        for (int r = 0; !any && r < n && !*rc; r++) { // the others' vectors were not needed until now
            *rc = phrex_searcher_reconstruct(t->searcher, out.results[r].start_id, t->va + ((size_t)b * K + r) * C);
            if (!*rc)
                *rc = phrex_searcher_reconstruct(t->searcher, out.results[r].end_id, t->vb + ((size_t)b * K + r) * C);
        }
        if (!*rc) *rc = phrex_searcher_reconstruct(t->searcher, sid, t->va + ((size_t)b * K + n) * C);
        if (!*rc) *rc = phrex_searcher_reconstruct(t->searcher, eid, t->vb + ((size_t)b * K + n) * C);
        gold[n++] = 1, any = 1;
        t->gold_added++;
    }
    t->nk[b] = n;
    return any;
}

typedef struct {
    phrex_query_train_loss_parts sum; // over the kept questions
    int used, top1;
    float grad_norm;
} batch_stats;

// Moves the rows of the kept questions to the front of the batch buffers.
static void compact(trainer *t, int n_sel) {
    size_t C = (size_t)t->C, K = (size_t)t->K + 1;
    for (int s = 0; s < n_sel; s++) {
        int b = t->sel[s];
        if (b == s) continue;
        memmove(t->va + s * K * C, t->va + b * K * C, K * C * 4);
        memmove(t->vb + s * K * C, t->vb + b * K * C, K * C * 4);
        memmove(t->gold + s * K, t->gold + b * K, K);
        t->nk[s] = t->nk[b];
    }
}

static int update(trainer *t, const phrex_squad_windows *train, const int *idx, int n_sel, uint64_t key,
                  batch_stats *st) {
    int C = t->C, K = t->K + 1;
    int ntok = pack_queries(t, train, idx, n_sel);
    int rc = encode_packed(t, n_sel, t->o->dropout, key);
    if (rc) return rc;
    memset(t->dq[0], 0, (size_t)n_sel * C * 4), memset(t->dq[1], 0, (size_t)n_sel * C * 4);
    for (int s = 0; s < n_sel; s++) {
        phrex_query_train_loss_parts p;
        phrex_query_train_loss(t->qv[0] + (size_t)s * C, t->qv[1] + (size_t)s * C, t->va + (size_t)s * K * C,
                               t->vb + (size_t)s * K * C, t->gold + (size_t)s * K, t->nk[s], C, 1.0f / n_sel,
                               t->dq[0] + (size_t)s * C, t->dq[1] + (size_t)s * C, t->scratch, &p);
        st->sum.loss += p.loss, st->sum.phrase += p.phrase, st->sum.start += p.start, st->sum.end += p.end;
        st->top1 += p.top1_gold;
    }
    for (int i = 0; i < 2 && !rc; i++) {
        phrex_train_bert_zero_grads(t->enc[i].m);
        scatter_cls(t->dq[i], t->qlens, n_sel, C, ntok, t->dq_tok[i]);
        rc = phrex_train_encoder_backward(t->enc[i].e, t->dq_tok[i]);
    }
    if (rc) return rc;
    phrex_adamw *opts[2] = {t->enc[0].opt, t->enc[1].opt};
    phrex_train_params p[2] = {phrex_train_bert_params(t->enc[0].m), phrex_train_bert_params(t->enc[1].m)};
    float *grads[2] = {p[0].grads, p[1].grads};
    double norm = phrex_adamw_clip_joint(opts, grads, 2, t->o->clip > 0 ? t->o->clip : INFINITY);
    if (!isfinite(norm))
        return phrex_fail(PHREX_ERR_INPUT, "train-query: gradient norm is not finite; lower --lr");
    st->grad_norm = (float)norm;
    for (int i = 0; i < 2 && !rc; i++) rc = phrex_adamw_step(opts[i], &p[i], NULL);
    return rc;
}

// One batch of B questions: retrieve, keep those with a gold phrase,
// update on them (no update when none has one, as DensePhrases skips a
// batch whose loss is None).
static int train_batch(trainer *t, const phrex_squad_windows *train, phrex_train_progress *pr, batch_stats *st) {
    int n = phrex_squad_windows_count(train), B = t->o->batch, idx[256], kept[256], rc;
    memset(st, 0, sizeof *st);
    for (int b = 0; b < B; b++) {
        if (pr->data_pos >= (uint64_t)n) pr->data_epoch++, pr->data_pos = 0;
        draw_permutation(t, pr->data_epoch, n);
        idx[b] = (int)t->perm[pr->data_pos++];
    }
    pack_queries(t, train, idx, B);
    if ((rc = encode_packed(t, B, 0, 0))) return rc;
    int n_sel = 0;
    for (int b = 0; b < B; b++) {
        if (retrieve(t, train, phrex_squad_windows_example(train, idx[b]), b, &rc)) t->sel[n_sel++] = b;
        if (rc) return rc;
    }
    for (int s = 0; s < n_sel; s++) kept[s] = idx[t->sel[s]];
    compact(t, n_sel);
    st->used = n_sel;
    int64_t step = pr->step + 1;
    uint64_t key = phrex_rng_hash(t->o->seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ull));
    if (n_sel && (rc = update(t, train, kept, n_sel, key, st))) return rc;
    pr->step = step;
    return PHREX_OK;
}

// --- checkpoints -----------------------------------------------------------------------

static uint64_t options_hash(const tq_options *o, int64_t steps) {
    char buf[8192];
    snprintf(buf, sizeof buf, "%s|%s|%s|%s|%lld|%d|%d|%d|%d|%.9g|%.9g|%.9g|%.9g|%.9g|%llu|%d", o->dump_dir, o->model_dir,
             o->squad, o->train_titles, (long long)steps, o->batch, o->top_k, o->nprobe, o->max_answer_len, o->lr,
             o->warmup_frac, o->weight_decay, o->clip, o->dropout, o->seed, o->add_gold);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = buf; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

static int save_state(trainer *t, const char *path, const phrex_train_progress *pr, const tq_counts *c) {
    phrex_train_slot slots[2] = {{t->enc[0].m, t->enc[0].opt}, {t->enc[1].m, t->enc[1].opt}};
    return phrex_checkpoint_save_states(path, slots, 2, pr, c, sizeof *c);
}

static int load_state(trainer *t, const char *path, phrex_train_progress *pr, tq_counts *c, uint64_t hash) {
    phrex_train_slot slots[2] = {{t->enc[0].m, t->enc[0].opt}, {t->enc[1].m, t->enc[1].opt}};
    int rc = phrex_checkpoint_load_states(path, slots, 2, pr, c, sizeof *c);
    if (rc) return phrex_fail_context(rc, "%s", path), rc;
    if (pr->user[0] != hash)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s was written by a run with different options; resume with the same ones",
                          path);
    return PHREX_OK;
}

// --- outputs --------------------------------------------------------------------------------

static void write_str(FILE *f, const char *s) { phrex_json_write_string(f, s, strlen(s)); }

static int save_model(trainer *t, const tq_options *o, const model_parts *mp, int64_t steps, const tq_counts *c) {
    static const char *const names[2] = {"query_start", "query_end"};
    char path[PATH_MAX + 32], phrase_abs[PATH_MAX], dump_abs[PATH_MAX];
    for (int i = 0; i < 2; i++) {
        phrex_cli_path_join(path, sizeof path, o->out_dir, names[i]);
        int rc = phrex_checkpoint_save_model(path, t->enc[i].m, PHREX_DTYPE_F32, mp->vocab_dir);
        if (rc) return rc;
    }
    // Absolute, so the folder can move without losing the phrase encoder.
    if (!realpath(mp->phrase, phrase_abs)) return phrex_fail(PHREX_ERR_IO, "%s: %s", mp->phrase, strerror(errno));
    if (!realpath(o->dump_dir, dump_abs)) snprintf(dump_abs, sizeof dump_abs, "%s", o->dump_dir);
    phrex_cli_path_join(path, sizeof path, o->out_dir, "phrex_model.json");
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "{\"format\": \"%s\", \"version\": %d,\n \"encoders\": {\"phrase\": ", MODEL_FORMAT, MODEL_VERSION);
    write_str(f, phrase_abs);
    fprintf(f, ", \"query_start\": \"query_start\", \"query_end\": \"query_end\"},\n"
               " \"vectors\": \"phrase: every token's last hidden state is its start and end vector; "
               "query_start/query_end: the [CLS] last hidden state\",\n"
               " \"hidden_size\": %d, \"max_query_len\": %d, \"max_answer_len\": %d, \"dtype\": \"f32\",\n"
               " \"query_tuning\": {\"steps\": %lld, \"updates\": %lld, \"questions_used\": %lld, "
               "\"questions_skipped\": %lld, \"top_k\": %d, \"add_gold\": %s, \"dump\": ",
            t->C, MAX_QUERY, o->max_answer_len, (long long)steps, (long long)c->updates, (long long)c->used,
            (long long)c->skipped, o->top_k, o->add_gold ? "true" : "false");
    write_str(f, dump_abs);
    fputs(", \"from\": ", f);
    write_str(f, o->model_dir);
    fputs("}}\n", f);
    return fclose(f) ? phrex_fail(PHREX_ERR_IO, "%s: write failed", path) : PHREX_OK;
}

static void write_metric(FILE *f, const char *name, const od_metrics *m) {
    if (!m) fprintf(f, "\"%s\": null", name);
    else fprintf(f, "\"%s\": {\"exact_match\": %.4f, \"f1\": %.4f, \"questions\": %d}", name, m->em, m->f1, m->n);
}

static int write_metrics(const tq_options *o, const od_metrics *before, const od_metrics *after) {
    char path[PATH_MAX + 32];
    phrex_cli_path_join(path, sizeof path, o->out_dir, "valid_metrics.json");
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fputs("{\"task\": \"open-domain\", \"unit\": \"passage\", \"top_k\": 100, ", f);
    write_metric(f, "before", before);
    fputs(", ", f);
    write_metric(f, "after", after);
    fputs(", \"titles\": ", f);
    write_str(f, o->valid_titles);
    fputs(", \"dump\": ", f);
    write_str(f, o->dump_dir);
    fputs("}\n", f);
    return fclose(f) ? phrex_fail(PHREX_ERR_IO, "%s: write failed", path) : PHREX_OK;
}

// --- the run -----------------------------------------------------------------------------------

static int train_loop(trainer *t, const phrex_squad_windows *train, int64_t steps, phrex_train_progress *pr,
                      tq_counts *c, const char *state_path, FILE *log) {
    const tq_options *o = t->o;
    phrex_progress bar;
    phrex_progress_init(&bar, "train-query", "batches", steps);
    bar.done = pr->step;
    double t0 = phrex_now_seconds(), loss = 0, gnorm = 0;
    int64_t first = pr->step, used = 0, top1 = 0, seen = 0, updates = 0;
    char extra[160];
    while (pr->step < steps) {
        batch_stats st;
        int rc = train_batch(t, train, pr, &st);
        if (rc) return phrex_progress_finish(&bar), rc;
        c->used += st.used, c->skipped += o->batch - st.used, c->updates += st.used > 0;
        loss += st.sum.loss, used += st.used, top1 += st.top1, seen += o->batch;
        gnorm += st.grad_norm, updates += st.used > 0;
        double q_s = (double)(pr->step - first) * o->batch / (phrex_now_seconds() - t0);
        snprintf(extra, sizeof extra, "loss %.3f  %.1f q/s", st.used ? st.sum.loss / st.used : 0.0, q_s);
        phrex_progress_add(&bar, 1, extra);
        if (log && (pr->step % o->log_every == 0 || pr->step == steps)) {
            float lr = phrex_adamw_lr_at(phrex_adamw_get_config(t->enc[0].opt), phrex_adamw_steps(t->enc[0].opt));
            fprintf(log, "batch %lld/%lld epoch %llu loss %.5f used %lld/%lld top1_gold %.4f updates %lld lr %.4g "
                         "mean_grad_norm %.4f questions/s %.2f\n",
                    (long long)pr->step, (long long)steps, (unsigned long long)pr->data_epoch,
                    used ? loss / (double)used : 0.0, (long long)used, (long long)seen,
                    used ? (double)top1 / (double)used : 0.0, (long long)c->updates, lr,
                    updates ? gnorm / (double)updates : 0.0, q_s);
            fflush(log);
            loss = gnorm = 0, used = top1 = seen = updates = 0;
        }
        if (o->checkpoint_every && (pr->step % o->checkpoint_every == 0 || pr->step == steps)) {
            if ((rc = save_state(t, state_path, pr, c))) return phrex_progress_finish(&bar), rc;
            if (o->kill_after && pr->step == o->kill_after) raise(SIGKILL);
        }
    }
    phrex_progress_finish(&bar);
    printf("trained %lld batches of %d: %lld updates; %lld questions used, %lld skipped (no gold phrase in the top %d)\n",
           (long long)steps, o->batch, (long long)c->updates, (long long)c->used, (long long)c->skipped, o->top_k);
    if (o->add_gold)
        printf("--add-gold (this session): %lld annotated spans added, %lld not found in the dump\n",
               (long long)t->gold_added, (long long)t->gold_missing);
    return PHREX_OK;
}

static int load_data(const tq_options *o, const model_parts *mp, phrex_squad_windows **train,
                     phrex_squad_windows **valid) {
    char vocab[PATH_MAX + 16];
    phrex_cli_path_join(vocab, sizeof vocab, mp->vocab_dir, "vocab.txt");
    phrex_wordpiece *wp;
    int rc = phrex_wordpiece_init(&wp, vocab, 1);
    if (rc) return rc;
    rc = load_split(o->train_titles, o, wp, train);
    if (!rc) rc = load_split(o->valid_titles, o, wp, valid);
    phrex_wordpiece_free(wp);
    return rc;
}

static int run(const tq_options *o) {
    if (o->threads) phrex_set_threads(o->threads);
    if (mkdir(o->out_dir, 0777) && errno != EEXIST)
        return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", o->out_dir, strerror(errno));
    char state_path[PATH_MAX + 32];
    phrex_cli_path_join(state_path, sizeof state_path, o->out_dir, "train_state.bin");
    if (!o->resume && file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "%s exists: pass --resume to continue that run, or choose another --out",
                          state_path);
    if (o->resume && !file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "--resume: %s does not exist", state_path);
    model_parts mp;
    phrex_squad_windows *train = NULL, *valid = NULL;
    int rc = resolve_model(o->model_dir, &mp);
    if (!rc) rc = load_data(o, &mp, &train, &valid);
    int n_train = train ? phrex_squad_windows_count(train) : 0;
    int64_t steps = o->steps ? o->steps : (int64_t)fmax(1, ceil(o->epochs * n_train / o->batch));
    trainer t;
    memset(&t, 0, sizeof t);
    if (!rc) rc = trainer_init(&t, o, &mp, steps, train);
    phrex_train_progress pr = {.user = {options_hash(o, steps)}};
    tq_counts counts = {0, 0, 0};
    if (!rc && o->resume && !(rc = load_state(&t, state_path, &pr, &counts, pr.user[0])))
        fprintf(stderr, "resuming at batch %lld of %lld\n", (long long)pr.step, (long long)steps);
    od_metrics before, after;
    int have_before = 0;
    if (!rc && !o->resume && !o->no_eval_before && !(rc = evaluate(&t, valid, o->limit_valid, &before))) {
        have_before = 1;
        printf("validation before (%d questions): EM %.2f  F1 %.2f\n", before.n, before.em, before.f1);
        fflush(stdout); // seen before the long training part, also when piped
    }
    FILE *log = NULL;
    if (!rc) rc = phrex_cli_open_train_log(o->log_path, o->out_dir, &log);
    if (!rc) rc = train_loop(&t, train, steps, &pr, &counts, state_path, log);
    if (log) fclose(log);
    if (!rc) rc = save_model(&t, o, &mp, steps, &counts);
    if (!rc && !(rc = evaluate(&t, valid, o->limit_valid, &after)))
        printf("validation after (%d questions): EM %.2f  F1 %.2f\n", after.n, after.em, after.f1);
    if (!rc) rc = write_metrics(o, have_before ? &before : NULL, &after);
    trainer_free(&t);
    phrex_squad_windows_free(train);
    phrex_squad_windows_free(valid);
    return rc;
}

int cmd_train_query(int argc, char **argv) {
    tq_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (run(&o)) {
        fprintf(stderr, "phrex train-query: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}

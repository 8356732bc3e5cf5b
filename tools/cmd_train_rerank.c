// phrex train-rerank: the shallow cross-encoder reranker (rerank/), in two
// steps so that ablation runs share one set of mined negatives:
//
//   phrex train-rerank --mine --titles FILE --out MINE_DIR
//       MINE_DIR/articles.json     the listed SQuAD articles (the corpus)
//       MINE_DIR/dump/             a phrase dump over their paragraphs only
//       MINE_DIR/candidates.jsonl  each question's top-k phrases from phrex's
//                                  own retriever (rerank/rerank_data.h)
//
//   phrex train-rerank --out DIR --candidates TRAIN.jsonl --valid-candidates VALID.jsonl
//       DIR/encoder/, DIR/head.safetensors, DIR/phrex_reranker.json
//                                  the reranker (rerank/reranker.h loads it)
//       DIR/valid_metrics.json     reranking quality on the validation questions
//       DIR/train_state.bin        the last checkpoint (--resume reads it)
//       DIR/train.log              one line per --log-every updates (appended)
//
// A training group is one question with its positive (the gold span in the
// gold paragraph) and N negatives: hard ones sampled from the mined phrases
// that do not match a gold answer, random ones (random word spans of random
// paragraphs of the split); with probability --passage-frac a group is
// passage-level instead (gold paragraph against other mined or random
// paragraphs without the answer, no span marks). Loss: gBCE (rerank/gbce.h)
// with α = N / pool.
//
// Curriculum (--easy-frac): the first share of the updates draws only random
// negatives. Measured on the SQuAD split (docs/reranking.md): with mined
// negatives from the first update the score stayed at the constant optimum
// for 300 updates (accuracy at chance), while random negatives alone left it
// after ~130 updates; hard negatives then refine a model that already reads
// the question against the passage.
//
// Data order, negatives and dropout are functions of (seed, step, epoch), so a
// killed run resumes bit-identically from its last state file.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/progress.h"
#include "common/threads.h"
#include "data/metrics.h"
#include "data/qa.h"
#include "data/squad_windows.h"
#include "encoder/adamw.h"
#include "encoder/checkpoint.h"
#include "encoder/embedder.h"
#include "encoder/train_rng.h"
#include "index/build.h"
#include "rerank/gbce.h"
#include "rerank/rerank_data.h"
#include "rerank/rerank_train.h"
#include "rerank/reranker.h"
#include "search/search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RANDOM_TRIES 16     // draws for a random negative that is not an answer
#define RANDOM_SPAN_WORDS 4 // random spans are 1..4 words
#define HEAD_SCALE 0.02f

typedef struct {
    const char *out_dir, *base_dir, *squad, *titles, *candidates, *valid_candidates, *log_path, *mine_model;
    int mine, mine_k;
    int layers, negatives, pool, batch, steps, max_seq_len, threads, valid_k, limit_valid;
    int checkpoint_every, log_every, kill_after, train_embeddings, f16, stop_at;
    double epochs;
    float t, lr, head_lr_mult, warmup_frac, weight_decay, clip, dropout, random_frac, passage_frac, easy_frac;
    unsigned long long seed;
    int resume, eval_only;
    phrex_rerank_pool head_pool;
} rr_options;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex train-rerank --mine --titles FILE --out MINE_DIR [options]\n"
            "       phrex train-rerank --out DIR --candidates FILE --valid-candidates FILE [options]\n"
            "       phrex train-rerank --eval-only --out DIR --valid-candidates FILE\n\n"
            "mining (hard negatives from phrex's own retriever):\n"
            "  --mine                 build MINE_DIR/articles.json, MINE_DIR/dump and MINE_DIR/candidates.jsonl\n"
            "  --titles FILE          the articles (one title a line), e.g. data/splits/squad_train_titles.txt\n"
            "  --squad FILE           SQuAD v1.1 JSON (default ../shared/data/squad-v1.1/dev-v1.1.40-articles.json)\n"
            "  --model DIR            the phrase model that builds the dump and answers (default %s)\n"
            "  --mine-k K             phrases kept per question (default 100)\n\n"
            "training:\n"
            "  --out DIR              where the reranker, checkpoints, log and metrics go\n"
            "  --candidates FILE      mined training candidates (MINE_DIR/candidates.jsonl)\n"
            "  --valid-candidates F   mined validation candidates\n"
            "  --base DIR             the backbone's start, HF layout (default %s)\n"
            "  --layers K             its lower K layers (default 2)\n"
            "  --negatives N          negatives per question, hard + random (default 8)\n"
            "  --random-frac X        share of random negatives (default 0.25)\n"
            "  --easy-frac X          the first X of the updates use random negatives only (default 0.2)\n"
            "  --pool P               hard negatives are drawn from the top P mined phrases (default: all)\n"
            "  --head-pool H          what the score head reads: marks (mean of [CLS] and the two span\n"
            "                         markers; default) or cls\n"
            "  --t T                  gBCE calibration, 0 = plain BCE (default 0.75)\n"
            "  --passage-frac X       share of passage-level groups (default 0.2)\n"
            "  --steps N | --epochs E updates, or passes over the training questions (default 1 epoch)\n"
            "  --batch N              questions per update (default 4)\n"
            "  --lr X                 peak learning rate (default 2e-4)\n"
            "  --head-lr-mult X       the score head's learning rate is X times --lr (default 10)\n"
            "  --warmup-frac X        linear warm-up share (default 0.1)\n"
            "  --weight-decay X       AdamW decoupled decay (default 0.01)\n"
            "  --clip X               gradient-norm clipping, 0 = none (default 1.0)\n"
            "  --dropout X            hidden and attention dropout (default 0.1)\n"
            "  --max-seq-len N        tokens per pair (default 64)\n"
            "  --train-embeddings     also train the word embeddings (frozen by default)\n"
            "  --f16                  save the encoder and head as f16 (default f32)\n"
            "  --seed S               data order, negatives, dropout (default 2024)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --checkpoint-every N   save DIR/train_state.bin every N updates (default 100; 0 = never)\n"
            "  --log FILE             append progress lines here (default DIR/train.log)\n"
            "  --log-every N          updates per log line (default 10)\n"
            "  --valid-k K            candidates reranked per validation question (default 20)\n"
            "  --limit-valid N        validation questions used (default 200)\n"
            "  --resume               continue from DIR/train_state.bin with the same options\n"
            "  --stop-at N            stop after update N (the schedule still spans --steps), save the reranker\n"
            "                         and evaluate; a later --resume continues (with --resume --stop-at equal\n"
            "                         to the last checkpoint: export that checkpoint)\n"
            "  --eval-only            evaluate DIR's reranker on --valid-candidates, no training\n",
            phrex_cli_default_model_dir(), phrex_cli_base_model_dir());
}

static int parse_one(int c, rr_options *o) {
    switch (c) {
    case 'o': o->out_dir = optarg; return 0;
    case 'B': o->base_dir = optarg; return 0;
    case 'm': o->mine_model = optarg; return 0;
    case 'q': o->squad = optarg; return 0;
    case 'T': o->titles = optarg; return 0;
    case 'c': o->candidates = optarg; return 0;
    case 'V': o->valid_candidates = optarg; return 0;
    case 'M': o->mine = 1; return 0;
    case 'k': return phrex_cli_parse_int("--mine-k", optarg, 1, 1000, &o->mine_k);
    case 'L': return phrex_cli_parse_int("--layers", optarg, 1, 64, &o->layers);
    case 'n': return phrex_cli_parse_int("--negatives", optarg, 1, 1000, &o->negatives);
    case 'R': return phrex_cli_parse_float("--random-frac", optarg, 0, 1, &o->random_frac);
    case 'y': return phrex_cli_parse_float("--easy-frac", optarg, 0, 1, &o->easy_frac);
    case 'Y':
        if (phrex_rerank_pool_parse(optarg, &o->head_pool) == PHREX_OK) return 0;
        fprintf(stderr, "phrex train-rerank: --head-pool: %s\n", phrex_last_error());
        return 2;
    case 'P': return phrex_cli_parse_int("--pool", optarg, 1, 100000, &o->pool);
    case 't': return phrex_cli_parse_float("--t", optarg, 0, 1, &o->t);
    case 'p': return phrex_cli_parse_float("--passage-frac", optarg, 0, 1, &o->passage_frac);
    case 's': return phrex_cli_parse_int("--steps", optarg, 1, 1 << 30, &o->steps);
    case 'E': return phrex_cli_parse_double("--epochs", optarg, 1e-6, 1e6, &o->epochs);
    case 'b': return phrex_cli_parse_int("--batch", optarg, 1, 1024, &o->batch);
    case 'l': return phrex_cli_parse_float("--lr", optarg, 0, 1, &o->lr);
    case 'H': return phrex_cli_parse_float("--head-lr-mult", optarg, 0, 1e4, &o->head_lr_mult);
    case 'w': return phrex_cli_parse_float("--warmup-frac", optarg, 0, 1, &o->warmup_frac);
    case 'd': return phrex_cli_parse_float("--weight-decay", optarg, 0, 1, &o->weight_decay);
    case 'C': return phrex_cli_parse_float("--clip", optarg, 0, 1e6, &o->clip);
    case 'D': return phrex_cli_parse_float("--dropout", optarg, 0, 0.9, &o->dropout);
    case 'x': return phrex_cli_parse_int("--max-seq-len", optarg, PHREX_RERANK_MIN_SEQ_LEN, 4096, &o->max_seq_len);
    case 'e': o->train_embeddings = 1; return 0;
    case 'F': o->f16 = 1; return 0;
    case 'S': return phrex_cli_parse_seed(optarg, &o->seed);
    case 'j': return phrex_cli_parse_int("--threads", optarg, 1, 1024, &o->threads);
    case 'K': return phrex_cli_parse_int("--checkpoint-every", optarg, 0, 1 << 30, &o->checkpoint_every);
    case 'g': o->log_path = optarg; return 0;
    case 'G': return phrex_cli_parse_int("--log-every", optarg, 1, 1 << 30, &o->log_every);
    case 'v': return phrex_cli_parse_int("--valid-k", optarg, 1, 1000, &o->valid_k);
    case 'I': return phrex_cli_parse_int("--limit-valid", optarg, 1, 1 << 30, &o->limit_valid);
    case 'X': return phrex_cli_parse_int("--kill-after-checkpoint", optarg, 1, 1 << 30, &o->kill_after);
    case 'r': o->resume = 1; return 0;
    case 'Z': return phrex_cli_parse_int("--stop-at", optarg, 1, 1 << 30, &o->stop_at);
    case 'O': o->eval_only = 1; return 0;
    case 'h': print_help(stdout); return -1;
    default: print_help(stderr); return 2;
    }
}

static int usage_error(const char *msg) {
    fprintf(stderr, "phrex train-rerank: %s\n", msg);
    return 2;
}

static int parse_options(int argc, char **argv, rr_options *o) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},           {"base", required_argument, 0, 'B'},
        {"model", required_argument, 0, 'm'},         {"squad", required_argument, 0, 'q'},
        {"titles", required_argument, 0, 'T'},        {"candidates", required_argument, 0, 'c'},
        {"valid-candidates", required_argument, 0, 'V'}, {"mine", no_argument, 0, 'M'},
        {"mine-k", required_argument, 0, 'k'},        {"layers", required_argument, 0, 'L'},
        {"negatives", required_argument, 0, 'n'},     {"random-frac", required_argument, 0, 'R'},
        {"easy-frac", required_argument, 0, 'y'},     {"head-pool", required_argument, 0, 'Y'},
        {"pool", required_argument, 0, 'P'},          {"t", required_argument, 0, 't'},
        {"passage-frac", required_argument, 0, 'p'},  {"steps", required_argument, 0, 's'},
        {"epochs", required_argument, 0, 'E'},        {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},            {"warmup-frac", required_argument, 0, 'w'},
        {"head-lr-mult", required_argument, 0, 'H'},
        {"weight-decay", required_argument, 0, 'd'},  {"clip", required_argument, 0, 'C'},
        {"dropout", required_argument, 0, 'D'},       {"max-seq-len", required_argument, 0, 'x'},
        {"train-embeddings", no_argument, 0, 'e'},    {"f16", no_argument, 0, 'F'},
        {"seed", required_argument, 0, 'S'},          {"threads", required_argument, 0, 'j'},
        {"checkpoint-every", required_argument, 0, 'K'}, {"log", required_argument, 0, 'g'},
        {"log-every", required_argument, 0, 'G'},     {"valid-k", required_argument, 0, 'v'},
        {"limit-valid", required_argument, 0, 'I'},
        {"kill-after-checkpoint", required_argument, 0, 'X'}, // tests: SIGKILL itself after that checkpoint
        {"resume", no_argument, 0, 'r'},              {"eval-only", no_argument, 0, 'O'},
        {"stop-at", required_argument, 0, 'Z'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    *o = (rr_options){.base_dir = phrex_cli_base_model_dir(), .mine_model = phrex_cli_default_model_dir(),
                      .squad = "../shared/data/squad-v1.1/dev-v1.1.40-articles.json", .mine_k = 100,
                      .layers = 2, .negatives = 8, .batch = 4, .max_seq_len = 64, .valid_k = 20,
                      .limit_valid = 200, .checkpoint_every = 100, .log_every = 10, .epochs = 1,
                      .t = (float)PHREX_GBCE_DEFAULT_T, .lr = 2e-4f, .head_lr_mult = PHREX_RERANK_HEAD_LR_MULT, .warmup_frac = 0.1f, .weight_decay = 0.01f,
                      .clip = 1.0f, .dropout = 0.1f, .random_frac = 0.25f, .passage_frac = 0.2f,
                      .easy_frac = 0.2f, .head_pool = PHREX_RERANK_POOL_MARKS, .seed = 2024};
    int c, steps_given = 0, epochs_given = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        steps_given |= c == 's', epochs_given |= c == 'E';
        int rc = parse_one(c, o);
        if (rc) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex train-rerank: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->out_dir) return usage_error("--out DIR is required");
    if (steps_given && epochs_given) return usage_error("give --steps or --epochs, not both");
    if (o->mine && !o->titles) return usage_error("--mine needs --titles FILE");
    if (o->mine && (o->resume || o->eval_only)) return usage_error("--mine excludes --resume and --eval-only");
    if (o->resume && o->eval_only) return usage_error("--resume and --eval-only exclude each other");
    if (!o->mine && !o->valid_candidates) return usage_error("--valid-candidates FILE is required");
    if (!o->mine && !o->eval_only && !o->candidates) return usage_error("--candidates FILE is required");
    return 0;
}


static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int make_dir(const char *dir) {
    if (mkdir(dir, 0777) && errno != EEXIST) return phrex_fail(PHREX_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    return PHREX_OK;
}

// === mining ===========================================================================

// DIR/articles.json: the SQuAD file with only the listed articles, so that
// the dump holds their paragraphs alone. Every title must exist.
static int write_articles(const char *squad, char **titles, int n_titles, const char *path) {
    FILE *f = fopen(squad, "rb");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot open: %s", squad, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = size > 0 ? malloc((size_t)size + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!text || got != (size_t)size) return free(text), phrex_fail(PHREX_ERR_IO, "%s: read failed", squad);
    cJSON *root = cJSON_ParseWithLength(text, got);
    free(text);
    cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
    if (!cJSON_IsArray(data)) return cJSON_Delete(root), phrex_fail(PHREX_ERR_FORMAT, "%s: no \"data\" array", squad);
    int rc = PHREX_OK;
    for (int i = 0; i < n_titles && !rc; i++) {
        int found = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, data) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(a, "title");
            found |= cJSON_IsString(t) && !strcmp(t->valuestring, titles[i]);
        }
        if (!found) rc = phrex_fail(PHREX_ERR_INPUT, "%s: no article titled \"%s\"", squad, titles[i]);
    }
    for (int i = cJSON_GetArraySize(data) - 1; i >= 0 && !rc; i--) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, i), "title");
        int keep = 0;
        for (int j = 0; j < n_titles && cJSON_IsString(t); j++) keep |= !strcmp(t->valuestring, titles[j]);
        if (!keep) cJSON_DeleteItemFromArray(data, i);
    }
    char *out = rc ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (rc) return rc;
    if (!out) return phrex_fail(PHREX_ERR_MEMORY, "articles: out of memory");
    f = fopen(path, "w");
    int bad = !f || fputs(out, f) < 0 || fputc('\n', f) < 0;
    if (f) bad |= fclose(f) != 0;
    free(out);
    return bad ? phrex_fail(PHREX_ERR_IO, "%s: cannot write", path) : PHREX_OK;
}

typedef struct {
    char **ids, **titles, **texts; // (n) paragraph id "TITLE:N", title, text
    int n, cap;
} par_table;

static void par_table_free(par_table *t) {
    for (int i = 0; i < t->n; i++) free(t->ids[i]), free(t->titles[i]), free(t->texts[i]);
    free(t->ids), free(t->titles), free(t->texts);
}

static int par_table_load(par_table *t, const char *path) {
    memset(t, 0, sizeof *t);
    phrex_corpus_options co = {.format = PHREX_CORPUS_SQUAD_JSON};
    phrex_corpus *c;
    int rc = phrex_corpus_init(&c, path, &co), has = 1;
    while (!rc) {
        phrex_passage p;
        if ((rc = phrex_corpus_next(c, &p, &has)) || !has) break;
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 1024;
            t->ids = realloc(t->ids, (size_t)t->cap * sizeof(char *));
            t->titles = realloc(t->titles, (size_t)t->cap * sizeof(char *));
            t->texts = realloc(t->texts, (size_t)t->cap * sizeof(char *));
            if (!t->ids || !t->titles || !t->texts) return phrex_corpus_free(c), phrex_fail(PHREX_ERR_MEMORY, "oom");
        }
        t->ids[t->n] = strdup(p.id), t->titles[t->n] = strdup(p.title), t->texts[t->n] = strdup(p.text);
        t->n++;
    }
    phrex_corpus_free(c);
    return rc;
}

// The paragraph a SQuAD record belongs to: records come in paragraph order,
// so the search starts where the last one was found.
static int find_paragraph(const par_table *t, const phrex_qa *q, int *cursor) {
    for (int k = 0; k < t->n; k++) {
        int i = (*cursor + k) % t->n;
        if (!strcmp(t->titles[i], q->title) && !strcmp(t->texts[i], q->context)) return *cursor = i;
    }
    return -1;
}

static void write_span_json(FILE *f, const char *par_id, int32_t s, int32_t e) {
    fputc('[', f);
    phrex_json_write_string(f, par_id, strlen(par_id));
    fprintf(f, ", %d, %d", s, e);
}

static int mine_question(phrex_search *h, const phrex_qa *q, const char *gold_id, FILE *out, int *n_match) {
    const phrex_qa_answer *a = &q->answers[0];
    if (a->start_byte < 0 || (size_t)a->start_byte + a->len > q->context_len ||
        memcmp(q->context + a->start_byte, a->text, a->len) || a->len == 0)
        return 0; // the answer is not at its offset: no positive to train on
    phrex_search_output so;
    int rc = phrex_search_question(h, q->question, q->question_len, &so);
    if (rc) return phrex_fail_context(rc, "%s:%zu: question", q->file, q->line);
    fputs("{\"id\": ", out);
    phrex_json_write_string(out, q->id, q->id_len);
    fputs(", \"question\": ", out);
    phrex_json_write_string(out, q->question, q->question_len);
    fputs(", \"answers\": [", out);
    for (size_t i = 0; i < q->n_answers; i++) {
        if (i) fputs(", ", out);
        phrex_json_write_string(out, q->answers[i].text, q->answers[i].len);
    }
    fputs("], \"gold\": ", out);
    write_span_json(out, gold_id, (int32_t)a->start_byte, (int32_t)(a->start_byte + (long)a->len));
    fputs("], \"phrases\": [", out);
    char buf[2048];
    for (int i = 0; i < so.n; i++) {
        const phrex_search_result *r = &so.results[i];
        size_t len = r->answer_len < sizeof buf - 1 ? r->answer_len : sizeof buf - 1;
        memcpy(buf, r->answer, len);
        buf[len] = 0;
        int match = phrex_metric_max_exact_match(buf, q->answer_texts, q->n_answers);
        *n_match += match && i == 0;
        if (i) fputs(", ", out);
        write_span_json(out, r->passage_id, r->answer_start, r->answer_end);
        fprintf(out, ", %.6g, %d]", (double)r->score, match);
    }
    fputs("]}\n", out);
    return 1;
}

static int mine_questions(const rr_options *o, const char *articles, const char *dump, const char *out_path,
                          char **titles, int n_titles) {
    phrex_searcher_options so;
    phrex_searcher_options_default(&so);
    so.dump_dir = dump, so.model_dir = o->mine_model;
    phrex_search_options sopt;
    phrex_search_options_default(&sopt);
    sopt.unit = PHREX_UNIT_PHRASE, sopt.top_k = o->mine_k;
    phrex_searcher *s = NULL;
    phrex_search *h = NULL;
    par_table pars;
    int rc = par_table_load(&pars, articles);
    if (!rc) rc = phrex_searcher_init(&s, &so);
    if (!rc) rc = phrex_search_init(&h, s, &sopt);
    phrex_qa_reader *qr = NULL;
    phrex_qa_options qo = {.format = PHREX_QA_SQUAD_JSON};
    if (!rc) rc = phrex_qa_init(&qr, articles, &qo);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *out = rc ? NULL : fopen(tmp, "w");
    if (!rc && !out) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    if (!rc) {
        fprintf(out, "{\"format\": \"%s\", \"version\": %d, \"squad\": ", PHREX_RERANK_CANDIDATES_FORMAT,
                PHREX_RERANK_CANDIDATES_VERSION);
        phrex_json_write_string(out, o->squad, strlen(o->squad));
        fputs(", \"dump\": ", out);
        phrex_json_write_string(out, dump, strlen(dump));
        fputs(", \"model\": ", out);
        phrex_json_write_string(out, o->mine_model, strlen(o->mine_model));
        fprintf(out, ", \"k\": %d, \"titles\": [", o->mine_k);
        for (int i = 0; i < n_titles; i++) {
            if (i) fputs(", ", out);
            phrex_json_write_string(out, titles[i], strlen(titles[i]));
        }
        fputs("]}\n", out);
    }
    phrex_progress bar;
    phrex_progress_init(&bar, "mine", "questions", 0);
    int cursor = 0, kept = 0, skipped = 0, top1 = 0, has = 1;
    double t0 = phrex_now_seconds();
    while (!rc) {
        phrex_qa q;
        if ((rc = phrex_qa_next(qr, &q, &has)) || !has) break;
        int par = q.n_answers ? find_paragraph(&pars, &q, &cursor) : -1;
        int done = 0;
        if (par < 0) skipped++;
        else if ((done = mine_question(h, &q, pars.ids[par], out, &top1)) < 0) rc = done;
        else kept += done, skipped += !done;
        phrex_progress_add(&bar, 1, NULL);
    }
    phrex_progress_finish(&bar);
    if (out && (fclose(out) && !rc)) rc = phrex_fail(PHREX_ERR_IO, "%s: write failed", tmp);
    if (!rc && rename(tmp, out_path)) rc = phrex_fail(PHREX_ERR_IO, "%s: cannot rename: %s", out_path, strerror(errno));
    if (!rc)
        printf("mined %d questions (%d skipped) in %.1f s: top-1 phrase exact match %.2f%%; wrote %s\n", kept, skipped,
               phrex_now_seconds() - t0, kept ? 100.0 * top1 / kept : 0.0, out_path);
    phrex_qa_free(qr);
    phrex_search_free(h);
    phrex_searcher_free(s);
    par_table_free(&pars);
    return rc;
}

static int run_mine(const rr_options *o) {
    char **titles;
    int n_titles;
    int rc = phrex_squad_read_titles(o->titles, &titles, &n_titles);
    if (rc) return rc;
    char articles[4096], dump[4096], cands[4096];
    phrex_cli_path_join(articles, sizeof articles, o->out_dir, "articles.json");
    phrex_cli_path_join(dump, sizeof dump, o->out_dir, "dump");
    phrex_cli_path_join(cands, sizeof cands, o->out_dir, "candidates.jsonl");
    rc = make_dir(o->out_dir);
    if (!rc) rc = write_articles(o->squad, titles, n_titles, articles);
    if (!rc) {
        phrex_build_options b;
        phrex_build_options_default(&b);
        const char *paths[1] = {articles};
        b.corpus_paths = paths, b.n_corpus = 1, b.format = PHREX_CORPUS_SQUAD_JSON;
        b.model_dir = o->mine_model, b.out_dir = dump, b.threads = o->threads;
        phrex_build_stats st;
        rc = phrex_index_build_dump(&b, &st);
        if (!rc)
            fprintf(stderr, "dump %s: %lld passages, %lld vectors (%s)\n", dump, (long long)st.passages,
                    (long long)st.kept, st.factory);
    }
    if (!rc) rc = mine_questions(o, articles, dump, cands, titles, n_titles);
    free(titles);
    return rc;
}

// === training ===========================================================================

typedef struct {
    const rr_options *o;
    const phrex_rerank_set *train;
    phrex_rerank_model *model;
    phrex_adamw *opt, *head_opt;
    phrex_rerank_tokenizer tok;
    phrex_wordpiece *wp;
    int C, max_group, pool;
    int64_t easy_steps; // updates 1..easy_steps draw random negatives only
    float beta;
    int32_t *ids, *types, *lens; // (max_group · L), (max_group · L), (max_group)
    phrex_rerank_candidate *cands; // (max_group)
    int32_t *pick;                 // (k) scratch for sampling
    uint32_t *perm;
    uint64_t perm_epoch;
    float *extra; // head params, m, v: 3 (C + 1)
    float *scores; // (max_group) the last group's scores
} rr_trainer;

static void trainer_free(rr_trainer *t) {
    phrex_rerank_model_free(t->model);
    phrex_adamw_free(t->opt);
    phrex_adamw_free(t->head_opt);
    phrex_rerank_tokenizer_free(&t->tok);
    phrex_wordpiece_free(t->wp);
    free(t->ids), free(t->types), free(t->lens), free(t->cands), free(t->pick), free(t->perm), free(t->extra), free(t->scores);
}

static int trainer_init(rr_trainer *t, const rr_options *o, const phrex_rerank_set *train, int64_t steps) {
    memset(t, 0, sizeof *t);
    t->o = o, t->train = train;
    t->easy_steps = (int64_t)llround(o->easy_frac * (double)steps);
    int L = o->max_seq_len, G = t->max_group = o->negatives + 1;
    int k = phrex_rerank_set_k(train);
    t->pool = o->pool && o->pool < k ? o->pool : k;
    t->beta = (float)phrex_gbce_beta(o->negatives < t->pool ? o->negatives : t->pool, t->pool, o->t);
    int rc = phrex_embedder_load_tokenizer(o->base_dir, &t->wp);
    int32_t ms = 0, me = 0;
    if (!rc) rc = phrex_rerank_marker_ids(t->wp, &ms, &me);
    if (!rc) rc = phrex_rerank_tokenizer_init(&t->tok, t->wp, L, 0, ms, me);
    phrex_rerank_backbone bb;
    if (!rc) rc = phrex_rerank_backbone_bert(&bb, o->base_dir, o->layers, G * L, L, !o->train_embeddings);
    if (!rc) rc = phrex_rerank_model_init(&t->model, &bb, o->seed, HEAD_SCALE);
    if (rc) return rc;
    phrex_rerank_model_set_pool(t->model, o->head_pool, ms, me);
    t->C = phrex_rerank_model_backbone(t->model)->hidden_size;
    phrex_adamw_config cfg = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                              .weight_decay = o->weight_decay,
                              .warmup_steps = (int64_t)llround(o->warmup_frac * (double)steps),
                              .total_steps = steps + 1, .max_grad_norm = 0}; // clipped jointly
    phrex_rerank_backbone *b = phrex_rerank_model_backbone(t->model);
    phrex_train_params p = b->params(b->self), hp = phrex_rerank_model_head_params(t->model);
    // A fresh head: bias at the constant-score optimum, a faster step (rerank/rerank_train.h).
    if ((rc = phrex_rerank_model_start_at_prior(t->model, t->beta, o->negatives))) return rc;
    phrex_adamw_config hcfg = cfg;
    hcfg.lr = o->lr * o->head_lr_mult;
    if ((rc = phrex_adamw_init(&t->opt, &cfg, &p)) || (rc = phrex_adamw_init(&t->head_opt, &hcfg, &hp))) return rc;
    t->ids = malloc((size_t)G * L * 4), t->types = malloc((size_t)G * L * 4), t->lens = malloc((size_t)G * 4);
    t->cands = malloc((size_t)G * sizeof *t->cands), t->pick = malloc((size_t)(k + G) * 4);
    t->perm = malloc((size_t)phrex_rerank_set_questions(train) * 4), t->perm_epoch = UINT64_MAX;
    t->extra = malloc((size_t)3 * (t->C + 1) * 4), t->scores = malloc((size_t)G * 4);
    if (!t->ids || !t->types || !t->lens || !t->cands || !t->pick || !t->perm || !t->extra || !t->scores)
        return phrex_fail(PHREX_ERR_MEMORY, "train-rerank: out of memory for groups of %d", G);
    return PHREX_OK;
}

static void draw_permutation(rr_trainer *t, uint64_t epoch) {
    if (t->perm_epoch == epoch) return;
    int n = phrex_rerank_set_questions(t->train);
    phrex_rng r = phrex_rng_init(t->o->seed ^ phrex_rng_hash(epoch + 1));
    for (int i = 0; i < n; i++) t->perm[i] = (uint32_t)i;
    for (int i = n - 1; i > 0; i--) {
        uint32_t j = phrex_rng_below(&r, (uint32_t)i + 1), tmp = t->perm[i];
        t->perm[i] = t->perm[j], t->perm[j] = tmp;
    }
    t->perm_epoch = epoch;
}

static phrex_rerank_candidate cand_of(const phrex_rerank_paragraph *p, int32_t s, int32_t e) {
    return (phrex_rerank_candidate){p->title, p->title_len, p->text, p->text_len, s, e};
}

static int text_matches(const char *text, size_t len, const phrex_rerank_question *q) {
    char buf[1024];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, text, n);
    buf[n] = 0;
    return phrex_metric_max_exact_match(buf, q->answers, (size_t)q->n_answers);
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// A random span of 1..RANDOM_SPAN_WORDS whitespace-separated words of a
// random paragraph that is not a gold answer; passage: a random paragraph
// without any answer.
static phrex_rerank_candidate random_negative(const rr_trainer *t, const phrex_rerank_question *q, int passage,
                                              phrex_rng *r) {
    const phrex_rerank_set *s = t->train;
    phrex_rerank_candidate c = {0};
    for (int tries = 0; tries < RANDOM_TRIES; tries++) {
        int pi = (int)phrex_rng_below(r, (uint32_t)phrex_rerank_set_paragraphs(s));
        const phrex_rerank_paragraph *p = phrex_rerank_set_paragraph(s, pi);
        if (passage) {
            c = cand_of(p, -1, -1);
            if (pi != q->gold_par && !phrex_metric_has_answer(p->text, q->answers, (size_t)q->n_answers)) return c;
            continue;
        }
        if (p->text_len < 2) continue;
        size_t at = phrex_rng_below(r, (uint32_t)p->text_len);
        while (at > 0 && !is_space(p->text[at - 1])) at--; // back to a word start
        while (at < p->text_len && is_space(p->text[at])) at++;
        size_t end = at;
        int words = 1 + (int)phrex_rng_below(r, RANDOM_SPAN_WORDS);
        for (int w = 0; w < words && end < p->text_len; w++) {
            while (end < p->text_len && is_space(p->text[end])) end++;
            while (end < p->text_len && !is_space(p->text[end])) end++;
        }
        if (end <= at) continue;
        c = cand_of(p, (int32_t)at, (int32_t)end);
        if (!text_matches(p->text + at, end - at, q)) return c;
    }
    return c; // after RANDOM_TRIES misses (a tiny set) take the last draw
}

// Group of question qi into t->cands: the positive, then N negatives (all
// random when easy: the curriculum's first updates).
static int build_group(rr_trainer *t, const phrex_rerank_question *q, int passage, int easy, phrex_rng *r) {
    const phrex_rerank_set *s = t->train;
    const phrex_rerank_span *sp = phrex_rerank_set_spans(s) + q->first_span;
    const phrex_rerank_paragraph *gp = phrex_rerank_set_paragraph(s, q->gold_par);
    int N = t->o->negatives, n_random = easy ? N : (int)floorf(t->o->random_frac * N), n_hard = N - n_random, n = 0;
    t->cands[n++] = passage ? cand_of(gp, -1, -1) : cand_of(gp, q->gold_start, q->gold_end);
    // The hard pool: mined phrases (or their paragraphs) that are not answers.
    int pool = 0, lim = q->n_spans < t->pool ? q->n_spans : t->pool;
    for (int i = 0; i < lim; i++) {
        if (passage) {
            int dup = sp[i].par == q->gold_par;
            for (int j = 0; j < pool && !dup; j++) dup = sp[t->pick[j]].par == sp[i].par;
            const phrex_rerank_paragraph *p = phrex_rerank_set_paragraph(s, sp[i].par);
            if (!dup && !phrex_metric_has_answer(p->text, q->answers, (size_t)q->n_answers)) t->pick[pool++] = i;
        } else if (!sp[i].match && !(sp[i].par == q->gold_par && sp[i].start == q->gold_start &&
                                     sp[i].end == q->gold_end)) {
            t->pick[pool++] = i;
        }
    }
    for (int j = 0; j < n_hard && j < pool; j++) { // partial Fisher-Yates: n_hard of pool without repeats
        int k = j + (int)phrex_rng_below(r, (uint32_t)(pool - j)), tmp = t->pick[j];
        t->pick[j] = t->pick[k], t->pick[k] = tmp;
        const phrex_rerank_span *x = &sp[t->pick[j]];
        const phrex_rerank_paragraph *p = phrex_rerank_set_paragraph(s, x->par);
        t->cands[n++] = passage ? cand_of(p, -1, -1) : cand_of(p, x->start, x->end);
    }
    while (n < N + 1) t->cands[n++] = random_negative(t, q, passage, r);
    return n;
}

static int tokenize_group(rr_trainer *t, const phrex_rerank_question *q, int n, int *n_tok) {
    int rc = phrex_rerank_tokenizer_set_question(&t->tok, q->question, q->question_len);
    if (rc) return phrex_fail_context(rc, "question %s", q->id);
    int at = 0;
    for (int i = 0; i < n; i++) {
        phrex_rerank_pair_info info;
        if ((rc = phrex_rerank_tokenizer_pair(&t->tok, &t->cands[i], t->ids + at, t->types + at, NULL, NULL, &info)))
            return phrex_fail_context(rc, "question %s, candidate %d", q->id, i);
        t->lens[i] = info.len, at += info.len;
    }
    *n_tok = at;
    return PHREX_OK;
}

typedef struct {
    double loss;
    float grad_norm;
    int passage_groups;
    int top1; // groups whose positive outscored every negative (training accuracy@1)
} step_stats;

static int train_step(rr_trainer *t, phrex_train_progress *pr, step_stats *st) {
    const rr_options *o = t->o;
    int n_q = phrex_rerank_set_questions(t->train), rc = 0;
    int64_t step = pr->step + 1;
    phrex_rerank_backbone *bb = phrex_rerank_model_backbone(t->model);
    phrex_rerank_model_zero_grads(t->model);
    memset(st, 0, sizeof *st);
    for (int b = 0; b < o->batch && !rc; b++) {
        if (pr->data_pos >= (uint64_t)n_q) pr->data_epoch++, pr->data_pos = 0;
        draw_permutation(t, pr->data_epoch);
        const phrex_rerank_question *q = phrex_rerank_set_question(t->train, (int)t->perm[pr->data_pos++]);
        phrex_rng r = phrex_rng_init(phrex_rng_hash(o->seed ^ ((uint64_t)step << 20) ^ (uint64_t)b));
        int passage = phrex_rng_uniform(&r) < o->passage_frac, n_tok;
        int n = build_group(t, q, passage, step <= t->easy_steps, &r);
        int32_t group = n;
        float loss;
        uint64_t key = phrex_rng_hash(o->seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ull) ^ (uint64_t)b);
        if (!(rc = tokenize_group(t, q, n, &n_tok)) && !(rc = bb->set_dropout(bb->self, o->dropout, key)))
            rc = phrex_rerank_model_step(t->model, t->ids, t->types, t->lens, &group, 1, t->beta,
                                         1.0f / (float)o->batch, &loss, t->scores);
        st->loss += rc ? 0 : loss / o->batch, st->passage_groups += passage;
        int top = 1;
        for (int i = 1; i < n && !rc; i++) top &= t->scores[0] > t->scores[i];
        st->top1 += !rc && top;
    }
    if (rc) return rc;
    phrex_train_params p = bb->params(bb->self), hp = phrex_rerank_model_head_params(t->model);
    phrex_adamw *opts[2] = {t->opt, t->head_opt};
    float *grads[2] = {p.grads, hp.grads};
    double norm = phrex_adamw_clip_joint(opts, grads, 2, o->clip > 0 ? o->clip : INFINITY);
    if (!isfinite(norm))
        return phrex_fail(PHREX_ERR_INPUT, "train-rerank: step %lld: gradient norm is not finite; lower --lr",
                          (long long)step);
    st->grad_norm = (float)norm;
    if (!(rc = phrex_adamw_step(t->opt, &p, NULL))) rc = phrex_adamw_step(t->head_opt, &hp, NULL);
    pr->step = step;
    return rc;
}

// --- checkpoints ------------------------------------------------------------------------

static uint64_t options_hash(const rr_options *o, int64_t steps) {
    char buf[8192];
    snprintf(buf, sizeof buf, "%s|%s|%lld|%d|%d|%d|%d|%d|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%.9g|%d|%llu|%s",
             o->base_dir, o->candidates, (long long)steps, o->layers, o->negatives, o->pool, o->batch, o->max_seq_len,
             o->t, o->lr, o->warmup_frac, o->weight_decay, o->clip, o->dropout, o->random_frac, o->passage_frac, o->head_lr_mult,
             o->easy_frac, o->train_embeddings, o->seed, phrex_rerank_pool_name(o->head_pool));

    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = buf; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

// The head and its moments travel as the state file's extra bytes.
static void head_to_extra(rr_trainer *t) {
    size_t n = (size_t)t->C + 1;
    memcpy(t->extra, phrex_rerank_model_head_params(t->model).params, n * 4);
    memcpy(t->extra + n, phrex_adamw_m(t->head_opt), n * 4);
    memcpy(t->extra + 2 * n, phrex_adamw_v(t->head_opt), n * 4);
}

static void extra_to_head(rr_trainer *t, int64_t steps) {
    size_t n = (size_t)t->C + 1;
    memcpy(phrex_rerank_model_head_params(t->model).params, t->extra, n * 4);
    memcpy(phrex_adamw_m(t->head_opt), t->extra + n, n * 4);
    memcpy(phrex_adamw_v(t->head_opt), t->extra + 2 * n, n * 4);
    phrex_adamw_set_steps(t->head_opt, steps);
}

static int save_state(rr_trainer *t, const char *path, const phrex_train_progress *pr) {
    phrex_rerank_backbone *bb = phrex_rerank_model_backbone(t->model);
    head_to_extra(t);
    phrex_train_slot slot = {bb->train_bert(bb->self), t->opt};
    return phrex_checkpoint_save_states(path, &slot, 1, pr, t->extra, (size_t)3 * (t->C + 1) * 4);
}

static int load_state(rr_trainer *t, const char *path, phrex_train_progress *pr, uint64_t hash) {
    phrex_rerank_backbone *bb = phrex_rerank_model_backbone(t->model);
    phrex_train_slot slot = {bb->train_bert(bb->self), t->opt};
    int rc = phrex_checkpoint_load_states(path, &slot, 1, pr, t->extra, (size_t)3 * (t->C + 1) * 4);
    if (rc) return phrex_fail_context(rc, "%s", path), rc;
    if (pr->user[0] != hash)
        return phrex_fail(PHREX_ERR_MISMATCH, "%s was written by a run with different options; resume with the same ones",
                          path);
    extra_to_head(t, pr->step);
    return PHREX_OK;
}

// --- saving the reranker -------------------------------------------------------------

static int save_reranker(rr_trainer *t, const rr_options *o, int64_t steps) {
    char enc[4096], head[4096], extra[2048];
    phrex_cli_path_join(enc, sizeof enc, o->out_dir, "encoder");
    phrex_cli_path_join(head, sizeof head, o->out_dir, "head.safetensors");
    phrex_rerank_backbone *bb = phrex_rerank_model_backbone(t->model);
    int dtype = o->f16 ? PHREX_DTYPE_F16 : PHREX_DTYPE_F32;
    int rc = bb->save(bb->self, enc, dtype, o->base_dir);
    const float *h = phrex_rerank_model_head_params(t->model).params;
    if (!rc) rc = phrex_reranker_write_head(head, h, h[t->C], t->C, dtype);
    if (rc) return rc;
    int32_t ms, me;
    if ((rc = phrex_rerank_marker_ids(t->wp, &ms, &me))) return rc;
    phrex_reranker_meta m = {.encoder = "encoder", .head = "head.safetensors", .backbone = bb->name,
                             .layers = o->layers, .hidden_size = t->C, .max_seq_len = o->max_seq_len,
                             .max_query_len = PHREX_RERANK_MAX_QUERY_LEN, .mark_start = ms, .mark_end = me,
                             .pool = (int)o->head_pool};
    snprintf(extra, sizeof extra,
             "\"training\": {\"steps\": %lld, \"negatives\": %d, \"pool\": %d, \"t\": %.4g, \"beta\": %.6g, "
             "\"passage_frac\": %.3g, \"random_frac\": %.3g, \"easy_frac\": %.3g, \"lr\": %.3g, \"head_lr_mult\": %.3g, "
             "\"batch\": %d, \"dtype\": \"%s\"}",
             (long long)steps, o->negatives, t->pool, o->t, t->beta, o->passage_frac, o->random_frac, o->easy_frac, o->lr,
             o->head_lr_mult, o->batch, o->f16 ? "f16" : "f32");
    return phrex_reranker_write_json(o->out_dir, &m, extra);
}

// --- validation through the inference path ----------------------------------------------

typedef struct {
    int n;
    double retr_acc1, rerank_acc1, recall, retr_mrr, rerank_mrr; // over the mined phrases alone
    double gold_acc1, gold_mrr; // the gold span added to them: is a correct candidate on top?
    double pairs_per_s;
} valid_metrics;

// Rank (0 = best) of the best-scored candidate among c[0, k) for which ok(i).
static int best_rank(const float *scores, int k, const uint8_t *ok) {
    int rank = -1;
    for (int j = 0; j < k; j++) {
        if (!ok[j]) continue;
        int above = 0;
        for (int l = 0; l < k; l++) above += scores[l] > scores[j];
        if (rank < 0 || above < rank) rank = above;
    }
    return rank;
}

// Each validation question's first valid_k mined phrases plus its gold span,
// scored in one call by the saved reranker (rerank/reranker.c, the path
// `phrex ask` uses). Over the mined phrases alone (what reranking the
// retriever's output can achieve): accuracy@1 (the top candidate is a gold
// answer) and MRR of the first correct one, in retriever order and
// reranked. With the gold span added (a fixed reranking task that does
// not depend on the retriever's recall): accuracy@1 and MRR of a correct
// candidate.
static int evaluate(const rr_options *o, const char *dir, const phrex_rerank_set *valid, valid_metrics *vm) {
    phrex_reranker *r;
    int rc = phrex_reranker_init(&r, dir);
    if (rc) return rc;
    phrex_rerank_worker *w = NULL;
    int K = o->valid_k;
    phrex_rerank_candidate *c = malloc((size_t)(K + 1) * sizeof *c);
    float *scores = malloc((size_t)(K + 1) * 4);
    uint8_t *ok = malloc((size_t)K + 1);
    rc = !c || !scores || !ok ? phrex_fail(PHREX_ERR_MEMORY, "evaluate: out of memory")
                              : phrex_rerank_worker_init(&w, r, K + 1);
    int n = phrex_rerank_set_questions(valid);
    if (o->limit_valid < n) n = o->limit_valid;
    memset(vm, 0, sizeof *vm);
    long pairs = 0;
    double t0 = phrex_now_seconds();
    phrex_progress bar;
    phrex_progress_init(&bar, "valid", "questions", n);
    for (int i = 0; i < n && !rc; i++) {
        const phrex_rerank_question *q = phrex_rerank_set_question(valid, i);
        const phrex_rerank_span *sp = phrex_rerank_set_spans(valid) + q->first_span;
        int k = q->n_spans < K ? q->n_spans : K;
        c[0] = cand_of(phrex_rerank_set_paragraph(valid, q->gold_par), q->gold_start, q->gold_end), ok[0] = 1;
        for (int j = 0; j < k; j++) {
            c[1 + j] = cand_of(phrex_rerank_set_paragraph(valid, sp[j].par), sp[j].start, sp[j].end);
            ok[1 + j] = (uint8_t)sp[j].match;
        }
        if ((rc = phrex_rerank_score(w, q->question, q->question_len, c, k + 1, scores))) break;
        pairs += k + 1;
        int retr = -1, mined = best_rank(scores + 1, k, ok + 1), gold = best_rank(scores, k + 1, ok);
        for (int j = 0; j < k && retr < 0; j++)
            if (sp[j].match) retr = j;
        vm->retr_acc1 += retr == 0, vm->rerank_acc1 += mined == 0, vm->recall += retr >= 0;
        vm->retr_mrr += retr >= 0 ? 1.0 / (retr + 1) : 0, vm->rerank_mrr += mined >= 0 ? 1.0 / (mined + 1) : 0;
        vm->gold_acc1 += gold == 0, vm->gold_mrr += 1.0 / (gold + 1);
        phrex_progress_add(&bar, 1, NULL);
    }
    phrex_progress_finish(&bar);
    double secs = phrex_now_seconds() - t0;
    if (n > 0) {
        vm->retr_acc1 *= 100.0 / n, vm->rerank_acc1 *= 100.0 / n, vm->recall *= 100.0 / n;
        vm->gold_acc1 *= 100.0 / n;
        vm->retr_mrr /= n, vm->rerank_mrr /= n, vm->gold_mrr /= n;
    }
    vm->n = n, vm->pairs_per_s = secs > 0 ? pairs / secs : 0;
    phrex_rerank_worker_free(w);
    phrex_reranker_free(r);
    free(c), free(scores), free(ok);
    return rc;
}

static int write_metrics(const rr_options *o, const valid_metrics *m, int64_t steps) {
    char path[4096];
    phrex_cli_path_join(path, sizeof path, o->out_dir, "valid_metrics.json");
    FILE *f = fopen(path, "w");
    if (!f) return phrex_fail(PHREX_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f,
            "{\"task\": \"rerank-mined-phrases\", \"questions\": %d, \"candidates_per_question\": %d,\n"
            " \"retriever_accuracy_at_1\": %.4f, \"reranked_accuracy_at_1\": %.4f, \"recall_at_k\": %.4f,\n"
            " \"retriever_mrr\": %.5f, \"reranked_mrr\": %.5f,\n"
            " \"with_gold_accuracy_at_1\": %.4f, \"with_gold_mrr\": %.5f, \"pairs_per_s\": %.1f,\n"
            " \"steps\": %lld, \"layers\": %d, \"negatives\": %d, \"t\": %.4g, \"candidates\": ",
            m->n, o->valid_k, m->retr_acc1, m->rerank_acc1, m->recall, m->retr_mrr, m->rerank_mrr, m->gold_acc1,
            m->gold_mrr, m->pairs_per_s, (long long)steps, o->layers, o->negatives, o->t);
    phrex_json_write_string(f, o->valid_candidates, strlen(o->valid_candidates));
    fputs("}\n", f);
    return fclose(f) ? phrex_fail(PHREX_ERR_IO, "%s: write failed", path) : PHREX_OK;
}

// --- the run ---------------------------------------------------------------------------

static int train_loop(rr_trainer *t, int64_t steps, phrex_train_progress *pr, const char *state_path, FILE *log) {
    const rr_options *o = t->o;
    phrex_progress bar;
    phrex_progress_init(&bar, "train", "steps", steps);
    bar.done = pr->step;
    double t0 = phrex_now_seconds(), loss_sum = 0;
    int64_t first = pr->step, since_log = 0, top1 = 0, stop = o->stop_at && o->stop_at < steps ? o->stop_at : steps;
    char extra[160];
    while (pr->step < stop) {
        step_stats st;
        int rc = train_step(t, pr, &st);
        if (rc) return phrex_progress_finish(&bar), rc;
        loss_sum += st.loss, since_log++, top1 += st.top1;
        double q_s = (double)(pr->step - first) * o->batch / (phrex_now_seconds() - t0);
        snprintf(extra, sizeof extra, "loss %.4f  %.2f questions/s", st.loss, q_s);
        phrex_progress_add(&bar, 1, extra);
        if (pr->step % o->log_every == 0 || pr->step == steps) {
            float lr = phrex_adamw_lr_at(phrex_adamw_get_config(t->opt), pr->step);
            fprintf(log, "step %lld/%lld epoch %llu loss %.5f beta %.4f lr %.4g grad_norm %.4f questions/s %.2f "
                    "train_acc1 %.3f\n",
                    (long long)pr->step, (long long)steps, (unsigned long long)pr->data_epoch,
                    loss_sum / (double)since_log, t->beta, lr, st.grad_norm, q_s,
                    (double)top1 / (double)(since_log * o->batch));
            fflush(log);
            loss_sum = 0, since_log = 0, top1 = 0;
        }
        if (o->checkpoint_every && (pr->step % o->checkpoint_every == 0 || pr->step == stop)) {
            if ((rc = save_state(t, state_path, pr))) return phrex_progress_finish(&bar), rc;
            if (o->kill_after && pr->step == o->kill_after) raise(SIGKILL);
        }
    }
    phrex_progress_finish(&bar);
    double secs = phrex_now_seconds() - t0;
    if (pr->step > first)
        printf("trained %lld updates of %d questions x %d pairs in %.1f s: %.2f questions/s\n",
               (long long)(pr->step - first), o->batch, o->negatives + 1, secs,
               (double)(pr->step - first) * o->batch / secs);
    return PHREX_OK;
}

static int run_train(const rr_options *o) {
    if (make_dir(o->out_dir)) return 1;
    char state_path[4096];
    phrex_cli_path_join(state_path, sizeof state_path, o->out_dir, "train_state.bin");
    if (!o->eval_only && !o->resume && file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "%s exists: pass --resume to continue that run, or choose another --out",
                          state_path);
    if (o->resume && !file_exists(state_path))
        return phrex_fail(PHREX_ERR_INPUT, "--resume: %s does not exist", state_path);
    phrex_rerank_set *train = NULL, *valid = NULL;
    int rc = phrex_rerank_set_load(&valid, o->valid_candidates, NULL);
    if (!rc && !o->eval_only) rc = phrex_rerank_set_load(&train, o->candidates, NULL);
    int64_t steps = 0;
    rr_trainer t;
    memset(&t, 0, sizeof t);
    if (!rc && !o->eval_only) {
        int n_q = phrex_rerank_set_questions(train);
        steps = o->steps ? o->steps : (int64_t)fmax(1, ceil(o->epochs * n_q / o->batch));
        fprintf(stderr, "%s: %d questions over %d paragraphs\n", o->candidates, n_q, phrex_rerank_set_paragraphs(train));
        rc = trainer_init(&t, o, train, steps);
        if (!rc)
            fprintf(stderr, "%d layers, %d negatives (%d hard from a pool of %d, %d random), t %.3g: beta %.4f\n",
                    o->layers, o->negatives, o->negatives - (int)floorf(o->random_frac * o->negatives), t.pool,
                    (int)floorf(o->random_frac * o->negatives), o->t, t.beta);
    }
    phrex_train_progress pr = {.user = {options_hash(o, steps)}};
    if (!rc && o->resume) {
        rc = load_state(&t, state_path, &pr, pr.user[0]);
        if (!rc) fprintf(stderr, "resuming at update %lld of %lld\n", (long long)pr.step, (long long)steps);
    }
    FILE *log = NULL;
    if (!rc && !o->eval_only) rc = phrex_cli_open_train_log(o->log_path, o->out_dir, &log);
    if (!rc && !o->eval_only) rc = train_loop(&t, steps, &pr, state_path, log);
    if (log) fclose(log);
    if (!rc && !o->eval_only) rc = save_reranker(&t, o, pr.step);
    trainer_free(&t); // before validation: the training workspace is the big allocation
    valid_metrics m;
    if (!rc) rc = evaluate(o, o->out_dir, valid, &m);
    if (!rc) rc = write_metrics(o, &m, steps);
    if (!rc)
        printf("validation (%d questions, top %d mined phrases): accuracy@1 %.2f -> %.2f (reranked), MRR %.4f -> %.4f, "
               "recall@%d %.2f; with the gold span added: accuracy@1 %.2f, MRR %.4f; %.0f pairs/s\n",
               m.n, o->valid_k, m.retr_acc1, m.rerank_acc1, m.retr_mrr, m.rerank_mrr, o->valid_k, m.recall,
               m.gold_acc1, m.gold_mrr, m.pairs_per_s);
    phrex_rerank_set_free(train);
    phrex_rerank_set_free(valid);
    return rc;
}

int cmd_train_rerank(int argc, char **argv) {
    rr_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.threads) phrex_set_threads(o.threads);
    if (o.mine ? run_mine(&o) : run_train(&o)) {
        fprintf(stderr, "phrex train-rerank: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}

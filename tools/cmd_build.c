// phrex build: a corpus in, a phrase dump out (index/build.h). Rerunning the
// same command after an interruption (even kill -9) resumes it; rerunning it
// on a finished dump checks the dump and does nothing else.
// phrex merge: dumps of parts of a corpus (built with --keep-vectors, on
// several machines or one after the other) into one dump.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "encoder/model_dir.h"
#include "index/build.h"
#include "index/filter.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CORPUS 256

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex build --corpus FILE... --out DUMP [options]\n\n"
            "  --corpus FILE...      corpus files or WikiExtractor folders, read in order\n"
            "  --format NAME         auto (default), dpr-tsv, wikiextractor, wikiextractor-json, squad-json\n"
            "  --out DUMP            dump folder (created; an unfinished one is resumed)\n"
            "  --model DIR           model directory in Hugging Face layout (default %s)\n"
            "  --index-factory STR   FAISS factory string (default auto: Flat up to 20,000 vectors,\n"
            "                        else IVF<4*sqrt(n)>,SQ8); write PQ<m>np, not PQ<m>\n"
            "  --metric M            ip (inner product, default, as DensePhrases) or l2\n"
            "  --max-seq-len N       tokens per encoder window with [CLS]/[SEP] (default 384)\n"
            "  --doc-stride N        word pieces between window starts (default 128)\n"
            "  --batch-tokens N      packed tokens per forward pass (default 8192)\n"
            "  --train-size N        vectors to train the index on (default: by factory)\n"
            "  --filter FILE         phrase filter from 'phrex train-filter' (default: the one the\n"
            "                        model's phrex_model.json names, if any)\n"
            "  --filter-threshold X  keep a token when its start or end logit exceeds X (default -6:\n"
            "                        97%% of SQuAD validation answers kept with 69%% of the tokens by\n"
            "                        the default model's filter; see docs/indexing.md)\n"
            "  --no-filter           keep every token even when the model names a filter\n"
            "  --threads N           threads (default: all cores)\n"
            "  --shard K/N           build only the K-th of N equal passage ranges (K from 0),\n"
            "                        with --keep-vectors, for 'phrex merge'\n"
            "  --skip-bad            skip malformed corpus records instead of failing\n"
            "  --keep-vectors        keep the raw float vectors (DUMP/vectors.f32)\n"
            "  --mpi                 under mpirun: rank K of N builds shard K/N into\n"
            "                        DUMP/shards/K-of-N, then rank 0 merges them into DUMP\n"
            "                        (mpirun -np N phrex build --mpi --threads T ...)\n"
            "  --quiet               no progress lines\n",
            phrex_cli_default_model_dir());
}

typedef struct {
    phrex_build_options b;
    const char *corpus[MAX_CORPUS];
    int has_threshold;
    float threshold;
    const char *filter_path;
    int no_filter;
    int mpi;
    phrex_filter filter;
    phrex_filter_hook hook;
    char filter_name[64];
} build_cli;

static int add_corpus(build_cli *c, const char *path) {
    if (c->b.n_corpus == MAX_CORPUS) {
        fprintf(stderr, "phrex build: at most %d corpus paths\n", MAX_CORPUS);
        return 2;
    }
    c->corpus[c->b.n_corpus++] = path;
    return 0;
}

static int parse_number(const char *name, const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) {
        fprintf(stderr, "phrex build: %s expects a number, got '%s'\n", name, text);
        return 2;
    }
    *out = v;
    return 0;
}

static int parse_option(build_cli *c, int opt, const char *arg) {
    phrex_build_options *o = &c->b;
    int n;
    double x;
    switch (opt) {
    case 'c': return add_corpus(c, arg);
    case 'f':
        if (phrex_corpus_parse_format(arg, &o->format) == PHREX_OK) return 0;
        fprintf(stderr, "phrex build: unknown --format '%s'\n", arg);
        return 2;
    case 'o': o->out_dir = arg; return 0;
    case 'm': o->model_dir = arg; return 0;
    case 'i': o->index_factory = arg; return 0;
    case 'M':
        if (phrex_dump_parse_metric(arg, &o->metric) == PHREX_OK) return 0;
        fprintf(stderr, "phrex build: %s\n", phrex_last_error());
        return 2;
    case 'L': return phrex_cli_parse_int("--max-seq-len", arg, 3, 1 << 16, &o->max_seq_len);
    case 'S': return phrex_cli_parse_int("--doc-stride", arg, 1, 1 << 16, &o->doc_stride);
    case 'B': return phrex_cli_parse_int("--batch-tokens", arg, 3, 1 << 22, &o->batch_tokens);
    case 'T':
        if (phrex_cli_parse_int("--train-size", arg, 1, 1 << 30, &n)) return 2;
        o->train_size = n;
        return 0;
    case 'F':
        if (parse_number("--filter-threshold", arg, &x)) return 2;
        c->has_threshold = 1;
        c->threshold = (float)x;
        return 0;
    case 'X': c->filter_path = arg; return 0;
    case 'N': c->no_filter = 1; return 0;
    case 'j': return phrex_cli_parse_int("--threads", arg, 1, 1024, &o->threads);
    case 's':
        if (sscanf(arg, "%d/%d%n", &o->shard, &o->n_shards, &n) == 2 && arg[n] == '\0' && o->n_shards >= 1 &&
            o->shard >= 0 && o->shard < o->n_shards)
            return 0;
        fprintf(stderr, "phrex build: --shard expects K/N with 0 <= K < N, got '%s'\n", arg);
        return 2;
    case 'k': o->skip_bad = 1; return 0;
    case 'v': o->keep_vectors = 1; return 0;
    case 'q': o->progress = 0; return 0;
    case 'P': c->mpi = 1; return 0;
    default: return 2;
    }
}

static void print_merge_help(FILE *f) {
    fprintf(f,
            "usage: phrex merge --out DUMP [options] SHARD...\n\n"
            "Merges dumps of parts of one corpus, each built by 'phrex build --keep-vectors'\n"
            "with the same model and windows, into one dump: passages in shard order, one\n"
            "index trained on all the vectors. The shards are not changed.\n\n"
            "  --out DUMP            merged dump folder (an unfinished merge is resumed)\n"
            "  --model DIR           the shards' model (default %s)\n"
            "  --index-factory STR   FAISS factory string (default auto)\n"
            "  --metric M            ip (default) or l2\n"
            "  --train-size N        vectors to train the index on (default: by factory)\n"
            "  --threads N           threads (default: all cores)\n"
            "  --keep-vectors        keep the merged raw vectors (DUMP/vectors.f32)\n"
            "  --quiet               no progress lines\n",
            phrex_cli_default_model_dir());
}

static int parse_options(int argc, char **argv, build_cli *c) {
    static const struct option longopts[] = {
        {"corpus", required_argument, 0, 'c'},       {"format", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},          {"model", required_argument, 0, 'm'},
        {"index-factory", required_argument, 0, 'i'}, {"max-seq-len", required_argument, 0, 'L'},
        {"doc-stride", required_argument, 0, 'S'},   {"batch-tokens", required_argument, 0, 'B'},
        {"train-size", required_argument, 0, 'T'},   {"filter-threshold", required_argument, 0, 'F'},
        {"threads", required_argument, 0, 'j'},      {"skip-bad", no_argument, 0, 'k'},
        {"keep-vectors", no_argument, 0, 'v'},       {"quiet", no_argument, 0, 'q'},
        {"metric", required_argument, 0, 'M'},         {"shard", required_argument, 0, 's'},
        {"mpi", no_argument, 0, 'P'},                {"filter", required_argument, 0, 'X'},
        {"no-filter", no_argument, 0, 'N'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    phrex_build_options_default(&c->b);
    c->b.model_dir = phrex_cli_default_model_dir();
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            print_help(stdout);
            return -1;
        }
        if ((rc = parse_option(c, opt, optarg))) {
            if (opt == '?') print_help(stderr);
            return 2;
        }
    }
    // "--corpus a.tsv b.tsv": getopt leaves b.tsv as an operand.
    for (int i = optind; i < argc; i++)
        if ((rc = add_corpus(c, argv[i]))) return rc;
    if (!c->b.n_corpus || !c->b.out_dir) {
        fprintf(stderr, "phrex build: --corpus and --out are required\n\n");
        print_help(stderr);
        return 2;
    }
    c->b.corpus_paths = c->corpus;
    return 0;
}

// FAISS reads "PQ<m>" in a factory string as PQ with polysemous training,
// about 3x slower to train and of no use to phrex's search: say so.
static void warn_polysemous(const char *factory) {
    for (const char *p = factory ? strstr(factory, "PQ") : NULL; p; p = strstr(p + 2, "PQ")) {
        const char *q = p + 2;
        if ((p != factory && p[-1] != ',') || !isdigit((unsigned char)*q)) continue; // OPQ16 is a rotation
        while (isdigit((unsigned char)*q)) q++;
        if (*q == 'x') // PQ<m>x<bits>
            for (q++; isdigit((unsigned char)*q); q++) {
            }
        if (strncmp(q, "np", 2) && strncmp(q, "fs", 2)) // fast-scan PQ has no polysemous training
            fprintf(stderr, "phrex: warning: '%.*s' in --index-factory turns on polysemous training (about 3x "
                            "slower to train, unused by phrex): write '%.*snp'\n",
                    (int)(q - p), p, (int)(q - p), p);
    }
}

static void print_summary(const phrex_build_options *o, const phrex_build_stats *s) {
    double per_token = s->tokens ? (double)(s->index_bytes + s->lmdb_bytes) / (double)s->tokens : 0;
    const char *how = s->resumed == 2 ? "already complete" : s->resumed ? "resumed, done" : "done";
    printf("phrex: %s %s: %lld passages (%lld empty, %lld skipped), %lld tokens, %lld kept (%.1f%%); "
           "index %s %.1f MB + LMDB %.1f MB = %.1f bytes/token; encode %.1f s (%.0f tokens/s), index %.1f s, "
           "total %.1f s\n",
           o->out_dir, how, (long long)s->passages, (long long)s->empty, (long long)s->bad, (long long)s->tokens,
           (long long)s->kept, s->tokens ? 100.0 * (double)s->kept / (double)s->tokens : 0.0, s->factory,
           (double)s->index_bytes / 1e6, (double)s->lmdb_bytes / 1e6, per_token, s->encode_s,
           s->encode_s > 0 ? (double)s->run_tokens / s->encode_s : 0.0, s->index_s, s->total_s);
}

// --- the phrase filter -----------------------------------------------------

// --filter FILE, else the filter the model folder names (unless
// --no-filter). A filter trained on another phrase encoder is refused: its
// weights score vectors it has never seen.
static int setup_filter(build_cli *c) {
    c->threshold = c->has_threshold ? c->threshold : -6.0f; // measured: docs/indexing.md
    const char *path = c->no_filter ? NULL : c->filter_path;
    phrex_model_paths *mp = NULL;
    if (!path && !c->no_filter) {
        mp = malloc(sizeof *mp);
        if (mp && phrex_model_dir_resolve(c->b.model_dir, mp) == PHREX_OK && mp->filter[0]) path = mp->filter;
        phrex_clear_error(); // a bad --model is reported by the build, with its context
    }
    int rc = 0;
    uint64_t model_hash;
    if (!path) {
        if (c->has_threshold && !c->no_filter) {
            fprintf(stderr, "phrex build: --filter-threshold needs a filter: --filter FILE (see 'phrex train-filter')\n");
            rc = 2;
        }
    } else if (phrex_filter_load(&c->filter, path) || phrex_dump_model_hash(c->b.model_dir, &model_hash)) {
        fprintf(stderr, "phrex build: %s\n", phrex_last_error());
        phrex_filter_free(&c->filter); // loaded before the hash failed, or empty
        rc = 1;
    } else if (c->filter.model_hash != model_hash) {
        fprintf(stderr, "phrex build: filter %s was trained on another phrase encoder than %s: retrain it with "
                        "'phrex train-filter --model %s'\n", path, c->b.model_dir, c->b.model_dir);
        phrex_filter_free(&c->filter);
        rc = 1;
    } else {
        c->hook = (phrex_filter_hook){&c->filter, c->threshold};
        phrex_filter_name(&c->filter, c->threshold, c->filter_name, sizeof c->filter_name);
        c->b.filter = phrex_filter_keep;
        c->b.filter_ctx = &c->hook;
        c->b.filter_name = c->filter_name;
    }
    free(mp);
    return rc;
}

// --- mpirun driver ----------------------------------------------------------

#ifdef PHREX_HAVE_MPI
#include <mpi.h>

#define MPI_MSG 512 // bytes of each rank's error message gathered by rank 0

// Rank K builds shard K/N of the corpus into DUMP/shards/K-of-N (vectors
// kept, a cheap SQ4 index: the merge trains its own), rank 0 gathers every
// rank's status and, when all succeeded, merges the shards into DUMP. The
// outcome is broadcast so that every rank exits with the same status: a
// failed rank makes all of them exit 1, each saying which rank failed and
// why. Rerunning the same mpirun command resumes every stage, as without MPI.
static int mpi_shard_dir(char *out, size_t cap, const char *dump, int rank, int size) {
    if (snprintf(out, cap, "%s/shards/%d-of-%d", dump, rank, size) >= (int)cap) {
        fprintf(stderr, "phrex build --mpi: %s: path too long\n", dump);
        return 2;
    }
    return 0;
}

static int mpi_build_shard(build_cli *c, int rank, int size, char msg[MPI_MSG]) {
    char dir[4096];
    phrex_build_options o = c->b;
    if (mpi_shard_dir(dir, sizeof dir, o.out_dir, rank, size)) {
        snprintf(msg, MPI_MSG, "%s: path too long", o.out_dir);
        return 1;
    }
    o.out_dir = dir;
    o.shard = rank;
    o.n_shards = size;
    o.keep_vectors = 1;
    o.index_factory = "SQ4";
    o.progress = o.progress && rank == 0;
    phrex_build_stats stats;
    if (phrex_index_build_dump(&o, &stats)) {
        snprintf(msg, MPI_MSG, "%s", phrex_last_error());
        return 1;
    }
    if (c->b.progress)
        fprintf(stderr, "phrex build --mpi: rank %d: shard %d/%d done: %lld passages, %lld tokens in %.1f s\n", rank,
                rank, size, (long long)stats.passages, (long long)stats.tokens, stats.total_s);
    return 0;
}

static int mpi_merge(build_cli *c, int size) {
    static char dirs[MAX_CORPUS][4096];
    const char *paths[MAX_CORPUS];
    if (size > MAX_CORPUS) {
        fprintf(stderr, "phrex build --mpi: at most %d ranks\n", MAX_CORPUS);
        return 1;
    }
    for (int r = 0; r < size; r++) {
        if (mpi_shard_dir(dirs[r], sizeof dirs[r], c->b.out_dir, r, size)) return 1;
        paths[r] = dirs[r];
    }
    phrex_build_options o = c->b;
    o.corpus_paths = paths;
    o.n_corpus = size;
    phrex_build_stats stats;
    if (phrex_index_merge_dumps(&o, &stats)) {
        fprintf(stderr, "phrex build --mpi: merging the %d shards: %s\n", size, phrex_last_error());
        return 1;
    }
    print_summary(&c->b, &stats);
    return 0;
}

static int build_mpi(build_cli *c) {
    if (c->b.n_shards > 1) {
        fprintf(stderr, "phrex build: --mpi and --shard do not go together (under mpirun, the rank is the shard)\n");
        return 2;
    }
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "phrex build --mpi: MPI_Init failed\n");
        return 1;
    }
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char msg[MPI_MSG] = "";
    int status = mpi_build_shard(c, rank, size, msg);
    char *msgs = rank == 0 ? calloc((size_t)size, MPI_MSG) : NULL;
    int *statuses = rank == 0 ? calloc((size_t)size, sizeof *statuses) : NULL;
    if (rank == 0 && (!msgs || !statuses)) MPI_Abort(MPI_COMM_WORLD, 1); // out of memory: take every rank down
    MPI_Gather(&status, 1, MPI_INT, statuses, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Gather(msg, MPI_MSG, MPI_CHAR, msgs, MPI_MSG, MPI_CHAR, 0, MPI_COMM_WORLD);
    int outcome = 0; // 0: merged; 1: a shard failed; 2: the merge failed
    if (rank == 0) {
        for (int r = 0; r < size; r++)
            if (statuses[r]) {
                msgs[(size_t)r * MPI_MSG + MPI_MSG - 1] = '\0';
                fprintf(stderr, "phrex build --mpi: rank %d (shard %d/%d) failed: %s\n", r, r, size,
                        msgs + (size_t)r * MPI_MSG);
                outcome = 1;
            }
        if (!outcome && mpi_merge(c, size)) outcome = 2;
    }
    free(msgs);
    free(statuses);
    MPI_Bcast(&outcome, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (outcome && rank != 0)
        fprintf(stderr, "phrex build --mpi: rank %d: stopping, %s (see rank 0's message)\n", rank,
                outcome == 1 ? "a shard failed" : "the merge failed");
    MPI_Finalize();
    return outcome ? 1 : 0;
}
#else
static int build_mpi(build_cli *c) {
    (void)c;
    fprintf(stderr, "phrex build: --mpi: this phrex was built without MPI (install libopenmpi-dev and openmpi-bin, "
                    "then rebuild)\n");
    return 2;
}
#endif

int cmd_build(int argc, char **argv) {
    build_cli c;
    memset(&c, 0, sizeof c);
    int rc = parse_options(argc, argv, &c);
    if (rc) return rc < 0 ? 0 : rc;
    // A trained model folder builds with its phrase encoder.
    if (!(c.b.model_dir = phrex_cli_phrase_encoder_dir("build", c.b.model_dir))) return 1;
    if ((rc = setup_filter(&c))) return rc;
    warn_polysemous(c.b.index_factory);
    if (c.mpi) {
        rc = build_mpi(&c);
        phrex_filter_free(&c.filter);
        return rc;
    }
    phrex_build_stats stats;
    rc = phrex_index_build_dump(&c.b, &stats);
    phrex_filter_free(&c.filter);
    if (rc) {
        fprintf(stderr, "phrex build: %s\n", phrex_last_error());
        return 1;
    }
    print_summary(&c.b, &stats);
    return 0;
}

int cmd_merge(int argc, char **argv) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},          {"model", required_argument, 0, 'm'},
        {"index-factory", required_argument, 0, 'i'}, {"metric", required_argument, 0, 'M'},
        {"train-size", required_argument, 0, 'T'},   {"threads", required_argument, 0, 'j'},
        {"keep-vectors", no_argument, 0, 'v'},       {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    build_cli c;
    memset(&c, 0, sizeof c);
    phrex_build_options_default(&c.b);
    c.b.model_dir = phrex_cli_default_model_dir();
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            print_merge_help(stdout);
            return 0;
        }
        if (parse_option(&c, opt, optarg)) {
            if (opt == '?') print_merge_help(stderr);
            return 2;
        }
    }
    for (int i = optind; i < argc; i++)
        if ((rc = add_corpus(&c, argv[i]))) return rc;
    if (!(c.b.model_dir = phrex_cli_phrase_encoder_dir("merge", c.b.model_dir))) return 1;
    if (!c.b.n_corpus || !c.b.out_dir) {
        fprintf(stderr, "phrex merge: --out and at least one SHARD are required\n\n");
        print_merge_help(stderr);
        return 2;
    }
    c.b.corpus_paths = c.corpus;
    warn_polysemous(c.b.index_factory);
    phrex_build_stats stats;
    if ((rc = phrex_index_merge_dumps(&c.b, &stats))) {
        fprintf(stderr, "phrex merge: %s\n", phrex_last_error());
        return 1;
    }
    print_summary(&c.b, &stats);
    return 0;
}

// phrex reindex: a dump built with --keep-vectors, indexed again with other
// index options into a new dump, without encoding anything: a merge of one
// shard (records copied, vectors copied, a new index trained).
int cmd_reindex(int argc, char **argv) {
    static const struct option longopts[] = {
        {"dump", required_argument, 0, 'd'},         {"out", required_argument, 0, 'o'},
        {"model", required_argument, 0, 'm'},        {"index-factory", required_argument, 0, 'i'},
        {"metric", required_argument, 0, 'M'},       {"train-size", required_argument, 0, 'T'},
        {"threads", required_argument, 0, 'j'},      {"keep-vectors", no_argument, 0, 'v'},
        {"quiet", no_argument, 0, 'q'},              {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    build_cli c;
    memset(&c, 0, sizeof c);
    phrex_build_options_default(&c.b);
    c.b.model_dir = phrex_cli_default_model_dir();
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h' || opt == '?') {
            fprintf(opt == 'h' ? stdout : stderr,
                    "usage: phrex reindex --dump DUMP --out NEW --index-factory STR [options]\n\n"
                    "Builds NEW from DUMP (built with --keep-vectors) with another FAISS index, without\n"
                    "encoding: passages and vectors are copied, the index is trained again.\n\n"
                    "  --dump DUMP           source dump (must hold vectors.f32)\n"
                    "  --out NEW             new dump folder (an unfinished one is resumed)\n"
                    "  --model DIR           the dump's model (default %s)\n"
                    "  --index-factory STR   FAISS factory string (default auto)\n"
                    "  --metric M            ip (default) or l2\n"
                    "  --train-size N        vectors to train the index on (default: by factory)\n"
                    "  --threads N           threads (default: all cores)\n"
                    "  --keep-vectors        keep the raw vectors in NEW too\n"
                    "  --quiet               no progress lines\n",
                    phrex_cli_default_model_dir());
            return opt == 'h' ? 0 : 2;
        }
        if (opt == 'd') {
            if (add_corpus(&c, optarg)) return 2;
        } else if (parse_option(&c, opt, optarg)) {
            return 2;
        }
    }
    if (optind < argc || c.b.n_corpus != 1 || !c.b.out_dir) {
        fprintf(stderr, "phrex reindex: exactly one --dump and an --out are required (see --help)\n");
        return 2;
    }
    c.b.corpus_paths = c.corpus;
    warn_polysemous(c.b.index_factory);
    phrex_build_stats stats;
    if (phrex_index_merge_dumps(&c.b, &stats)) {
        fprintf(stderr, "phrex reindex: %s\n", phrex_last_error());
        return 1;
    }
    print_summary(&c.b, &stats);
    return 0;
}

// phrex embed: lines of text on stdin, one JSON object per line on stdout.
//   default:  {"line": N, "dim": C, "vector": [...]}   mean-pooled, L2-normalised
//             (what sentence-transformers' all-MiniLM-L6-v2 pipeline outputs)
//   --tokens: {"line": N, "tokens": [{"id","piece","start","end","vector"}]}
//             last hidden state of every token, [CLS] and [SEP] included
//             (their offsets are -1); start/end are byte offsets in the line.
// Lines are packed into batches of up to --batch-tokens tokens with no
// padding. The first bad line stops the run with its line number, after the
// lines before it have been written.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/threads.h"
#include "common/utf8.h"
#include "encoder/embedder.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model_dir;
    int tokens;       // write token vectors instead of a sentence vector
    int normalize;    // L2-normalise sentence vectors
    int truncate;     // cut over-long lines instead of failing
    int threads;
    int batch_tokens; // packed tokens per forward call
} embed_options;

// One batch of packed lines waiting for a forward pass.
typedef struct {
    phrex_tokens tokens; // (N) [CLS] pieces [SEP] per line, back to back
    int32_t *seq_lens;   // (n_lines)
    long *line_numbers;  // (n_lines) 1-based input line of each sequence
    int n_lines, max_lines;
    float *hidden;       // (batch_tokens, C)
    float *pooled;       // (max_lines, C)
} embed_batch;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex embed [--model DIR] [--tokens] [--no-normalize] [--truncate]\n"
            "                   [--threads N] [--batch-tokens N] < lines.txt > vectors.jsonl\n\n"
            "  --model DIR        model directory in Hugging Face layout (default %s)\n"
            "  --tokens           one vector per token, with ids, pieces and byte offsets\n"
            "  --no-normalize     sentence vectors without L2 normalisation\n"
            "  --truncate         keep the first 510 pieces of longer lines instead of failing\n"
            "  --threads N        threads (default: all cores)\n"
            "  --batch-tokens N   tokens per forward pass (default 8192, at least 512)\n",
            phrex_cli_base_model_dir());
}

static int parse_options(int argc, char **argv, embed_options *o) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},   {"tokens", no_argument, 0, 't'},
        {"no-normalize", no_argument, 0, 'n'},  {"truncate", no_argument, 0, 'x'},
        {"threads", required_argument, 0, 'j'}, {"batch-tokens", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    *o = (embed_options){phrex_cli_base_model_dir(), 0, 1, 0, 0, 8192};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->tokens = 1; break;
        case 'n': o->normalize = 0; break;
        case 'x': o->truncate = 1; break;
        case 'j':
            if (phrex_cli_parse_int("--threads", optarg, 1, 1024, &o->threads)) return 2;
            break;
        case 'b':
            if (phrex_cli_parse_int("--batch-tokens", optarg, 512, 1 << 20, &o->batch_tokens)) return 2;
            break;
        case 'h': print_help(stdout); return -1;
        default: print_help(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "phrex embed: unexpected argument '%s' (text is read from stdin)\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int batch_init(embed_batch *b, int batch_tokens, int C) {
    memset(b, 0, sizeof *b);
    b->max_lines = batch_tokens / 3; // a line is at least [CLS] piece [SEP]
    b->seq_lens = malloc((size_t)b->max_lines * sizeof *b->seq_lens);
    b->line_numbers = malloc((size_t)b->max_lines * sizeof *b->line_numbers);
    b->hidden = malloc((size_t)batch_tokens * (size_t)C * sizeof(float));
    b->pooled = malloc((size_t)b->max_lines * (size_t)C * sizeof(float));
    if (!b->seq_lens || !b->line_numbers || !b->hidden || !b->pooled) return PHREX_ERR_MEMORY;
    return phrex_tokens_init(&b->tokens, batch_tokens);
}

static void batch_free(embed_batch *b) {
    phrex_tokens_free(&b->tokens);
    free(b->seq_lens);
    free(b->line_numbers);
    free(b->hidden);
    free(b->pooled);
}

static void write_sentence_vectors(embed_batch *b, int C, int normalize) {
    phrex_bert_mean_pool(b->hidden, b->seq_lens, b->n_lines, C, b->pooled);
    if (normalize) phrex_l2_normalize(b->pooled, b->n_lines, C);
    for (int s = 0; s < b->n_lines; s++) {
        printf("{\"line\":%ld,\"dim\":%d,\"vector\":", b->line_numbers[s], C);
        phrex_json_write_floats(stdout, b->pooled + (size_t)s * C, C);
        fputs("}\n", stdout);
    }
}

static void write_token_vectors(const embed_batch *b, const phrex_wordpiece *wp, int C) {
    int t = 0;
    for (int s = 0; s < b->n_lines; s++) {
        printf("{\"line\":%ld,\"tokens\":[", b->line_numbers[s]);
        for (int i = 0; i < b->seq_lens[s]; i++, t++) {
            const char *piece = phrex_wordpiece_piece(wp, b->tokens.ids[t]);
            printf(i ? ",{\"id\":%d,\"piece\":" : "{\"id\":%d,\"piece\":", b->tokens.ids[t]);
            phrex_json_write_string(stdout, piece, strlen(piece));
            printf(",\"start\":%d,\"end\":%d,\"vector\":", b->tokens.start[t], b->tokens.end[t]);
            phrex_json_write_floats(stdout, b->hidden + (size_t)t * C, C);
            putchar('}');
        }
        fputs("]}\n", stdout);
    }
}

static int flush_batch(embed_batch *b, phrex_embedder *e, const embed_options *o) {
    if (b->n_lines == 0) return PHREX_OK;
    int C = phrex_embedder_config(e)->hidden_size;
    int rc = phrex_encoder_forward(phrex_embedder_encoder(e), b->tokens.ids, NULL, b->seq_lens, b->n_lines, b->hidden);
    if (rc) return rc;
    if (o->tokens) write_token_vectors(b, phrex_embedder_tokenizer(e), C);
    else write_sentence_vectors(b, C, o->normalize);
    b->n_lines = 0;
    phrex_tokens_clear(&b->tokens);
    return ferror(stdout) ? phrex_fail(PHREX_ERR_IO, "cannot write to stdout") : PHREX_OK;
}

// Strips the line end and checks what tokenization cannot: NUL bytes and
// invalid UTF-8. Returns PHREX_OK or an error naming the problem.
static int check_line(char *line, size_t *len) {
    while (*len && (line[*len - 1] == '\n' || line[*len - 1] == '\r')) line[--*len] = '\0';
    const char *nul = memchr(line, '\0', *len);
    if (nul) return phrex_fail(PHREX_ERR_INPUT, "NUL byte at byte %zu", (size_t)(nul - line));
    size_t bad;
    if (!phrex_utf8_check(line, *len, &bad)) return phrex_fail(PHREX_ERR_INPUT, "invalid UTF-8 at byte %zu", bad);
    return PHREX_OK;
}

static int append_tokens(phrex_tokens *dst, const phrex_tokens *src) {
    for (int i = 0; i < src->n; i++) {
        int rc = phrex_tokens_push(dst, src->ids[i], src->start[i], src->end[i]);
        if (rc) return rc;
    }
    return PHREX_OK;
}

static int embed_stream(phrex_embedder *e, const embed_options *o, embed_batch *b) {
    char *line = NULL;
    size_t cap = 0;
    long line_number = 0;
    phrex_tokens line_tokens; // [CLS] pieces [SEP] of the current line
    int rc = phrex_tokens_init(&line_tokens, 512);
    ssize_t got;
    while (rc == PHREX_OK && (got = getline(&line, &cap, stdin)) != -1) {
        size_t len = (size_t)got;
        int n_added = 0;
        line_number++;
        phrex_tokens_clear(&line_tokens);
        if ((rc = check_line(line, &len)) ||
            (rc = phrex_embedder_tokenize(e, line, len, o->truncate, &line_tokens, &n_added))) {
            // Every line before the bad one still gets its output.
            rc = phrex_fail_context(rc, "stdin:%ld", line_number);
            int flushed = flush_batch(b, e, o);
            rc = flushed ? flushed : rc;
            break;
        }
        if (b->tokens.n + n_added > o->batch_tokens || b->n_lines == b->max_lines)
            if ((rc = flush_batch(b, e, o))) break;
        if ((rc = append_tokens(&b->tokens, &line_tokens))) break;
        b->seq_lens[b->n_lines] = n_added;
        b->line_numbers[b->n_lines++] = line_number;
    }
    free(line);
    phrex_tokens_free(&line_tokens);
    if (rc == PHREX_OK && ferror(stdin)) rc = phrex_fail(PHREX_ERR_IO, "stdin: read error");
    if (rc == PHREX_OK) rc = flush_batch(b, e, o);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    embed_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    phrex_set_threads(o.threads);
    phrex_embedder *e = NULL;
    embed_batch b = {0};
    if ((rc = phrex_embedder_init(&e, o.model_dir, o.batch_tokens)) == PHREX_OK) {
        if (batch_init(&b, o.batch_tokens, phrex_embedder_config(e)->hidden_size))
            rc = phrex_fail(PHREX_ERR_MEMORY, "cannot allocate a batch of %d tokens", o.batch_tokens);
        else
            rc = embed_stream(e, &o, &b);
        batch_free(&b);
    }
    phrex_embedder_free(e);
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "phrex embed: %s\n", phrex_last_error());
        return 1;
    }
    return 0;
}

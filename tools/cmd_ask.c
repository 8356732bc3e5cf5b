// phrex ask: questions in, answers out, over a phrase dump.
//   stdin a terminal: a prompt with readline editing and history; each
//     answer printed with its score, title and context, the answer in bold
//     colour when stdout is a terminal too (in [brackets] otherwise);
//   stdin not a terminal (or --json): one question per line, one JSON
//     object per line: {"line","question","answers":[{"text","score",
//     "title","passage_id","passage","start","end","context"}]}, plus
//     "answer" (the best phrase) for units other than phrases, and
//     "truncated": true for a question cut to 64 tokens.
// A bad line (empty, NUL byte, invalid UTF-8) gets a message naming the
// line; in pipe mode it yields {"line","question","error"} (question null
// when it is not valid text) and the exit status is 1 once all lines are
// answered. A question over 64 tokens is truncated with a warning (as
// DensePhrases truncates at max_query_length), not rejected.
#include "tools/cli.h"
#include "tools/cli_util.h"

#include "common/error.h"
#include "common/json_write.h"
#include "common/threads.h"
#include "common/utf8.h"
#include "rerank/rerank_search.h"
#include "search/search.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
// readline after stdio.h (it uses FILE)
#include <readline/history.h>
#include <readline/readline.h>

#define CONTEXT_BYTES 160 // shown on each side of an answer at the prompt

typedef struct {
    phrex_searcher_options so;
    phrex_search_options o;
    int json, threads;
    phrex_rerank_flags rf;   // --reranker, --budget-ms, ... (rerank/rerank_search.h)
    phrex_rerank_search *rs; // NULL: no reranking
} ask_options;

static void print_help(FILE *f) {
    fprintf(f,
            "usage: phrex ask --dump DUMP [options]\n\n"
            "Answers questions from stdin over a phrase dump: at a terminal, a prompt; from a\n"
            "pipe, one question per line and one JSON object per line.\n\n"
            "  --dump DUMP          phrase dump built by 'phrex build'\n"
            "  --model DIR          the model the dump was built with (default %s)\n"
            "  --query-model DIR    query encoder: a BERT folder, or one with start/ and end/\n"
            "                       (default: the phrase model itself)\n"
            "  --pool P             query vector of a BERT query encoder: mean (default) or cls\n"
            "  --top-k K            results per question (default 10)\n"
            "  --search-k K         FAISS hits per query half (default: top-k for phrases,\n"
            "                       200 for the other units)\n"
            "  --unit U             phrase (default), sentence, passage or document\n"
            "  --max-answer-len N   longest answer in word pieces (default 10)\n"
            "  --nprobe N           inverted lists visited (IVF dumps; default 256)\n"
            "  --threads N          threads for one question (default: all cores)\n"
            "  --json               JSON lines even at a terminal\n",
            phrex_cli_default_model_dir());
    phrex_rerank_flags_help(f);
}

static int parse_option(ask_options *a, int opt, const char *arg) {
    switch (opt) {
    case 'd': a->so.dump_dir = arg; return 0;
    case 'm': a->so.model_dir = arg; return 0;
    case 'Q': a->so.query_model_dir = arg; return 0;
    case 'p':
        if (phrex_query_parse_pool(arg, &a->so.pool) == PHREX_OK) return 0;
        fprintf(stderr, "phrex ask: %s\n", phrex_last_error());
        return 2;
    case 'k': return phrex_cli_parse_int("--top-k", arg, 1, 10000, &a->o.top_k);
    case 'K': return phrex_cli_parse_int("--search-k", arg, 1, 65536, &a->o.search_k);
    case 'u':
        if (phrex_search_parse_unit(arg, &a->o.unit) == PHREX_OK) return 0;
        fprintf(stderr, "phrex ask: %s\n", phrex_last_error());
        return 2;
    case 'L': return phrex_cli_parse_int("--max-answer-len", arg, 1, 256, &a->o.max_answer_len);
    case 'n': return phrex_cli_parse_int("--nprobe", arg, 1, 1 << 20, &a->so.nprobe);
    case 'j': return phrex_cli_parse_int("--threads", arg, 1, 1024, &a->threads);
    case 'J': a->json = 1; return 0;
    default:
        if (phrex_rerank_is_opt(opt)) return phrex_rerank_flags_parse(&a->rf, opt, arg, "phrex ask");
        print_help(stderr);
        return 2;
    }
}

static int parse_options(int argc, char **argv, ask_options *a) {
    static const struct option longopts[] = {
        {"dump", required_argument, 0, 'd'},         {"model", required_argument, 0, 'm'},
        {"query-model", required_argument, 0, 'Q'},  {"pool", required_argument, 0, 'p'},
        {"top-k", required_argument, 0, 'k'},        {"search-k", required_argument, 0, 'K'},
        {"unit", required_argument, 0, 'u'},         {"max-answer-len", required_argument, 0, 'L'},
        {"nprobe", required_argument, 0, 'n'},       {"threads", required_argument, 0, 'j'},
        {"json", no_argument, 0, 'J'},               {"help", no_argument, 0, 'h'},
        PHREX_RERANK_LONGOPTS,                       {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    phrex_searcher_options_default(&a->so);
    phrex_search_options_default(&a->o);
    a->so.model_dir = phrex_cli_default_model_dir();
    a->rf.default_dir = phrex_cli_default_reranker_dir();
    int opt, rc;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == 'h') {
            print_help(stdout);
            return -1;
        }
        if ((rc = parse_option(a, opt, optarg))) return rc;
    }
    if (optind != argc) {
        fprintf(stderr, "phrex ask: unexpected argument '%s' (questions are read from stdin)\n", argv[optind]);
        return 2;
    }
    if (!a->so.dump_dir) {
        fprintf(stderr, "phrex ask: --dump is required\n\n");
        print_help(stderr);
        return 2;
    }
    return 0;
}

// --- JSON lines -------------------------------------------------------------

static void json_str(const char *s, size_t n) { phrex_json_write_string(stdout, s, n); }

static void write_result_json(const phrex_search_result *r, int with_answer) {
    fputs("{\"text\":", stdout);
    json_str(r->text, r->text_len);
    if (with_answer) {
        fputs(",\"answer\":", stdout);
        json_str(r->answer, r->answer_len);
        printf(",\"answer_start\":%d,\"answer_end\":%d", r->answer_start, r->answer_end);
    }
    printf(",\"score\":%.6g,\"title\":", (double)r->score);
    json_str(r->title, strlen(r->title));
    fputs(",\"passage_id\":", stdout);
    json_str(r->passage_id, strlen(r->passage_id));
    printf(",\"passage\":%lld,\"start\":%d,\"end\":%d,\"context\":", (long long)r->passage, r->start, r->end);
    json_str(r->context, r->context_len);
    putchar('}');
}

static void write_answers_json(long line, const char *q, size_t len, const phrex_search_output *out,
                               phrex_search_unit unit) {
    printf("{\"line\":%ld,\"question\":", line);
    json_str(q, len);
    if (out->truncated) fputs(",\"truncated\":true", stdout);
    fputs(",\"answers\":[", stdout);
    for (int i = 0; i < out->n; i++) {
        if (i) putchar(',');
        write_result_json(&out->results[i], unit != PHREX_UNIT_PHRASE);
    }
    fputs("]}\n", stdout);
}

// The question is echoed only when it is text JSON can carry.
static void write_error_json(long line, const char *q, size_t len, const char *msg) {
    printf("{\"line\":%ld,\"question\":", line);
    if (!memchr(q, '\0', len) && phrex_utf8_check(q, len, NULL)) json_str(q, len);
    else fputs("null", stdout);
    fputs(",\"error\":", stdout);
    json_str(msg, strlen(msg));
    fputs("}\n", stdout);
}

// --- the prompt -------------------------------------------------------------

typedef struct {
    const char *bold, *off, *dim;
} style;

// A window of the passage around [a, b), cut at UTF-8 boundaries and, where
// possible, at spaces; newlines shown as spaces.
static void print_clean(const char *s, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) putchar(s[i] == '\n' || s[i] == '\t' ? ' ' : s[i]);
}

static size_t back_to_boundary(const char *s, size_t i) {
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static void print_context(const phrex_search_result *r, const style *st) {
    const char *t = r->context;
    size_t n = r->context_len, a = (size_t)r->answer_start, b = (size_t)r->answer_end;
    size_t from = a > CONTEXT_BYTES ? back_to_boundary(t, a - CONTEXT_BYTES) : 0;
    size_t to = b + CONTEXT_BYTES < n ? back_to_boundary(t, b + CONTEXT_BYTES) : n;
    fputs("     ", stdout);
    if (from > 0) fputs("...", stdout);
    print_clean(t, from, a);
    fputs(st->bold, stdout);
    print_clean(t, a, b);
    fputs(st->off, stdout);
    print_clean(t, b, to);
    if (to < n) fputs("...", stdout);
    putchar('\n');
}

static void print_answers(const phrex_search_output *out, const style *st) {
    if (out->truncated) printf("(question truncated to %d tokens)\n", PHREX_QUERY_MAX_LEN);
    if (out->n == 0) printf("no answer found\n");
    for (int i = 0; i < out->n; i++) {
        const phrex_search_result *r = &out->results[i];
        printf("%2d. %s", i + 1, st->bold);
        print_clean(r->answer, 0, r->answer_len);
        printf("%s  %s(score %.3f, %s, passage %s)%s\n", st->off, st->dim, (double)r->score, r->title,
               r->passage_id, st->off);
        print_context(r, st);
    }
    printf("%s(%.1f ms: encode %.1f, search %.1f)%s\n", st->dim, out->encode_ms + out->search_ms, out->encode_ms,
           out->search_ms, st->off);
}

// Questions asked at earlier prompts come back with the arrow keys:
// ~/.phrex_history, kept to its last HISTORY_LINES lines.
#define HISTORY_LINES 1000

static const char *history_path(char *buf, size_t cap) {
    const char *home = getenv("HOME");
    if (!home || !*home || snprintf(buf, cap, "%s/.phrex_history", home) >= (int)cap) return NULL;
    return buf;
}

static int run_prompt(phrex_search *h, const ask_options *a) {
    style st = isatty(STDOUT_FILENO) ? (style){"\033[1;32m", "\033[0m", "\033[2m"} : (style){"[", "]", ""};
    if (!a->json) printf("phrex ask: %s; type a question, Ctrl-D to quit\n", a->so.dump_dir);
    char hbuf[4096];
    const char *hist = history_path(hbuf, sizeof hbuf);
    if (hist && read_history(hist) != 0) write_history(hist); // creates it: append_history does not
    char *line;
    long n = 0;
    while ((line = readline(a->json ? "" : "question> ")) != NULL) {
        n++;
        size_t len = strlen(line);
        if (strspn(line, " \t") == len) { // a bare Enter at the prompt is no question
            free(line);
            continue;
        }
        add_history(line);
        if (hist) append_history(1, hist);
        phrex_search_output out;
        if (phrex_search_question(h, line, len, &out) ||
            (a->rs && phrex_rerank_search_apply(a->rs, line, len, &out, NULL))) {
            if (a->json) write_error_json(n, line, len, phrex_last_error());
            else fprintf(stderr, "phrex ask: %s\n", phrex_last_error());
        } else if (a->json) write_answers_json(n, line, len, &out, a->o.unit);
        else print_answers(&out, &st);
        fflush(stdout);
        free(line);
    }
    if (hist) history_truncate_file(hist, HISTORY_LINES);
    if (!a->json) putchar('\n');
    return 0;
}

// --- pipe mode ----------------------------------------------------------------

static int answer_line(phrex_search *h, const ask_options *a, long n, char *line, size_t len) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    phrex_search_output out;
    if (phrex_search_question(h, line, len, &out) || (a->rs && phrex_rerank_search_apply(a->rs, line, len, &out, NULL))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", phrex_last_error());
        fprintf(stderr, "phrex ask: stdin:%ld: %s\n", n, msg);
        write_error_json(n, line, len, msg);
        return 1;
    }
    if (out.truncated)
        fprintf(stderr, "phrex ask: stdin:%ld: warning: question truncated to %d tokens\n", n, PHREX_QUERY_MAX_LEN);
    write_answers_json(n, line, len, &out, a->o.unit);
    return 0;
}

static int run_pipe(phrex_search *h, const ask_options *a) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long n = 0, bad = 0;
    while ((got = getline(&line, &cap, stdin)) != -1) {
        bad += answer_line(h, a, ++n, line, (size_t)got);
        if (ferror(stdout)) break;
    }
    free(line);
    fflush(stdout);
    if (ferror(stdin) || ferror(stdout)) {
        fprintf(stderr, "phrex ask: %s error\n", ferror(stdin) ? "stdin read" : "stdout write");
        return 1;
    }
    if (bad) fprintf(stderr, "phrex ask: %ld of %ld lines had errors\n", bad, n);
    return bad ? 1 : 0;
}

int cmd_ask(int argc, char **argv) {
    ask_options a;
    int rc = parse_options(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    phrex_set_threads(a.threads);
    phrex_searcher *s = NULL;
    phrex_search *h = NULL;
    phrex_reranking *rr = NULL;
    // The reranker first (a bad one fails before the dump loads); then k
    // from the budget, probed at this command's thread count.
    if (phrex_reranking_from_flags(&rr, &a.rf, a.o.top_k) || phrex_searcher_init(&s, &a.so) ||
        phrex_search_init(&h, s, &a.o) ||
        (rr && (phrex_reranking_plan(rr, s, &a.o, phrex_rerank_probe_questions, NULL, phrex_rerank_n_probe_questions,
                                     phrex_get_threads()) ||
                phrex_rerank_search_init(&a.rs, rr)))) {
        fprintf(stderr, "phrex ask: %s\n", phrex_last_error());
        phrex_search_free(h);
        phrex_searcher_free(s);
        phrex_reranking_free(rr);
        return 1;
    }
    if (rr && isatty(STDIN_FILENO)) {
        char desc[512];
        phrex_reranking_describe(rr, desc, sizeof desc);
        fprintf(stderr, "phrex ask: %s\n", desc);
    }
    rc = isatty(STDIN_FILENO) ? run_prompt(h, &a) : run_pipe(h, &a);
    phrex_rerank_search_free(a.rs);
    phrex_reranking_free(rr);
    phrex_search_free(h);
    phrex_searcher_free(s);
    return rc;
}

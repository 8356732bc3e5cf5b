#include "jsonpos.h"

#include <cjson/cJSON.h>
#include <string.h>

void phrex_jsonpos_init(phrex_jsonpos *jp, const char *buf, size_t len, const char *key) {
    memset(jp, 0, sizeof *jp);
    jp->buf = buf;
    jp->len = len;
    jp->line = 1;
    jp->key = key;
    jp->key_len = strlen(key);
}

static void push(phrex_jsonpos *jp, int is_target) {
    if (jp->depth < PHREX_JSONPOS_MAX_DEPTH) jp->target[jp->depth] = (unsigned char)is_target;
    jp->depth++;
}

static int top_is_target(const phrex_jsonpos *jp) {
    return jp->depth > 0 && jp->depth <= PHREX_JSONPOS_MAX_DEPTH && jp->target[jp->depth - 1];
}

// Skips the string starting at buf[pos] == '"'; returns its contents' span.
static void skip_string(phrex_jsonpos *jp, size_t *start, size_t *end) {
    size_t i = jp->pos + 1;
    *start = i;
    while (i < jp->len && jp->buf[i] != '"') {
        if (jp->buf[i] == '\\' && i + 1 < jp->len) i++;
        else if (jp->buf[i] == '\n') {
            jp->line++;
            jp->line_start = i + 1;
        }
        i++;
    }
    *end = i;
    jp->pos = i < jp->len ? i + 1 : i;
}

static void skip_space(phrex_jsonpos *jp) {
    while (jp->pos < jp->len) {
        char c = jp->buf[jp->pos];
        if (c == '\n') {
            jp->line++;
            jp->line_start = jp->pos + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            break;
        }
        jp->pos++;
    }
}

size_t phrex_jsonpos_next(phrex_jsonpos *jp) {
    while (jp->pos < jp->len) {
        char c = jp->buf[jp->pos];
        switch (c) {
        case '"': {
            size_t s, e;
            skip_string(jp, &s, &e);
            skip_space(jp);
            if (jp->pos < jp->len && jp->buf[jp->pos] == ':') { // it was a key
                jp->pos++;
                jp->pending = (e - s == jp->key_len && memcmp(jp->buf + s, jp->key, jp->key_len) == 0);
            } else {
                jp->pending = 0;
            }
            continue;
        }
        case '[':
            push(jp, jp->pending);
            jp->pending = 0;
            break;
        case '{': {
            int hit = top_is_target(jp);
            size_t line = jp->line;
            if (hit) jp->column = jp->pos - jp->line_start + 1;
            push(jp, 0);
            jp->pending = 0;
            jp->pos++;
            if (hit) return line;
            continue;
        }
        case ']':
        case '}':
            if (jp->depth > 0) jp->depth--;
            jp->pending = 0;
            break;
        case '\n':
            jp->line++;
            jp->line_start = jp->pos + 1;
            break;
        case ' ':
        case '\t':
        case '\r':
            break;
        default:
            jp->pending = 0;
            break;
        }
        jp->pos++;
    }
    return 0;
}

size_t phrex_jsonpos_count(const cJSON *node, const char *key) {
    size_t n = 0;
    for (const cJSON *child = node ? node->child : NULL; child; child = child->next) {
        int target = cJSON_IsArray(child) && child->string && strcmp(child->string, key) == 0 && cJSON_IsObject(node);
        if (target)
            for (const cJSON *e = child->child; e; e = e->next) n += cJSON_IsObject(e);
        n += phrex_jsonpos_count(child, key);
    }
    return n;
}

void phrex_jsonpos_skip(phrex_jsonpos *jp, size_t count) {
    for (size_t i = 0; i < count; i++) phrex_jsonpos_next(jp);
}

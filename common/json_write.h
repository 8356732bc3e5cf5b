// Minimal streaming JSON output for JSONL results: strings escaped per
// RFC 8259 (input is valid UTF-8, passed through), floats in shortest-ish
// round-trippable form. cJSON builds trees; this writes straight to a FILE.
#ifndef PHREX_JSON_WRITE_H
#define PHREX_JSON_WRITE_H

#include <stddef.h>
#include <stdio.h>

void phrex_json_write_string(FILE *f, const char *s, size_t len);
// "[v0,v1,...]" with 7 significant digits (float32 resolution is ~7.2).
void phrex_json_write_floats(FILE *f, const float *v, int n);

#endif

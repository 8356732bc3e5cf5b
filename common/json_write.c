#include "json_write.h"

void phrex_json_write_string(FILE *f, const char *s, size_t len) {
    putc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else putc(c, f);
        }
    }
    putc('"', f);
}

void phrex_json_write_floats(FILE *f, const float *v, int n) {
    putc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%.7g" : "%.7g", (double)v[i]);
    putc(']', f);
}

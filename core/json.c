/* The strict JSON reader behind safetensors headers (see json.h for why it is
 * hand-written): recursive descent over a length-bounded buffer, never reading
 * past it, depth-limited, every failure a message with the byte offset. */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t n, i;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
} parser;

static bool fail(parser *p, const char *what) {
    if (!p->failed) snprintf(p->err, p->errlen, "%s at byte %zu", what, p->i);
    p->failed = true;
    return false;
}

static void skip_ws(parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static bool literal(parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->n - p->i < k || memcmp(p->s + p->i, word, k)) return fail(p, "invalid literal");
    p->i += k;
    return true;
}

/* Length of the UTF-8 sequence at s (max n bytes), 0 when malformed. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool kiln__utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static int hex4(parser *p) {
    if (p->n - p->i < 4) return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    p->i += 4;
    return v;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote; returns a malloc'd decoded string. */
static char *parse_string(parser *p) {
    p->i++;
    /* decoded text is never longer than the escaped source */
    size_t start = p->i, cap = 1;
    while (p->i < p->n && p->s[p->i] != '"') p->i += p->s[p->i] == '\\' ? 2 : 1;
    if (p->i >= p->n) return fail(p, "unterminated string"), NULL;
    cap += p->i - start;
    p->i = start;
    char *out = malloc(cap), *o = out;
    if (!out) return fail(p, "out of memory"), NULL;
    while (p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) goto bad_ctl;
        if (c != '\\') {
            size_t k = utf8_seq((const unsigned char *)p->s + p->i, p->n - p->i);
            if (!k) goto bad_utf8;
            memcpy(o, p->s + p->i, k);
            o += k;
            p->i += k;
            continue;
        }
        p->i++;
        char e = p->s[p->i++];
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            int hi = hex4(p);
            if (hi < 0) goto bad_esc;
            uint32_t cp = (uint32_t)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') goto bad_esc;
                p->i += 2;
                int lo = hex4(p);
                if (lo < 0xDC00 || lo > 0xDFFF) goto bad_esc;
                cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                goto bad_esc;
            }
            if (cp == 0) {
                free(out);
                return fail(p, "string contains \\u0000, which names cannot hold"), NULL;
            }
            o += put_utf8(o, cp);
            break;
        }
        default: goto bad_esc;
        }
    }
    p->i++;
    *o = '\0';
    return out;
bad_ctl:
    free(out);
    return fail(p, "control character inside a string"), NULL;
bad_utf8:
    free(out);
    return fail(p, "string is not valid UTF-8"), NULL;
bad_esc:
    free(out);
    return fail(p, "invalid escape in a string"), NULL;
}

static bool parse_number(parser *p, kiln_json *v) {
    size_t st = p->i;
    bool neg = false, frac = false;
    if (p->s[p->i] == '-') neg = true, p->i++;
    if (p->i >= p->n) return fail(p, "invalid number");
    if (p->s[p->i] == '0') {
        p->i++;
    } else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') {
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    } else {
        return fail(p, "invalid number");
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        frac = true;
        p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        if (p->i == d) return fail(p, "invalid number");
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        frac = true;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        if (p->i == d) return fail(p, "invalid number");
    }
    char buf[64];
    size_t len = p->i - st;
    v->type = KILN_JSON_NUMBER;
    if (!neg && !frac) {
        uint64_t u = 0;
        bool fits = true;
        for (size_t k = st; k < p->i; k++) {
            unsigned dgt = (unsigned)(p->s[k] - '0');
            if (u > (UINT64_MAX - dgt) / 10) fits = false;
            u = u * 10 + dgt;
        }
        v->is_uint = fits;
        v->uint = fits ? u : 0;
    }
    if (len < sizeof buf) {
        memcpy(buf, p->s + st, len);
        buf[len] = '\0';
        v->number = strtod(buf, NULL);
    } else {
        v->number = neg ? -HUGE_VAL : HUGE_VAL; /* absurdly long literals: only their size matters here */
    }
    return true;
}

static bool parse_value(parser *p, kiln_json *v);

static bool grow(parser *p, kiln_json *v, int *cap, bool with_keys) {
    if (v->count < *cap) return true;
    int nc = *cap ? *cap * 2 : 4;
    kiln_json *items = realloc(v->items, (size_t)nc * sizeof *items);
    if (!items) return fail(p, "out of memory");
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, (size_t)nc * sizeof *keys);
        if (!keys) return fail(p, "out of memory");
        v->keys = keys;
    }
    *cap = nc;
    return true;
}

static bool parse_container(parser *p, kiln_json *v, bool object) {
    if (++p->depth > MAX_DEPTH) return fail(p, "nesting too deep");
    v->type = object ? KILN_JSON_OBJECT : KILN_JSON_ARRAY;
    p->i++;
    int cap = 0;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) {
        p->i++;
        p->depth--;
        return true;
    }
    for (;;) {
        skip_ws(p);
        if (!grow(p, v, &cap, object)) return false;
        char *key = NULL;
        if (object) {
            if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "expected a string key");
            if (!(key = parse_string(p))) return false;
            for (int k = 0; k < v->count; k++)
                if (!strcmp(v->keys[k], key)) {
                    free(key);
                    return fail(p, "duplicate key in an object");
                }
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') {
                free(key);
                return fail(p, "expected ':'");
            }
            p->i++;
            skip_ws(p);
        }
        kiln_json *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        if (object) v->keys[v->count] = key;
        v->count++; /* counted before parsing so a failure frees it */
        if (!parse_value(p, item)) return false;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) {
            p->i++;
            p->depth--;
            return true;
        }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static bool parse_value(parser *p, kiln_json *v) {
    skip_ws(p);
    if (p->i >= p->n) return fail(p, "unexpected end of text");
    switch (p->s[p->i]) {
    case '{': return parse_container(p, v, true);
    case '[': return parse_container(p, v, false);
    case '"':
        v->type = KILN_JSON_STRING;
        return (v->string = parse_string(p)) != NULL;
    case 't': v->type = KILN_JSON_BOOL; v->boolean = true; return literal(p, "true");
    case 'f': v->type = KILN_JSON_BOOL; return literal(p, "false");
    case 'n': v->type = KILN_JSON_NULL; return literal(p, "null");
    default: return parse_number(p, v);
    }
}

static void free_value(kiln_json *v) {
    free(v->string);
    for (int k = 0; k < v->count; k++) {
        free_value(&v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
}

kiln_json *kiln__json_parse(const char *text, size_t len, char *err, size_t errlen) {
    parser p = {text, len, 0, 0, err, errlen, false};
    kiln_json *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_value(&p, v)) {
        skip_ws(&p);
        if (p.i != p.n) fail(&p, "trailing characters after the value");
    }
    if (p.failed) {
        kiln__json_free(v);
        return NULL;
    }
    return v;
}

void kiln__json_free(kiln_json *j) {
    if (!j) return;
    free_value(j);
    free(j);
}

const kiln_json *kiln__json_get(const kiln_json *obj, const char *key) {
    if (!obj || obj->type != KILN_JSON_OBJECT) return NULL;
    for (int k = 0; k < obj->count; k++)
        if (!strcmp(obj->keys[k], key)) return &obj->items[k];
    return NULL;
}

void kiln__json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fputc('"', f);
}

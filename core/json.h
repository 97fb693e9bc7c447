/* A strict JSON reader (RFC 8259) for file headers such as safetensors': a small
 * tree of values, duplicate keys and NUL characters rejected, bounded nesting, and
 * unsigned integers kept exact to 2^64-1. Plus the string escaper the writers use.
 * Hand-written rather than a library dependency so the checkpoint code builds on
 * every machine the core builds on (the GPU machines have no network to install a
 * -dev package), and small because the headers it reads are. */
#ifndef KILN_JSON_H
#define KILN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { KILN_JSON_NULL, KILN_JSON_BOOL, KILN_JSON_NUMBER, KILN_JSON_STRING, KILN_JSON_ARRAY,
               KILN_JSON_OBJECT } kiln_json_type;

typedef struct kiln_json kiln_json;
struct kiln_json {
    kiln_json_type type;
    bool boolean;
    double number;
    bool is_uint;    /* a number written as a non-negative integer that fits uint64 */
    uint64_t uint;
    char *string;    /* decoded UTF-8, NUL-terminated (no embedded NULs) */
    int count;       /* array items or object members */
    kiln_json *items;
    char **keys;     /* objects: keys[i] names items[i] */
};

/* Parses exactly one value spanning text[0..len) (surrounding whitespace allowed).
 * NULL on error, with a message (naming the byte offset) in err. */
kiln_json *kiln__json_parse(const char *text, size_t len, char *err, size_t errlen);
void kiln__json_free(kiln_json *j);
/* The member named key of an object, or NULL. */
const kiln_json *kiln__json_get(const kiln_json *obj, const char *key);
/* True when s[0..n) is well-formed UTF-8. */
bool kiln__utf8_valid(const char *s, size_t n);
/* Writes s as a JSON string literal (with quotes). */
void kiln__json_write_string(FILE *f, const char *s);

#endif

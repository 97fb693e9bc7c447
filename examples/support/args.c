/* Table-driven command-line parsing for the examples (--name value or --name=value, with
 * ranges), the options they all share, the default device, and the file-system helpers
 * they need for --out. */
#include "kx.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *type_hint(const kx_arg *a) {
    switch (a->type) {
    case KX_ARG_INT:
    case KX_ARG_I64: return "N";
    case KX_ARG_DOUBLE: return "X";
    case KX_ARG_STRING: return "S";
    case KX_ARG_FLAG: return "";
    case KX_ARG_DEVICE: return "DEV";
    case KX_ARG_CHOICE: return a->choices ? a->choices : "S";
    }
    return "";
}

/* A range bound as a person writes it: 65536, not 6.5536e+04. */
static const char *bound(double x, char *buf, size_t n) {
    if (x == floor(x) && fabs(x) < 1e15) snprintf(buf, n, "%.0f", x);
    else snprintf(buf, n, "%g", x);
    return buf;
}

/* The value an option holds before parsing, as --help shows it: "" when there is none
 * to show (a flag, an unset string, a NaN meaning "computed later"). */
static const char *default_text(const kx_arg *a, char *buf, size_t n) {
    buf[0] = '\0';
    switch (a->type) {
    case KX_ARG_INT: snprintf(buf, n, "%d", *(const int *)a->dest); break;
    case KX_ARG_I64: snprintf(buf, n, "%lld", (long long)*(const int64_t *)a->dest); break;
    case KX_ARG_DOUBLE:
        if (!isnan(*(const double *)a->dest)) snprintf(buf, n, "%g", *(const double *)a->dest);
        break;
    case KX_ARG_STRING:
    case KX_ARG_CHOICE:
        if (*(const char *const *)a->dest) snprintf(buf, n, "%s", *(const char *const *)a->dest);
        break;
    case KX_ARG_DEVICE: kiln_device_name(*(const kiln_device *)a->dest, buf, n); break;
    case KX_ARG_FLAG: break;
    }
    return buf;
}

/* Each option with its real default, read from its destination, so the text cannot
 * drift from the code. A help text that speaks of its own default ("default: ...")
 * is a default computed later, and is left to say it. */
void kx_args_usage(FILE *f, const char *prog, const char *about, int n, const kx_arg *table) {
    fprintf(f, "usage: %s [options]\n", prog ? prog : "example");
    if (about) fprintf(f, "%s\n", about);
    fprintf(f, "options:\n");
    for (int i = 0; i < n; i++) {
        char left[96], def[160];
        const char *hint = type_hint(&table[i]), *help = table[i].help ? table[i].help : "";
        snprintf(left, sizeof left, "--%s%s%s", table[i].name, *hint ? " " : "", hint);
        if (table[i].refused) { /* listed, so the error it gives is no surprise */
            fprintf(f, "  %-28s not used: giving it is an error (it does not apply %s)\n", left, table[i].refused);
            continue;
        }
        fprintf(f, "  %-28s %s", left, help);
        char lo[32], hi[32];
        if (table[i].min < table[i].max)
            fprintf(f, " (%s..%s)", bound(table[i].min, lo, sizeof lo), bound(table[i].max, hi, sizeof hi));
        if (table[i].type == KX_ARG_DEVICE)
            fprintf(f, " (default here: %s)", default_text(&table[i], def, sizeof def));
        else if (!strstr(help, "default") && *default_text(&table[i], def, sizeof def))
            fprintf(f, " (default: %s)", def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-28s %s\n", "--help", "show this and exit");
}

/* True when choice is one of the '|'-separated names in list. */
static bool in_choices(const char *list, const char *choice) {
    size_t n = strlen(choice);
    for (const char *p = list; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, choice, n) == 0) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

static kiln_status out_of_range(const kx_arg *a, const char *v) {
    char lo[32], hi[32];
    return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: %s is outside the allowed range %s..%s", a->name, v,
                          bound(a->min, lo, sizeof lo), bound(a->max, hi, sizeof hi));
}

static kiln_status set_value(const kx_arg *a, const char *v) {
    char *end;
    bool ranged = a->min < a->max;
    switch (a->type) {
    case KX_ARG_INT:
    case KX_ARG_I64: {
        /* strtoll would skip leading blanks: ' 8' is refused like '8 ' */
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (isspace((unsigned char)*v) || end == v || *end || errno == ERANGE ||
            (a->type == KX_ARG_INT && (x < INT_MIN || x > INT_MAX)))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: '%s' is not %s integer", a->name, v,
                                  a->type == KX_ARG_INT ? "an int-sized" : "a 64-bit");
        if (ranged && ((double)x < a->min || (double)x > a->max)) return out_of_range(a, v);
        if (a->type == KX_ARG_INT)
            *(int *)a->dest = (int)x;
        else
            *(int64_t *)a->dest = x;
        return KILN_STATUS_OK;
    }
    case KX_ARG_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (isspace((unsigned char)*v) || end == v || *end || errno == ERANGE)
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: '%s' is not a number", a->name, v);
        if (!isfinite(x))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: '%s' is not a finite number", a->name, v);
        if (ranged && (x < a->min || x > a->max)) return out_of_range(a, v);
        *(double *)a->dest = x;
        return KILN_STATUS_OK;
    }
    case KX_ARG_STRING: *(const char **)a->dest = v; return KILN_STATUS_OK;
    case KX_ARG_CHOICE:
        if (!in_choices(a->choices, v))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: '%s' is not one of %s", a->name, v,
                                  a->choices ? a->choices : "(none)");
        *(const char **)a->dest = v;
        return KILN_STATUS_OK;
    case KX_ARG_DEVICE: {
        kiln_device d;
        if (kiln_device_parse(v, &d) != KILN_STATUS_OK) {
            kiln_clear_error(); /* replace the parser's message with one about the option */
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: '%s' is not a device; use cpu, cuda or cuda:N",
                                  a->name, v);
        }
        *(kiln_device *)a->dest = d;
        return KILN_STATUS_OK;
    }
    case KX_ARG_FLAG: break;
    }
    return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: takes no value", a->name);
}

/* True when KILN_DEVICE is set to something that is not a device. kiln_device_parse
 * records an error; it is cleared unless an earlier one was there (the first is kept). */
static bool env_device_is_bad(void) {
    const char *env = getenv("KILN_DEVICE");
    if (!env || !*env) return false;
    kiln_status before = kiln_last_status();
    kiln_device d;
    if (kiln_device_parse(env, &d) == KILN_STATUS_OK) return false;
    if (before == KILN_STATUS_OK) kiln_clear_error();
    return true;
}

kiln_device kx_args_default_device(void) {
    if (env_device_is_bad()) return kiln_cuda_device_count() > 0 ? KILN_CUDA(0) : KILN_CPU;
    return kiln_default_device();
}

kiln_status kx_args_set_range(int n, kx_arg *table, const char *name, double min, double max) {
    for (int i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0) {
            table[i].min = min;
            table[i].max = max;
            return KILN_STATUS_OK;
        }
    return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_args_set_range: no option --%s in the table", name);
}

/* The table entry an argument "--name" or "--name=value" names, or NULL. */
static const kx_arg *find_arg(const char *arg, int n, const kx_arg *table) {
    if (strncmp(arg, "--", 2) != 0) return NULL;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (int k = 0; k < n; k++)
        if (strlen(table[k].name) == len && strncmp(table[k].name, name, len) == 0) return &table[k];
    return NULL;
}

bool kx_args_given(int argc, char **argv, int n, const kx_arg *table, const char *name) {
    for (int i = 1; i < argc; i++) {
        const kx_arg *a = find_arg(argv[i], n, table);
        if (!a) continue;
        if (strcmp(a->name, name) == 0) return true;
        if (a->type != KX_ARG_FLAG && !strchr(argv[i], '=')) i++; /* its value is not an option */
    }
    return false;
}

kiln_status kx_args_not_for(int argc, char **argv, int n, const kx_arg *table, const char *names,
                            const char *why) {
    char name[64];
    for (const char *p = names; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        if (kx_args_given(argc, argv, n, table, name))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s does not apply %s", name, why);
        p = bar ? bar + 1 : NULL;
    }
    return KILN_STATUS_OK;
}

kiln_status kx_args_refuse(int n, kx_arg *table, const char *name, const char *why) {
    for (int i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0) {
            table[i].refused = why;
            return KILN_STATUS_OK;
        }
    return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_args_refuse: no option --%s in the table", name);
}

kx_args_result kx_args_parse(int argc, char **argv, const char *about, int n, const kx_arg *table) {
    /* --help first, before any option overwrites the defaults it shows. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            kx_args_usage(stdout, argv[0], about, n, table);
            return KX_ARGS_HELP;
        }
        const kx_arg *a = find_arg(argv[i], n, table);
        if (a && a->type != KX_ARG_FLAG && !strchr(argv[i], '=')) i++;
    }
    bool has_device = false, device_given = false;
    for (int k = 0; k < n; k++) has_device |= table[k].type == KX_ARG_DEVICE;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            kx_args_usage(stdout, argv[0], about, n, table);
            return KX_ARGS_HELP;
        }
        if (strncmp(arg, "--", 2) != 0) {
            kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "unexpected argument '%s' (options start with --; see --help)",
                           arg);
            return KX_ARGS_ERROR;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const kx_arg *a = NULL;
        for (int k = 0; k < n && !a; k++)
            if (strlen(table[k].name) == len && strncmp(table[k].name, name, len) == 0) a = &table[k];
        if (!a) {
            kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "unknown option '--%.*s' (see --help)", (int)len, name);
            return KX_ARGS_ERROR;
        }
        if (a->refused) {
            kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s does not apply %s", a->name, a->refused);
            return KX_ARGS_ERROR;
        }
        if (a->type == KX_ARG_FLAG) {
            if (eq) {
                kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: takes no value", a->name);
                return KX_ARGS_ERROR;
            }
            *(bool *)a->dest = true;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--%s: needs a value (%s)", a->name, type_hint(a));
            return KX_ARGS_ERROR;
        }
        if (set_value(a, value) != KILN_STATUS_OK) return KX_ARGS_ERROR;
        device_given |= a->type == KX_ARG_DEVICE;
    }
    /* The default device comes from KILN_DEVICE: a bad value is this program's error,
     * said once, here, unless --device makes the variable irrelevant. */
    if (has_device && !device_given && env_device_is_bad()) {
        kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                       "KILN_DEVICE='%s' is not a device: set it to cpu, cuda or cuda:N, unset it, or pass --device",
                       getenv("KILN_DEVICE"));
        return KX_ARGS_ERROR;
    }
    return KX_ARGS_OK;
}

void kx_common_defaults(kx_common_args *a) {
    memset(a, 0, sizeof *a);
    a->device = kx_args_default_device();
    a->epochs = 3;
    a->batch = 16;
    a->size = 128;
    a->seed = 0;
    a->data = NULL;
    a->out = "out/example"; /* each program sets out/<its name> */
    a->export_weights = NULL;
    a->log_dir = NULL;
    a->threads = kiln_get_num_threads(); /* --help shows the count a run really gets */
    a->json = false;
}

kiln_status kx_args_apply_threads(int n) {
    if (n == kiln_get_num_threads()) return KILN_STATUS_OK; /* the library's default stays untouched */
    if (kiln_set_num_threads(n) != KILN_STATUS_OK) return kx_error_prefix("--threads %d", n);
    return KILN_STATUS_OK;
}

int kx_args_exit(const char *prog) {
    fprintf(stderr, "%s: %s (see --help)\n", prog, kiln_last_error());
    kiln_shutdown();
    return 2;
}

/* Scene data above this is refused up front: the scenes are rendered at once. */
#define MAX_SCENE_BYTES (4.0 * (1 << 30))

kiln_status kx_scene_args_check(const kx_common_args *c, double lr, double lr_decay, int train_scenes,
                                int heldout_scenes, double bytes_per_pixel) {
    double scene_bytes = ((double)train_scenes + heldout_scenes) * c->size * c->size * bytes_per_pixel;
    if (c->size % 8)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--size: %d is not a multiple of 8 (the U-Net halves it "
                              "three times)", c->size);
    if (!(lr > 0)) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--lr: %g is not > 0", lr);
    if (!(lr_decay > 0 && lr_decay <= 1))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--lr-decay: %g is outside (0, 1]", lr_decay);
    if (train_scenes < c->batch)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--train-scenes %d is below --batch %d: need "
                              "--train-scenes >= --batch for one full batch", train_scenes, c->batch);
    if (scene_bytes > MAX_SCENE_BYTES)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--train-scenes %d and --heldout-scenes %d of --size %d "
                              "need %.1f GiB of scene data, above the %.0f GiB allowed: use fewer or smaller scenes",
                              train_scenes, heldout_scenes, c->size, scene_bytes / (1 << 30),
                              MAX_SCENE_BYTES / (1 << 30));
    return KILN_STATUS_OK;
}

kiln_status kx_check_device(kiln_device dev) {
    char name[32];
    if (kiln_device_available(dev)) return KILN_STATUS_OK;
    return kiln_set_error(KILN_STATUS_NO_DEVICE, "--device %s is not available (no CUDA in this build, or no such "
                          "GPU); use --device cpu", kiln_device_name(dev, name, sizeof name));
}

kiln_status kx_make_dirs(const char *path) {
    if (!path || !*path) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_make_dirs: empty path");
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_make_dirs: path of %zu bytes is too long", n);
    memcpy(buf, path, n + 1);
    /* Create each prefix in turn; one that exists already is fine if it is a directory. */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        struct stat sb;
        if (mkdir(buf, 0777) != 0 && !(errno == EEXIST && stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode)))
            return kiln_set_error(KILN_STATUS_IO, "kx_make_dirs: cannot create directory '%s': %s", buf,
                                  errno == EEXIST ? "a file of that name is in the way" : strerror(errno));
        buf[i] = saved;
    }
    return KILN_STATUS_OK;
}

kiln_status kx_out_dir(const char *dir) {
    struct stat sb;
    if (dir && *dir && stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "--out '%s' is a file, not a directory: --out names the directory for the pictures and "
                              "checkpoints (it is created when missing)", dir);
    return kx_make_dirs(dir);
}

kiln_status kx_export_weights(const kx_common_args *c, kiln_module *m, char *path, size_t n) {
    kiln_status st = c->export_weights ? kx_path_join(path, n, NULL, c->export_weights)
                                       : kx_path_join(path, n, c->out, "model.safetensors");
    /* no optimizer: the module's state_dict alone, which torch's strict load_state_dict takes */
    if (!st) st = kiln_checkpoint_save(path, m, NULL, NULL, 0);
    if (st) kx_error_prefix("writing the weights to %s", path);
    return st;
}

kiln_status kx_path_join(char *buf, size_t n, const char *dir, const char *name) {
    if (!buf || !name) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_path_join: buffer or name is NULL");
    bool slash = dir && *dir && dir[strlen(dir) - 1] != '/';
    int k = snprintf(buf, n, "%s%s%s", dir ? dir : "", slash ? "/" : "", name);
    if (k < 0 || (size_t)k >= n)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_path_join: '%s/%s' does not fit in %zu bytes",
                              dir ? dir : "", name, n);
    return KILN_STATUS_OK;
}

/* Writes the kiln-made part of the fuzz seed corpora (tests/fuzz/make_corpus.py runs it):
 * small valid files from kiln's own writers, one directory per harness under OUTDIR:
 * safetensors/ (every dtype, empty and 0-d tensors, a strided source, metadata),
 * checkpoint/ (the harness's model with and without its Adam state, before and after
 * training), png/ (gray and RGB, odd sizes), idx/ (images and labels, plain and gzip),
 * image/ (kiln_image_write's PNGs and JPEGs). */
#include "fuzz_common.h"

#include <kx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *g_out;
static int g_written;

static const char *out_path(const char *dir, const char *name) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_out, dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", g_out, dir, name);
    return p;
}

static void ok(kiln_status st, const char *what) {
    if (st != KILN_STATUS_OK) {
        fprintf(stderr, "gen_corpus: %s: %s\n", what, kiln_last_error());
        exit(1);
    }
    g_written++;
}

static kiln_tensor *ramp(kiln_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    kiln_tensor *t = kiln_tensor_arange(0, (double)n, 1, KILN_F64, KILN_CPU);
    t = kiln_reshape(kiln_mul(t, kiln_tensor_scalar(dt == KILN_U8 ? 3 : -0.75, KILN_F64, KILN_CPU)), ndim, shape);
    return kiln_tensor_cast(t, dt);
}

static void safetensors_seeds(void) {
    kiln_metadata_entry pt[] = {{"format", "pt"}};
    kiln_named_tensor one[] = {{"weight", ramp(KILN_F32, 2, (int64_t[]){2, 3})}};
    ok(kiln_safetensors_save(out_path("safetensors", "f32_2x3.safetensors"), one, 1, pt, 1), "f32_2x3");

    kiln_named_tensor all[] = {
        {"f32", ramp(KILN_F32, 1, (int64_t[]){3})},
        {"f64", ramp(KILN_F64, 2, (int64_t[]){1, 2})},
        {"f16", ramp(KILN_F16, 1, (int64_t[]){4})},
        {"bf16", ramp(KILN_BF16, 2, (int64_t[]){2, 1})},
        {"i32", ramp(KILN_I32, 1, (int64_t[]){2})},
        {"i64", ramp(KILN_I64, 1, (int64_t[]){2})},
        {"u8", ramp(KILN_U8, 3, (int64_t[]){1, 2, 2})},
        {"scalar", kiln_tensor_scalar(2.5, KILN_F32, KILN_CPU)},
        {"empty", kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU)},
        {"deep", ramp(KILN_F32, 8, (int64_t[]){1, 2, 1, 1, 2, 1, 1, 1})},
    };
    kiln_metadata_entry meta[] = {{"format", "pt"}, {"note", "kiln fuzz seed"}, {"empty", ""}};
    ok(kiln_safetensors_save(out_path("safetensors", "all_dtypes.safetensors"), all, 10, meta, 3), "all_dtypes");

    kiln_tensor *m = ramp(KILN_F32, 2, (int64_t[]){3, 4});
    kiln_named_tensor strided[] = {{"transposed", kiln_transpose(m, 0, 1)},
                                   {"sliced", kiln_slice(m, 1, 1, 3, 1)}};
    ok(kiln_safetensors_save(out_path("safetensors", "strided.safetensors"), strided, 2, NULL, 0), "strided");

    ok(kiln_safetensors_save(out_path("safetensors", "no_tensors.safetensors"), NULL, 0, pt, 1), "no_tensors");

    kiln_named_tensor names[] = {
        {"model.encoder.layers.0.self_attn.q_proj.weight", ramp(KILN_F16, 2, (int64_t[]){2, 2})},
        {"model.encoder.layers.0.self_attn.q_proj.bias", ramp(KILN_F16, 1, (int64_t[]){2})},
        {"a", ramp(KILN_U8, 1, (int64_t[]){1})},
        {"\xc3\xa9t\xc3\xa9 \"quoted\" \\ name", ramp(KILN_I32, 1, (int64_t[]){1})},
    };
    ok(kiln_safetensors_save(out_path("safetensors", "names.safetensors"), names, 4, NULL, 0), "names");
}

static void checkpoint_seeds(void) {
    kf_model m;
    if (!kf_model_make(&m)) ok(kiln_last_status(), "model");
    ok(kiln_checkpoint_save(out_path("checkpoint", "fresh.safetensors"), m.root, m.opt, NULL, 0), "fresh");
    ok(kiln_checkpoint_save(out_path("checkpoint", "model_only.safetensors"), m.root, NULL, NULL, 0), "model_only");
    ok(kf_model_step(&m), "step");
    ok(kf_model_step(&m), "step");
    ok(kiln_checkpoint_save(out_path("checkpoint", "trained.safetensors"), m.root, m.opt, NULL, 0), "trained");
    kiln_metadata_entry extra[] = {{"epoch", "3"}, {"note", "resumable"}};
    ok(kiln_optimizer_set_lr(m.opt, 0.05), "set_lr");
    ok(kiln_checkpoint_save(out_path("checkpoint", "extra_meta.safetensors"), m.root, m.opt, extra, 2), "extra_meta");
    kf_model_free(&m);
}

static void png_seeds(void) {
    uint8_t px[3 * 17 * 9] = {0};
    if (kx_png_write_u8(out_path("png", "gray_1x1.png"), px, 1, 1, 1) == KILN_STATUS_NOT_IMPLEMENTED) {
        printf("gen_corpus: built without libpng: no kiln-made PNG seeds\n");
        kiln_clear_error();
        return;
    }
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37 + i / 5);
    ok(kx_png_write_u8(out_path("png", "gray_1x1.png"), px, 1, 1, 1), "gray_1x1");
    ok(kx_png_write_u8(out_path("png", "gray_5x3.png"), px, 1, 5, 3), "gray_5x3");
    ok(kx_png_write_u8(out_path("png", "rgb_4x4.png"), px, 3, 4, 4), "rgb_4x4");
    ok(kx_png_write_u8(out_path("png", "rgb_17x9.png"), px, 3, 17, 9), "rgb_17x9");
    ok(kx_png_write_u8(out_path("png", "gray_1x64.png"), px, 1, 1, 64), "gray_1x64");
}

/* kiln_image_write's PNGs (gray, RGB, RGBA) and JPEGs (gray, RGB at two qualities:
 * 4:2:0 below 90, 4:4:4 from 90), for the image harness. */
static void image_seeds(void) {
    const struct {
        const char *name;
        int64_t c, h, w;
        int quality;
    } s[] = {{"gray_5x3.png", 1, 3, 5, 0},  {"rgb_17x9.png", 3, 9, 17, 0},   {"rgba_4x4.png", 4, 4, 4, 0},
             {"gray_9x9.jpg", 1, 9, 9, 80}, {"rgb_17x9_q75.jpg", 3, 9, 17, 75}, {"rgb_8x8_q95.jpg", 3, 8, 8, 95},
             {"rgb_1x1.jpg", 3, 1, 1, 50}};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        ok(kiln_image_write(out_path("image", s[i].name), ramp(KILN_U8, 3, (const int64_t[]){s[i].c, s[i].h, s[i].w}),
                            s[i].quality), s[i].name);
}

static void idx_write(const char *name, bool gz, const uint8_t *hdr, size_t nh, const uint8_t *body, size_t nb) {
    const char *p = out_path("idx", name);
    if (gz) {
        gzFile g = gzopen(p, "wb9");
        if (!g || gzwrite(g, hdr, (unsigned)nh) != (int)nh || (nb && gzwrite(g, body, (unsigned)nb) != (int)nb) ||
            gzclose(g) != Z_OK) {
            fprintf(stderr, "gen_corpus: writing %s failed\n", p);
            exit(1);
        }
    } else {
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(hdr, 1, nh, f) != nh || fwrite(body, 1, nb, f) != nb || fclose(f) != 0) {
            fprintf(stderr, "gen_corpus: writing %s failed\n", p);
            exit(1);
        }
    }
    g_written++;
}

static void idx_seeds(void) {
    uint8_t body[3 * 4 * 5];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)(i * 41);
    const uint8_t img[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    const uint8_t lab[8] = {0, 0, 8, 1, 0, 0, 0, 7};
    const uint8_t labels[7] = {0, 9, 3, 3, 255, 1, 7};
    idx_write("images_3x4x5", false, img, 16, body, sizeof body);
    idx_write("images_3x4x5.gz", true, img, 16, body, sizeof body);
    idx_write("labels_7", false, lab, 8, labels, 7);
    idx_write("labels_7.gz", true, lab, 8, labels, 7);
    const uint8_t one[16] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    idx_write("images_1x1x1", false, one, 16, body, 1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    g_out = argv[1];
    mkdir(g_out, 0755);
    kiln_scope *s = kiln_scope_begin();
    safetensors_seeds();
    checkpoint_seeds();
    png_seeds();
    idx_seeds();
    image_seeds();
    kiln_scope_end(s);
    kiln_shutdown();
    printf("gen_corpus: %d kiln-made seeds in %s\n", g_written, g_out);
    return 0;
}

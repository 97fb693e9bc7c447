/* U-Net-16: the encoder/decoder of issue 6 as a custom module whose children are
 * the built-in layers; the forward is the only hand-written part (the skips and the
 * channel concatenations). */
#include "unet.h"

#include <stdlib.h>

kiln_module *unet_block_create(int64_t in_channels, int64_t out_channels, kiln_dtype dt) {
    kiln_module *b = kiln_sequential_create();
    /* Each append frees its child on failure, and a NULL child fails the append. */
    bool ok = kiln_sequential_append(b, kiln_conv2d_create(in_channels, out_channels, 3, 1, 1, true, dt)) == KILN_STATUS_OK &&
              kiln_sequential_append(b, kiln_batch_norm2d_create(out_channels, dt)) == KILN_STATUS_OK &&
              kiln_sequential_append(b, kiln_relu_create()) == KILN_STATUS_OK &&
              kiln_sequential_append(b, kiln_conv2d_create(out_channels, out_channels, 3, 1, 1, true, dt)) == KILN_STATUS_OK &&
              kiln_sequential_append(b, kiln_batch_norm2d_create(out_channels, dt)) == KILN_STATUS_OK &&
              kiln_sequential_append(b, kiln_relu_create()) == KILN_STATUS_OK;
    if (!ok) {
        kiln_module_free(b);
        return NULL;
    }
    return b;
}

/* The children, kept so the forward does not look them up by name every step. */
typedef struct {
    kiln_module *enc[3], *pool, *bottleneck, *up[3], *dec[3], *head;
} unet_ctx;

static kiln_tensor *cat_channels(kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *parts[2] = {a, b};
    return a && b ? kiln_concat(2, parts, 1) : NULL;
}

/* Each tensor is discarded right after its last use: with no tape (inference) it is
 * freed at once, so the pass holds only the skips still to be read and the tensors
 * of the stage in progress; while the tape records, kiln_module_discard does nothing.
 * The caller's x is never freed (it is not the call's). */
static kiln_tensor *unet_forward(kiln_module *self, kiln_tensor *x) {
    unet_ctx *c = kiln_module_ctx(self);
    kiln_tensor *skip[3], *y;
    for (int i = 0; i < 3; i++) {
        skip[i] = kiln_module_forward(c->enc[i], x);
        kiln_module_discard(self, x);
        x = kiln_module_forward(c->pool, skip[i]);
    }
    y = kiln_module_forward(c->bottleneck, x);
    kiln_module_discard(self, x);
    x = y;
    /* decoder stage i works at the resolution of encoder stage i, deepest first */
    for (int i = 2; i >= 0; i--) {
        kiln_tensor *up = kiln_module_forward(c->up[i], x);
        kiln_module_discard(self, x);
        kiln_tensor *cat = cat_channels(up, skip[i]);
        kiln_module_discard(self, up);
        kiln_module_discard(self, skip[i]);
        x = kiln_module_forward(c->dec[i], cat);
        kiln_module_discard(self, cat);
    }
    y = kiln_module_forward(c->head, x);
    kiln_module_discard(self, x);
    return y;
}

kiln_module *unet_create(int64_t in_channels, int64_t out_channels, int64_t base_width, kiln_dtype dt) {
    unet_ctx *c = calloc(1, sizeof *c);
    kiln_module *m = c ? kiln_module_create("UNet", unet_forward, c, free) : NULL;
    if (!m) {
        free(c);
        return NULL;
    }
    kiln_module_set_lean(m, true); /* unet_forward keeps nothing but its result */
    int64_t w[4] = {base_width, 2 * base_width, 4 * base_width, 8 * base_width};
    static const char *enc_names[3] = {"enc1", "enc2", "enc3"};
    static const char *up_names[3] = {"up1", "up2", "up3"}, *dec_names[3] = {"dec1", "dec2", "dec3"};
    bool ok = true;
    /* kiln_module_add takes ownership even on failure, so a failed create leaks nothing */
    for (int i = 0; i < 3 && ok; i++) {
        c->enc[i] = unet_block_create(i ? w[i - 1] : in_channels, w[i], dt);
        ok = kiln_module_add(m, enc_names[i], c->enc[i]) == KILN_STATUS_OK;
    }
    if (ok) {
        c->pool = kiln_max_pool2d_create(2, 2, 0);
        ok = kiln_module_add(m, "pool", c->pool) == KILN_STATUS_OK;
    }
    if (ok) {
        c->bottleneck = unet_block_create(w[2], w[3], dt);
        ok = kiln_module_add(m, "bottleneck", c->bottleneck) == KILN_STATUS_OK;
    }
    /* torch registers up3, dec3, up2, dec2, up1, dec1: the state_dict follows that order */
    for (int i = 2; i >= 0 && ok; i--) {
        c->up[i] = kiln_conv_transpose2d_create(w[i + 1], w[i], 2, 2, 0, true, dt);
        ok = kiln_module_add(m, up_names[i], c->up[i]) == KILN_STATUS_OK;
        if (ok) {
            c->dec[i] = unet_block_create(2 * w[i], w[i], dt);
            ok = kiln_module_add(m, dec_names[i], c->dec[i]) == KILN_STATUS_OK;
        }
    }
    if (ok) {
        c->head = kiln_conv2d_create(base_width, out_channels, 1, 1, 0, true, dt);
        ok = kiln_module_add(m, "head", c->head) == KILN_STATUS_OK;
    }
    if (!ok) {
        kiln_module_free(m);
        return NULL;
    }
    return m;
}

/* JPEG through libjpeg-turbo's libjpeg API (core/image_codec.h). libjpeg reports
 * errors through error_exit, which must not return: ours longjmps to the setjmp of
 * the call, which frees what the call allocated and destroys the codec. Warnings
 * (corrupt data libjpeg would paint over, a file that ends early) are errors too, as
 * in djpeg -strict: a training set should not silently hold a half-gray picture. */
#include "image_codec.h"

#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
/* jpeglib.h needs FILE and size_t declared first */
#include <jpeglib.h>
#include <jerror.h>

/* Progressive files can repeat scans without end; each scan walks the whole image, so
 * a small file of very many scans is a denial of service (libjpeg-turbo's advice: cap
 * them from the progress monitor). Real encoders write at most a few dozen. */
#define MAX_SCANS 1000

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    int errnum; /* errno when a write failed */
} jerr;

static void on_error_exit(j_common_ptr c) {
    jerr *e = (jerr *)c->err;
    e->errnum = errno;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jump, 1);
}
/* level -1: a warning, made an error; levels >= 0 are trace messages, dropped. */
static void on_emit_message(j_common_ptr c, int level) {
    if (level >= 0) return;
    jerr *e = (jerr *)c->err;
    e->errnum = 0;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jump, 1);
}

typedef struct {
    struct jpeg_progress_mgr pub;
    jerr *err;
} scan_limit;

static void on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > MAX_SCANS) {
        scan_limit *p = (scan_limit *)c->progress;
        snprintf(p->err->msg, sizeof p->err->msg, "more than %d scans (a damaged or hostile progressive file)",
                 MAX_SCANS);
        longjmp(p->err->jump, 1);
    }
}

kiln_status kiln__jpeg_decode(const char *op, const char *path, FILE *f, int64_t file_size, int64_t max_pixels,
                              bool header_only, kiln__image *img) {
    (void)file_size;
    struct jpeg_decompress_struct cinfo;
    jerr err;
    memset(&err, 0, sizeof err);
    scan_limit progress = {{on_progress, 0, 0, 0, 0}, &err};
    /* Written after setjmp and read by the error path: volatile, so longjmp keeps them. */
    uint8_t *volatile pixels = NULL;
    volatile kiln_status own = KILN_STATUS_OK;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error_exit;
    err.pub.emit_message = on_emit_message;
    if (setjmp(err.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        if (own != KILN_STATUS_OK) return own;
        return kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a corrupt or truncated JPEG: %s", op, path, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress.pub;
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE); /* TRUE: a tables-only stream is an error */
    int ch = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: ch = 1, cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_YCbCr:
    case JCS_RGB: ch = 3, cinfo.out_color_space = JCS_RGB; break;
    default:
        own = kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a %s JPEG (%d components); kiln reads gray and colour "
                          "(YCbCr or RGB) JPEGs: convert it to RGB first", op, path,
                          cinfo.jpeg_color_space == JCS_CMYK ? "CMYK" : cinfo.jpeg_color_space == JCS_YCCK ? "YCCK"
                                                                                                          : "non-standard",
                          cinfo.num_components);
        longjmp(err.jump, 1);
    }
    int64_t w = cinfo.image_width, h = cinfo.image_height;
    if (w * h > max_pixels) {
        own = kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a %lldx%lld JPEG, %lld pixels, above the limit of %lld "
                          "pixels; " KILN__PIXEL_LIMIT_HINT, op, path, (long long)w, (long long)h, (long long)(w * h),
                          (long long)max_pixels);
        longjmp(err.jump, 1);
    }
    img->channels = ch, img->height = h, img->width = w;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return KILN_STATUS_OK;
    }
    cinfo.dct_method = JDCT_ISLOW; /* the default, exact one: results match other libjpeg readers */
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != ch || (int64_t)cinfo.output_width != w || (int64_t)cinfo.output_height != h) {
        snprintf(err.msg, sizeof err.msg, "libjpeg decodes it as %dx%dx%d, not the header's size", (int)cinfo.output_width,
                 (int)cinfo.output_height, cinfo.output_components);
        longjmp(err.jump, 1);
    }
    size_t rowbytes = (size_t)w * (size_t)ch;
    pixels = malloc((size_t)h * rowbytes);
    if (!pixels) {
        own = kiln__error(KILN_STATUS_OOM, "%s: out of host memory for the %lldx%lld pixels of '%s'", op, (long long)w,
                          (long long)h, path);
        longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * rowbytes;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo); /* reads up to EOI: a file cut after its last scan shows here */
    jpeg_destroy_decompress(&cinfo);
    img->pixels = pixels;
    return KILN_STATUS_OK;
}

kiln_status kiln__jpeg_encode(const char *op, kiln__atomic_file *out, const kiln__image *img, int quality) {
    struct jpeg_compress_struct cinfo;
    jerr err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error_exit;
    err.pub.emit_message = on_emit_message;
    if (setjmp(err.jump)) {
        int code = err.pub.msg_code;
        jpeg_destroy_compress(&cinfo);
        if (code == JERR_FILE_WRITE)
            return kiln__error(KILN_STATUS_IO, "%s: cannot write '%s': %s; the previous file, if any, is untouched",
                               op, out->target, strerror(err.errnum ? err.errnum : EIO));
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: libjpeg refused to write '%s': %s", op, out->target,
                           err.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, out->f);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels;
    cinfo.in_color_space = img->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.optimize_coding = TRUE;
    if (quality >= 90 && img->channels == 3) {
        /* 4:4:4: at high quality the chroma halving would be most of the error */
        cinfo.comp_info[0].h_samp_factor = 1;
        cinfo.comp_info[0].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    size_t rowbytes = (size_t)img->width * (size_t)img->channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->pixels + (size_t)cinfo.next_scanline * rowbytes;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return KILN_STATUS_OK;
}

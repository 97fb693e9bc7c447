/* The --predict mode of the segmentation examples (car_mask, segment7): one image to a
 * fixed name, or every image of a folder to OUT/NAME.png, the inputs checked before the
 * model is built, the JSON result line. The program gives what differs: the size check,
 * the net and how one image becomes one output PNG. */
#include "kx.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* OUT/NAME.png for input .../NAME.ext. */
static kiln_status output_of(const kx_predict_job *job, const char *in, char *out, size_t n) {
    char name[1024];
    const char *b = strrchr(in, '/') + 1, *dot = strrchr(b, '.');
    snprintf(name, sizeof name, "%.*s.png", (int)(dot - b), b);
    return kx_path_join(out, n, job->out_dir, name);
}

kiln_status kx_predict_run(const kx_predict_job *job) {
    char one_path[4096];
    int H = 0, W = 0;
    kiln_module *net = NULL;
    char **inputs = NULL;
    int64_t ninputs = 0;
    struct stat sb;
    bool is_dir = stat(job->input, &sb) == 0 && S_ISDIR(sb.st_mode);
    /* the inputs first: a missing or bad one fails before the model is built */
    kiln_status st = is_dir ? kx_list_images(job->input, &inputs, &ninputs) : job->check(job->ctx, job->input);
    for (int64_t i = 0; i < ninputs && !st; i++) st = job->check(job->ctx, inputs[i]);
    if (!st && is_dir && ninputs == 0)
        st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--predict '%s' is a directory without a .png or .jpg image",
                            job->input);
    /* two inputs of one NAME (a.png, a.jpg) would write one OUT/NAME.png */
    for (int64_t i = 1; i < ninputs && !st; i++) {
        const char *a = strrchr(inputs[i - 1], '/') + 1, *b = strrchr(inputs[i], '/') + 1;
        const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
        if (da - a == db - b && !strncmp(a, b, (size_t)(da - a)))
            st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--predict: '%s' and '%s' would both write %s/%.*s.png",
                                inputs[i - 1], inputs[i], job->out_dir, (int)(da - a), a);
    }
    if (!st) st = kx_out_dir(job->out_dir);
    if (!st) st = kx_path_join(one_path, sizeof one_path, job->out_dir, job->one_name);
    if (!st) st = job->load(job->ctx, &net);
    kiln_no_grad_begin();
    double t0 = kx_now_seconds();
    if (!st && !is_dir) st = job->one(job->ctx, net, job->input, one_path, &H, &W);
    for (int64_t i = 0; i < ninputs && !st; i++) {
        char out[4096];
        st = output_of(job, inputs[i], out, sizeof out);
        if (!st) st = job->one(job->ctx, net, inputs[i], out, &H, &W);
        if (!st && !job->json) printf("%s: wrote %s (%dx%d) from %s\n", job->program, out, W, H, inputs[i]);
        if (st) kx_error_prefix("'%s'", inputs[i]);
    }
    kiln_no_grad_end();
    if (!st && !job->json && !is_dir)
        printf("%s: wrote %s (%dx%d) from %s\n", job->program, one_path, W, H, job->input);
    if (!st && job->json) {
        kx_json j;
        kx_json_begin(&j);
        kx_json_string(&j, "program", job->program);
        kx_json_string(&j, "mode", "predict");
        kx_json_int(&j, "threads", kiln_get_num_threads());
        kx_json_string(&j, "input", job->input);
        kx_json_int(&j, "tile", job->tile);
        if (is_dir) {
            kx_json_int(&j, "images", ninputs);
            kx_json_string(&j, job->dir_key, job->out_dir);
        } else {
            kx_json_string(&j, job->one_key, one_path);
            kx_json_int(&j, "width", W);
            kx_json_int(&j, "height", H);
        }
        kx_json_number(&j, "wall_s", kx_now_seconds() - t0);
        kx_json_print(&j, stdout);
    }
    kx_paths_free(inputs, ninputs);
    if (net) kiln_module_free(net);
    return st;
}

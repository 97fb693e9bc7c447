/* The README's first program: a 2-8-1 MLP learns XOR with plain gradient descent.
 * Shows the whole C workflow: tensors, a scope per step, backward, an update. */
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long steps = 2000; /* --steps N */
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        int help = strcmp(argv[i], "--help") == 0;
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = strtol(argv[++i], &end, 10);
        if (help || !end || *end || steps < 1 || steps > 1000000) { /* anything else is bad usage */
            fprintf(help ? stdout : stderr, "usage: %s [--steps N]   (N in 1..1000000, default 2000)\n", argv[0]);
            return help ? 0 : 2;
        }
    }
    const double x[] = {0, 0, 0, 1, 1, 0, 1, 1}, y[] = {0, 1, 1, 0};
    kiln_manual_seed(0);
    kiln_tensor *X = kiln_tensor_from_host(x, 2, (int64_t[]){4, 2}, KILN_F64, KILN_CPU);
    kiln_tensor *Y = kiln_tensor_from_host(y, 2, (int64_t[]){4, 1}, KILN_F64, KILN_CPU);
    kiln_tensor *params[4] = {
        kiln_tensor_randn(2, (int64_t[]){2, 8}, 0, 1, KILN_F64, KILN_CPU), kiln_tensor_zeros(1, (int64_t[]){8}, KILN_F64, KILN_CPU),
        kiln_tensor_randn(2, (int64_t[]){8, 1}, 0, 1, KILN_F64, KILN_CPU), kiln_tensor_zeros(1, (int64_t[]){1}, KILN_F64, KILN_CPU)};
    for (int i = 0; i < 4; i++) kiln_tensor_set_requires_grad(params[i], true);
    double loss = 0;
    for (int step = 0; step < steps; step++) {
        kiln_scope *scope = kiln_scope_begin(); /* everything made in the step dies at its end */
        kiln_tensor *h = kiln_tanh(kiln_add(kiln_matmul(X, params[0]), params[1]));
        kiln_tensor *p = kiln_sigmoid(kiln_add(kiln_matmul(h, params[2]), params[3]));
        kiln_tensor *l = kiln_mean_all(kiln_pow_scalar(kiln_sub(p, Y), 2.0));
        if (kiln_backward(l, NULL) != KILN_STATUS_OK) { /* one check covers the whole step */
            fprintf(stderr, "step %d failed: %s\n", step, kiln_last_error());
            return 1;
        }
        loss = kiln_tensor_item(l);
        kiln_no_grad_begin(); /* p -= 2.0 * grad, recorded nowhere */
        for (int i = 0; i < 4; i++) {
            kiln_tensor_copy_(params[i], kiln_sub(params[i], kiln_mul_scalar(kiln_tensor_grad(params[i]), 2.0)));
            kiln_tensor_zero_grad(params[i]);
        }
        kiln_no_grad_end();
        kiln_scope_end(scope);
        if (step % 500 == 0) printf("step %4d  loss %.5f\n", step, loss);
    }
    printf("final loss %.6f\n", loss);
    kiln_shutdown();
    return loss < 0.01 ? 0 : 1;
}

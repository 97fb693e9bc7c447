/* An out-of-tree program built against an installed kiln: a 2x2 matrix product and
 * its gradient, checked against hand-computed values (exit 0 only when they match). */
#include <kiln.h>
#include <stdio.h>

int main(void) {
    const double a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    kiln_tensor *A = kiln_tensor_from_host(a, 2, (int64_t[]){2, 2}, KILN_F64, KILN_CPU);
    kiln_tensor *B = kiln_tensor_from_host(b, 2, (int64_t[]){2, 2}, KILN_F64, KILN_CPU);
    kiln_tensor_set_requires_grad(A, true);
    kiln_tensor *s = kiln_sum_all(kiln_matmul(A, B)); /* 19+22+43+50 = 134 */
    if (kiln_backward(s, NULL) != KILN_STATUS_OK) {
        fprintf(stderr, "kiln: %s\n", kiln_last_error());
        return 1;
    }
    double g[4];
    kiln_tensor_to_host(kiln_tensor_grad(A), g, sizeof g); /* row sums of B: 11, 15 */
    int ok = kiln_tensor_item(s) == 134 && g[0] == 11 && g[1] == 15 && g[2] == 11 && g[3] == 15;
    printf("%s: sum %g, grad %g %g %g %g\n", ok ? "ok" : "WRONG", kiln_tensor_item(s), g[0], g[1], g[2], g[3]);
    kiln_shutdown();
    return ok ? 0 : 1;
}

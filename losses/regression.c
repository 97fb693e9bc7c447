/* Regression losses, composed of element-wise ops (their backward comes with
 * them, for the input and the target): mse (x-y)^2 and l1 |x-y|. */
#include "common.h"

kiln_tensor *kiln_mse_loss(kiln_tensor *input, kiln_tensor *target, kiln_reduction reduction) {
    if (!kiln__loss_check_reduction("mse_loss", reduction) || !kiln__loss_check_pair("mse_loss", input, target))
        return NULL;
    kiln_tensor *d = kiln_sub(input, target);
    return kiln__loss_reduce(kiln_mul(d, d), reduction);
}

kiln_tensor *kiln_l1_loss(kiln_tensor *input, kiln_tensor *target, kiln_reduction reduction) {
    if (!kiln__loss_check_reduction("l1_loss", reduction) || !kiln__loss_check_pair("l1_loss", input, target))
        return NULL;
    return kiln__loss_reduce(kiln_abs(kiln_sub(input, target)), reduction);
}

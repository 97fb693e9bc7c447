/* kiln module API: parameter initialisation and the module layer (named parameters and buffers laid out as
 * PyTorch's state_dict, train/eval, one contiguous arena for all parameters of a
 * tree and one for their gradients). */
#ifndef KILN_MODULE_H
#define KILN_MODULE_H

#include "core.h"
#include "ops.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- initialisation ---------------------------------------------------------------
 * In-place fills from the global Philox generator, on any tensor (usually a module's
 * parameter); not recorded on the tape. Fans as torch: fan_in = size(1)·receptive
 * field, fan_out = size(0)·receptive field (receptive field = product of axes 2..). */
typedef enum { KILN_FAN_IN = 0, KILN_FAN_OUT } kiln_fan_mode;
typedef enum {
    KILN_NONLINEARITY_LINEAR = 0, /* also conv and sigmoid: gain 1 */
    KILN_NONLINEARITY_TANH,       /* 5/3 */
    KILN_NONLINEARITY_RELU,       /* sqrt(2) */
    KILN_NONLINEARITY_LEAKY_RELU, /* sqrt(2 / (1 + a²)) */
    KILN_NONLINEARITY_SELU,       /* 3/4 */
} kiln_nonlinearity;

/* torch.nn.init.calculate_gain; a is leaky_relu's negative slope. */
KILN_API double kiln_init_gain(kiln_nonlinearity nl, double a);
KILN_API kiln_status kiln_init_uniform(kiln_tensor *t, double lo, double hi);
KILN_API kiln_status kiln_init_normal(kiln_tensor *t, double mean, double std);
KILN_API kiln_status kiln_init_constant(kiln_tensor *t, double value);
/* U(-b, b), b = gain·sqrt(3 / fan); N(0, (gain / sqrt(fan))²). torch's defaults are
 * a = 0, KILN_FAN_IN, KILN_NONLINEARITY_LEAKY_RELU. */
KILN_API kiln_status kiln_init_kaiming_uniform(kiln_tensor *t, double a, kiln_fan_mode mode, kiln_nonlinearity nl);
KILN_API kiln_status kiln_init_kaiming_normal(kiln_tensor *t, double a, kiln_fan_mode mode, kiln_nonlinearity nl);
/* U(-b, b), b = gain·sqrt(6 / (fan_in + fan_out)); N(0, gain²·2 / (fan_in + fan_out)). */
KILN_API kiln_status kiln_init_xavier_uniform(kiln_tensor *t, double gain);
KILN_API kiln_status kiln_init_xavier_normal(kiln_tensor *t, double gain);
/* PyTorch's reset_parameters of Linear and Conv: weight kaiming_uniform(a = sqrt(5)),
 * i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and bias (may be NULL) from the same range. */
KILN_API kiln_status kiln_init_default(kiln_tensor *weight, kiln_tensor *bias);

/* ---- modules ---------------------------------------------------------------------
 * A module owns its parameters, buffers and children (a tree). Names follow torch:
 * a child named "enc1" holding a Sequential whose first item has a weight gives
 * "enc1.0.weight". Parameters and buffers are owned by the module, not by a scope:
 * they live until kiln_module_free of the tree's root.
 *
 * Arenas: when a tree is first used (forward on its root, zero_grad, the flat
 * accessors, or kiln_module_finalize), all its parameters are moved into ONE
 * contiguous parameter storage and their gradients into ONE contiguous gradient
 * storage, in parameter order; each parameter stays the same kiln_tensor pointer and
 * its .grad is a view of its slice. Adding parameters later repacks the arena at the
 * next use (the flat tensors keep their pointers). All parameters of a tree share one
 * dtype and device. */

typedef struct kiln_module kiln_module;

/* Forward of a custom module: self is the module, x its input. */
typedef kiln_tensor *(*kiln_module_forward_fn)(kiln_module *self, kiln_tensor *x);

/* A custom module: type_name is what messages call it ("Block"); forward may be NULL
 * for a pure container. ctx is user data (kiln_module_ctx); ctx_free, if given, is
 * called on it when the module is freed. */
KILN_API kiln_module *kiln_module_create(const char *type_name, kiln_module_forward_fn forward, void *ctx,
                                         void (*ctx_free)(void *));
KILN_API void *kiln_module_ctx(const kiln_module *m);

/* Built-in modules (torch names and defaults). */
KILN_API kiln_module *kiln_linear_create(int64_t in_features, int64_t out_features, bool bias, kiln_dtype dt);
/* eps 1e-5, momentum 0.1, affine, tracking running stats. */
KILN_API kiln_module *kiln_batch_norm2d_create(int64_t num_features, kiln_dtype dt);
/* momentum NAN means torch's momentum=None: a cumulative average over the batches seen. */
KILN_API kiln_module *kiln_batch_norm2d_create_ex(int64_t num_features, double eps, double momentum, bool affine,
                                                  bool track_running_stats, kiln_dtype dt);
/* BatchNorm1d: the same state (torch's names: weight, bias, running_mean, running_var,
 * num_batches_tracked) over (N, C) or (N, C, L) input. */
KILN_API kiln_module *kiln_batch_norm1d_create(int64_t num_features, kiln_dtype dt);
KILN_API kiln_module *kiln_batch_norm1d_create_ex(int64_t num_features, double eps, double momentum, bool affine,
                                                  bool track_running_stats, kiln_dtype dt);
KILN_API kiln_module *kiln_dropout_create(double p);
KILN_API kiln_module *kiln_relu_create(void);
KILN_API kiln_module *kiln_leaky_relu_create(double negative_slope);
KILN_API kiln_module *kiln_sigmoid_create(void);
KILN_API kiln_module *kiln_tanh_create(void);
/* torch.nn.Flatten(start_dim, end_dim); torch's defaults are 1, -1. */
KILN_API kiln_module *kiln_flatten_create(int start_axis, int end_axis);
/* A container whose forward runs its children in order. */
KILN_API kiln_module *kiln_sequential_create(void);
/* Appends child under the next index name ("0", "1", ...). Same ownership as kiln_module_add. */
KILN_API kiln_status kiln_sequential_append(kiln_module *seq, kiln_module *child);

/* ---- convolution-family modules ---------------------------------------------------
 * torch.nn.Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d and Upsample on the
 * functional ops of layers.h (see there for the parameter structs). Parameters are
 * named "weight" and "bias" as torch: Conv2d's weight is (out, in/groups, kH, kW),
 * ConvTranspose2d's (in, out/groups, kH, kW); both are initialised as torch's
 * reset_parameters (kiln_init_default: fan_in = weight.size(1)·kH·kW, which for the
 * transposed weight is out/groups·kH·kW, as torch computes it). The constructors
 * make torch's checks (channels divisible by groups, "same" padding only unstrided,
 * output_padding below stride or dilation); forward checks the input is NCHW with
 * in_channels channels, and every forward error names the module's dotted path. */

/* Square kernel, stride and padding, dilation 1, groups 1 (torch's defaults: stride
 * 1, padding 0, bias true). */
KILN_API kiln_module *kiln_conv2d_create(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                         int64_t stride, int64_t padding, bool bias, kiln_dtype dt);
/* Any kernel and the full kiln_conv2d_params (padding "same", dilation, groups); p NULL
 * means the defaults. */
KILN_API kiln_module *kiln_conv2d_create_ex(int64_t in_channels, int64_t out_channels, int64_t kernel_h,
                                            int64_t kernel_w, const kiln_conv2d_params *p, bool bias, kiln_dtype dt);
KILN_API kiln_module *kiln_conv_transpose2d_create(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                                   int64_t stride, int64_t padding, bool bias, kiln_dtype dt);
KILN_API kiln_module *kiln_conv_transpose2d_create_ex(int64_t in_channels, int64_t out_channels, int64_t kernel_h,
                                                      int64_t kernel_w, const kiln_conv_transpose2d_params *p,
                                                      bool bias, kiln_dtype dt);
/* Square windows; stride 0 means the kernel size (torch's stride=None). The _ex forms
 * take the full kiln_pool2d_params (dilation, ceil_mode, count_include_pad). */
KILN_API kiln_module *kiln_max_pool2d_create(int64_t kernel_size, int64_t stride, int64_t padding);
KILN_API kiln_module *kiln_max_pool2d_create_ex(const kiln_pool2d_params *p);
KILN_API kiln_module *kiln_avg_pool2d_create(int64_t kernel_size, int64_t stride, int64_t padding);
KILN_API kiln_module *kiln_avg_pool2d_create_ex(const kiln_pool2d_params *p);

typedef enum { KILN_UPSAMPLE_NEAREST = 0, KILN_UPSAMPLE_BILINEAR } kiln_upsample_mode;
/* torch.nn.Upsample(size=(out_h, out_w)) and Upsample(scale_factor=(scale_h, scale_w));
 * align_corners only with bilinear (torch refuses it for nearest). */
KILN_API kiln_module *kiln_upsample_create(int64_t out_h, int64_t out_w, kiln_upsample_mode mode, bool align_corners);
KILN_API kiln_module *kiln_upsample_scale_create(double scale_h, double scale_w, kiln_upsample_mode mode,
                                                 bool align_corners);

/* Adds child under name (no '.', unique among m's parameters, buffers and children)
 * and sets it to m's train/eval mode. m takes ownership of child: on failure child is
 * freed, so kiln_module_add(m, "fc", kiln_linear_create(...)) never leaks; the one
 * exception is a child that already belongs to a tree (a child of another module, or
 * an ancestor of m), which is refused and left where it is. A root whose arena was
 * already built (it ran forward or was finalized) cannot be added either: build the
 * whole tree first, then use it. */
KILN_API kiln_status kiln_module_add(kiln_module *m, const char *name, kiln_module *child);
/* Registers a parameter named name, initialised with a copy of init's values (init
 * stays the caller's). Returns the module's tensor (requires grad), or NULL. */
KILN_API kiln_tensor *kiln_module_register_parameter(kiln_module *m, const char *name, kiln_tensor *init);
/* Registers a buffer (state that is saved but not trained, e.g. running_mean). */
KILN_API kiln_tensor *kiln_module_register_buffer(kiln_module *m, const char *name, kiln_tensor *init);

/* Runs m's forward. Built-in modules check their input and name the module's dotted
 * path and the shapes on a mismatch. A NULL x returns NULL, keeping the first error.
 * A lean module (below) whose forward records nothing on the tape (grad off with
 * kiln_no_grad_begin, or no input and no parameter requiring grad) frees every tensor
 * it made but its result before returning, so inference holds only the live
 * activations, not every intermediate of the pass; results are the same bits. */
KILN_API kiln_tensor *kiln_module_forward(kiln_module *m, kiln_tensor *x);

/* Lean forwards. Built-in modules are lean; a custom module is not unless set: on
 * declares that its forward keeps none of the tensors it makes beyond the call except
 * its result (it stores none in its ctx or elsewhere) and calls only modules of its
 * own subtree. A module runs lean when it and all its descendants are (one non-lean
 * child, such as a Python module, makes its ancestors keep everything, as before).
 * kiln_module_is_lean answers for the subtree. */
KILN_API kiln_status kiln_module_set_lean(kiln_module *m, bool on);
KILN_API bool kiln_module_is_lean(kiln_module *m);
/* Inside self's lean forward: frees t now if it is an intermediate that forward made
 * (not its input, a parameter or any tensor from outside the call) and the tape holds
 * nothing of the call, so nothing can read t again; call it right after t's last use
 * (the U-Net drops each skip tensor after its concatenation). Otherwise (grad on, not
 * lean, not self's forward, t not the call's) it does nothing and t lives to the end
 * of its scope as usual. Returns whether t was freed; never use t after a call that
 * may have freed it. */
KILN_API bool kiln_module_discard(kiln_module *self, kiln_tensor *t);

/* Frees m and everything under it (parameters, buffers, gradients, arenas, children).
 * m must be a root (not a child of another module). */
KILN_API void kiln_module_free(kiln_module *m);

/* ---- queries ---- */
KILN_API const char *kiln_module_type(const kiln_module *m);
/* The dotted path of m from its root ("enc1.0"; "" for the root). */
KILN_API const char *kiln_module_path(const kiln_module *m, char *buf, size_t n);
KILN_API kiln_module *kiln_module_parent(const kiln_module *m);
KILN_API int kiln_module_num_children(const kiln_module *m);
/* Child i (registration order); its name through *name when name is non-NULL. */
KILN_API kiln_module *kiln_module_child_at(const kiln_module *m, int i, const char **name);
/* Child or descendant by dotted path ("enc1.0"); NULL with an error when absent. */
KILN_API kiln_module *kiln_module_child(const kiln_module *m, const char *path);

/* Parameters of the subtree, in torch's named_parameters() order, with their dotted
 * names relative to m (valid until the tree changes). */
KILN_API int kiln_module_num_parameters(kiln_module *m);
KILN_API kiln_tensor *kiln_module_parameter(kiln_module *m, int i, const char **name);
/* Total number of parameter elements (sum of numel, as torch's p.numel() sum). */
KILN_API int64_t kiln_module_parameter_count(kiln_module *m);
KILN_API int kiln_module_num_buffers(kiln_module *m);
KILN_API kiln_tensor *kiln_module_buffer(kiln_module *m, int i, const char **name);
/* Every entry of torch's state_dict() in its order (each module's parameters, then its
 * buffers, then its children); *is_buffer says which kind. */
KILN_API int kiln_module_num_state(kiln_module *m);
KILN_API kiln_tensor *kiln_module_state(kiln_module *m, int i, const char **name, bool *is_buffer);
/* A parameter or buffer by dotted name ("enc1.1.running_mean"); NULL with an error when absent. */
KILN_API kiln_tensor *kiln_module_get(kiln_module *m, const char *name);

/* ---- modes and gradients ---- */
/* Sets training mode on m and every descendant (torch's train()/eval()). */
KILN_API void kiln_module_train(kiln_module *m, bool on);
KILN_API bool kiln_module_is_training(const kiln_module *m);
/* Builds (or repacks) the arenas of m's tree now; m must be the root. */
KILN_API kiln_status kiln_module_finalize(kiln_module *m);
/* Moves every parameter, gradient and buffer of the tree rooted at m to dev (as
 * torch's module.to(device)): the arenas are copied whole, each tensor keeps its
 * pointer. Create optimizers after moving the model. NO_DEVICE when dev is absent;
 * on failure the tree may be partly moved, so stop using it. */
KILN_API kiln_status kiln_module_to(kiln_module *m, kiln_device dev);
/* Zeroes every gradient of the tree: one fill of the gradient arena. */
KILN_API kiln_status kiln_module_zero_grad(kiln_module *m);
/* The parameter arena and the gradient arena as 1-d tensors (owned by the root, which
 * m must be): parameter i is the slice at the running sum of the preceding numels. */
KILN_API kiln_tensor *kiln_module_flat_parameters(kiln_module *m);
KILN_API kiln_tensor *kiln_module_flat_gradients(kiln_module *m);

#ifdef __cplusplus
}
#endif
#endif

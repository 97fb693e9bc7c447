/* The layout of the public by-value structs (include/kiln/abi.h), for bindings that
 * mirror them (bindings/python checks each ctypes mirror at import). Two tables written
 * out by hand: a struct added to a public header gets a row in both, a field added to
 * one gets its row in the second. */
#include "kiln.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t size;
} abi_struct;

typedef struct {
    const char *type;
    const char *field;
    size_t offset;
} abi_field;

static const abi_struct abi_structs[] = {
    {"kiln_device", sizeof(kiln_device)},
    {"kiln_pool_stats", sizeof(kiln_pool_stats)},
    {"kiln_conv2d_params", sizeof(kiln_conv2d_params)},
    {"kiln_conv_transpose2d_params", sizeof(kiln_conv_transpose2d_params)},
    {"kiln_pool2d_params", sizeof(kiln_pool2d_params)},
    {"kiln_cross_entropy_options", sizeof(kiln_cross_entropy_options)},
    {"kiln_binary_counts", sizeof(kiln_binary_counts)},
    {"kiln_sgd_options", sizeof(kiln_sgd_options)},
    {"kiln_adam_options", sizeof(kiln_adam_options)},
    {"kiln_schedule", sizeof(kiln_schedule)},
    {"kiln_named_tensor", sizeof(kiln_named_tensor)},
    {"kiln_metadata_entry", sizeof(kiln_metadata_entry)},
    {"kiln_safetensors_entry", sizeof(kiln_safetensors_entry)},
    {"kiln_cuda_conv_stats", sizeof(kiln_cuda_conv_stats)},
};

static const abi_field abi_fields[] = {
    {"kiln_device", "type", offsetof(kiln_device, type)},
    {"kiln_device", "index", offsetof(kiln_device, index)},

    {"kiln_pool_stats", "in_use", offsetof(kiln_pool_stats, in_use)},
    {"kiln_pool_stats", "peak_in_use", offsetof(kiln_pool_stats, peak_in_use)},
    {"kiln_pool_stats", "reserved", offsetof(kiln_pool_stats, reserved)},
    {"kiln_pool_stats", "cached", offsetof(kiln_pool_stats, cached)},
    {"kiln_pool_stats", "n_allocs", offsetof(kiln_pool_stats, n_allocs)},
    {"kiln_pool_stats", "n_backing_allocs", offsetof(kiln_pool_stats, n_backing_allocs)},
    {"kiln_pool_stats", "n_backing_frees", offsetof(kiln_pool_stats, n_backing_frees)},
    {"kiln_pool_stats", "n_oom_retries", offsetof(kiln_pool_stats, n_oom_retries)},
    {"kiln_pool_stats", "limit", offsetof(kiln_pool_stats, limit)},

    {"kiln_conv2d_params", "stride", offsetof(kiln_conv2d_params, stride)},
    {"kiln_conv2d_params", "padding", offsetof(kiln_conv2d_params, padding)},
    {"kiln_conv2d_params", "dilation", offsetof(kiln_conv2d_params, dilation)},
    {"kiln_conv2d_params", "groups", offsetof(kiln_conv2d_params, groups)},
    {"kiln_conv2d_params", "padding_same", offsetof(kiln_conv2d_params, padding_same)},

    {"kiln_conv_transpose2d_params", "stride", offsetof(kiln_conv_transpose2d_params, stride)},
    {"kiln_conv_transpose2d_params", "padding", offsetof(kiln_conv_transpose2d_params, padding)},
    {"kiln_conv_transpose2d_params", "output_padding", offsetof(kiln_conv_transpose2d_params, output_padding)},
    {"kiln_conv_transpose2d_params", "dilation", offsetof(kiln_conv_transpose2d_params, dilation)},
    {"kiln_conv_transpose2d_params", "groups", offsetof(kiln_conv_transpose2d_params, groups)},

    {"kiln_pool2d_params", "kernel", offsetof(kiln_pool2d_params, kernel)},
    {"kiln_pool2d_params", "stride", offsetof(kiln_pool2d_params, stride)},
    {"kiln_pool2d_params", "padding", offsetof(kiln_pool2d_params, padding)},
    {"kiln_pool2d_params", "dilation", offsetof(kiln_pool2d_params, dilation)},
    {"kiln_pool2d_params", "ceil_mode", offsetof(kiln_pool2d_params, ceil_mode)},
    {"kiln_pool2d_params", "count_include_pad", offsetof(kiln_pool2d_params, count_include_pad)},

    {"kiln_cross_entropy_options", "weight", offsetof(kiln_cross_entropy_options, weight)},
    {"kiln_cross_entropy_options", "ignore_index", offsetof(kiln_cross_entropy_options, ignore_index)},
    {"kiln_cross_entropy_options", "label_smoothing", offsetof(kiln_cross_entropy_options, label_smoothing)},
    {"kiln_cross_entropy_options", "reduction", offsetof(kiln_cross_entropy_options, reduction)},

    {"kiln_binary_counts", "tp", offsetof(kiln_binary_counts, tp)},
    {"kiln_binary_counts", "fp", offsetof(kiln_binary_counts, fp)},
    {"kiln_binary_counts", "fn", offsetof(kiln_binary_counts, fn)},
    {"kiln_binary_counts", "tn", offsetof(kiln_binary_counts, tn)},

    {"kiln_sgd_options", "lr", offsetof(kiln_sgd_options, lr)},
    {"kiln_sgd_options", "momentum", offsetof(kiln_sgd_options, momentum)},
    {"kiln_sgd_options", "dampening", offsetof(kiln_sgd_options, dampening)},
    {"kiln_sgd_options", "weight_decay", offsetof(kiln_sgd_options, weight_decay)},
    {"kiln_sgd_options", "nesterov", offsetof(kiln_sgd_options, nesterov)},
    {"kiln_sgd_options", "maximize", offsetof(kiln_sgd_options, maximize)},

    {"kiln_adam_options", "lr", offsetof(kiln_adam_options, lr)},
    {"kiln_adam_options", "beta1", offsetof(kiln_adam_options, beta1)},
    {"kiln_adam_options", "beta2", offsetof(kiln_adam_options, beta2)},
    {"kiln_adam_options", "eps", offsetof(kiln_adam_options, eps)},
    {"kiln_adam_options", "weight_decay", offsetof(kiln_adam_options, weight_decay)},
    {"kiln_adam_options", "amsgrad", offsetof(kiln_adam_options, amsgrad)},
    {"kiln_adam_options", "maximize", offsetof(kiln_adam_options, maximize)},

    {"kiln_schedule", "kind", offsetof(kiln_schedule, kind)},
    {"kiln_schedule", "base_lr", offsetof(kiln_schedule, base_lr)},
    {"kiln_schedule", "gamma", offsetof(kiln_schedule, gamma)},
    {"kiln_schedule", "step_size", offsetof(kiln_schedule, step_size)},
    {"kiln_schedule", "n_milestones", offsetof(kiln_schedule, n_milestones)},
    {"kiln_schedule", "milestones", offsetof(kiln_schedule, milestones)},
    {"kiln_schedule", "t_max", offsetof(kiln_schedule, t_max)},
    {"kiln_schedule", "eta_min", offsetof(kiln_schedule, eta_min)},
    {"kiln_schedule", "start_factor", offsetof(kiln_schedule, start_factor)},
    {"kiln_schedule", "end_factor", offsetof(kiln_schedule, end_factor)},
    {"kiln_schedule", "total_iters", offsetof(kiln_schedule, total_iters)},
    {"kiln_schedule", "total_steps", offsetof(kiln_schedule, total_steps)},
    {"kiln_schedule", "pct_start", offsetof(kiln_schedule, pct_start)},
    {"kiln_schedule", "div_factor", offsetof(kiln_schedule, div_factor)},
    {"kiln_schedule", "final_div_factor", offsetof(kiln_schedule, final_div_factor)},
    {"kiln_schedule", "anneal_linear", offsetof(kiln_schedule, anneal_linear)},

    {"kiln_named_tensor", "name", offsetof(kiln_named_tensor, name)},
    {"kiln_named_tensor", "tensor", offsetof(kiln_named_tensor, tensor)},

    {"kiln_metadata_entry", "key", offsetof(kiln_metadata_entry, key)},
    {"kiln_metadata_entry", "value", offsetof(kiln_metadata_entry, value)},

    {"kiln_safetensors_entry", "name", offsetof(kiln_safetensors_entry, name)},
    {"kiln_safetensors_entry", "dtype_name", offsetof(kiln_safetensors_entry, dtype_name)},
    {"kiln_safetensors_entry", "dtype", offsetof(kiln_safetensors_entry, dtype)},
    {"kiln_safetensors_entry", "ndim", offsetof(kiln_safetensors_entry, ndim)},
    {"kiln_safetensors_entry", "shape", offsetof(kiln_safetensors_entry, shape)},
    {"kiln_safetensors_entry", "begin", offsetof(kiln_safetensors_entry, begin)},
    {"kiln_safetensors_entry", "end", offsetof(kiln_safetensors_entry, end)},

    {"kiln_cuda_conv_stats", "hits", offsetof(kiln_cuda_conv_stats, hits)},
    {"kiln_cuda_conv_stats", "misses", offsetof(kiln_cuda_conv_stats, misses)},
    {"kiln_cuda_conv_stats", "entries", offsetof(kiln_cuda_conv_stats, entries)},
    {"kiln_cuda_conv_stats", "cudnn_runs", offsetof(kiln_cuda_conv_stats, cudnn_runs)},
    {"kiln_cuda_conv_stats", "fallback_runs", offsetof(kiln_cuda_conv_stats, fallback_runs)},
    {"kiln_cuda_conv_stats", "fused_runs", offsetof(kiln_cuda_conv_stats, fused_runs)},
    {"kiln_cuda_conv_stats", "autotuned", offsetof(kiln_cuda_conv_stats, autotuned)},
    {"kiln_cuda_conv_stats", "skipped_engines", offsetof(kiln_cuda_conv_stats, skipped_engines)},
    {"kiln_cuda_conv_stats", "workspace_bytes", offsetof(kiln_cuda_conv_stats, workspace_bytes)},
};

size_t kiln_abi_sizeof(const char *struct_name) {
    if (!struct_name) return 0;
    for (size_t i = 0; i < sizeof abi_structs / sizeof abi_structs[0]; i++)
        if (strcmp(abi_structs[i].name, struct_name) == 0) return abi_structs[i].size;
    return 0;
}

size_t kiln_abi_offsetof(const char *struct_name, const char *field_name) {
    if (!struct_name || !field_name) return SIZE_MAX;
    for (size_t i = 0; i < sizeof abi_fields / sizeof abi_fields[0]; i++)
        if (strcmp(abi_fields[i].type, struct_name) == 0 && strcmp(abi_fields[i].field, field_name) == 0)
            return abi_fields[i].offset;
    return SIZE_MAX;
}

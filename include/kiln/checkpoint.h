/* kiln checkpoint API: safetensors files (the format of the Python `safetensors`
 * package: an 8-byte little-endian header length, a JSON header naming each
 * tensor's dtype, shape and data_offsets, then the raw little-endian bytes).
 * Writes are atomic; reads validate the whole header before touching a tensor. */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor and its name, e.g. "enc1.0.weight" or "state.0.exp_avg". */
typedef struct {
    const char *name;
    kiln_tensor *tensor;
} kiln_named_tensor;

/* One entry of the header's "__metadata__" string map. */
typedef struct {
    const char *key;
    const char *value;
} kiln_metadata_entry;

/* Writes the tensors (any device, any strides; f32, f64, f16, bf16, i32, i64, u8)
 * and the metadata to path atomically: a temporary file "<path>.tmp.XXXXXX" in the
 * same directory is written, fsync'd and renamed over path, so path holds either the
 * old file or the complete new one. Names must be unique, non-empty and not
 * "__metadata__". On any failure the temporary file is removed and path is left
 * untouched.
 * - A symbolic link at path is written through: the file it (finally) points to is
 *   replaced, in that file's directory, and the link stays.
 * - An existing file keeps its permission bits (and, where the system allows it, its
 *   owner and group); a new one gets 0644.
 * - Temporary files of the same target left by a save that was killed are removed:
 *   exactly "<name>.tmp." plus 6 letters or digits, regular, owned by this user,
 *   unmodified for 60 s and not locked: a save holds an flock on its temporary file
 *   while it writes, and the kernel drops it when the writer dies, so a concurrent
 *   save's file is never taken (the age covers writers that do not lock). */
KILN_API kiln_status kiln_safetensors_save(const char *path, const kiln_named_tensor *tensors, int n,
                                           const kiln_metadata_entry *meta, int nmeta);

/* Loads the file's tensors into existing tensors by name, converting nothing: each
 * file entry must have the tensor's dtype and shape. strict (as torch's
 * load_state_dict): names missing from the file and file entries no tensor asked
 * for are errors too. Every problem is listed in one error message, and the tensors
 * are written only when there is none: everything is read (staged) first. A corrupt
 * or truncated file is KILN_STATUS_FORMAT, a file that cannot be read
 * KILN_STATUS_IO, a name, dtype or shape that does not match KILN_STATUS_SHAPE. */
KILN_API kiln_status kiln_safetensors_load(const char *path, const kiln_named_tensor *into, int n, bool strict);

/* ---- reading a file's table -------------------------------------------------------- */

typedef struct kiln_safetensors kiln_safetensors;

typedef struct {
    const char *name;
    const char *dtype_name; /* as in the file: "F32", "BF16", "I8", ... */
    int dtype;              /* the kiln_dtype, or -1 for a valid safetensors dtype kiln has no tensors of */
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    uint64_t begin, end;    /* data_offsets, relative to the data area */
} kiln_safetensors_entry;

/* Opens and validates a file (header and table; the data is read on demand).
 * NULL and an error when it is unreadable or invalid (KILN_STATUS_FORMAT naming the
 * tensor), including a shape kiln cannot hold: more than KILN_MAX_DIMS axes, or
 * sizes whose product (an empty axis counted as 1) times the element size reaches
 * 2^63 bytes, the bound every kiln tensor keeps. Empty tensors are fine. data_offsets
 * must span exactly the shape's bytes, and the tensors must tile the data area. */
KILN_API kiln_safetensors *kiln_safetensors_open(const char *path);
KILN_API void kiln_safetensors_close(kiln_safetensors *f);
/* Tensors in data order. */
KILN_API int kiln_safetensors_count(const kiln_safetensors *f);
KILN_API const kiln_safetensors_entry *kiln_safetensors_entry_at(const kiln_safetensors *f, int i);
/* The entry with that name, or NULL. */
KILN_API const kiln_safetensors_entry *kiln_safetensors_find(const kiln_safetensors *f, const char *name);
/* A new CPU tensor (in the current scope) holding the named tensor's values. */
KILN_API kiln_tensor *kiln_safetensors_read(kiln_safetensors *f, const char *name);
/* The "__metadata__" map: its entries (owned by f) and one value by key (NULL if absent). */
KILN_API int kiln_safetensors_metadata(const kiln_safetensors *f, const kiln_metadata_entry **entries);
KILN_API const char *kiln_safetensors_metadata_get(const kiln_safetensors *f, const char *key);

/* kiln_safetensors_load in two halves, for callers that check the values before any
 * tensor is written (kiln_checkpoint_load does). stage matches into[] against f's
 * table with kiln_safetensors_load's rules and errors, then reads each matched entry
 * into a new contiguous tensor on the destination's device, in the current scope:
 * staged[i] (NULL where strict is false and the file lacks the name). It writes none
 * of into[], and on failure leaves every staged[i] NULL. commit copies each staged[i]
 * into into[i].tensor; it cannot fail on CPU destinations, and on a device only
 * through a fault of the device copy. Loading stages a whole copy of the tensors. */
KILN_API kiln_status kiln_safetensors_stage(kiln_safetensors *f, const kiln_named_tensor *into, int n, bool strict,
                                            kiln_tensor **staged);
KILN_API kiln_status kiln_safetensors_commit(const kiln_named_tensor *into, int n, kiln_tensor *const *staged);

/* ---- training checkpoints ------------------------------------------------------------
 * A module's state_dict (parameters and buffers under torch's names, so PyTorch's
 * load_state_dict reads the file), optionally an optimizer's state under
 * "optimizer.state.<i>.*", its hyper-parameters and step count as "optimizer.*"
 * metadata, and the generator's position ("kiln.rng_seed", "kiln.rng_offset"), so a
 * resumed run continues exactly. extra: more metadata (e.g. the epoch); may be NULL. */
struct kiln_module;
struct kiln_optimizer;
KILN_API kiln_status kiln_checkpoint_save(const char *path, struct kiln_module *m, struct kiln_optimizer *opt,
                                          const kiln_metadata_entry *extra, int nextra);
/* Loads what kiln_checkpoint_save wrote (or a safetensors state_dict saved from
 * PyTorch) into m and, when opt is non-NULL, the optimizer state and hyper-parameters,
 * and restores the generator's position when the file has it. strict: every entry of
 * m's state_dict must be in the file and the file must hold nothing else (optimizer
 * entries are allowed when opt is NULL). Nothing is written when anything mismatches:
 * every name, dtype and shape, the generator's position (both keys or neither,
 * decimal), the optimizer's kind, step count (both required with optimizer state)
 * and hyper-parameters, each parameter's step (a whole number, at most the step
 * count) and second moments (never negative) are checked, and every tensor is read
 * into staging memory (on its destination's device), before the first write. A bad
 * value is KILN_STATUS_FORMAT naming the file and the entry. Only a device copy that
 * faults while the staged tensors are copied in can leave the model partly written
 * (the hyper-parameters are then put back). */
KILN_API kiln_status kiln_checkpoint_load(const char *path, struct kiln_module *m, struct kiln_optimizer *opt,
                                          bool strict);

#ifdef __cplusplus
}
#endif
#endif

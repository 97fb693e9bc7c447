/* kiln ABI introspection: the size and field offsets of each by-value struct of the
 * public headers, as this build of the library lays them out. For bindings that mirror
 * those structs instead of compiling against the headers (bindings/python's ctypes
 * Structures): they compare their layout with these at load time, so a header change
 * the mirror missed fails with a message instead of corrupting memory. */
#ifndef KILN_ABI_H
#define KILN_ABI_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sizeof the public struct whose typedef name is struct_name ("kiln_device",
 * "kiln_conv2d_params", "kiln_schedule", ...; core/abi.c lists them all). 0 for NULL
 * or a name that is not one. Sets no error. */
KILN_API size_t kiln_abi_sizeof(const char *struct_name);

/* offsetof(struct_name, field_name), a field of one of the structs kiln_abi_sizeof
 * knows, named as in its header (an array field: the offset of its first element).
 * (size_t)-1 for NULL or a struct or field it does not know. Sets no error. */
KILN_API size_t kiln_abi_offsetof(const char *struct_name, const char *field_name);

#ifdef __cplusplus
}
#endif

#endif

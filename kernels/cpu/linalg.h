/* Prototype of the CPU linear-algebra kernel (linalg.c, LAPACK; the op: core/linalg.c). */
#ifndef KILN_CPU_LINALG_H
#define KILN_CPU_LINALG_H

#include "cpu.h"

/* in: a (n, n) symmetric; out (n+1, n): row 0 eigenvalues ascending, rows 1.. the
 * eigenvector matrix with eigenvectors in its columns. */
kiln_status kiln_cpu_eigh(const kiln_op_call *call);

#endif

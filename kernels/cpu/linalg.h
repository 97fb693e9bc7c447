/* Prototypes of the CPU linear-algebra kernels (LAPACK). */
#ifndef KILN_CPU_LINALG_H
#define KILN_CPU_LINALG_H

#include "cpu.h"

/* in: a (n, n) symmetric; out (n+1, n): row 0 eigenvalues ascending, rows 1.. the
 * eigenvector matrix with eigenvectors in its columns. */
KILN_CPU_KERNEL(eigh);

#endif

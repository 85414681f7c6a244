/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CUDA attach: the "cuda" group is a uprobe/uretprobe pair per CUDA API on
 * every symbol variant a libcudart or libcuda exports, attached per library
 * file. Libraries come from --cuda-lib, the `cuda` command, and a scan of
 * what running processes have mapped (through /proc/PID/root, so those inside
 * containers resolve). Each attach says how it went in a STATUS record.
 */
#ifndef KSPAN_CUDA_ATTACH_H
#define KSPAN_CUDA_ATTACH_H

#define MAX_LIBS 32

extern int n_cuda_libs; /* libraries known, attached or not */

/* Attach to the library at path (pid 0: every process; else that one only);
 * a file already known is attached again only if detached. 0 or -errno. */
int add_cuda_lib(const char *path, int pid);
void scan_cuda_maps(void);
/* `attach cuda`: every known library that is detached. */
void cuda_reattach(void);
/* `detach cuda`, and at exit. */
void cuda_detach(void);

#endif /* KSPAN_CUDA_ATTACH_H */

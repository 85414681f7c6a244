/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * ELF symbol lookup for uprobes: the file offsets of named functions in a
 * shared library, found in one pass over its .dynsym and .symtab, so CUDA
 * attach (cuda-attach.c) can hand libbpf offsets rather than names.
 */
#ifndef KSPAN_ELF_SYM_H
#define KSPAN_ELF_SYM_H

#include <stddef.h>

/* offs[k] = file offset of function names[k], 0 when the file lacks it.
 * Returns how many were found, or -errno (-ENOEXEC: not an ELF file). */
int resolve_syms(const char *path, const char *const *names, int n, size_t *offs);

#endif /* KSPAN_ELF_SYM_H */

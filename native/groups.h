/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Probe groups (enum kspan_group): their names, the tracepoint programs of
 * each, and attaching and detaching a group as a whole, with one STATUS
 * record per attempt. Before load, the kernel's BTF decides which programs
 * are loaded at all (a hook this kernel lacks; the irq depth programs, only
 * needed when the preempt count can't be read). The "futex" group has no
 * programs of its own, and "cuda" attaches per library (cuda-attach.c).
 */
#ifndef KSPAN_GROUPS_H
#define KSPAN_GROUPS_H

#include <linux/types.h>
#include "kspan.h"

struct btf;

extern const char *group_names[KSPAN_GROUP_MAX];
int group_by_name(const char *name);

/* Interrupt context source (cfg.irq_src, see irq_flags() in kspan.bpf.c):
 * 1 = the preempt count, 0 = irq/softirq/hrtimer tracepoint depth. */
extern __u32 irq_src;
extern __s64 pc_rq_delta;

/* Before load, from the kernel's BTF (NULL: none could be read). */
void choose_irq_src(const struct btf *btf);
void mark_available(struct btf *vmlinux);

/* 0 when at least one program of the group is attached, else -errno. */
int attach_group(int group);
void detach_group(int group);
/* At exit: every tracepoint link, without STATUS records. */
void detach_all_groups(void);

#endif /* KSPAN_GROUPS_H */

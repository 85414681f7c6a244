/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Blocked-task snapshots (KSPAN_BLOCKED, bpf/kspan.h): a walk over every task
 * (the BPF task iterator snapshot_blocked) written into the stream right
 * before each watermark, while the sched group is attached.
 */
#ifndef KSPAN_SNAPSHOT_H
#define KSPAN_SNAPSHOT_H

#include <stdbool.h>
#include <linux/types.h>

/* Create (0 or -errno) / drop the iterator link: the "blocked" group, run
 * while sched is attached (groups.c). */
int snapshot_attach(void);
void snapshot_detach(void);
bool snapshot_attached(void);
/* Walk the tasks and write their KSPAN_BLOCKED records (nothing when not attached). */
void snapshot_write(void);
/* A walk costs about 1 us of CPU per task on the 2-vCPU dev VM (plus ~20 us
 * to create the iterator), so watermarks, each behind a walk, come at most
 * every SNAPSHOT_COST_DIVISOR times the walks' mean CPU time: they take at
 * most 0.5% of a CPU, and a host with many threads gets later watermarks, not
 * a busier probe; at least one a second whatever the walks cost. */
#define SNAPSHOT_COST_DIVISOR 200
#define SNAPSHOT_MAX_INTERVAL_NS 1000000000ull
__u64 snapshot_min_interval_ns(__u64 floor_ns);
/* Walks so far and their total (wall) time, for --verbose. */
void snapshot_cost(unsigned long *walks, __u64 *ns);

#endif /* KSPAN_SNAPSHOT_H */

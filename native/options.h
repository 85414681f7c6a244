/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The command line (docs/probe.md): parse_args() fills the global `opt`,
 * which the loader and its parts read; the defaults are in options.c.
 */
#ifndef KSPAN_OPTIONS_H
#define KSPAN_OPTIONS_H

#include <stdbool.h>
#include <linux/types.h>
#include "kspan.h"
#include "cuda-attach.h"

#define MAX_PIDS 256

struct opts {
	__u32 pids[MAX_PIDS], excluded[MAX_PIDS];
	int n_pids, n_excluded;
	bool follow;
	unsigned groups; /* bit per enum kspan_group */
	const char *cuda_libs[MAX_LIBS];
	int n_cuda_libs;
	bool cuda_scan;
	__u64 offcpu_min_ns, futex_min_ns, stack_min_ns;
	bool stacks;
	const char *cgroups[KSPAN_MAX_CGROUPS];
	int n_cgroups;
	unsigned ring_mb;
	unsigned drain_ms, clock_ms;
	bool check, verbose, stats, irq_tracepoints;
};
extern struct opts opt;

/* -1 to go on; otherwise the exit code (--help, or a usage error, said on stderr). */
int parse_args(int argc, char **argv);

#endif /* KSPAN_OPTIONS_H */

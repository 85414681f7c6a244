/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the loader (kspan-probe.c) shares with its parts: its exit codes
 * (docs/probe.md), the BPF skeleton it opened and loaded, and the ring set
 * it drains. The parts reach the programs, maps and .bss config (struct
 * kspan_cfg) through `skel`.
 */
#ifndef KSPAN_PROBE_H
#define KSPAN_PROBE_H

#include <linux/types.h>
#include <bpf/libbpf.h>
#include "kspan.h"
#include "kspan.skel.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_OTHER = 1,
	EXIT_USAGE = 2,
	EXIT_NOPRIV = 10,
	EXIT_NOBTF = 11,
	EXIT_BPF_REFUSED = 12,
	EXIT_ATTACH = 13,
	EXIT_TRACEFS = 14,
};

extern struct kspan_bpf *skel;
extern struct ring_buffer *rings;

static inline struct bpf_program *prog_by_name(const char *name)
{
	return bpf_object__find_program_by_name(skel->obj, name);
}

#endif /* KSPAN_PROBE_H */

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Output framing: kspan-probe's stdout is one stream of records
 * (bpf/kspan.h), the kernel's ring samples copied as they are and the probe's
 * own records (HELLO, CLOCK, STATUS, ACK, DRAINED, DROPS) built here, all
 * through one buffer that is written out by out_flush(). A failed write
 * (the reader went away) sets out_broken, and the main loop ends.
 */
#ifndef KSPAN_OUTPUT_H
#define KSPAN_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <linux/types.h>
#include "kspan.h"

extern bool out_broken;

void out_flush(void);
void out_write(const void *data, size_t len);
__u64 now_ns(clockid_t clk);

/* A group's attach result (err 1: detached on request); with --verbose or
 * --check also a line on stderr. */
void emit_status(__u32 group, int err, unsigned n_ok, unsigned n_fail, const char *fmt, ...);
/* The answer to control command `seq`; flushed at once. */
void emit_ack(__u32 seq, int err, const char *fmt, ...);
/* The watermark and the rings' loss counters read right after the drain
 * that started at `before_drain`. */
void emit_drained(__u64 before_drain);
void emit_clock(bool stepped);
void emit_hello(int ncpu);
/* The ring_lost map (per-CPU counters) that emit_drops and emit_drained read. */
void out_set_ring_lost(int ring_lost_fd, int ncpu);
/* Cumulative reserve failures of ring `ring`, summed over CPUs; false when unreadable. */
bool out_ring_lost(__u32 ring, __u64 *lost);
/* One KSPAN_DROPS per ring: the ring_lost map summed over CPUs, and what
 * on_record counted. */
void emit_drops(void);

/* Per-ring counters for KSPAN_DROPS; each is the ctx of its ring's on_record. */
struct ring_ctx {
	__u32 ring;
	__u64 records, bytes;
};
extern struct ring_ctx ring_ctx[KSPAN_RING_MAX];

int on_record(void *ctx, void *data, size_t size);

#endif /* KSPAN_OUTPUT_H */

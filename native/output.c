// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Output framing (output.h): the stdout buffer, the header every record the
 * probe builds itself starts with, those records, and the ring callback that
 * copies kernel samples into the stream and counts them for KSPAN_DROPS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "output.h"
#include "groups.h"
#include "options.h"

#define OUT_BUF (1 << 20)

static char out_buf[OUT_BUF];
static size_t out_len;
bool out_broken;

void out_flush(void)
{
	size_t off = 0;

	while (off < out_len && !out_broken) {
		ssize_t n = write(STDOUT_FILENO, out_buf + off, out_len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			out_broken = true; /* reader went away (EPIPE): the main loop ends */
			break;
		}
		off += n;
	}
	out_len = 0;
}

void out_write(const void *data, size_t len)
{
	if (out_len + len > sizeof(out_buf))
		out_flush();
	memcpy(out_buf + out_len, data, len);
	out_len += len;
}

__u64 now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void hdr(struct kspan_hdr *h, __u8 kind, __u16 size)
{
	memset(h, 0, sizeof(*h));
	h->size = size;
	h->kind = kind;
	h->magic = KSPAN_REC_MAGIC;
	h->cpu = sched_getcpu();
	h->ts = now_ns(CLOCK_MONOTONIC);
	h->pid = getpid();
	h->tid = gettid();
}

void emit_status(__u32 group, int err, unsigned n_ok, unsigned n_fail, const char *fmt, ...)
{
	struct kspan_status r;
	va_list ap;

	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_STATUS, sizeof(r));
	r.group = group;
	r.err = err;
	r.n_attached = n_ok;
	r.n_failed = n_fail;
	va_start(ap, fmt);
	vsnprintf(r.detail, sizeof(r.detail), fmt, ap);
	va_end(ap);
	out_write(&r, sizeof(r));
	if (opt.verbose || opt.check)
		fprintf(stderr, "kspan-probe: %-5s %s: %u attached, %u failed%s%s\n",
			group < KSPAN_GROUP_MAX ? group_names[group] : "?",
			err == 0 ? "ok" : err == 1 ? "detached" : strerror(-err), n_ok, n_fail,
			r.detail[0] ? " — " : "", r.detail);
}

void emit_ack(__u32 seq, int err, const char *fmt, ...)
{
	struct kspan_ack r;
	va_list ap;

	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_ACK, sizeof(r));
	r.seq = seq;
	r.err = err;
	va_start(ap, fmt);
	vsnprintf(r.msg, sizeof(r.msg), fmt, ap);
	va_end(ap);
	out_write(&r, sizeof(r));
	out_flush();
}

static int lost_fd = -1, lost_ncpu;
static __u64 *lost_vals;

void out_set_ring_lost(int ring_lost_fd, int ncpu)
{
	lost_vals = calloc(ncpu, sizeof(__u64));
	lost_fd = lost_vals ? ring_lost_fd : -1;
	lost_ncpu = ncpu;
}

bool out_ring_lost(__u32 ring, __u64 *lost)
{
	*lost = 0;
	if (lost_fd < 0 || bpf_map_lookup_elem(lost_fd, &ring, lost_vals))
		return false;
	for (int c = 0; c < lost_ncpu; c++)
		*lost += lost_vals[c];
	return true;
}

/* The ingest watermark: everything before `before_drain` is in the stream,
 * and lost[] counts every record lost before lost_ts (taken before the
 * counters are read, so a failure before it has been counted). */
void emit_drained(__u64 before_drain)
{
	struct kspan_drained r;
	bool ok = true;

	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_DRAINED, sizeof(r));
	r.h.ts = before_drain;
	r.lost_ts = now_ns(CLOCK_MONOTONIC);
	for (__u32 ring = 0; ring < KSPAN_RING_MAX; ring++)
		ok &= out_ring_lost(ring, &r.lost[ring]);
	if (!ok)
		r.lost_ts = 0;
	out_write(&r, sizeof(r));
}

/* Best of three (mono, real, mono) reads: the narrowest window wins. */
void emit_clock(bool stepped)
{
	struct kspan_clock r;
	__u64 best_err = ~0ull, best_mono = 0, best_real = 0;

	for (int i = 0; i < 3; i++) {
		__u64 m1 = now_ns(CLOCK_MONOTONIC), re = now_ns(CLOCK_REALTIME), m2 = now_ns(CLOCK_MONOTONIC);
		if ((m2 - m1) / 2 < best_err) {
			best_err = (m2 - m1) / 2;
			best_mono = m1 + (m2 - m1) / 2;
			best_real = re;
		}
	}
	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_CLOCK, sizeof(r));
	r.h.ts = best_mono;
	r.realtime_ns = best_real;
	r.error_ns = best_err;
	r.stepped = stepped;
	out_write(&r, sizeof(r));
}

void emit_hello(int ncpu)
{
	struct kspan_hello r;
	char id[64] = {};
	FILE *f;

	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_HELLO, sizeof(r));
	r.abi_version = KSPAN_ABI_VERSION;
	r.ncpu = ncpu;
	r.mono_ns = now_ns(CLOCK_MONOTONIC);
	r.realtime_ns = now_ns(CLOCK_REALTIME);
	f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f) {
		/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx": keep the hex digits */
		char hex[33] = {};
		int n = 0;
		if (fgets(id, sizeof(id), f))
			for (char *p = id; *p && n < 32; p++)
				if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
					hex[n++] = *p;
		fclose(f);
		char hi[17] = {}, lo[17] = {};
		memcpy(hi, hex, 16);
		memcpy(lo, hex + 16, 16);
		r.boot_id_hi = strtoull(hi, NULL, 16);
		r.boot_id_lo = strtoull(lo, NULL, 16);
	}
	r.offcpu_min_ns = opt.offcpu_min_ns;
	r.probe_pid = getpid();
	out_write(&r, sizeof(r));
}

/* ------------------------------------------------------------------- rings */

struct ring_ctx ring_ctx[KSPAN_RING_MAX] = { { KSPAN_RING_SCHED }, { KSPAN_RING_TASK }, { KSPAN_RING_CUDA } };

/* A ring sample holds one record, or several back to back (a switch-in
 * writes its off-CPU interval and futex records with one reserve): count
 * records, not samples, so DROPS.records matches what the reader decodes. */
int on_record(void *ctx, void *data, size_t size)
{
	struct ring_ctx *rc = ctx;
	size_t off = 0;

	while (off + sizeof(struct kspan_hdr) <= size) {
		__u16 n = ((struct kspan_hdr *)((char *)data + off))->size;
		rc->records++;
		if (n < sizeof(struct kspan_hdr))
			break;
		off += n;
	}
	rc->bytes += size;
	out_write(data, size);
	return 0;
}

void emit_drops(void)
{
	for (__u32 ring = 0; ring < KSPAN_RING_MAX; ring++) {
		struct kspan_drops r;
		__u64 lost;

		out_ring_lost(ring, &lost);
		memset(&r, 0, sizeof(r));
		hdr(&r.h, KSPAN_DROPS, sizeof(r));
		r.ring = ring;
		r.lost = lost;
		r.records = ring_ctx[ring].records;
		r.bytes = ring_ctx[ring].bytes;
		out_write(&r, sizeof(r));
	}
}

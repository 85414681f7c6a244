// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Why positions: libbpf's ring_buffer__consume() stops at the first record
 * whose BUSY bit is set (reserved, not yet submitted) and leaves everything
 * after it, from every CPU, for the next drain. A DRAINED(T) written then
 * would let the reader treat time before T as complete while records of it
 * are still in the ring, and a lost-looking interval would read as "on CPU".
 * So a drain reads each ring's producer position right after T, and marks
 * only once the consumer position has passed it: every record reserved
 * before T has been read. (A record whose time was read before T but that
 * was reserved after the position read is covered by the reader's 1 ms slop:
 * a BPF program takes microseconds from reading the time to reserving.)
 */
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kspan-probe.h"
#include "drain.h"
#include "output.h"
#include "snapshot.h"

#define CATCH_UP_TRIES 4

static volatile unsigned long *cons_pos[KSPAN_RING_MAX], *prod_pos[KSPAN_RING_MAX];
static bool have_pos;
static unsigned long stalls;

void drain_init(void)
{
	struct bpf_map *maps[KSPAN_RING_MAX] = { skel->maps.rb_sched, skel->maps.rb_task, skel->maps.rb_cuda };
	long pg = sysconf(_SC_PAGESIZE);

	have_pos = true;
	for (int r = 0; r < KSPAN_RING_MAX; r++) {
		int fd = bpf_map__fd(maps[r]);
		/* a ringbuf map's first page holds consumer_pos, the second producer_pos */
		void *c = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
		void *p = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, pg);

		if (c == MAP_FAILED || p == MAP_FAILED) {
			fprintf(stderr, "kspan-probe: cannot map the ring positions (%m): watermark without the catch-up check\n");
			have_pos = false;
			return;
		}
		cons_pos[r] = c;
		prod_pos[r] = p;
	}
}

static bool caught_up(const unsigned long *p0)
{
	for (int r = 0; r < KSPAN_RING_MAX; r++)
		if (__atomic_load_n(cons_pos[r], __ATOMIC_ACQUIRE) < p0[r])
			return false;
	return true;
}

bool drain(bool mark)
{
	__u64 t0 = now_ns(CLOCK_MONOTONIC);
	unsigned long p0[KSPAN_RING_MAX] = {};

	if (have_pos && mark)
		for (int r = 0; r < KSPAN_RING_MAX; r++)
			p0[r] = __atomic_load_n(prod_pos[r], __ATOMIC_ACQUIRE);
	ring_buffer__consume(rings);
	if (!mark)
		return false;
	if (have_pos) {
		int tries = 0;

		while (!caught_up(p0)) {
			if (++tries > CATCH_UP_TRIES) {
				stalls++;
				return false;
			}
			sched_yield();
			ring_buffer__consume(rings);
		}
	}
	/* intervals still open now, so that none reads as on CPU up to the mark */
	snapshot_write();
	emit_drained(t0);
	return true;
}

unsigned long drain_stalls(void)
{
	return stalls;
}

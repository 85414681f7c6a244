// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Blocked-task snapshots (snapshot.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "kspan-probe.h"
#include "output.h"
#include "snapshot.h"

static struct bpf_link *iter_link;
static __u64 prev_ns;
static unsigned long walks;
static __u64 walk_ns;
/* the walks' CPU time (this thread's, so preemption during a walk does not
 * count), smoothed: what the watermark spacing is sized by */
static __u64 walk_cpu_avg_ns;
/* the scheduler ring's loss counter at the last walk */
static __u64 sched_lost;

/* walks failing since the last one that worked (its STATUS said so once) */
static bool walk_failing;

int snapshot_attach(void)
{
	int err;

	if (iter_link)
		return 0;
	iter_link = bpf_program__attach_iter(skel->progs.snapshot_blocked, NULL);
	if (!iter_link) {
		err = -errno;
		fprintf(stderr, "kspan-probe: blocked-task snapshots unavailable (%s): a thread still off CPU at the "
				"watermark reads as on CPU up to it\n", strerror(-err));
		return err;
	}
	/* the first walk reports every long interval open then */
	prev_ns = 0;
	walk_failing = false;
	return 0;
}

bool snapshot_attached(void)
{
	return iter_link != NULL;
}

/* A walk that fails leaves the intervals open then unreported: the STATUS
 * ends the group's coverage there (readers count that time as not seen),
 * and the next walk that works starts it again and reports every interval. */
static void walk_result(int err)
{
	if (err && !walk_failing)
		emit_status(KSPAN_GROUP_BLOCKED, err, 0, 1, "walk failed: %s", strerror(-err));
	else if (!err && walk_failing)
		emit_status(KSPAN_GROUP_BLOCKED, 0, 1, 0, "walks work again");
	walk_failing = err != 0;
}

void snapshot_detach(void)
{
	bpf_link__destroy(iter_link);
	iter_link = NULL;
}

void snapshot_write(void)
{
	const size_t rec = sizeof(struct kspan_blocked);
	char buf[16384];
	size_t have = 0, whole;
	__u64 t0, c0, c, lost;
	ssize_t n;
	int fd;

	if (!iter_link)
		return;
	t0 = now_ns(CLOCK_MONOTONIC);
	c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	/* The ring lost records since the last walk, perhaps the switch-in that
	 * ended an interval reported open: report every open one again (the
	 * reader takes a report as "still open then"). */
	if (out_ring_lost(KSPAN_RING_SCHED, &lost) && lost != sched_lost) {
		prev_ns = 0;
		sched_lost = lost;
	}
	skel->bss->cfg.snap_prev_ns = prev_ns;
	skel->bss->cfg.snap_now_ns = t0;
	fd = bpf_iter_create(bpf_link__fd(iter_link));
	if (fd < 0) {
		walk_result(-errno);
		return;
	}
	/* whole records only: a read may end inside one */
	while ((n = read(fd, buf + have, sizeof(buf) - have)) > 0) {
		have += n;
		whole = have - have % rec;
		out_write(buf, whole);
		memmove(buf, buf + whole, have - whole);
		have -= whole;
	}
	if (n < 0)
		n = -errno;
	close(fd);
	/* a failed walk leaves prev_ns: the next one reports its intervals again */
	if (n == 0)
		prev_ns = t0;
	walk_result((int)n);
	c = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	walk_cpu_avg_ns = walks ? (7 * walk_cpu_avg_ns + c) / 8 : c;
	walks++;
	walk_ns += now_ns(CLOCK_MONOTONIC) - t0;
}

__u64 snapshot_min_interval_ns(__u64 floor_ns)
{
	__u64 budget = iter_link ? walk_cpu_avg_ns * SNAPSHOT_COST_DIVISOR : 0;

	if (budget > SNAPSHOT_MAX_INTERVAL_NS)
		budget = SNAPSHOT_MAX_INTERVAL_NS;
	return budget > floor_ns ? budget : floor_ns;
}

void snapshot_cost(unsigned long *w, __u64 *ns)
{
	*w = walks;
	*ns = walk_ns;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kspan-probe: loads bpf/kspan.bpf.c, attaches probe groups, drains the ring
 * buffers and writes records (bpf/kspan.h) to stdout; takes control commands
 * on stdin. The protocol, flags and exit codes are in docs/probe.md.
 *
 * This file is the loader and its main loop; beside it: options.c (command
 * line), output.c (the record stream), groups.c (tracepoint program groups),
 * cuda-attach.c with elf-sym.c (CUDA uprobes), control.c (stdin commands).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/vfs.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "kspan-probe.h"
#include "control.h"
#include "cuda-attach.h"
#include "groups.h"
#include "options.h"
#include "output.h"
#include "drain.h"
#include "snapshot.h"

struct kspan_bpf *skel;
struct ring_buffer *rings;
static int ncpu;

/* ------------------------------------------------------------------ checks */

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || (!opt.verbose && level == LIBBPF_INFO))
		return 0;
	if (!opt.verbose && level == LIBBPF_WARN)
		return 0; /* libbpf warns on every missing CUDA symbol variant; STATUS records say it */
	return vfprintf(stderr, fmt, ap);
}

static bool has_cap(int cap)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long eff = 0;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return eff & (1ull << cap);
}

#define CAP_SYS_ADMIN_NR 21
#define CAP_PERFMON_NR 38
#define CAP_BPF_NR 39

static int ensure_tracefs(void)
{
	if (access("/sys/kernel/tracing/events", F_OK) == 0 ||
	    access("/sys/kernel/debug/tracing/events", F_OK) == 0)
		return 0;
	/* Not mounted (minimal hosts, containers): mount it where libbpf looks. */
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL) == 0)
		return 0;
	return -errno;
}

/* The kernfs id of a cgroup v2 directory: an absolute path as is, a relative
 * one under /sys/fs/cgroup. 0 with errno set (EMEDIUMTYPE: not cgroup v2). */
static __u64 cgroup_id_of(const char *path)
{
	struct {
		struct file_handle fh;
		__u64 id;
	} h = { .fh.handle_bytes = sizeof(__u64) };
	int mount_id;
	char full[PATH_MAX];
	struct statfs sf;

	if (path[0] != '/')
		snprintf(full, sizeof(full), "/sys/fs/cgroup/%s", path);
	else
		snprintf(full, sizeof(full), "%s", path);
	if (statfs(full, &sf))
		return 0;
	if (sf.f_type != 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
		errno = EMEDIUMTYPE;
		return 0;
	}
	if (name_to_handle_at(AT_FDCWD, full, &h.fh, &mount_id, 0))
		return 0;
	return h.id;
}

/* --stats: the kernel's own accounting of each program (run count and time),
 * one JSON line on stderr at exit, for benchmarks and `kspan doctor`. */
static void print_prog_stats(void)
{
	struct bpf_program *p;
	bool first = true;

	fprintf(stderr, "kspan-probe: stats {");
	bpf_object__for_each_program(p, skel->obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) || !info.run_cnt)
			continue;
		fprintf(stderr, "%s\"%s\":{\"runs\":%llu,\"ns\":%llu}", first ? "" : ",", bpf_program__name(p),
			(unsigned long long)info.run_cnt, (unsigned long long)info.run_time_ns);
		first = false;
	}
	fprintf(stderr, "}\n");
}

/* Privileges, kernel BTF and tracefs; the --cgroup paths to ids (cgids). */
static int preflight(__u64 *cgids)
{
	int err;

	if (geteuid() != 0 && !(has_cap(CAP_SYS_ADMIN_NR) || (has_cap(CAP_BPF_NR) && has_cap(CAP_PERFMON_NR)))) {
		fprintf(stderr, "kspan-probe: not privileged: run as root, or grant CAP_BPF and CAP_PERFMON\n");
		return EXIT_NOPRIV;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr, "kspan-probe: no kernel BTF (/sys/kernel/btf/vmlinux): needs CONFIG_DEBUG_INFO_BTF=y\n");
		return EXIT_NOBTF;
	}
	if ((err = ensure_tracefs())) {
		fprintf(stderr, "kspan-probe: tracefs is not mounted and mounting it failed: %s\n", strerror(-err));
		return EXIT_TRACEFS;
	}
	for (int i = 0; i < opt.n_cgroups; i++) {
		if (!(cgids[i] = cgroup_id_of(opt.cgroups[i]))) {
			fprintf(stderr, "kspan-probe: cgroup %s: %s\n", opt.cgroups[i],
				errno == EMEDIUMTYPE ? "not a cgroup v2 directory" : strerror(errno));
			return EXIT_USAGE;
		}
	}
	return EXIT_OK;
}

/* Opens, sizes and loads the BPF object, configures it, sets up the rings. */
static int load(const __u64 *cgids)
{
	struct btf *vmlinux;
	int err;

	skel = kspan_bpf__open();
	if (!skel) {
		fprintf(stderr, "kspan-probe: cannot open BPF object: %s\n", strerror(errno));
		return EXIT_OTHER;
	}
	vmlinux = btf__load_vmlinux_btf();
	choose_irq_src(vmlinux);
	mark_available(vmlinux);
	btf__free(vmlinux);
	bpf_map__set_max_entries(skel->maps.rb_sched, opt.ring_mb << 20);
	bpf_map__set_max_entries(skel->maps.rb_task, KSPAN_RB_TASK_BYTES(opt.ring_mb << 20));
	bpf_map__set_max_entries(skel->maps.rb_cuda, KSPAN_RB_CUDA_BYTES(opt.ring_mb << 20));

	err = kspan_bpf__load(skel);
	if (err) {
		if (errno == EPERM || err == -EPERM) {
			fprintf(stderr, "kspan-probe: the kernel refused BPF (EPERM): not privileged enough, "
					"or BPF is locked down\n");
			return EXIT_NOPRIV;
		}
		fprintf(stderr, "kspan-probe: the kernel refused the BPF programs: %s (rerun with --verbose "
				"for the verifier log)\n", strerror(-err));
		return EXIT_BPF_REFUSED;
	}
	out_set_ring_lost(bpf_map__fd(skel->maps.ring_lost), ncpu);
	drain_init();

	/* BPF_ENABLE_STATS: on while this fd is open (i.e. until we exit). */
	if (opt.stats && bpf_enable_stats(BPF_STATS_RUN_TIME) < 0)
		fprintf(stderr, "kspan-probe: --stats: cannot enable BPF run-time stats: %s\n", strerror(errno));
	skel->bss->cfg.offcpu_min_ns = opt.offcpu_min_ns;
	skel->bss->cfg.futex_min_ns = opt.futex_min_ns;
	skel->bss->cfg.stack_min_ns = opt.stack_min_ns;
	skel->bss->cfg.stacks = opt.stacks;
	skel->bss->cfg.follow = opt.follow;
	for (int i = 0; i < opt.n_cgroups; i++) {
		__u8 one = 1;
		bpf_map_update_elem(bpf_map__fd(skel->maps.target_cgroups), &cgids[i], &one, BPF_ANY);
	}
	skel->bss->cfg.cgroup_id = cgids[0]; /* != 0: scoped to target_cgroups */
	skel->bss->cfg.self_tgid = getpid();
	skel->bss->cfg.wake_bytes = (opt.ring_mb << 20) / 4;
	skel->bss->cfg.irq_src = irq_src;
	skel->bss->cfg.pc_rq_delta = pc_rq_delta;
	for (int i = 0; i < opt.n_pids; i++)
		pid_filter("add", opt.pids[i]);
	for (int i = 0; i < opt.n_excluded; i++)
		pid_filter("exclude", opt.excluded[i]);

	rings = ring_buffer__new(bpf_map__fd(skel->maps.rb_sched), on_record, &ring_ctx[KSPAN_RING_SCHED], NULL);
	if (!rings || ring_buffer__add(rings, bpf_map__fd(skel->maps.rb_task), on_record, &ring_ctx[KSPAN_RING_TASK]) ||
	    ring_buffer__add(rings, bpf_map__fd(skel->maps.rb_cuda), on_record, &ring_ctx[KSPAN_RING_CUDA])) {
		fprintf(stderr, "kspan-probe: cannot set up ring buffers: %s\n", strerror(errno));
		return EXIT_OTHER;
	}
	return EXIT_OK;
}

/* The stream's first records, then every group asked for. False when no
 * group could be attached. */
static bool attach_all(void)
{
	/* Task group first so the names of everything that follows are seen. */
	static const int order[] = { KSPAN_GROUP_TASK, KSPAN_GROUP_SCHED, KSPAN_GROUP_FUTEX,
				     KSPAN_GROUP_FUTEX_SYSCALLS, KSPAN_GROUP_BLOCKED, KSPAN_GROUP_BLOCK,
				     KSPAN_GROUP_TCP };
	bool any_attached = false;

	emit_hello(ncpu);
	/* a task already off CPU now gets its first interval from here (KSPAN_OFF_START_UNKNOWN) */
	skel->bss->cfg.since_ns = now_ns(CLOCK_MONOTONIC);
	emit_clock(false);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (opt.groups & (1u << order[i]))
			any_attached |= attach_group(order[i]) == 0;
	if (opt.groups & (1u << KSPAN_GROUP_CUDA)) {
		for (int i = 0; i < opt.n_cuda_libs; i++)
			add_cuda_lib(opt.cuda_libs[i], 0);
		if (opt.cuda_scan)
			scan_cuda_maps();
		if (!opt.n_cuda_libs && !n_cuda_libs)
			emit_status(KSPAN_GROUP_CUDA, 0, 0, 0, "no CUDA library loaded or given");
	}
	out_flush();
	return any_attached;
}

/* Main loop: epoll on the rings (woken only when data piles up), stdin,
 * signals, and a CLOCK_REALTIME timer that is cancelled when the clock is
 * set; the epoll timeout is the drain period. Ends with a last drain. */
static void run(void)
{
	int epfd, sfd, tfd;
	sigset_t mask;
	__u64 last_clock, last_drops, last_drained = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
	{
		struct itimerspec its = { .it_value = { .tv_sec = time(NULL) + 10 * 365 * 86400 } };
		timerfd_settime(tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	{
		struct epoll_event ev = { .events = EPOLLIN };
		ev.data.fd = ring_buffer__epoll_fd(rings);
		epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
		ev.data.fd = STDIN_FILENO;
		/* Fails when stdin is a regular file or /dev/null: then there are
		 * no commands and we run until a signal. */
		(void)epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
		ev.data.fd = sfd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
		ev.data.fd = tfd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	}
	last_clock = last_drops = now_ns(CLOCK_MONOTONIC);
	while (!stop_requested && !out_broken) {
		struct epoll_event evs[8];
		int n = epoll_wait(epfd, evs, 8, opt.drain_ms);
		__u64 now;

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == sfd) {
				stop_requested = true;
			} else if (fd == STDIN_FILENO) {
				if (!read_commands())
					stop_requested = true;
			} else if (fd == tfd) {
				__u64 v;
				struct itimerspec its = { .it_value = { .tv_sec = time(NULL) + 10 * 365 * 86400 } };
				if (read(tfd, &v, sizeof(v)) < 0 && errno == ECANCELED)
					emit_clock(true);
				timerfd_settime(tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
			}
		}
		now = now_ns(CLOCK_MONOTONIC);
		/* a watermark at most every 10 ms (the daemon reads it live), or
		 * less often when the blocked-task walk before each is costly */
		if (drain(now - last_drained >= snapshot_min_interval_ns(10000000ull)))
			last_drained = now;
		if (now - last_clock >= (__u64)opt.clock_ms * 1000000) {
			emit_clock(false);
			last_clock = now;
		}
		if (now - last_drops >= 1000000000ull) {
			emit_drops();
			last_drops = now;
		}
		out_flush();
	}
	drain(true);
	emit_drops();
	out_flush();
}

int main(int argc, char **argv)
{
	__u64 cgids[KSPAN_MAX_CGROUPS] = {};
	int exit_code = parse_args(argc, argv);

	if (exit_code >= 0)
		return exit_code;
	signal(SIGPIPE, SIG_IGN);
	libbpf_set_print(libbpf_log);
	ncpu = libbpf_num_possible_cpus();
	exit_code = preflight(cgids);
	if (exit_code != EXIT_OK)
		return exit_code;
	exit_code = load(cgids);
	if (exit_code != EXIT_OK)
		goto out;
	if (!attach_all()) {
		fprintf(stderr, "kspan-probe: no probe group could be attached\n");
		exit_code = EXIT_ATTACH;
		goto out;
	}
	if (opt.check) {
		ring_buffer__consume(rings);
		emit_drops();
		out_flush();
		goto out;
	}
	run();
	if (out_broken)
		fprintf(stderr, "kspan-probe: stdout closed, exiting\n");
	/* The stream is complete: let the reader see EOF now. Detaching uprobes
	 * below can take ~0.1 s per probe in the kernel. */
	close(STDOUT_FILENO);
	if (opt.stats)
		print_prog_stats();
	if (opt.verbose) {
		unsigned long walks;
		__u64 ns;

		snapshot_cost(&walks, &ns);
		if (walks)
			fprintf(stderr, "kspan-probe: %lu blocked-task snapshot(s), %.1f us each\n", walks,
				ns / 1e3 / walks);
	}
	if (opt.verbose && drain_stalls())
		fprintf(stderr, "kspan-probe: %lu drain(s) held the watermark: a record reserved before them was still being written\n",
			drain_stalls());
out:
	detach_all_groups();
	cuda_detach();
	ring_buffer__free(rings);
	kspan_bpf__destroy(skel);
	return exit_code;
}

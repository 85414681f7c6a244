// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kspan kernel capture. Record layouts: kspan.h. Loader: native/kspan-probe.c.
 *
 * Groups (attached independently by the loader):
 *   sched  tp_btf sched_switch / sched_waking / sched_wakeup_new -> KSPAN_OFFCPU (+ KSPAN_STACK)
 *   task   tp_btf sched_process_fork/exec/exit, task_rename         -> KSPAN_TASK
 *   futex  no programs of its own: sched_switch / sched_waking read the
 *          saved syscall registers of the blocking thread and of the waker -> KSPAN_FUTEX_WAIT/_WAKE
 *   futex-syscalls (opt-in) syscalls:sys_{enter,exit}_futex (+ futex2)  -> KSPAN_FUTEX_WAIT/_WAKE
 *   block  tp_btf block_io_start / block_rq_issue / block_rq_complete -> KSPAN_BLOCK_IO
 *   tcp    tp_btf tcp_retransmit_skb                                 -> KSPAN_TCP_RETRANS
 *   cuda   uprobe/uretprobe pairs, attached per library by the loader -> KSPAN_CUDA_CALL
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kspan.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Runtime configuration (struct kspan_cfg in kspan.h). Lives in .bss, which
 * libbpf mmaps: the loader changes it while the programs run. */
struct kspan_cfg cfg;

/* Rings. Sizes are set by the loader before load (kspan.h). */
#define RB_SCHED_BYTES (KSPAN_RING_MB_DEFAULT << 20)
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, RB_SCHED_BYTES); } rb_sched SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, KSPAN_RB_TASK_BYTES(RB_SCHED_BYTES)); } rb_task SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, KSPAN_RB_CUDA_BYTES(RB_SCHED_BYTES)); } rb_cuda SEC(".maps");

/* bpf_ringbuf_reserve failures per ring, reported by the loader as KSPAN_DROPS. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KSPAN_RING_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ring_lost SEC(".maps");

/* Process marks (tgid -> KSPAN_TGID_TARGET | KSPAN_TGID_EXCLUDED). Keyed by
 * tgid so threads that existed before the filter was set count too. With no
 * filter everything but EXCLUDED processes (kspan's own consumer) is captured. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} target_tgids SEC(".maps");

/* cgroup v2 ids (kernfs node ids) capture is scoped to (--cgroup, repeatable;
 * cfg.cgroup_id != 0 turns the scope on). A task is in scope when its cgroup
 * or an ancestor is here: a pod's cgroup covers its containers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KSPAN_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} target_cgroups SEC(".maps");

/* Per-thread state, in task storage: no pid-keyed hash to leak or collide
 * under pid reuse, freed with the task. */
enum fx_kind { FX_NONE = 0, FX_WAIT = 1, FX_WAKE = 2 };

struct tstate {
	/* Hot: read or written by every switch-out, switch-in and waking. The
	 * storage value starts 8 bytes into a cache line: these 56 bytes share it. */
	__u32 named;         /* a KSPAN_TASK NAME was sent for this task */
	__u32 want_gen;      /* cfg.filter_gen + 1 when `want` was computed (0: never) */
	__u32 want;          /* cached want_task() */
	__u32 flags;
	/* off-CPU interval in progress */
	__u64 off_ts;        /* switch-out time, 0 = running / not tracked */
	__u64 runnable_ts;   /* first waking after the block (or switch-out if preempted) */
	__u32 prev_state;
	__u32 out_cpu;
	__u32 waker_pid, waker_tid;
	__u8 fx_regs;        /* registers: fx_* describe the wait of the interval in progress */
	__u8 fx_timeout;     /* registers: the wait had a timeout armed */
	__u8 wk_pending;     /* registers: a futex wake call ended a long block, see wk_* */
	__u8 switched;       /* switched out (or started) under this probe: a switch-in has a known start */
	__u32 waker_cpu;
	/* next line */
	__u32 preempt_pid, preempt_tid;
	__u64 waker_uaddr;
	/* futex wait: from the registers at the blocking switch-out (futex_mode
	 * registers), or the syscall in progress, sys_enter -> sys_exit (futex_mode
	 * syscalls) */
	__u64 fx_uaddr;
	__u32 fx_op;
	__u32 fx_val;
	__u32 fx_owner;
	__u16 fx_owner_src;
	__u8 unseen_reported; /* the snapshot reported it off CPU since before the probe (KSPAN_OFF_START_UNKNOWN) */
	__u8 _pad1;
	/* registers: the futex wake call that ended a long block; its
	 * KSPAN_FUTEX_WAKE goes out with the switch-in (waker = waker_*, word =
	 * waker_uaddr, time = runnable_ts) */
	__u32 wk_op;
	__u64 wk_uaddr2;
	/* syscalls mode only */
	__u64 fx_ts;
	__u64 fx_uaddr2;
	__u32 fx_kind;       /* enum fx_kind */
	__u32 fx_woke_long;  /* this wake call woke a thread blocked >= futex_min_ns */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tstate);
} tstates SEC(".maps");

/* The last blocking switch-out's stack, kept as a ready-made record. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kspan_stack);
} tstacks SEC(".maps");

/* In-flight block requests, keyed by struct request * (survives merges and
 * requeues that break (dev, sector) keys). */
struct io_start {
	__u64 start_ns;
	__u64 issue_ns;
	__u32 pid, tid;
	__u32 flags;
	__u32 _pad;
	char comm[KSPAN_COMM_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_start);
} io_inflight SEC(".maps");

/* CUDA calls in flight, per thread: one slot per API (enum kspan_cuda_api
 * 1..6 -> 0..5, 16..21 -> 6..11), in task storage (no hash update and delete
 * per call, freed with the thread). A nested call of the same API overwrites
 * the outer one's entry, as a (tid, api) key did. */
#define CUDA_SLOTS 12
struct cuda_slots {
	__u64 ts[CUDA_SLOTS];   /* entry time, 0 = none */
	__u64 arg[CUDA_SLOTS];
	__u32 want_gen;         /* cfg.filter_gen + 1 when `want` was computed */
	__u32 want;
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cuda_slots);
} tcuda SEC(".maps");

/* ------------------------------------------------------------------------ */

/*
 * Interrupt context of the current CPU: was a waking (or a TCP retransmit)
 * done by an interrupt rather than by the task it happened to interrupt?
 *
 * The kernel's own answer is the preempt count (in_hardirq(), in_serving_softirq()).
 * - x86-64: it is the per-CPU variable __preempt_count. The usual recipe,
 *   bpf_this_cpu_ptr(&__preempt_count) via a __ksym, needs the symbol in
 *   kallsyms, and this kernel has no CONFIG_KALLSYMS_ALL. But the per-CPU
 *   area's layout is in the kernel BTF (DATASEC .data..percpu), and this CPU's
 *   runqueue is reachable from current (se.cfs_rq->rq, CONFIG_FAIR_GROUP_SCHED):
 *   its address is this CPU's copy of `runqueues`, so this CPU's
 *   __preempt_count is at rq + (offset(__preempt_count) - offset(runqueues)).
 *   The loader computes that delta from BTF (cfg.pc_rq_delta); the address is
 *   kept per CPU after the first use (pc_addrs).
 * - arm64 (and others that keep it there): thread_info.preempt_count of
 *   current, read through a CO-RE flavor so this file builds for either.
 * Fallback (irq_src 0: no delta, no FAIR_GROUP_SCHED): depth counters kept
 * per CPU by the irq/softirq/hrtimer entry/exit tracepoints, attached only then.
 */
#define PC_SOFTIRQ_OFFSET 0x100u      /* serving a softirq (SOFTIRQ_OFFSET) */
#define PC_HARDIRQ_NMI_MASK 0xff0000u /* HARDIRQ_MASK | NMI_MASK */

struct thread_info___pc {
	__u64 preempt_count; /* arm64: union with { u32 count; u32 need_resched; } */
} __attribute__((preserve_access_index));

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

struct irq_depth {
	__s32 hard;
	__s32 soft;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irq_depth);
} irq_depths SEC(".maps");

/* x86: this CPU's &__preempt_count, found once (0 = not yet). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pc_addrs SEC(".maps");

static __always_inline struct irq_depth *irq_depth(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&irq_depths, &zero);
}

static __always_inline __u32 preempt_count_now(struct task_struct *cur)
{
	if (bpf_core_field_exists(struct thread_info___pc, preempt_count))
		return (__u32)((struct thread_info___pc *)&cur->thread_info)->preempt_count;
#ifdef __TARGET_ARCH_x86
	{
		__u32 zero = 0;
		__u64 *addr = bpf_map_lookup_elem(&pc_addrs, &zero);
		struct refcount_struct *pc;

		if (!addr)
			return 0;
		if (!*addr) {
			/* once per CPU: cur runs here, so its cfs_rq's rq is this CPU's */
			struct rq *rq = cur->se.cfs_rq->rq;
			__s64 d = cfg.pc_rq_delta;

			/* bounded, or the verifier refuses the pointer arithmetic */
			if (!rq || !d || d < -(1 << 22) || d > (1 << 22))
				return 0;
			*addr = (__u64)((void *)rq + d);
		}
		/* A read-only cast of the address to any kernel type with an int at
		 * offset 0: a plain load that cannot fault the kernel, no helper call. */
		pc = bpf_rdonly_cast((void *)*addr, bpf_core_type_id_kernel(struct refcount_struct));
		return pc->refs.counter;
	}
#else
	return 0;
#endif
}

static __always_inline __u32 irq_flags(struct task_struct *cur)
{
	if (cfg.irq_src) {
		__u32 pc = preempt_count_now(cur);

		if (pc & PC_HARDIRQ_NMI_MASK)
			return KSPAN_OFF_WAKER_HARDIRQ;
		if (pc & PC_SOFTIRQ_OFFSET)
			return KSPAN_OFF_WAKER_SOFTIRQ;
		return 0;
	} else {
		struct irq_depth *d = irq_depth();

		if (!d)
			return 0;
		if (d->hard > 0)
			return KSPAN_OFF_WAKER_HARDIRQ;
		if (d->soft > 0)
			return KSPAN_OFF_WAKER_SOFTIRQ;
		return 0;
	}
}

/* Depths start at 0 when attached mid-handler: an exit seen first would go
 * negative, so clamp. */
static __always_inline int irq_step(bool hard, int delta)
{
	struct irq_depth *d = irq_depth();

	if (d) {
		__s32 *v = hard ? &d->hard : &d->soft;
		*v = (*v + delta < 0) ? 0 : *v + delta;
	}
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(irq_handler_entry) { return irq_step(true, 1); }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(irq_handler_exit) { return irq_step(true, -1); }
/* hrtimer callbacks (nanosleep, futex and epoll timeouts) run in hard irq. */
SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(hrtimer_expire_entry) { return irq_step(true, 1); }
SEC("tp_btf/hrtimer_expire_exit")
int BPF_PROG(hrtimer_expire_exit) { return irq_step(true, -1); }
SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry) { return irq_step(false, 1); }
SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit) { return irq_step(false, -1); }

static __always_inline bool want_tgid(__u32 tgid)
{
	__u8 *mark;

	if (tgid == cfg.self_tgid)
		return false;
	mark = bpf_map_lookup_elem(&target_tgids, &tgid);
	if (mark)
		return *mark == KSPAN_TGID_TARGET;
	return !cfg.filter_pids;
}

/* The task's cgroup v2 or one of its ancestors (16 levels up) is in target_cgroups. */
static __always_inline bool in_cgroup_scope(struct task_struct *t)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);

	for (int i = 0; i < 16 && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);
		struct cgroup_subsys_state *up;

		if (bpf_map_lookup_elem(&target_cgroups, &id))
			return true;
		up = BPF_CORE_READ(cg, self.parent);
		/* a cgroup's own css (`self`) is its first member */
		cg = up ? container_of(up, struct cgroup, self) : NULL;
	}
	return false;
}

static __always_inline bool want_task(struct task_struct *t)
{
	if (!want_tgid(BPF_CORE_READ(t, tgid)))
		return false;
	if (cfg.cgroup_id && !in_cgroup_scope(t))
		return false;
	return true;
}

/* want_task() cached in the task's state: the filter hash lookup and the
 * cgroup walk run once per task and filter change, not on every switch. */
static __always_inline bool cached_want(struct tstate *s, struct task_struct *t)
{
	__u32 gen = cfg.filter_gen + 1;

	if (s->want_gen != gen) {
		s->want = want_task(t);
		s->want_gen = gen;
	}
	return s->want;
}

static __always_inline void *reserve(void *rb, __u32 ring, __u64 size)
{
	void *rec = bpf_ringbuf_reserve(rb, size, 0);

	if (!rec) {
		__u64 *lost = bpf_map_lookup_elem(&ring_lost, &ring);
		if (lost)
			(*lost)++;
	}
	return rec;
}

/* Tracepoint records: no wakeup per record; the loader drains on a short
 * timer, and we force a wakeup only when a lot has piled up. */
static __always_inline void submit(void *rb, void *rec)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (cfg.wake_bytes && bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) > cfg.wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(rec, flags);
}

static __always_inline void fill_hdr(struct kspan_hdr *h, __u8 kind, __u16 size, __u64 ts,
				     __u32 pid, __u32 tid)
{
	h->size = size;
	h->kind = kind;
	h->magic = KSPAN_REC_MAGIC;
	h->cpu = bpf_get_smp_processor_id();
	h->ts = ts;
	h->pid = pid;
	h->tid = tid;
}

static __always_inline void emit_task(struct task_struct *t, __u32 event, __u32 other_pid,
				      __u32 other_tid, __s32 exit_code, const char *new_comm)
{
	struct kspan_task *r = reserve(&rb_task, KSPAN_RING_TASK, sizeof(*r));

	if (!r)
		return;
	fill_hdr(&r->h, KSPAN_TASK, sizeof(*r), bpf_ktime_get_ns(), BPF_CORE_READ(t, tgid),
		 BPF_CORE_READ(t, pid));
	r->start_time = BPF_CORE_READ(t, start_time);
	r->event = event;
	r->other_pid = other_pid;
	r->other_tid = other_tid;
	r->exit_code = exit_code;
	if (new_comm)
		bpf_probe_read_kernel_str(r->comm, sizeof(r->comm), new_comm);
	else
		BPF_CORE_READ_STR_INTO(&r->comm, t, comm);
	BPF_CORE_READ_STR_INTO(&r->pcomm, t, group_leader, comm);
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* ---------------------------------- futex -------------------------------- */

#define FUTEX_CMD_MASK 127 /* ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) */
#define FUTEX_TID_MASK 0x3fffffff
/* futex2 syscalls are reported with op = FUTEX2_OP | n */
#define FUTEX2_OP 0xffff0000u
#define FUTEX2_WAIT 1
#define FUTEX2_WAKE 2
#define FUTEX2_WAITV 3
#define KSPAN_ETIMEDOUT 110
#define PF_KTHREAD_FLAG 0x00200000

static __always_inline int futex_cmd_kind(__u32 cmd)
{
	switch (cmd) {
	case 0:  /* WAIT */
	case 9:  /* WAIT_BITSET */
	case 11: /* WAIT_REQUEUE_PI */
	case 6:  /* LOCK_PI */
	case 8:  /* TRYLOCK_PI */
	case 13: /* LOCK_PI2 */
		return FX_WAIT;
	case 1:  /* WAKE */
	case 3:  /* REQUEUE */
	case 4:  /* CMP_REQUEUE */
	case 5:  /* WAKE_OP */
	case 7:  /* UNLOCK_PI */
	case 10: /* WAKE_BITSET */
	case 12: /* CMP_REQUEUE_PI */
		return FX_WAKE;
	}
	return FX_NONE;
}

/*
 * Owner of the lock at wait start, where the user-space lock word says:
 * - PI futexes: the word is the owner TID (plus WAITERS/OWNER_DIED bits).
 * - glibc pthread_mutex_t (x86-64): futex word = &__lock, owner TID at +8,
 *   __kind at +16. A heuristic: only believed when the waiter set the word
 *   to 2 (glibc's "locked, waiters") and __kind is a plain mutex type; the
 *   correlator still checks that the TID is a thread of the same process.
 * User memory of `current` (the waiter, in its own syscall), read without
 * faulting: a word paged out reads as no owner.
 */
static __always_inline void futex_owner(struct tstate *s)
{
	__u32 word[5] = {};
	__u32 cmd = s->fx_op & FUTEX_CMD_MASK;
	bool pi = cmd == 6 || cmd == 8 || cmd == 13;

	s->fx_owner = 0;
	s->fx_owner_src = KSPAN_OWNER_NONE;
	if ((s->fx_op & FUTEX2_OP) == FUTEX2_OP || !(pi || ((cmd == 0 || cmd == 9) && s->fx_val == 2)))
		return;
	if (bpf_probe_read_user(word, sizeof(word), (void *)s->fx_uaddr))
		return;
	if (pi) {
		s->fx_owner = word[0] & FUTEX_TID_MASK;
		s->fx_owner_src = s->fx_owner ? KSPAN_OWNER_PI_WORD : KSPAN_OWNER_NONE;
	} else if (word[2] > 0 && word[2] <= FUTEX_TID_MASK && (word[4] & 0x7f) <= 3) {
		s->fx_owner = word[2];
		s->fx_owner_src = KSPAN_OWNER_GLIBC_MUTEX;
	}
}

/*
 * The futex call a task is in, from its saved user registers
 * (bpf_task_pt_regs: the pt_regs at the top of its kernel stack, written at
 * syscall entry). Only meaningful while the task is inside a syscall, which
 * is the case for a task blocking at sched_switch (prev) and for a task-context
 * waker at sched_waking (current): the syscall number register then holds
 * the number (an exception entry leaves an error code there, which no
 * futex number collides with in practice; kernel threads have zeroed regs).
 *
 * Where the architectures differ: which register holds the syscall number
 * and the arguments, and the number of futex(2). The futex2 numbers
 * (futex_waitv 449, futex_wake 454, futex_wait 455) are the same everywhere.
 */
#if defined(__TARGET_ARCH_x86)
/* x86-64: nr in orig_ax (ax becomes the return value); arguments in di, si,
 * dx, r10 (not cx: the syscall instruction clobbers it), r8, r9. */
struct pt_regs___kspan {
	unsigned long di, si, dx, r10, r8, orig_ax;
} __attribute__((preserve_access_index));
#define SC_NR(r) ((long)(r)->orig_ax)
#define SC_ARG1(r) ((r)->di)
#define SC_ARG2(r) ((r)->si)
#define SC_ARG3(r) ((r)->dx)
#define SC_ARG4(r) ((r)->r10)
#define SC_ARG5(r) ((r)->r8)
#define NR_FUTEX 202
/* 32-bit (ia32) syscalls use other registers and numbers: not decoded. */
#define TS_COMPAT_FLAG 0x0002
#define SC_COMPAT(t) ((t)->thread_info.status & TS_COMPAT_FLAG)
#elif defined(__TARGET_ARCH_arm64)
/* arm64: nr in syscallno; arguments in x0..x5, but x0 is overwritten by the
 * return value, orig_x0 keeps the first argument. (AArch32 compat tasks pass
 * r0..r5 in the same slots; their futex(2) number differs and is not matched.) */
struct pt_regs___kspan {
	__u64 regs[31];
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));
#define SC_NR(r) ((long)(r)->syscallno)
#define SC_ARG1(r) ((r)->orig_x0)
#define SC_ARG2(r) ((r)->regs[1])
#define SC_ARG3(r) ((r)->regs[2])
#define SC_ARG4(r) ((r)->regs[3])
#define SC_ARG5(r) ((r)->regs[4])
#define NR_FUTEX 98
#define SC_COMPAT(t) 0
#else
#define KSPAN_NO_SYSCALL_REGS 1 /* other architectures: futex from registers is off (use futex-syscalls) */
#endif
#define NR_FUTEX_WAITV 449
#define NR_FUTEX_WAKE 454
#define NR_FUTEX_WAIT 455

#ifndef KSPAN_NO_SYSCALL_REGS
static __always_inline struct pt_regs___kspan *user_regs(struct task_struct *t)
{
	if (t->flags & PF_KTHREAD_FLAG)
		return 0;
	return (struct pt_regs___kspan *)bpf_task_pt_regs(t);
}
#endif

/* prev, about to block (it is current): is it in a futex wait? Fills s->fx_*. */
static __always_inline bool futex_wait_regs(struct task_struct *t, struct tstate *s)
{
#ifdef KSPAN_NO_SYSCALL_REGS
	return false;
#else
	struct pt_regs___kspan *r = user_regs(t);
	long nr;

	if (!r)
		return false;
	nr = SC_NR(r);
	if (nr == NR_FUTEX) {
		__u32 op = SC_ARG2(r);

		if (futex_cmd_kind(op & FUTEX_CMD_MASK) != FX_WAIT)
			return false;
		s->fx_op = op;
		s->fx_uaddr = SC_ARG1(r);
		s->fx_val = SC_ARG3(r);
		s->fx_timeout = SC_ARG4(r) != 0; /* utime (not for TRYLOCK_PI, which does not sleep) */
	} else if (nr == NR_FUTEX_WAIT) {
		/* futex_wait(uaddr, val, mask, flags, timeout, clockid) */
		s->fx_op = FUTEX2_OP | FUTEX2_WAIT;
		s->fx_uaddr = SC_ARG1(r);
		s->fx_val = SC_ARG2(r);
		s->fx_timeout = SC_ARG5(r) != 0;
	} else if (nr == NR_FUTEX_WAITV) {
		/* futex_waitv(waiters, nr_futexes, flags, timeout, clockid): the
		 * first waiter's word (struct futex_waitv { u64 val; u64 uaddr; ... }) */
		__u64 w[2] = {};

		bpf_probe_read_user(w, sizeof(w), (void *)SC_ARG1(r));
		s->fx_op = FUTEX2_OP | FUTEX2_WAITV;
		s->fx_uaddr = w[1];
		s->fx_val = (__u32)w[0];
		s->fx_timeout = SC_ARG4(r) != 0;
	} else {
		return false;
	}
	if (SC_COMPAT(t))
		return false;
	futex_owner(s);
	return true;
#endif
}

/* The waker (current, task context) at sched_waking: is it in a futex wake
 * call? Then *uaddr (and *uaddr2 for REQUEUE/WAKE_OP) and *op are set. */
static __always_inline bool futex_wake_regs(struct task_struct *t, __u64 *uaddr, __u64 *uaddr2, __u32 *op)
{
#ifdef KSPAN_NO_SYSCALL_REGS
	return false;
#else
	struct pt_regs___kspan *r = user_regs(t);
	long nr;

	if (!r)
		return false;
	nr = SC_NR(r);
	if (nr == NR_FUTEX) {
		*op = SC_ARG2(r);
		if (futex_cmd_kind(*op & FUTEX_CMD_MASK) != FX_WAKE)
			return false;
		*uaddr2 = SC_ARG5(r);
	} else if (nr == NR_FUTEX_WAKE) {
		/* futex_wake(uaddr, mask, nr, flags) */
		*op = FUTEX2_OP | FUTEX2_WAKE;
		*uaddr2 = 0;
	} else {
		return false;
	}
	*uaddr = SC_ARG1(r);
	return !SC_COMPAT(t);
#endif
}

/* ---------------------------------- sched -------------------------------- */

/*
 * What a switch-in emits, as one ring sample of up to three records (one
 * reserve, one submit; the reader splits them by hdr.size):
 *   KSPAN_OFFCPU       the off-CPU interval, if >= offcpu_min_ns
 *   KSPAN_FUTEX_WAIT   (registers) the futex wait it was blocked in, if >= futex_min_ns,
 *                      over the same interval; ret inferred from who woke it
 *   KSPAN_FUTEX_WAKE   (registers) the futex wake call that ended it, if pending
 * Each record's h.ts is the switch-in (the time it is written: the DRAINED
 * watermark stays true); the wake's start_ns is the waking itself.
 */
#define SZ_OFF sizeof(struct kspan_offcpu)
#define SZ_FW sizeof(struct kspan_futex_wait)
#define SZ_FK sizeof(struct kspan_futex_wake)

static __always_inline void fill_offcpu(struct kspan_offcpu *r, struct tstate *s, __u64 now, __u32 pid,
					__u32 tid, __u32 last_pid, __u32 last_tid)
{
	fill_hdr(&r->h, KSPAN_OFFCPU, SZ_OFF, now, pid, tid);
	r->start_ns = s->off_ts;
	/* No waking seen (woken before we tracked it): all blocked. */
	r->runnable_ns = s->runnable_ts ? s->runnable_ts : now;
	r->waker_uaddr = s->waker_uaddr;
	r->prev_state = s->prev_state;
	r->flags = s->flags;
	r->waker_pid = s->waker_pid;
	r->waker_tid = s->waker_tid;
	r->waker_cpu = s->waker_cpu;
	r->preempt_pid = s->preempt_pid;
	r->preempt_tid = s->preempt_tid;
	r->last_pid = last_pid;
	r->last_tid = last_tid;
	r->out_cpu = s->out_cpu;
}

/* The return value is in no register yet: inferred from who woke it. */
static __always_inline void fill_futex_wait(struct kspan_futex_wait *r, struct tstate *s, __u64 now, __u32 pid,
					    __u32 tid)
{
	__u32 fl = s->flags;

	fill_hdr(&r->h, KSPAN_FUTEX_WAIT, SZ_FW, now, pid, tid);
	r->start_ns = s->off_ts;
	r->uaddr = s->fx_uaddr;
	r->op = s->fx_op;
	r->val = s->fx_val;
	r->owner_tid = s->fx_owner;
	r->owner_src = s->fx_owner_src;
	if (fl & KSPAN_OFF_WAKER_FUTEX) {
		/* woken by a futex wake call: the wait returns 0 */
		r->ret = 0;
		r->flags = KSPAN_FUTEX_FROM_REGS | KSPAN_FUTEX_RET_INFERRED;
	} else if ((fl & (KSPAN_OFF_WAKER_HARDIRQ | KSPAN_OFF_WAKER_SOFTIRQ)) && s->fx_timeout) {
		/* woken from interrupt context with a timeout armed: the timer */
		r->ret = -KSPAN_ETIMEDOUT;
		r->flags = KSPAN_FUTEX_FROM_REGS | KSPAN_FUTEX_RET_INFERRED;
	} else {
		r->ret = 0;
		r->flags = KSPAN_FUTEX_FROM_REGS | KSPAN_FUTEX_RET_UNKNOWN;
	}
}

static __always_inline void fill_futex_wake(struct kspan_futex_wake *r, struct tstate *s, __u64 now)
{
	fill_hdr(&r->h, KSPAN_FUTEX_WAKE, SZ_FK, now, s->waker_pid, s->waker_tid);
	r->start_ns = s->runnable_ts;
	r->uaddr = s->waker_uaddr;
	r->uaddr2 = s->wk_uaddr2;
	r->op = s->wk_op;
	r->ret = 1;
}

static __always_inline void emit_switch_in(struct tstate *s, __u64 now, __u32 pid, __u32 tid, __u32 last_pid,
					   __u32 last_tid)
{
	__u64 d = now - s->off_ts;
	__u32 m = 0, n;
	void *rec = 0, *p;

	if (d >= cfg.offcpu_min_ns)
		m |= 1;
	if (s->fx_regs && d >= cfg.futex_min_ns)
		m |= 2;
	if (s->wk_pending)
		m |= 4;
	/* the ring needs a constant size per reserve */
	switch (m) {
	case 1: rec = bpf_ringbuf_reserve(&rb_sched, SZ_OFF, 0); break;
	case 2: rec = bpf_ringbuf_reserve(&rb_sched, SZ_FW, 0); break;
	case 3: rec = bpf_ringbuf_reserve(&rb_sched, SZ_OFF + SZ_FW, 0); break;
	case 4: rec = bpf_ringbuf_reserve(&rb_sched, SZ_FK, 0); break;
	case 5: rec = bpf_ringbuf_reserve(&rb_sched, SZ_OFF + SZ_FK, 0); break;
	case 6: rec = bpf_ringbuf_reserve(&rb_sched, SZ_FW + SZ_FK, 0); break;
	case 7: rec = bpf_ringbuf_reserve(&rb_sched, SZ_OFF + SZ_FW + SZ_FK, 0); break;
	default: return;
	}
	if (!rec) {
		__u32 ring = KSPAN_RING_SCHED;
		__u64 *lost = bpf_map_lookup_elem(&ring_lost, &ring);

		n = (m & 1) + ((m >> 1) & 1) + ((m >> 2) & 1);
		if (lost)
			*lost += n;
		return;
	}
	p = rec;
	if (m & 1) {
		fill_offcpu(p, s, now, pid, tid, last_pid, last_tid);
		p += SZ_OFF;
	}
	if (m & 2) {
		fill_futex_wait(p, s, now, pid, tid);
		p += SZ_FW;
	}
	if (m & 4)
		fill_futex_wake(p, s, now);
	submit(&rb_sched, rec);
}

/* Stack of t at its blocking switch-out (t is current here): user frames,
 * then kernel frames right after them, so the record is dense. Kept in task
 * storage until the switch-in says whether the block was long enough. */
static __always_inline void take_stack(void *ctx, struct task_struct *t, __u64 now)
{
	struct kspan_stack *st = bpf_task_storage_get(&tstacks, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	long n;
	__u32 nu;

	if (!st)
		return;
	st->start_ns = now;
	st->n_user = st->n_kernel = 0;
	n = bpf_get_stack(ctx, st->ips, KSPAN_MAX_STACK * sizeof(__u64), BPF_F_USER_STACK);
	nu = n > 0 ? n / sizeof(__u64) : 0;
	asm volatile("" : "+r"(nu)); /* keep the bound check below visible to the verifier */
	if (nu > KSPAN_MAX_STACK)
		return;
	st->n_user = nu;
	n = bpf_get_stack(ctx, &st->ips[nu], KSPAN_MAX_STACK * sizeof(__u64), 0);
	st->n_kernel = n > 0 ? n / sizeof(__u64) : 0;
}

/* Emit the stored stack of t if it belongs to the interval that began at
 * start_ns; the record is cut after the last frame. */
static __always_inline void emit_stack(struct task_struct *t, __u64 start_ns, __u64 now,
				       __u32 pid, __u32 tid)
{
	struct kspan_stack *st = bpf_task_storage_get(&tstacks, t, 0, 0);
	__u32 n, size;

	if (!st || st->start_ns != start_ns)
		return;
	n = st->n_user + st->n_kernel;
	if (n > 2 * KSPAN_MAX_STACK)
		n = 2 * KSPAN_MAX_STACK;
	size = offsetof(struct kspan_stack, ips) + n * sizeof(__u64);
	/* Bound it where the verifier can see it (the compiler may fold the
	 * clamp above into something it cannot track). */
	asm volatile("" : "+r"(size));
	if (size > sizeof(*st))
		return;
	fill_hdr(&st->h, KSPAN_STACK, size, now, pid, tid);
	if (bpf_ringbuf_output(&rb_sched, st, size, BPF_RB_NO_WAKEUP)) {
		__u32 ring = KSPAN_RING_SCHED;
		__u64 *lost = bpf_map_lookup_elem(&ring_lost, &ring);
		if (lost)
			(*lost)++;
	}
	st->start_ns = 0;
}

#define TASK_RUNNING_STATE 0x0000
#define TASK_REPORT_BLOCK (0x0001 | 0x0002) /* INTERRUPTIBLE | UNINTERRUPTIBLE */
#define TASK_DEAD_STATE 0x0080
#define TASK_INTERRUPTIBLE_STATE 0x0001

/*
 * A task's first switch-in under this probe with no switch-out before it: it
 * was off CPU (blocked or runnable) since before the programs were attached.
 * Without a record its wait would read as "on CPU" from the capture's start,
 * so it gets one with start = the probe's start and KSPAN_OFF_START_UNKNOWN:
 * off CPU, kind unknown. Once per task.
 */
static __always_inline void first_switch_in(struct task_struct *next, __u64 now, __u32 cpu, __u32 pid, __u32 tid,
					    __u32 last_pid, __u32 last_tid)
{
	struct tstate *s = bpf_task_storage_get(&tstates, next, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	struct kspan_offcpu *r;
	__u64 since = cfg.since_ns;

	if (!s)
		return;
	s->switched = 1;
	if (!since || now <= since || now - since < cfg.offcpu_min_ns || !cached_want(s, next))
		return;
	r = reserve(&rb_sched, KSPAN_RING_SCHED, SZ_OFF);
	if (!r)
		return;
	__builtin_memset((void *)r + sizeof(r->h), 0, SZ_OFF - sizeof(r->h));
	fill_hdr(&r->h, KSPAN_OFFCPU, SZ_OFF, now, pid, tid);
	r->start_ns = since;
	r->runnable_ns = now;
	r->flags = KSPAN_OFF_START_UNKNOWN;
	r->last_pid = last_pid;
	r->last_tid = last_tid;
	r->out_cpu = cpu;
	submit(&rb_sched, r);
}

/*
 * sched_switch(preempt, prev, next, prev_state). `current` is prev here.
 * preempt=true: involuntary, prev stays runnable, no wakeup will follow: the
 *   whole gap is runqueue time and `next` is who took the CPU.
 * prev_state is the kernel's own snapshot of prev->__state; re-reading
 *   __state here would race with a concurrent wakeup.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 prev_tid = prev->pid, prev_tgid = prev->tgid;
	__u32 next_tid = next->pid, next_tgid = next->tgid;
	struct tstate *s;

	/* --- prev switches out (skip the idle task) */
	if (prev_tid) {
		s = bpf_task_storage_get(&tstates, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (s) {
			s->switched = 1;
			/* Name every task that ever runs once, filtered or not:
			 * wakers and preemptors need names too. */
			if (!s->named) {
				s->named = 1;
				emit_task(prev, KSPAN_TASK_NAME, 0, 0, 0, 0);
			}
			if (!(prev_state & TASK_DEAD_STATE) && cached_want(s, prev)) {
				s->off_ts = now;
				s->prev_state = prev_state;
				s->out_cpu = cpu;
				s->waker_pid = s->waker_tid = s->waker_cpu = 0;
				s->waker_uaddr = 0;
				s->wk_pending = 0;
				s->fx_regs = 0;
				s->preempt_pid = next_tgid;
				s->preempt_tid = next_tid;
				if (preempt) {
					s->flags = KSPAN_OFF_PREEMPTED;
					s->runnable_ts = now;
				} else if ((prev_state & 0xff) == TASK_RUNNING_STATE) {
					s->flags = KSPAN_OFF_RESCHED;
					s->runnable_ts = now;
				} else {
					__u32 fl = 0;

					if (cfg.futex_mode == KSPAN_FUTEX_MODE_REGS) {
						/* blocking inside a futex wait: say so, and
						 * keep the call for the record at switch-in
						 * (futex waits sleep TASK_INTERRUPTIBLE: D-state
						 * blocks are not looked at) */
						if ((prev_state & TASK_INTERRUPTIBLE_STATE) && futex_wait_regs(prev, s)) {
							s->fx_regs = 1;
							fl = KSPAN_OFF_IN_FUTEX;
						}
					} else if (cfg.futex_mode == KSPAN_FUTEX_MODE_SYSCALLS && s->fx_kind == FX_WAIT) {
						fl = KSPAN_OFF_IN_FUTEX;
					}
					s->flags = fl;
					s->runnable_ts = 0;
					if (cfg.stacks && (prev_state & TASK_REPORT_BLOCK)) {
						take_stack(ctx, prev, now);
						s->flags |= KSPAN_OFF_HAS_STACK;
					}
				}
			} else {
				s->off_ts = 0;
			}
		}
	}

	/* --- next switches in */
	if (!next_tid)
		return 0;
	s = bpf_task_storage_get(&tstates, next, 0, 0);
	if (!s || !s->switched) {
		first_switch_in(next, now, cpu, next_tgid, next_tid, prev_tgid, prev_tid);
		return 0;
	}
	if (!s->off_ts)
		return 0;
	emit_switch_in(s, now, next_tgid, next_tid, prev_tgid, prev_tid);
	if ((s->flags & KSPAN_OFF_HAS_STACK) && now - s->off_ts >= cfg.stack_min_ns)
		emit_stack(next, s->off_ts, now, next_tgid, next_tid);
	s->off_ts = 0;
	return 0;
}

/*
 * sched_waking(p) runs in the waker's context (sched_wakeup may run on the
 * target CPU after an IPI, where current is unrelated), so current is the
 * waker, unless we are in an interrupt. The first waking after a block ends
 * the blocked part; later ones (already runnable) are ignored.
 */
SEC("tp_btf/sched_waking")
int BPF_PROG(sched_waking, struct task_struct *p)
{
	struct task_struct *cur;
	struct tstate *s;
	__u64 now;

	s = bpf_task_storage_get(&tstates, p, 0, 0);
	if (!s || !s->off_ts || s->runnable_ts)
		return 0;
	s->runnable_ts = now = bpf_ktime_get_ns();
	cur = bpf_get_current_task_btf();
	s->waker_pid = cur->tgid;
	s->waker_tid = cur->pid;
	s->waker_cpu = bpf_get_smp_processor_id();
	s->flags |= KSPAN_OFF_WOKEN | irq_flags(cur);
	if (s->flags & (KSPAN_OFF_WAKER_HARDIRQ | KSPAN_OFF_WAKER_SOFTIRQ))
		return 0;
	/* futex_wake() -> wake_up_q() runs in the FUTEX_WAKE caller: join the
	 * wakeup to the lock word that caller was releasing. Only a thread
	 * blocked in a futex wait can be woken by a futex wake call: the
	 * waker's registers are read for those alone. */
	if (cfg.futex_mode == KSPAN_FUTEX_MODE_REGS) {
		__u64 uaddr, uaddr2;
		__u32 op;

		if (!s->fx_regs || !futex_wake_regs(cur, &uaddr, &uaddr2, &op))
			return 0;
		/* REQUEUE / WAKE_OP name two words: the woken thread's is the one */
		if (uaddr2 && s->fx_uaddr == uaddr2) {
			uaddr2 = uaddr;
			uaddr = s->fx_uaddr;
		}
		s->flags |= KSPAN_OFF_WAKER_FUTEX;
		s->waker_uaddr = uaddr;
		/* its record goes out with the woken thread's switch-in */
		if (now - s->off_ts >= cfg.futex_min_ns && want_task(cur)) {
			s->wk_pending = 1;
			s->wk_op = op;
			s->wk_uaddr2 = uaddr2;
		}
	} else if (cfg.futex_mode == KSPAN_FUTEX_MODE_SYSCALLS) {
		struct tstate *ws = bpf_task_storage_get(&tstates, cur, 0, 0);

		if (ws && ws->fx_kind == FX_WAKE) {
			s->flags |= KSPAN_OFF_WAKER_FUTEX;
			s->waker_uaddr = ws->fx_uaddr;
			if (now - s->off_ts >= cfg.futex_min_ns)
				ws->fx_woke_long = 1;
		}
	}
	return 0;
}

/* A new task is runnable from here until its first switch-in. */
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	struct tstate *s;
	__u64 now, id;

	if (!want_task(p))
		return 0;
	s = bpf_task_storage_get(&tstates, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	now = bpf_ktime_get_ns();
	id = bpf_get_current_pid_tgid();
	s->off_ts = now;
	s->runnable_ts = now;
	s->prev_state = 0;
	s->flags = KSPAN_OFF_NEW | KSPAN_OFF_WOKEN;
	s->waker_pid = id >> 32;
	s->waker_tid = (__u32)id;
	s->waker_cpu = bpf_get_smp_processor_id();
	s->waker_uaddr = 0;
	s->preempt_pid = s->preempt_tid = 0;
	s->out_cpu = s->waker_cpu;
	s->switched = 1;
	return 0;
}

/*
 * Blocked-task snapshot (struct kspan_blocked in kspan.h): the probe runs this
 * walk over every task right before it writes a watermark. An interval is
 * recorded at its switch-in, so without it a thread still off CPU at the
 * watermark (a lock holder, an idle worker of a process join) reads as on CPU.
 * Reported: long intervals the previous snapshot did not report (they began,
 * or reached offcpu_min_ns, since), and intervals woken but still waiting for
 * a CPU (runnable_ts != 0; preempted tasks too). The rest was reported before
 * and is still blocked, not woken. And once per task, one that has not
 * switched under this probe and is not on a CPU: off CPU since before the
 * probe attached (KSPAN_OFF_START_UNKNOWN, from cfg.since_ns; its first
 * switch-in writes the interval). Reads of another CPU's task state race
 * with its switch-in; the reader prefers the switch-in record when both come.
 */
static __always_inline int snapshot_unseen(struct bpf_iter__task *ctx, struct task_struct *t, struct tstate *s,
					   __u64 now)
{
	struct kspan_blocked r;
	__u64 since = cfg.since_ns;

	if (t->on_cpu || !since || now <= since || now - since < cfg.offcpu_min_ns)
		return 0;
	if (!s) {
		if (!want_task(t))
			return 0;
		s = bpf_task_storage_get(&tstates, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!s)
			return 0;
	}
	if (s->unseen_reported || !cached_want(s, t))
		return 0;
	s->unseen_reported = 1;
	/* it has not run under the probe, so it was never named: readers name it from this */
	if (!s->named) {
		s->named = 1;
		emit_task(t, KSPAN_TASK_NAME, 0, 0, 0, 0);
	}
	__builtin_memset(&r, 0, sizeof(r));
	fill_hdr(&r.h, KSPAN_BLOCKED, sizeof(r), now, t->tgid, t->pid);
	r.start_ns = since;
	r.flags = KSPAN_OFF_START_UNKNOWN;
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("iter/task")
int snapshot_blocked(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	struct kspan_blocked r;
	struct tstate *s;
	__u64 now = cfg.snap_now_ns, off, rn;

	if (!t)
		return 0;
	s = bpf_task_storage_get(&tstates, t, 0, 0);
	if (!s || !s->switched)
		return snapshot_unseen(ctx, t, s, now);
	off = s->off_ts;
	rn = s->runnable_ts;
	if (!off || off >= now || now - off < cfg.offcpu_min_ns)
		return 0;
	if (!rn && off + cfg.offcpu_min_ns <= cfg.snap_prev_ns)
		return 0; /* long at the previous snapshot already, and not woken since */
	__builtin_memset(&r, 0, sizeof(r));
	fill_hdr(&r.h, KSPAN_BLOCKED, sizeof(r), now, t->tgid, t->pid);
	r.h.cpu = s->out_cpu;
	r.start_ns = off;
	r.runnable_ns = rn;
	r.prev_state = s->prev_state;
	r.flags = s->flags;
	r.waker_pid = s->waker_pid;
	r.waker_tid = s->waker_tid;
	r.preempt_pid = s->preempt_pid;
	r.preempt_tid = s->preempt_tid;
	if (r.flags & KSPAN_OFF_IN_FUTEX) {
		r.uaddr = s->fx_uaddr;
		r.op = s->fx_op;
		r.val = s->fx_val;
		r.owner_tid = s->fx_owner;
		r.owner_src = s->fx_owner_src;
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* ---------------------------------- task --------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;

	/* Follow: a new process (not a thread) forked by a target is a target. */
	if (cfg.follow && cfg.filter_pids && ctgid != ptgid) {
		__u8 *mark = bpf_map_lookup_elem(&target_tgids, &ptgid);
		if (mark && *mark == KSPAN_TGID_TARGET)
			bpf_map_update_elem(&target_tgids, &ctgid, mark, BPF_ANY);
	}
	if (want_task(child))
		emit_task(child, KSPAN_TASK_FORK, ptgid, parent->pid, 0, 0);
	return 0;
}

/* A task outside the filter that was named (it ran, so it may be a waker or
 * the task that took the CPU) gets its new name too: after exec, or a rename. */
static __always_inline void rename_named(struct task_struct *t, const char *comm)
{
	struct tstate *s = bpf_task_storage_get(&tstates, t, 0, 0);

	if (s && s->named)
		emit_task(t, KSPAN_TASK_NAME, 0, 0, 0, comm);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (want_task(p))
		emit_task(p, KSPAN_TASK_EXEC, 0, old_pid, 0, 0);
	else
		rename_named(p, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p, bool group_dead)
{
	__u32 tgid = p->tgid;

	if (want_task(p))
		emit_task(p, KSPAN_TASK_EXIT, 0, 0, p->exit_code, 0);
	/* A pid filter names a process, not a number: once the process is gone
	 * a reused pid must not be captured. */
	if (group_dead)
		bpf_map_delete_elem(&target_tgids, &tgid);
	return 0;
}

SEC("tp_btf/task_rename")
int BPF_PROG(task_rename, struct task_struct *task, const char *comm)
{
	if (want_task(task))
		emit_task(task, KSPAN_TASK_RENAME, 0, 0, 0, comm);
	else
		rename_named(task, comm);
	return 0;
}

/* A task moved to another cgroup (a container's first process enters its
 * cgroup, then execs the workload): decisions cached under the old cgroup are
 * stale. Moves are rare: a new filter generation makes every task decide
 * again. Only while capture is scoped to cgroups. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(cgroup_attach_task, struct cgroup *dst_cgrp, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	if (cfg.cgroup_id)
		__sync_fetch_and_add(&cfg.filter_gen, 1);
	return 0;
}

/* ------------------------- futex-syscalls (opt-in) ----------------------- */

/*
 * The exact source: syscall entry and exit. While any of these is attached,
 * every syscall of every task takes the kernel's traced slow path, so they
 * are an opt-in group; the default futex source is the registers above.
 */

/* syscalls:sys_enter_* record: common header, syscall nr, then the args. */
struct syscall_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};
struct syscall_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

static __always_inline struct tstate *futex_enter(__u64 uaddr, __u64 uaddr2, __u32 op, __u32 val,
						  int kind)
{
	struct task_struct *cur;
	struct tstate *s;

	if (kind == FX_NONE)
		return 0;
	cur = bpf_get_current_task_btf();
	s = bpf_task_storage_get(&tstates, cur, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s || !cached_want(s, cur))
		return 0;
	s->fx_ts = bpf_ktime_get_ns();
	s->fx_uaddr = uaddr;
	s->fx_uaddr2 = uaddr2;
	s->fx_op = op;
	s->fx_val = val;
	s->fx_kind = kind;
	s->fx_woke_long = 0;
	s->fx_owner = 0;
	s->fx_owner_src = KSPAN_OWNER_NONE;
	return s;
}

SEC("tracepoint/syscalls/sys_enter_futex")
int sys_enter_futex(struct syscall_enter_ctx *ctx)
{
	__u32 op = ctx->args[1];
	struct tstate *s = futex_enter(ctx->args[0], ctx->args[4], op, ctx->args[2], futex_cmd_kind(op & FUTEX_CMD_MASK));

	if (s && s->fx_kind == FX_WAIT)
		futex_owner(s);
	return 0;
}

/* futex_wait(uaddr, val, mask, flags, timeout, clockid) */
SEC("tracepoint/syscalls/sys_enter_futex_wait")
int sys_enter_futex_wait(struct syscall_enter_ctx *ctx)
{
	futex_enter(ctx->args[0], 0, FUTEX2_OP | FUTEX2_WAIT, ctx->args[1], FX_WAIT);
	return 0;
}

/* futex_wake(uaddr, mask, nr, flags) */
SEC("tracepoint/syscalls/sys_enter_futex_wake")
int sys_enter_futex_wake(struct syscall_enter_ctx *ctx)
{
	futex_enter(ctx->args[0], 0, FUTEX2_OP | FUTEX2_WAKE, 0, FX_WAKE);
	return 0;
}

/* futex_waitv(waiters, nr_futexes, flags, timeout, clockid): report the
 * first waiter's word (struct futex_waitv { u64 val; u64 uaddr; ... }). */
SEC("tracepoint/syscalls/sys_enter_futex_waitv")
int sys_enter_futex_waitv(struct syscall_enter_ctx *ctx)
{
	__u64 w[2] = {};

	bpf_probe_read_user(w, sizeof(w), (void *)ctx->args[0]);
	futex_enter(w[1], 0, FUTEX2_OP | FUTEX2_WAITV, (__u32)w[0], FX_WAIT);
	return 0;
}

static __always_inline int futex_exit(struct syscall_exit_ctx *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct tstate *s = bpf_task_storage_get(&tstates, cur, 0, 0);
	__u64 now = bpf_ktime_get_ns(), id;

	if (!s || !s->fx_ts)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (s->fx_kind == FX_WAIT && now - s->fx_ts >= cfg.futex_min_ns) {
		struct kspan_futex_wait *r = reserve(&rb_sched, KSPAN_RING_SCHED, sizeof(*r));
		if (r) {
			fill_hdr(&r->h, KSPAN_FUTEX_WAIT, sizeof(*r), now, id >> 32, (__u32)id);
			r->start_ns = s->fx_ts;
			r->uaddr = s->fx_uaddr;
			r->op = s->fx_op;
			r->ret = ctx->ret;
			r->val = s->fx_val;
			r->owner_tid = s->fx_owner;
			r->owner_src = s->fx_owner_src;
			r->flags = 0;
			submit(&rb_sched, r);
		}
	} else if (s->fx_kind == FX_WAKE && s->fx_woke_long) {
		/* Only wakes that ended a wait long enough to be reported: a wake
		 * of nobody, or of a thread that barely slept, explains nothing
		 * (and futex ping-pong would otherwise flood the ring). */
		struct kspan_futex_wake *r = reserve(&rb_sched, KSPAN_RING_SCHED, sizeof(*r));
		if (r) {
			fill_hdr(&r->h, KSPAN_FUTEX_WAKE, sizeof(*r), now, id >> 32, (__u32)id);
			r->start_ns = s->fx_ts;
			r->uaddr = s->fx_uaddr;
			r->uaddr2 = s->fx_uaddr2;
			r->op = s->fx_op;
			r->ret = ctx->ret;
			submit(&rb_sched, r);
		}
	}
	s->fx_ts = 0;
	s->fx_kind = FX_NONE;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_futex")
int sys_exit_futex(struct syscall_exit_ctx *ctx) { return futex_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_futex_wait")
int sys_exit_futex_wait(struct syscall_exit_ctx *ctx) { return futex_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_futex_wake")
int sys_exit_futex_wake(struct syscall_exit_ctx *ctx) { return futex_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_futex_waitv")
int sys_exit_futex_waitv(struct syscall_exit_ctx *ctx) { return futex_exit(ctx); }

/* ---------------------------------- block -------------------------------- */

static __always_inline __u32 io_flags(struct request *rq)
{
	__u32 opf = BPF_CORE_READ(rq, cmd_flags);
	__u32 op = opf & 0xff; /* REQ_OP_MASK */
	__u32 f = 0;

	if (op == bpf_core_enum_value(enum req_op, REQ_OP_WRITE) ||
	    op == bpf_core_enum_value(enum req_op, REQ_OP_WRITE_ZEROES))
		f |= KSPAN_IO_WRITE;
	if (op == bpf_core_enum_value(enum req_op, REQ_OP_FLUSH))
		f |= KSPAN_IO_FLUSH | KSPAN_IO_WRITE;
	if (op == bpf_core_enum_value(enum req_op, REQ_OP_DISCARD))
		f |= KSPAN_IO_DISCARD;
	if (opf & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_SYNC)))
		f |= KSPAN_IO_SYNC;
	if (opf & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_META)))
		f |= KSPAN_IO_META;
	if (opf & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_FUA)))
		f |= KSPAN_IO_FUA;
	if (opf & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_PREFLUSH)))
		f |= KSPAN_IO_FLUSH;
	return f;
}

static __always_inline void io_track(struct request *rq, __u64 now, bool issue)
{
	struct io_start v = {};
	__u64 key = (__u64)rq, id = bpf_get_current_pid_tgid();

	if (!want_tgid(id >> 32))
		return;
	v.start_ns = now;
	v.issue_ns = issue ? now : 0;
	v.pid = id >> 32;
	v.tid = (__u32)id;
	v.flags = issue ? KSPAN_IO_ISSUER_GUESSED : 0;
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	bpf_map_update_elem(&io_inflight, &key, &v, BPF_ANY);
}

/* block_io_start fires from blk_account_io_start() on the submission path,
 * in the submitter's context: current is the issuer. (block_rq_issue runs at
 * driver dispatch, possibly from kblockd or another task's plug flush.) */
SEC("tp_btf/block_io_start")
int BPF_PROG(block_io_start, struct request *rq)
{
	io_track(rq, bpf_ktime_get_ns(), false);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();
	struct io_start *v = bpf_map_lookup_elem(&io_inflight, &key);

	if (v)
		v->issue_ns = now;
	else
		io_track(rq, now, true); /* e.g. flush requests never accounted */
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();
	struct io_start *v = bpf_map_lookup_elem(&io_inflight, &key);
	struct kspan_block_io *r;
	struct block_device *part;
	struct gendisk *disk;

	if (!v)
		return 0;
	r = reserve(&rb_sched, KSPAN_RING_SCHED, sizeof(*r));
	if (r) {
		fill_hdr(&r->h, KSPAN_BLOCK_IO, sizeof(*r), now, v->pid, v->tid);
		r->start_ns = v->start_ns;
		r->issue_ns = v->issue_ns;
		r->sector = BPF_CORE_READ(rq, __sector);
		part = BPF_CORE_READ(rq, part);
		if (part) {
			r->dev = BPF_CORE_READ(part, bd_dev);
		} else {
			disk = BPF_CORE_READ(rq, q, disk);
			r->dev = disk ? ((__u32)BPF_CORE_READ(disk, major) << 20) |
					BPF_CORE_READ(disk, first_minor) : 0;
		}
		r->bytes = nr_bytes;
		r->flags = io_flags(rq) | v->flags;
		r->error = error;
		__builtin_memcpy(r->comm, v->comm, sizeof(r->comm));
		submit(&rb_sched, r);
	}
	bpf_map_delete_elem(&io_inflight, &key);
	return 0;
}

/* ----------------------------------- tcp --------------------------------- */

/* Fires mostly from the retransmit timer (softirq): current is not the
 * socket's owner, so the record carries the 4-tuple to join on. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb, int err)
{
	struct kspan_tcp_retrans *r;
	__u64 id = bpf_get_current_pid_tgid();
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family != 2 && family != 10)
		return 0;
	r = reserve(&rb_sched, KSPAN_RING_SCHED, sizeof(*r));
	if (!r)
		return 0;
	fill_hdr(&r->h, KSPAN_TCP_RETRANS, sizeof(*r), bpf_ktime_get_ns(), id >> 32, (__u32)id);
	__builtin_memset(r->saddr, 0, sizeof(r->saddr));
	__builtin_memset(r->daddr, 0, sizeof(r->daddr));
	if (family == 2) {
		bpf_core_read(r->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(r->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(r->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(r->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	r->family = family;
	r->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	r->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	r->in_irq = irq_flags(bpf_get_current_task_btf()) ? 1 : 0;
	r->err = err;
	r->_pad = 0;
	/* The socket's inode: /proc/PID/fd/N -> socket:[ino] names its owner. */
	r->sock_ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	submit(&rb_sched, r);
	return 0;
}

/* ----------------------------------- cuda -------------------------------- */

/* One entry/return program pair per API (the API id is baked into the
 * program); the loader attaches each to every symbol variant it finds.
 * Records go out with BPF_RB_NO_WAKEUP: on this kernel, waking the consumer
 * from uprobe context makes the uprobes stop firing after a few hundred hits. */
static __always_inline int cuda_slot(__u32 api)
{
	return api < 16 ? api - 1 : api - 10;
}

static __always_inline int cuda_enter(__u32 api, __u64 arg)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct cuda_slots *c = bpf_task_storage_get(&tcuda, cur, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u32 gen = cfg.filter_gen + 1;
	int i = cuda_slot(api);

	if (!c || i < 0 || i >= CUDA_SLOTS)
		return 0;
	if (c->want_gen != gen) {
		c->want = want_tgid(cur->tgid);
		c->want_gen = gen;
	}
	if (!c->want)
		return 0;
	c->ts[i] = bpf_ktime_get_ns();
	c->arg[i] = arg;
	return 0;
}

static __always_inline int cuda_return(__u32 api, long rc)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct cuda_slots *c = bpf_task_storage_get(&tcuda, cur, 0, 0);
	struct kspan_cuda_call *r;
	int i = cuda_slot(api);
	__u64 ts;

	if (!c || i < 0 || i >= CUDA_SLOTS)
		return 0;
	ts = c->ts[i];
	if (!ts)
		return 0;
	c->ts[i] = 0;
	r = reserve(&rb_cuda, KSPAN_RING_CUDA, sizeof(*r));
	if (r) {
		fill_hdr(&r->h, KSPAN_CUDA_CALL, sizeof(*r), bpf_ktime_get_ns(), cur->tgid, cur->pid);
		r->start_ns = ts;
		r->arg = c->arg[i];
		r->api = api;
		r->ret = (__s32)rc;
		bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	}
	return 0;
}

/* The 8-byte word at sp + 8 * n at function entry (x86-64: n = 0 is the
 * return address, stack arguments start at 1; arm64: they start at 0). */
static __always_inline __u64 stack_arg(struct pt_regs *ctx, int n)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 * n));
	return v;
}

/* The stream argument of the launch calls: where it is depends on the ABI. */
#if defined(__TARGET_ARCH_x86)
/* SysV: six register arguments, each dim3 takes two */
#define CUDA_LAUNCH_STREAM(ctx) stack_arg(ctx, 2)
#define CU_LAUNCH_STREAM(ctx) stack_arg(ctx, 3)
#elif defined(__TARGET_ARCH_arm64)
/* AAPCS64: eight register arguments (x0..x7), each dim3 takes two */
#define CUDA_LAUNCH_STREAM(ctx) (__PT_REGS_CAST(ctx)->regs[7])
#define CU_LAUNCH_STREAM(ctx) stack_arg(ctx, 0)
#else
/* other ABIs: not read (0); `kspan doctor` says so */
#define CUDA_LAUNCH_STREAM(ctx) 0
#define CU_LAUNCH_STREAM(ctx) 0
#endif

#define CUDA_PROBE(name, api, argexpr)                                   \
	SEC("uprobe")                                                    \
	int BPF_KPROBE(name##_enter) { return cuda_enter(api, (__u64)(argexpr)); } \
	SEC("uretprobe")                                                 \
	int BPF_KRETPROBE(name##_return, long rc) { return cuda_return(api, rc); }

/* cudaLaunchKernel(func, dim3 grid, dim3 block, args, sharedMem, stream): each
 * dim3 takes two registers, so on x86-64 sharedMem and stream are on the stack. */
CUDA_PROBE(cuda_launch_kernel, KSPAN_CUDA_LAUNCH_KERNEL, CUDA_LAUNCH_STREAM(ctx)) /* stream */
CUDA_PROBE(cuda_memcpy, KSPAN_CUDA_MEMCPY, PT_REGS_PARM3(ctx))                 /* count */
CUDA_PROBE(cuda_memcpy_async, KSPAN_CUDA_MEMCPY_ASYNC, PT_REGS_PARM3(ctx))     /* count */
CUDA_PROBE(cuda_stream_sync, KSPAN_CUDA_STREAM_SYNC, PT_REGS_PARM1(ctx))       /* stream */
CUDA_PROBE(cuda_device_sync, KSPAN_CUDA_DEVICE_SYNC, 0)
CUDA_PROBE(cuda_event_sync, KSPAN_CUDA_EVENT_SYNC, PT_REGS_PARM1(ctx))         /* event */
/* cuLaunchKernel(f, gx, gy, gz, bx, by, bz, sharedMem, hStream, ...) */
CUDA_PROBE(cu_launch_kernel, KSPAN_CU_LAUNCH_KERNEL, CU_LAUNCH_STREAM(ctx))     /* hStream */
CUDA_PROBE(cu_memcpy, KSPAN_CU_MEMCPY, PT_REGS_PARM3(ctx))                     /* bytes */
CUDA_PROBE(cu_memcpy_async, KSPAN_CU_MEMCPY_ASYNC, PT_REGS_PARM3(ctx))         /* bytes */
CUDA_PROBE(cu_ctx_sync, KSPAN_CU_CTX_SYNC, 0)
CUDA_PROBE(cu_stream_sync, KSPAN_CU_STREAM_SYNC, PT_REGS_PARM1(ctx))           /* stream */
CUDA_PROBE(cu_event_sync, KSPAN_CU_EVENT_SYNC, PT_REGS_PARM1(ctx))             /* event */

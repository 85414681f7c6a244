/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * kspan record layouts: the one ABI shared by bpf/kspan.bpf.c (producer),
 * native/ (kspan-probe.c drains the rings, output.c adds its own records) and
 * src/capture/records.ts (decoder; offsets are checked against this file by
 * test/capture/layout.test.ts).
 *
 * Stream = a sequence of records, each starting with struct kspan_hdr.
 * hdr.size is the whole record in bytes (a multiple of 8), so the stream is
 * length-prefixed; hdr.magic lets a reader resynchronise after corruption.
 * Everything is little-endian. All times are CLOCK_MONOTONIC ns
 * (bpf_ktime_get_ns); KSPAN_CLOCK records map them to the epoch.
 *
 * Bump KSPAN_ABI_VERSION on any change below.
 */
#ifndef KSPAN_H
#define KSPAN_H

#define KSPAN_ABI_VERSION 5
#define KSPAN_REC_MAGIC 0xb5
#define KSPAN_COMM_LEN 16
#define KSPAN_MAX_STACK 64 /* frames per side (user, kernel) */
#define KSPAN_MAX_REC 4096 /* largest legal record */

enum kspan_kind {
	KSPAN_HELLO = 1,       /* native: first record of every stream */
	KSPAN_OFFCPU = 2,      /* bpf: one off-CPU interval of a thread */
	KSPAN_FUTEX_WAIT = 3,  /* bpf: a futex wait / lock-PI interval */
	KSPAN_FUTEX_WAKE = 4,  /* bpf: a futex wake call that woke >= 1 waiter */
	KSPAN_BLOCK_IO = 5,    /* bpf: one block request, issue -> complete */
	KSPAN_TCP_RETRANS = 6, /* bpf: one tcp_retransmit_skb */
	KSPAN_CUDA_CALL = 7,   /* bpf: one CUDA runtime/driver call, entry -> return */
	KSPAN_TASK = 8,        /* bpf: name / fork / exec / exit of a task */
	KSPAN_STACK = 9,       /* bpf: stack taken at the switch-out of a long block */
	KSPAN_CLOCK = 10,      /* native: (monotonic, realtime) sample */
	KSPAN_DROPS = 11,      /* native: cumulative per-ring counters */
	KSPAN_STATUS = 12,     /* native: a probe group's attach result */
	KSPAN_ACK = 13,        /* native: answer to a control command */
	KSPAN_DRAINED = 14,    /* native: every record of an event before h.ts has been written */
	KSPAN_BLOCKED = 15,    /* bpf (task iterator): a thread still off CPU at a snapshot */
	KSPAN_KIND_MAX = 16,
};

/* 24 bytes. pid = tgid (process), tid = kernel pid (thread). */
struct kspan_hdr {
	__u16 size;  /* whole record, bytes, multiple of 8 */
	__u8 kind;   /* enum kspan_kind */
	__u8 magic;  /* KSPAN_REC_MAGIC */
	__u32 cpu;   /* CPU the record was produced on */
	__u64 ts;    /* event time; for intervals, the END */
	__u32 pid;
	__u32 tid;
};

/* ---- KSPAN_HELLO ---- */
struct kspan_hello {
	struct kspan_hdr h;
	__u32 abi_version;
	__u32 ncpu;
	__u64 mono_ns;      /* CLOCK_MONOTONIC at probe start */
	__u64 realtime_ns;  /* CLOCK_REALTIME at probe start */
	__u64 boot_id_hi;   /* first 16 bytes of /proc/sys/kernel/random/boot_id */
	__u64 boot_id_lo;
	__u32 offcpu_min_ns;
	__u32 probe_pid;
};

/* ---- KSPAN_OFFCPU ----
 * h.ts = switch-in time, h.tid/pid = the thread, h.cpu = CPU it resumed on.
 *   blocked  = runnable_ns - start_ns   (0 when PREEMPTED or RESCHED)
 *   runqueue = h.ts - runnable_ns
 */
enum kspan_offcpu_flags {
	KSPAN_OFF_PREEMPTED = 1 << 0,    /* sched_switch preempt==true: kernel preemption, still runnable */
	/* !preempt && prev_state==RUNNING: switched out while runnable through
	 * schedule() rather than preempt_schedule(): preemption at a return to
	 * user space or cond_resched() (the usual case under PREEMPT_VOLUNTARY /
	 * PREEMPT_NONE), or sched_yield(). Runqueue time, like PREEMPTED. */
	KSPAN_OFF_RESCHED = 1 << 1,
	KSPAN_OFF_WOKEN = 1 << 2,        /* a sched_waking ended the blocked part; waker_* valid */
	KSPAN_OFF_WAKER_HARDIRQ = 1 << 3,/* waker ran in hard-irq context: waker task is not a cause */
	KSPAN_OFF_WAKER_SOFTIRQ = 1 << 4,/* ... soft-irq context */
	KSPAN_OFF_WAKER_FUTEX = 1 << 5,  /* waker was inside a futex wake call; waker_uaddr valid */
	KSPAN_OFF_NEW = 1 << 6,          /* first run of a new task (sched_wakeup_new) */
	KSPAN_OFF_IN_FUTEX = 1 << 7,     /* the thread itself was inside a futex wait */
	KSPAN_OFF_HAS_STACK = 1 << 8,    /* a KSPAN_STACK record with the same tid/start follows */
	/* The task was already off CPU when the probe attached (its first
	 * switch-in under this probe had no switch-out before it): start_ns is
	 * the probe's start (cfg.since_ns), the real start is earlier, and what
	 * kind of wait it was is not known (prev_state 0, no waker). */
	KSPAN_OFF_START_UNKNOWN = 1 << 9,
	/* Never set by BPF: a reader's mark on an interval known only from a
	 * KSPAN_BLOCKED snapshot (still off CPU then; no switch-in record yet). */
	KSPAN_OFF_OPEN = 1 << 10,
};

struct kspan_offcpu {
	struct kspan_hdr h;
	__u64 start_ns;     /* switch-out */
	__u64 runnable_ns;  /* first sched_waking after the block, or start_ns if preempted */
	__u64 waker_uaddr;  /* futex word the waker was waking (KSPAN_OFF_WAKER_FUTEX) */
	__u32 prev_state;   /* sched_switch prev_state argument (raw __state bits) */
	__u32 flags;        /* enum kspan_offcpu_flags */
	__u32 waker_pid;
	__u32 waker_tid;
	__u32 preempt_pid;  /* task that took the CPU at switch-out (next) */
	__u32 preempt_tid;
	__u32 last_pid;     /* task that ran on h.cpu right before switch-in (prev at switch-in) */
	__u32 last_tid;
	__u32 out_cpu;      /* CPU at switch-out */
	__u32 waker_cpu;
};

/* ---- KSPAN_FUTEX_WAIT ---- Only waits >= futex_min_ns are sent.
 * Two sources (flags say which):
 * - registers (default, group "futex"): the blocked thread's saved syscall
 *   registers at its switch-out. start_ns = that switch-out, h.ts = the
 *   switch-in that ended the off-CPU interval (the matching KSPAN_OFFCPU has
 *   the same start_ns and h.ts; its runnable_ns ends the blocked part). One
 *   record per blocking inside the call. ret is not seen: it is inferred from
 *   the waker (KSPAN_FUTEX_RET_INFERRED) or unknown (KSPAN_FUTEX_RET_UNKNOWN,
 *   reported as 0).
 * - syscall tracepoints (opt-in group "futex-syscalls"): h.ts = sys_exit,
 *   start_ns = sys_enter, ret = the syscall's return value.
 */
enum kspan_owner_src {
	KSPAN_OWNER_NONE = 0,
	KSPAN_OWNER_PI_WORD = 1,      /* FUTEX_LOCK_PI*: TID read from the futex word */
	KSPAN_OWNER_GLIBC_MUTEX = 2,  /* heuristic: glibc pthread_mutex_t __owner at uaddr+8 */
};

enum kspan_futex_flags {
	KSPAN_FUTEX_FROM_REGS = 1 << 0,    /* from saved registers at sched_switch / sched_waking */
	KSPAN_FUTEX_RET_INFERRED = 1 << 1, /* ret inferred: 0 = woken by a futex wake call,
	                                    * -ETIMEDOUT = woken by a timer with a timeout armed */
	KSPAN_FUTEX_RET_UNKNOWN = 1 << 2,  /* ret not knowable from the waker (signal, untracked waking): 0 */
};

struct kspan_futex_wait {
	struct kspan_hdr h;
	__u64 start_ns;
	__u64 uaddr;
	__u32 op;          /* full op incl. PRIVATE/CLOCK_REALTIME flags; 0xffff0000|n for futex2 calls */
	__s32 ret;         /* syscall return: 0, -ETIMEDOUT, -EAGAIN, ... */
	__u32 val;         /* expected value (futex_wait) */
	__u32 owner_tid;   /* lock owner at wait start, when knowable */
	__u32 owner_src;   /* enum kspan_owner_src */
	__u32 flags;       /* enum kspan_futex_flags (0: syscall tracepoints) */
};

/* ---- KSPAN_FUTEX_WAKE ---- Only wake calls that woke a thread which had been
 * blocked >= futex_min_ns.
 * - registers (default): one record per such woken thread, written at its
 *   switch-in (h.ts = that switch-in, so the watermark holds; start_ns = its
 *   sched_waking, in the waker's context); uaddr = the word
 *   the woken thread waited on when it is one of the call's two words; ret = 1.
 * - syscall tracepoints ("futex-syscalls"): one record per call, h.ts =
 *   sys_exit, start_ns = sys_enter, ret = the syscall's return value. */
struct kspan_futex_wake {
	struct kspan_hdr h;
	__u64 start_ns;
	__u64 uaddr;
	__u64 uaddr2;     /* requeue target */
	__u32 op;
	__s32 ret;        /* waiters woken (or requeued) */
};

/* ---- KSPAN_BLOCK_IO ----
 * h.pid/tid = the issuing thread (current at block_io_start, submission path),
 * h.ts = completion. Paired by struct request *, not (dev, sector).
 */
enum kspan_io_flags {
	KSPAN_IO_WRITE = 1 << 0,
	KSPAN_IO_SYNC = 1 << 1,
	KSPAN_IO_FLUSH = 1 << 2,   /* REQ_PREFLUSH or REQ_OP_FLUSH */
	KSPAN_IO_FUA = 1 << 3,
	KSPAN_IO_META = 1 << 4,
	KSPAN_IO_DISCARD = 1 << 5,
	KSPAN_IO_ISSUER_GUESSED = 1 << 6, /* no block_io_start seen: issuer is current at insert/issue */
};

struct kspan_block_io {
	struct kspan_hdr h;
	__u64 start_ns;    /* block_io_start (accounting start, in submitter context) */
	__u64 issue_ns;    /* block_rq_issue (driver dispatch); 0 if unseen */
	__u64 sector;
	__u32 dev;         /* MKDEV(major, minor) in the kernel's 12:20 encoding */
	__u32 bytes;
	__u32 flags;       /* enum kspan_io_flags */
	__s32 error;       /* blk_status_t */
	char comm[KSPAN_COMM_LEN]; /* issuer comm (io issuers are often kworkers) */
};

/* ---- KSPAN_TCP_RETRANS ---- h.pid/tid = current (often not the owner: softirq) */
struct kspan_tcp_retrans {
	struct kspan_hdr h;
	__u8 saddr[16];   /* IPv4 in the first 4 bytes when family == AF_INET */
	__u8 daddr[16];
	__u16 family;     /* AF_INET 2, AF_INET6 10 */
	__u16 sport;      /* host order */
	__u16 dport;      /* host order */
	__u8 state;       /* TCP state */
	__u8 in_irq;      /* 1 when fired from softirq/irq (timer retransmit) */
	__s32 err;        /* tcp_retransmit_skb err argument */
	__u32 _pad;
	__u64 sock_ino;   /* socket inode (socket:[N] in /proc/PID/fd), 0 once detached from a file */
};

/* ---- KSPAN_CUDA_CALL ---- h.ts = return, start_ns = entry */
enum kspan_cuda_api {
	KSPAN_CUDA_LAUNCH_KERNEL = 1,       /* cudaLaunchKernel[_ptsz] */
	KSPAN_CUDA_MEMCPY = 2,              /* cudaMemcpy */
	KSPAN_CUDA_MEMCPY_ASYNC = 3,        /* cudaMemcpyAsync[_ptsz] */
	KSPAN_CUDA_STREAM_SYNC = 4,         /* cudaStreamSynchronize[_ptsz] */
	KSPAN_CUDA_DEVICE_SYNC = 5,         /* cudaDeviceSynchronize */
	KSPAN_CUDA_EVENT_SYNC = 6,          /* cudaEventSynchronize */
	KSPAN_CU_LAUNCH_KERNEL = 16,        /* cuLaunchKernel[_ptsz] */
	KSPAN_CU_MEMCPY = 17,               /* cuMemcpy*, cuMemcpyHtoD/DtoH[_v2] */
	KSPAN_CU_MEMCPY_ASYNC = 18,         /* cuMemcpyAsync*, cuMemcpy*Async[_v2] */
	KSPAN_CU_CTX_SYNC = 19,             /* cuCtxSynchronize[_v2] */
	KSPAN_CU_STREAM_SYNC = 20,          /* cuStreamSynchronize[_ptsz] */
	KSPAN_CU_EVENT_SYNC = 21,           /* cuEventSynchronize */
};

struct kspan_cuda_call {
	struct kspan_hdr h;
	__u64 start_ns;
	__u64 arg;        /* stream (sync/launch), byte count (memcpy), event (event sync) */
	__u32 api;        /* enum kspan_cuda_api */
	__s32 ret;        /* cudaError_t / CUresult (low 32 bits of rax) */
};

/* ---- KSPAN_TASK ---- h.pid/tid = the task the event is about */
enum kspan_task_event {
	KSPAN_TASK_NAME = 1,  /* first sight of a task (or a culprit) with its comm */
	KSPAN_TASK_FORK = 2,  /* new thread or process; other_* = parent (creator) */
	KSPAN_TASK_EXEC = 3,  /* comm is the new comm */
	KSPAN_TASK_EXIT = 4,  /* exit_code valid */
	KSPAN_TASK_RENAME = 5,/* prctl(PR_SET_NAME) / pthread_setname_np: comm is the new name */
};

struct kspan_task {
	struct kspan_hdr h;
	__u64 start_time;  /* task->start_time (monotonic ns): (tid, start_time) is unique under reuse */
	__u32 event;       /* enum kspan_task_event */
	__u32 other_pid;
	__u32 other_tid;
	__s32 exit_code;
	char comm[KSPAN_COMM_LEN];
	char pcomm[KSPAN_COMM_LEN]; /* process (group leader) comm */
};

/* ---- KSPAN_STACK ----
 * Stack of a thread taken at the switch-out (while it was `current`) of a
 * blocked interval that turned out >= stack_min_ns. start_ns = that switch-out,
 * matching kspan_offcpu.start_ns. ips[] holds n_user user frames then n_kernel
 * kernel frames; the record is sized to fit (hdr.size).
 */
struct kspan_stack {
	struct kspan_hdr h;
	__u64 start_ns;
	__u32 n_user;
	__u32 n_kernel;
	__u64 ips[2 * KSPAN_MAX_STACK];
};

/* ---- KSPAN_CLOCK ---- (native) h.ts = monotonic at the sample's midpoint */
struct kspan_clock {
	struct kspan_hdr h;
	__u64 realtime_ns;
	__u64 error_ns;   /* half the width of the mono-real-mono read window */
	__u32 stepped;    /* 1 if taken because the realtime clock was set */
	__u32 _pad;
};

/* ---- KSPAN_DROPS ---- (native) cumulative since probe start, one per ring */
enum kspan_ring {
	KSPAN_RING_SCHED = 0,  /* off-CPU, futex, io, tcp, stacks */
	KSPAN_RING_TASK = 1,   /* lifecycle and names: small, kept apart so it is never crowded out */
	KSPAN_RING_CUDA = 2,   /* uprobes: submitted with BPF_RB_NO_WAKEUP */
	KSPAN_RING_MAX = 3,
};

struct kspan_drops {
	struct kspan_hdr h;
	__u32 ring;        /* enum kspan_ring */
	__u32 _pad;
	__u64 lost;        /* bpf_ringbuf_reserve failures */
	__u64 records;     /* records drained by the probe */
	__u64 bytes;       /* bytes drained */
};

/* ---- KSPAN_STATUS ---- (native) */
enum kspan_group {
	KSPAN_GROUP_SCHED = 0,  /* sched_switch, sched_waking, sched_wakeup_new */
	KSPAN_GROUP_TASK = 1,   /* fork, exec, exit, rename */
	KSPAN_GROUP_FUTEX = 2,  /* from saved registers inside the sched programs (needs sched) */
	KSPAN_GROUP_BLOCK = 3,
	KSPAN_GROUP_TCP = 4,
	KSPAN_GROUP_CUDA = 5,   /* one STATUS per library and symbol attach */
	KSPAN_GROUP_FUTEX_SYSCALLS = 6, /* opt-in: syscalls:sys_{enter,exit}_futex* tracepoints */
	KSPAN_GROUP_BLOCKED = 7, /* KSPAN_BLOCKED snapshots: an iter/task walk before each watermark (needs sched) */
	KSPAN_GROUP_MAX = 8,
};

struct kspan_status {
	struct kspan_hdr h;
	__u32 group;       /* enum kspan_group */
	__s32 err;         /* 0 attached, -errno otherwise; 1 = detached on request */
	__u32 n_attached;  /* programs (or uprobes) attached */
	__u32 n_failed;
	char detail[96];   /* NUL-terminated: library path, symbol, or reason */
};

/* ---- KSPAN_ACK ---- (native) answer to one control line on stdin */
struct kspan_ack {
	struct kspan_hdr h;
	__u32 seq;         /* the number the command line started with */
	__s32 err;         /* 0 ok, -errno */
	char msg[120];     /* NUL-terminated */
};

/* ---- KSPAN_DRAINED ---- (native) the ingest watermark
 * Written after each drain of the rings. h.ts = CLOCK_MONOTONIC read just
 * before the drain started: a record whose event time is before it was
 * reserved and submitted inside one BPF program run (microseconds), so the
 * drain found it. Readers treat time after the last h.ts as not yet seen.
 *
 * lost[] = the rings' cumulative reserve failures (as in KSPAN_DROPS), read
 * after the drain at lost_ts: a record lost before lost_ts is counted. A lost
 * off-CPU record leaves no trace of its interval, so a reader must know the
 * losses up to the watermark, not a second later, or it reads the missing
 * time as "on CPU". lost_ts = 0: not read. (Streams of ABI <= 3 end at h.)
 */
struct kspan_drained {
	struct kspan_hdr h;
	__u64 lost_ts;
	__u64 lost[KSPAN_RING_MAX];
};

/* ---- KSPAN_BLOCKED ---- (ABI >= 5)
 * An off-CPU interval is recorded when it ends (switch-in), so a thread still
 * off CPU when the reader stops at a watermark would read as on CPU up to it.
 * Right before each watermark the probe walks every task (iter/task) and
 * writes one of these for each interval still open then that is at least
 * offcpu_min_ns long and either
 *   - was not reported by the previous snapshot (it began, or became long
 *     enough, since), or
 *   - has been woken (runnable_ns != 0) and still waits for a CPU;
 * after the scheduler ring lost records, every open one again; and, once
 * per task, a task off CPU since before the probe attached (it has not
 * switched under the probe): start_ns = cfg.since_ns, flags
 * KSPAN_OFF_START_UNKNOWN, with a KSPAN_TASK NAME (it never ran, so it was
 * never named).
 * So the reader knows, at each watermark, every long interval still open:
 * one reported and not woken since, with no switch-in record yet, is still
 * blocked. h.ts = the snapshot's time, h.cpu = the CPU it switched out on.
 * Fields mean what they mean in struct kspan_offcpu (its flags: those known
 * so far: no switch-in yet, so no last_*).
 */
struct kspan_blocked {
	struct kspan_hdr h;
	__u64 start_ns;     /* switch-out */
	__u64 runnable_ns;  /* first sched_waking after the block, or start_ns if preempted; 0 = not woken */
	__u32 prev_state;
	__u32 flags;        /* enum kspan_offcpu_flags */
	__u32 waker_pid;
	__u32 waker_tid;
	__u32 preempt_pid;  /* task that took the CPU at switch-out */
	__u32 preempt_tid;
	/* flags & KSPAN_OFF_IN_FUTEX: the wait it is blocked in, as the coming
	 * KSPAN_FUTEX_WAIT will have it (a thread stuck on a lock says which and
	 * whose); else 0 */
	__u64 uaddr;
	__u32 op;
	__u32 val;
	__u32 owner_tid;
	__u32 owner_src;    /* enum kspan_owner_src */
};

/* ---- loader <-> BPF configuration (not a record) ----
 * A global in the BPF object's .bss; the loader writes it through the
 * skeleton's mmap while the programs run. */
#define KSPAN_FUTEX_MODE_OFF 0
#define KSPAN_FUTEX_MODE_REGS 1     /* group "futex": saved registers, in the sched programs */
#define KSPAN_FUTEX_MODE_SYSCALLS 2 /* group "futex-syscalls": syscall tracepoints */

struct kspan_cfg {
	__u64 offcpu_min_ns;
	__u64 futex_min_ns;
	__u64 stack_min_ns;
	__u64 cgroup_id;     /* 0 = any cgroup */
	__u64 wake_bytes;    /* force a consumer wakeup past this much unread data */
	__u32 filter_pids;   /* 1 = only tgids marked TARGET in target_tgids */
	__u32 follow;        /* 1 = processes forked by targets become targets */
	__u32 stacks;        /* 1 = take stacks at blocking switch-outs */
	__u32 self_tgid;     /* the loader itself: never traced */
	__u32 filter_gen;    /* bumped by the loader on every filter change: per-task
	                      * decisions cached under an older generation are redone */
	__u32 futex_mode;    /* KSPAN_FUTEX_MODE_* */
	__s64 pc_rq_delta;   /* x86: &__preempt_count - &runqueues in the per-CPU area (BTF), 0 = unknown */
	__u32 irq_src;       /* 0 irq/softirq/hrtimer tracepoint depth, 1 preempt count */
	__u32 _pad;
	__u64 since_ns;      /* CLOCK_MONOTONIC before the programs were attached (KSPAN_OFF_START_UNKNOWN) */
	__u64 snap_prev_ns;  /* the previous blocked-task snapshot's time (0: none) */
	__u64 snap_now_ns;   /* this snapshot's time (set before the walk) */
};

/* ---- maps the loader sizes and fills (not records) ---- */

/* Values of the target_tgids map (tgid -> mark). */
#define KSPAN_TGID_TARGET 1
#define KSPAN_TGID_EXCLUDED 2

/* Entries of the target_cgroups map: at most this many --cgroup. */
#define KSPAN_MAX_CGROUPS 64

/* Ring sizes in bytes. The loader sets them before load from --ring-mb (the
 * scheduler ring); the map definitions use the default. The task ring gets
 * 1/8 of the scheduler ring (at least 256 KiB), the CUDA ring 1/2. */
#define KSPAN_RING_MB_DEFAULT 16
#define KSPAN_RB_TASK_BYTES(sched_bytes) ((sched_bytes) / 8 > 262144 ? (sched_bytes) / 8 : 262144)
#define KSPAN_RB_CUDA_BYTES(sched_bytes) ((sched_bytes) / 2)

#endif /* KSPAN_H */

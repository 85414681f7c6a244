// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Probe groups (groups.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/btf.h>

#include "groups.h"
#include "cuda-attach.h"
#include "kspan-probe.h"
#include "options.h"
#include "output.h"
#include "snapshot.h"

const char *group_names[KSPAN_GROUP_MAX] = { "sched", "task", "futex", "block", "tcp", "cuda",
					     "futex-syscalls", "blocked" };

int group_by_name(const char *name)
{
	for (int g = 0; g < KSPAN_GROUP_MAX; g++)
		if (!strcmp(name, group_names[g]))
			return g;
	return -1;
}

/* Programs of each group; CUDA programs are attached per library (cuda-attach.c). */
struct prog_ref {
	const char *name;
	int group;
	struct bpf_link *link;
	bool available;
	bool irq_depth; /* only needed when the preempt count can't be read (irq_src 0) */
};

static struct prog_ref progs[] = {
	{ "sched_switch", KSPAN_GROUP_SCHED },
	{ "sched_waking", KSPAN_GROUP_SCHED },
	{ "sched_wakeup_new", KSPAN_GROUP_SCHED },
	/* Exits before entries: an interrupt already running when its entry
	 * hook is attached then ends with an exit that is clamped at depth 0,
	 * instead of leaving the CPU's depth stuck at +1 (attached in order). */
	{ "irq_handler_exit", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "hrtimer_expire_exit", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "softirq_exit", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "irq_handler_entry", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "hrtimer_expire_entry", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "softirq_entry", KSPAN_GROUP_SCHED, .irq_depth = true },
	{ "sched_process_fork", KSPAN_GROUP_TASK },
	{ "sched_process_exec", KSPAN_GROUP_TASK },
	{ "sched_process_exit", KSPAN_GROUP_TASK },
	{ "task_rename", KSPAN_GROUP_TASK },
	{ "cgroup_attach_task", KSPAN_GROUP_TASK },
	{ "sys_enter_futex", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_exit_futex", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_enter_futex_wait", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_exit_futex_wait", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_enter_futex_wake", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_exit_futex_wake", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_enter_futex_waitv", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "sys_exit_futex_waitv", KSPAN_GROUP_FUTEX_SYSCALLS },
	{ "block_io_start", KSPAN_GROUP_BLOCK },
	{ "block_rq_issue", KSPAN_GROUP_BLOCK },
	{ "block_rq_complete", KSPAN_GROUP_BLOCK },
	{ "tcp_retransmit_skb", KSPAN_GROUP_TCP },
};
#define N_PROGS (sizeof(progs) / sizeof(progs[0]))

__u32 irq_src;
__s64 pc_rq_delta;

/* futex source: the "futex" group (registers, inside the sched programs) and
 * the opt-in "futex-syscalls" group; the syscalls win when both are on. */
static bool futex_regs_on, futex_sys_on;

static void set_futex_mode(void)
{
	skel->bss->cfg.futex_mode = futex_sys_on ? KSPAN_FUTEX_MODE_SYSCALLS
				  : futex_regs_on ? KSPAN_FUTEX_MODE_REGS : KSPAN_FUTEX_MODE_OFF;
}

static bool prog_attached(const char *name)
{
	for (size_t i = 0; i < N_PROGS; i++)
		if (!strcmp(progs[i].name, name))
			return progs[i].link != NULL;
	return false;
}

/* The futex group has no programs of its own: sched_switch reads the
 * registers of a thread blocking in a futex wait, sched_waking those of a
 * waker in a futex wake. It needs those two attached. */
static int attach_futex_regs(void)
{
#if defined(__x86_64__) || defined(__aarch64__)
	if (!prog_attached("sched_switch") || !prog_attached("sched_waking")) {
		emit_status(KSPAN_GROUP_FUTEX, -ENOENT, 0, 0,
			    "needs the sched group (or use futex-syscalls)");
		return -ENOENT;
	}
	futex_regs_on = true;
	set_futex_mode();
	emit_status(KSPAN_GROUP_FUTEX, 0, 2, 0, "from registers in sched_switch/sched_waking%s",
		    futex_sys_on ? " (futex-syscalls attached: those are used)" : "");
	return 0;
#else
	emit_status(KSPAN_GROUP_FUTEX, -EOPNOTSUPP, 0, 0, "registers not decoded on this architecture: use futex-syscalls");
	return -EOPNOTSUPP;
#endif
}

/* The blocked-task walk reads what sched_switch keeps per task: it runs
 * while both this group and sched are attached (asked for before sched, it
 * starts with sched; sched detached, it stops and says so). */
static bool blocked_wanted;

static int attach_blocked(void)
{
	int err;

	blocked_wanted = true;
	if (!prog_attached("sched_switch")) {
		emit_status(KSPAN_GROUP_BLOCKED, -ENOENT, 0, 0, "needs the sched group");
		return -ENOENT;
	}
	err = snapshot_attach();
	if (err)
		emit_status(KSPAN_GROUP_BLOCKED, err, 0, 1, "task iterator: %s", strerror(-err));
	else
		emit_status(KSPAN_GROUP_BLOCKED, 0, 1, 0, "iter/task walk before each watermark");
	return err;
}

int attach_group(int group)
{
	unsigned ok = 0, fail = 0, unavailable = 0;
	int first_err = 0;
	char detail[96] = "";

	if (group == KSPAN_GROUP_FUTEX)
		return attach_futex_regs();
	if (group == KSPAN_GROUP_BLOCKED)
		return attach_blocked();
	for (size_t i = 0; i < N_PROGS; i++) {
		struct prog_ref *p = &progs[i];
		if (p->group != group || (p->irq_depth && irq_src))
			continue;
		if (!p->available) {
			unavailable++;
			continue;
		}
		if (p->link) {
			ok++;
			continue;
		}
		p->link = bpf_program__attach(prog_by_name(p->name));
		if (!p->link) {
			int err = -errno;
			fail++;
			if (!first_err) {
				first_err = err;
				snprintf(detail, sizeof(detail), "%s: %s", p->name, strerror(-err));
			}
			continue;
		}
		ok++;
	}
	if (!first_err && unavailable)
		snprintf(detail, sizeof(detail), "%u tracepoint(s) not on this kernel", unavailable);
	else if (!first_err && group == KSPAN_GROUP_SCHED)
		snprintf(detail, sizeof(detail), "interrupt context from %s",
			 irq_src ? "the preempt count" : "irq/softirq/hrtimer tracepoints");
	if (group == KSPAN_GROUP_FUTEX_SYSCALLS && ok) {
		futex_sys_on = true;
		set_futex_mode();
	}
	emit_status(group, ok ? 0 : (first_err ? first_err : -ENOENT), ok, fail, "%s", detail);
	if (group == KSPAN_GROUP_SCHED && blocked_wanted && !snapshot_attached() && prog_attached("sched_switch"))
		attach_blocked();
	return ok ? 0 : (first_err ? first_err : -ENOENT);
}

void detach_group(int group)
{
	if (group == KSPAN_GROUP_BLOCKED) {
		blocked_wanted = false;
		snapshot_detach();
		emit_status(group, 1, 0, 0, "detached on request");
		return;
	}
	for (size_t i = 0; i < N_PROGS; i++) {
		if (progs[i].group == group && progs[i].link) {
			bpf_link__destroy(progs[i].link);
			progs[i].link = NULL;
		}
	}
	if (snapshot_attached() && !prog_attached("sched_switch")) {
		snapshot_detach();
		emit_status(KSPAN_GROUP_BLOCKED, 1, 0, 0, "detached with the sched group");
	}
	if (group == KSPAN_GROUP_FUTEX)
		futex_regs_on = false;
	if (group == KSPAN_GROUP_FUTEX_SYSCALLS)
		futex_sys_on = false;
	set_futex_mode();
	if (group == KSPAN_GROUP_CUDA)
		cuda_detach();
	emit_status(group, 1, 0, 0, "detached on request");
}

void detach_all_groups(void)
{
	snapshot_detach();
	for (size_t i = 0; i < N_PROGS; i++) {
		bpf_link__destroy(progs[i].link);
		progs[i].link = NULL;
	}
}

/* tp_btf programs need the kernel's btf_trace_<name> type; classic
 * tracepoints need the tracefs event. Programs whose hook this kernel lacks
 * are not loaded (and reported), instead of failing the whole object. */
void mark_available(struct btf *vmlinux)
{
	for (size_t i = 0; i < N_PROGS; i++) {
		struct bpf_program *p = prog_by_name(progs[i].name);
		const char *sec = bpf_program__section_name(p);
		char path[256];
		bool ok = true;

		if (!strncmp(sec, "tp_btf/", 7)) {
			char type[128];
			snprintf(type, sizeof(type), "btf_trace_%s", sec + 7);
			ok = vmlinux && btf__find_by_name_kind(vmlinux, type, BTF_KIND_TYPEDEF) > 0;
		} else if (!strncmp(sec, "tracepoint/", 11)) {
			snprintf(path, sizeof(path), "/sys/kernel/tracing/events/%s", sec + 11);
			ok = access(path, F_OK) == 0;
			if (!ok) {
				snprintf(path, sizeof(path), "/sys/kernel/debug/tracing/events/%s", sec + 11);
				ok = access(path, F_OK) == 0;
			}
		}
		progs[i].available = ok;
		if (!ok || (progs[i].irq_depth && irq_src))
			bpf_program__set_autoload(p, false);
	}
}

static const struct btf_type *btf_struct(const struct btf *btf, const char *name)
{
	int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);

	return id > 0 ? btf__type_by_id(btf, id) : NULL;
}

static bool btf_has_member(const struct btf *btf, const char *type, const char *member)
{
	const struct btf_type *t = btf_struct(btf, type);
	const struct btf_member *m;

	if (!t)
		return false;
	m = btf_members(t);
	for (int i = 0; i < btf_vlen(t); i++)
		if (!strcmp(btf__name_by_offset(btf, m[i].name_off), member))
			return true;
	return false;
}

/* Offset of a per-CPU variable in the per-CPU area, from the kernel BTF's
 * .data..percpu DATASEC; -1 when not there. */
static long long percpu_offset(const struct btf *btf, const char *var)
{
	int id = btf__find_by_name_kind(btf, ".data..percpu", BTF_KIND_DATASEC);
	const struct btf_type *t = id > 0 ? btf__type_by_id(btf, id) : NULL;
	const struct btf_var_secinfo *v;

	if (!t)
		return -1;
	v = btf_var_secinfos(t);
	for (int i = 0; i < btf_vlen(t); i++) {
		const struct btf_type *vt = btf__type_by_id(btf, v[i].type);
		if (vt && !strcmp(btf__name_by_offset(btf, vt->name_off), var))
			return v[i].offset;
	}
	return -1;
}

/* Where the BPF side can read the preempt count (irq_flags() in kspan.bpf.c):
 * thread_info.preempt_count (arm64 and others), or x86's per-CPU
 * __preempt_count found from this CPU's runqueue (current->se.cfs_rq->rq,
 * CONFIG_FAIR_GROUP_SCHED) plus the distance between the two variables in the
 * per-CPU area. Otherwise the irq/softirq/hrtimer tracepoints keep a depth. */
void choose_irq_src(const struct btf *btf)
{
	irq_src = 0;
	pc_rq_delta = 0;
	if (!btf || opt.irq_tracepoints)
		return;
	if (btf_has_member(btf, "thread_info", "preempt_count")) {
		irq_src = 1;
		return;
	}
#if defined(__x86_64__)
	{
		long long pc = percpu_offset(btf, "__preempt_count"), rq = percpu_offset(btf, "runqueues");
		if (pc >= 0 && rq >= 0 && btf_has_member(btf, "cfs_rq", "rq") && btf_has_member(btf, "sched_entity", "cfs_rq")) {
			pc_rq_delta = pc - rq;
			irq_src = 1;
		}
	}
#endif
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kspan-probe: loads bpf/kspan.bpf.c, attaches probe groups, drains the ring
 * buffers and writes records (bpf/kspan.h) to stdout; takes control commands
 * on stdin. The protocol, flags and exit codes are in docs/probe.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/vfs.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <gelf.h>
#include <libelf.h>

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

#define MAX_PIDS 256
#define MAX_LIBS 32
#define OUT_BUF (1 << 20)

static struct {
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
} opt = {
	/* everything but the opt-in futex-syscalls group */
	.groups = ((1u << KSPAN_GROUP_MAX) - 1) & ~(1u << KSPAN_GROUP_FUTEX_SYSCALLS),
	.cuda_scan = true,
	.offcpu_min_ns = 50000,
	.futex_min_ns = 50000,
	.stack_min_ns = 1000000,
	.ring_mb = KSPAN_RING_MB_DEFAULT,
	.drain_ms = 50,
	.clock_ms = 1000,
};

static struct kspan_bpf *skel;
static struct ring_buffer *rings;
static int ncpu;

static const char *group_names[KSPAN_GROUP_MAX] = { "sched", "task", "futex", "block", "tcp", "cuda",
						    "futex-syscalls" };

/* ------------------------------------------------------------------ output */

static char out_buf[OUT_BUF];
static size_t out_len;
static bool out_broken;

static void out_flush(void)
{
	size_t off = 0;

	while (off < out_len && !out_broken) {
		ssize_t n = write(STDOUT_FILENO, out_buf + off, out_len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			out_broken = true; /* reader went away (EPIPE): exit below */
			break;
		}
		off += n;
	}
	out_len = 0;
}

static void out_write(const void *data, size_t len)
{
	if (out_len + len > sizeof(out_buf))
		out_flush();
	memcpy(out_buf + out_len, data, len);
	out_len += len;
}

static __u64 now_ns(clockid_t clk)
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

static void emit_status(__u32 group, int err, unsigned n_ok, unsigned n_fail, const char *fmt, ...)
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

static void emit_ack(__u32 seq, int err, const char *fmt, ...)
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

/* The ingest watermark: everything before `before_drain` is in the stream. */
static void emit_drained(__u64 before_drain)
{
	struct kspan_drained r;

	memset(&r, 0, sizeof(r));
	hdr(&r.h, KSPAN_DRAINED, sizeof(r));
	r.h.ts = before_drain;
	out_write(&r, sizeof(r));
}

/* Best of three (mono, real, mono) reads: the narrowest window wins. */
static void emit_clock(bool stepped)
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

static void emit_hello(void)
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

struct ring_ctx {
	__u32 ring;
	__u64 records, bytes;
} ring_ctx[KSPAN_RING_MAX] = { { KSPAN_RING_SCHED }, { KSPAN_RING_TASK }, { KSPAN_RING_CUDA } };

/* A ring sample holds one record, or several back to back (a switch-in
 * writes its off-CPU interval and futex records with one reserve): count
 * records, not samples, so DROPS.records matches what the reader decodes. */
static int on_record(void *ctx, void *data, size_t size)
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

static void emit_drops(void)
{
	__u64 *vals = calloc(ncpu, sizeof(__u64));

	for (__u32 ring = 0; ring < KSPAN_RING_MAX; ring++) {
		struct kspan_drops r;
		__u64 lost = 0;

		if (vals && !bpf_map_lookup_elem(bpf_map__fd(skel->maps.ring_lost), &ring, vals))
			for (int c = 0; c < ncpu; c++)
				lost += vals[c];
		memset(&r, 0, sizeof(r));
		hdr(&r.h, KSPAN_DROPS, sizeof(r));
		r.ring = ring;
		r.lost = lost;
		r.records = ring_ctx[ring].records;
		r.bytes = ring_ctx[ring].bytes;
		out_write(&r, sizeof(r));
	}
	free(vals);
}

/* ----------------------------------------------------------------- attach */

/* Programs of each group; CUDA programs are attached per library below. */
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

/* uprobe program pairs and the symbols (variants included) they go on. */
struct cuda_api {
	const char *prog; /* programs <prog>_enter and <prog>_return in kspan.bpf.c */
	const char *syms[8];
};

static const struct cuda_api cuda_apis[] = {
	{ "cuda_launch_kernel", { "cudaLaunchKernel", "cudaLaunchKernel_ptsz" } },
	{ "cuda_memcpy", { "cudaMemcpy", "cudaMemcpy_ptds" } },
	{ "cuda_memcpy_async", { "cudaMemcpyAsync", "cudaMemcpyAsync_ptsz" } },
	{ "cuda_stream_sync", { "cudaStreamSynchronize", "cudaStreamSynchronize_ptsz" } },
	{ "cuda_device_sync", { "cudaDeviceSynchronize" } },
	{ "cuda_event_sync", { "cudaEventSynchronize" } },
	{ "cu_launch_kernel", { "cuLaunchKernel", "cuLaunchKernel_ptsz" } },
	{ "cu_memcpy", { "cuMemcpy", "cuMemcpy_ptds", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2",
			 "cuMemcpyHtoD_v2_ptds", "cuMemcpyDtoH_v2_ptds" } },
	{ "cu_memcpy_async", { "cuMemcpyAsync", "cuMemcpyAsync_ptsz", "cuMemcpyHtoDAsync_v2",
			       "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2", "cuMemcpyHtoDAsync_v2_ptsz",
			       "cuMemcpyDtoHAsync_v2_ptsz" } },
	{ "cu_ctx_sync", { "cuCtxSynchronize", "cuCtxSynchronize_v2" } },
	{ "cu_stream_sync", { "cuStreamSynchronize", "cuStreamSynchronize_ptsz" } },
	{ "cu_event_sync", { "cuEventSynchronize" } },
};
#define N_CUDA_APIS (sizeof(cuda_apis) / sizeof(cuda_apis[0]))

struct cuda_lib {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;
	int pid;
	struct bpf_link *links[64];
	int n_links;
};
static struct cuda_lib cuda_libs[MAX_LIBS];
static int n_cuda_libs;

static struct bpf_program *prog_by_name(const char *name)
{
	return bpf_object__find_program_by_name(skel->obj, name);
}

/* Interrupt context source (cfg.irq_src, see irq_flags() in kspan.bpf.c):
 * 1 = the preempt count, 0 = irq/softirq/hrtimer tracepoint depth. */
static __u32 irq_src;
static __s64 pc_rq_delta;

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

static int attach_group(int group)
{
	unsigned ok = 0, fail = 0, unavailable = 0;
	int first_err = 0;
	char detail[96] = "";

	if (group == KSPAN_GROUP_FUTEX)
		return attach_futex_regs();
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
	return ok ? 0 : (first_err ? first_err : -ENOENT);
}

static void detach_group(int group)
{
	for (size_t i = 0; i < N_PROGS; i++) {
		if (progs[i].group == group && progs[i].link) {
			bpf_link__destroy(progs[i].link);
			progs[i].link = NULL;
		}
	}
	if (group == KSPAN_GROUP_FUTEX)
		futex_regs_on = false;
	if (group == KSPAN_GROUP_FUTEX_SYSCALLS)
		futex_sys_on = false;
	set_futex_mode();
	if (group == KSPAN_GROUP_CUDA) {
		for (int l = 0; l < n_cuda_libs; l++) {
			for (int k = 0; k < cuda_libs[l].n_links; k++)
				bpf_link__destroy(cuda_libs[l].links[k]);
			cuda_libs[l].n_links = 0;
		}
	}
	emit_status(group, 1, 0, 0, "detached on request");
}

static bool is_cuda_lib(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return !strncmp(base, "libcudart.so", 12) || !strncmp(base, "libcuda.so", 10);
}

/* File offset of a function symbol (for uprobes), from .dynsym or .symtab:
 * the symbol's address mapped through the PT_LOAD segment that holds it.
 * One pass over the ELF for all names; libbpf's attach-by-name would parse
 * the file again for every symbol and variant (seconds for a real libcudart). */
static int resolve_syms(const char *path, const char *const *names, int n, size_t *offs)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;
	Elf *e;
	Elf_Scn *scn = NULL;
	size_t nph;

	memset(offs, 0, n * sizeof(*offs));
	if (fd < 0)
		return -errno;
	elf_version(EV_CURRENT);
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || elf_getphdrnum(e, &nph)) {
		if (e)
			elf_end(e);
		close(fd);
		return -ENOEXEC;
	}
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(data, i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(e, sh.sh_link, sym.st_name);
			for (int k = 0; name && k < n; k++) {
				if (offs[k] || strcmp(name, names[k]))
					continue;
				for (size_t p = 0; p < nph; p++) {
					GElf_Phdr ph;
					if (gelf_getphdr(e, p, &ph) && ph.p_type == PT_LOAD && sym.st_value >= ph.p_vaddr &&
					    sym.st_value < ph.p_vaddr + ph.p_memsz) {
						offs[k] = sym.st_value - ph.p_vaddr + ph.p_offset;
						found++;
						break;
					}
				}
			}
		}
	}
	elf_end(e);
	close(fd);
	return found;
}

/* Attach every CUDA API pair to every symbol variant the library exports.
 * A missing symbol is normal (runtime vs driver library, versions). */
static int attach_cuda_lib(struct cuda_lib *lib)
{
	const char *names[N_CUDA_APIS * 8];
	size_t offs[N_CUDA_APIS * 8];
	int api_of[N_CUDA_APIS * 8], n = 0, found;
	unsigned ok = 0, failed = 0;
	int pid = lib->pid ? lib->pid : -1, first_err = 0;

	for (size_t a = 0; a < N_CUDA_APIS; a++)
		for (int s = 0; s < 8 && cuda_apis[a].syms[s]; s++) {
			api_of[n] = a;
			names[n++] = cuda_apis[a].syms[s];
		}
	found = resolve_syms(lib->path, names, n, offs);
	if (found <= 0) {
		emit_status(KSPAN_GROUP_CUDA, found < 0 ? found : -ENOENT, 0, 0, "%s: %s", lib->path,
			    found < 0 ? strerror(-found) : "no CUDA symbols");
		return found < 0 ? found : -ENOENT;
	}
	for (int k = 0; k < n; k++) {
		char enter_name[64], ret_name[64];
		struct bpf_program *enter, *ret;
		struct bpf_link *le, *lr;
		LIBBPF_OPTS(bpf_uprobe_opts, uo);

		if (!offs[k])
			continue;
		if (lib->n_links + 2 > (int)(sizeof(lib->links) / sizeof(lib->links[0])))
			break;
		snprintf(enter_name, sizeof(enter_name), "%s_enter", cuda_apis[api_of[k]].prog);
		snprintf(ret_name, sizeof(ret_name), "%s_return", cuda_apis[api_of[k]].prog);
		enter = prog_by_name(enter_name);
		ret = prog_by_name(ret_name);
		le = enter ? bpf_program__attach_uprobe_opts(enter, pid, lib->path, offs[k], &uo) : NULL;
		uo.retprobe = true;
		lr = le && ret ? bpf_program__attach_uprobe_opts(ret, pid, lib->path, offs[k], &uo) : NULL;
		if (!lr) {
			if (!first_err)
				first_err = -errno;
			bpf_link__destroy(le);
			failed++;
			continue;
		}
		lib->links[lib->n_links++] = le;
		lib->links[lib->n_links++] = lr;
		ok++;
	}
	if (failed && first_err)
		emit_status(KSPAN_GROUP_CUDA, ok ? 0 : first_err, ok, failed, "%s: %s", lib->path, strerror(-first_err));
	else
		emit_status(KSPAN_GROUP_CUDA, ok ? 0 : -ENOENT, ok, failed, "%s", lib->path);
	return ok ? 0 : (first_err ? first_err : -ENOENT);
}

static int add_cuda_lib(const char *path, int pid)
{
	struct stat st;
	struct cuda_lib *lib;

	if (stat(path, &st)) {
		int err = -errno;
		emit_status(KSPAN_GROUP_CUDA, err, 0, 1, "%s", path);
		return err;
	}
	for (int i = 0; i < n_cuda_libs; i++)
		if (cuda_libs[i].dev == st.st_dev && cuda_libs[i].ino == st.st_ino &&
		    (cuda_libs[i].pid == 0 || cuda_libs[i].pid == pid))
			return cuda_libs[i].n_links ? 0 : attach_cuda_lib(&cuda_libs[i]);
	if (n_cuda_libs >= MAX_LIBS) {
		emit_status(KSPAN_GROUP_CUDA, -ENOSPC, 0, 1, "too many libraries: %s", path);
		return -ENOSPC;
	}
	lib = &cuda_libs[n_cuda_libs++];
	snprintf(lib->path, sizeof(lib->path), "%s", path);
	lib->dev = st.st_dev;
	lib->ino = st.st_ino;
	lib->pid = pid;
	return attach_cuda_lib(lib);
}

/* CUDA libraries already mapped by running processes (venvs ship their own
 * libcudart, so every distinct file counts). Paths are opened through
 * /proc/PID/root so libraries inside containers resolve. */
static void scan_cuda_maps(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char maps[64], line[PATH_MAX + 128];
		FILE *f;
		int pid = atoi(e->d_name);

		if (pid <= 0)
			continue;
		snprintf(maps, sizeof(maps), "/proc/%d/maps", pid);
		f = fopen(maps, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char *path = strchr(line, '/');
			if (!path)
				continue;
			path[strcspn(path, "\n")] = 0;
			if (is_cuda_lib(path)) {
				char full[PATH_MAX + 32];
				snprintf(full, sizeof(full), "/proc/%d/root%s", pid, path);
				add_cuda_lib(access(full, R_OK) == 0 ? full : path, 0);
			}
		}
		fclose(f);
	}
	closedir(d);
}

/* ----------------------------------------------------------------- control */

static int group_by_name(const char *name)
{
	for (int g = 0; g < KSPAN_GROUP_MAX; g++)
		if (!strcmp(name, group_names[g]))
			return g;
	return -1;
}

static int pid_filter(const char *verb, __u32 pid)
{
	int fd = bpf_map__fd(skel->maps.target_tgids);
	__u8 mark = !strcmp(verb, "exclude") ? KSPAN_TGID_EXCLUDED : KSPAN_TGID_TARGET;

	int err = -EINVAL;

	if (!strcmp(verb, "add") || !strcmp(verb, "exclude")) {
		err = bpf_map_update_elem(fd, &pid, &mark, BPF_ANY) ? -errno : 0;
		if (!err && mark == KSPAN_TGID_TARGET)
			skel->bss->cfg.filter_pids = 1;
	} else if (!strcmp(verb, "del")) {
		err = bpf_map_delete_elem(fd, &pid) ? -errno : 0;
	}
	skel->bss->cfg.filter_gen++; /* tasks re-evaluate their cached decision */
	return err;
}

/* Back to host-wide: drop the targets, keep the exclusions. */
static void pid_clear(void)
{
	int fd = bpf_map__fd(skel->maps.target_tgids);
	__u32 key, next, *prev = NULL;
	__u8 mark;

	skel->bss->cfg.filter_pids = 0;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		if (!bpf_map_lookup_elem(fd, &key, &mark) && mark == KSPAN_TGID_TARGET) {
			bpf_map_delete_elem(fd, &key);
			prev = NULL; /* restart: the iteration key is gone */
		} else {
			prev = &key;
		}
	}
	skel->bss->cfg.filter_gen++;
}

static bool stop_requested;

static void handle_command(char *line)
{
	char *save = NULL, *seq_s = strtok_r(line, " \t", &save);
	char *cmd = strtok_r(NULL, " \t", &save);
	char *a1 = strtok_r(NULL, " \t", &save), *a2 = strtok_r(NULL, " \t", &save);
	char *end;
	__u32 seq;
	int err = 0;

	if (!seq_s)
		return;
	seq = strtoul(seq_s, &end, 10);
	if (*end || !cmd) {
		emit_ack(0, -EINVAL, "expected: SEQ COMMAND [ARGS]");
		return;
	}
	if (!strcmp(cmd, "ping")) {
		emit_ack(seq, 0, "pong");
	} else if (!strcmp(cmd, "flush")) {
		__u64 before = now_ns(CLOCK_MONOTONIC);
		ring_buffer__consume(rings);
		emit_drained(before);
		emit_ack(seq, 0, "flushed");
	} else if (!strcmp(cmd, "pid") && a1 && !strcmp(a1, "clear")) {
		pid_clear();
		emit_ack(seq, 0, "host-wide");
	} else if (!strcmp(cmd, "pid") && a1 && a2) {
		long pid = strtol(a2, &end, 10);
		err = (*end || pid <= 0) ? -EINVAL : pid_filter(a1, pid);
		emit_ack(seq, err, err ? "pid %s %s: %s" : "pid %s %s", a1, a2, strerror(-err));
	} else if (!strcmp(cmd, "follow") && a1) {
		skel->bss->cfg.follow = !strcmp(a1, "on");
		emit_ack(seq, 0, "follow %s", skel->bss->cfg.follow ? "on" : "off");
	} else if (!strcmp(cmd, "stacks") && a1) {
		skel->bss->cfg.stacks = !strcmp(a1, "on");
		emit_ack(seq, 0, "stacks %s", skel->bss->cfg.stacks ? "on" : "off");
	} else if ((!strcmp(cmd, "attach") || !strcmp(cmd, "detach")) && a1) {
		int g = group_by_name(a1);
		if (g < 0) {
			emit_ack(seq, -EINVAL, "unknown group %s", a1);
		} else if (cmd[0] == 'a') {
			err = g == KSPAN_GROUP_CUDA ? 0 : attach_group(g);
			if (g == KSPAN_GROUP_CUDA)
				for (int l = 0; l < n_cuda_libs; l++)
					if (!cuda_libs[l].n_links)
						attach_cuda_lib(&cuda_libs[l]);
			emit_ack(seq, err, "attach %s", a1);
		} else {
			detach_group(g);
			emit_ack(seq, 0, "detach %s", a1);
		}
	} else if (!strcmp(cmd, "cuda") && a1) {
		int pid = a2 ? atoi(a2) : 0;
		err = add_cuda_lib(a1, pid);
		emit_ack(seq, err, err ? "cuda %s: %s" : "cuda %s", a1, strerror(-err));
	} else if (!strcmp(cmd, "set") && a1 && a2) {
		__u64 us = strtoull(a2, &end, 10);
		if (*end)
			err = -EINVAL;
		else if (!strcmp(a1, "offcpu_min_us"))
			skel->bss->cfg.offcpu_min_ns = us * 1000;
		else if (!strcmp(a1, "futex_min_us"))
			skel->bss->cfg.futex_min_ns = us * 1000;
		else if (!strcmp(a1, "stack_min_us"))
			skel->bss->cfg.stack_min_ns = us * 1000;
		else
			err = -EINVAL;
		emit_ack(seq, err, "set %s %s", a1, a2);
	} else if (!strcmp(cmd, "stop")) {
		stop_requested = true;
		emit_ack(seq, 0, "stopping");
	} else {
		emit_ack(seq, -EINVAL, "unknown command: %s", cmd);
	}
}

static char in_buf[8192];
static size_t in_len;

/* Returns false on EOF. */
static bool read_commands(void)
{
	ssize_t n = read(STDIN_FILENO, in_buf + in_len, sizeof(in_buf) - 1 - in_len);
	char *nl;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	in_len += n;
	in_buf[in_len] = 0;
	while ((nl = memchr(in_buf, '\n', in_len))) {
		*nl = 0;
		handle_command(in_buf);
		in_len -= nl + 1 - in_buf;
		memmove(in_buf, nl + 1, in_len);
	}
	if (in_len == sizeof(in_buf) - 1) /* a line longer than the buffer: drop it */
		in_len = 0;
	return true;
}

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

/* tp_btf programs need the kernel's btf_trace_<name> type; classic
 * tracepoints need the tracefs event. Programs whose hook this kernel lacks
 * are not loaded (and reported), instead of failing the whole object. */
static void mark_available(struct btf *vmlinux)
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
static void choose_irq_src(const struct btf *btf)
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

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kspan-probe [--pid P]... [--exclude-pid P]... [--follow] [--groups LIST]\n"
		"                   [--cuda-lib PATH]...\n"
		"                   [--no-cuda-scan] [--offcpu-min-us N] [--futex-min-us N]\n"
		"                   [--stacks] [--stack-min-us N] [--cgroup PATH] [--ring-mb N]\n"
		"                   [--drain-ms N] [--clock-ms N] [--check] [--stats] [--irq-tracepoints] [--verbose]\n"
		"Records go to stdout (see docs/probe.md); control commands come on stdin.\n");
}

static int parse_groups(const char *list)
{
	char buf[128], *save = NULL;
	unsigned g = 0;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int i = group_by_name(t);
		if (i < 0)
			return -1;
		g |= 1u << i;
	}
	opt.groups = g | (1u << KSPAN_GROUP_TASK); /* names are always needed */
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "pid", required_argument, 0, 'p' },
		{ "exclude-pid", required_argument, 0, 'E' },
		{ "follow", no_argument, 0, 'f' },
		{ "groups", required_argument, 0, 'g' },
		{ "cuda-lib", required_argument, 0, 'c' },
		{ "no-cuda-scan", no_argument, 0, 'N' },
		{ "offcpu-min-us", required_argument, 0, 'o' },
		{ "futex-min-us", required_argument, 0, 'x' },
		{ "stacks", no_argument, 0, 's' },
		{ "stack-min-us", required_argument, 0, 'S' },
		{ "cgroup", required_argument, 0, 'C' },
		{ "ring-mb", required_argument, 0, 'r' },
		{ "drain-ms", required_argument, 0, 'd' },
		{ "clock-ms", required_argument, 0, 'k' },
		{ "check", no_argument, 0, 'K' },
		{ "verbose", no_argument, 0, 'v' },
		{ "stats", no_argument, 0, 'T' },
		{ "irq-tracepoints", no_argument, 0, 'I' },
		{ "help", no_argument, 0, 'h' },
		{ 0 },
	};
	int c, err, epfd, sfd, tfd, exit_code = EXIT_OK;
	struct btf *vmlinux;
	sigset_t mask;
	bool any_attached = false;
	__u64 cgids[KSPAN_MAX_CGROUPS] = {}, last_clock, last_drops, last_drained = 0;

	while ((c = getopt_long(argc, argv, "p:", long_opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (opt.n_pids < MAX_PIDS && atoi(optarg) > 0)
				opt.pids[opt.n_pids++] = atoi(optarg);
			else {
				fprintf(stderr, "kspan-probe: bad --pid %s\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'E':
			if (opt.n_excluded < MAX_PIDS && atoi(optarg) > 0)
				opt.excluded[opt.n_excluded++] = atoi(optarg);
			else {
				fprintf(stderr, "kspan-probe: bad --exclude-pid %s\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f': opt.follow = true; break;
		case 'g':
			if (parse_groups(optarg)) {
				fprintf(stderr, "kspan-probe: bad --groups %s (sched,task,futex,block,tcp,cuda,futex-syscalls)\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'c':
			if (opt.n_cuda_libs < MAX_LIBS)
				opt.cuda_libs[opt.n_cuda_libs++] = optarg;
			break;
		case 'N': opt.cuda_scan = false; break;
		case 'o': opt.offcpu_min_ns = strtoull(optarg, NULL, 10) * 1000; break;
		case 'x': opt.futex_min_ns = strtoull(optarg, NULL, 10) * 1000; break;
		case 's': opt.stacks = true; break;
		case 'S': opt.stack_min_ns = strtoull(optarg, NULL, 10) * 1000; break;
		case 'C':
			if (opt.n_cgroups >= KSPAN_MAX_CGROUPS) {
				fprintf(stderr, "kspan-probe: at most %d --cgroup\n", KSPAN_MAX_CGROUPS);
				return EXIT_USAGE;
			}
			opt.cgroups[opt.n_cgroups++] = optarg;
			break;
		case 'r': opt.ring_mb = atoi(optarg); break;
		case 'd': opt.drain_ms = atoi(optarg); break;
		case 'k': opt.clock_ms = atoi(optarg); break;
		case 'K': opt.check = true; break;
		case 'v': opt.verbose = true; break;
		case 'T': opt.stats = true; break;
		case 'I': opt.irq_tracepoints = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc || opt.ring_mb < 1 || opt.ring_mb > 1024 || opt.drain_ms < 1 || opt.clock_ms < 10) {
		usage(stderr);
		return EXIT_USAGE;
	}

	signal(SIGPIPE, SIG_IGN);
	libbpf_set_print(libbpf_log);
	ncpu = libbpf_num_possible_cpus();

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
			exit_code = EXIT_NOPRIV;
		} else {
			fprintf(stderr, "kspan-probe: the kernel refused the BPF programs: %s (rerun with --verbose "
					"for the verifier log)\n", strerror(-err));
			exit_code = EXIT_BPF_REFUSED;
		}
		goto out;
	}

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
		exit_code = EXIT_OTHER;
		goto out;
	}

	emit_hello();
	emit_clock(false);

	/* Task group first so the names of everything that follows are seen. */
	static const int order[] = { KSPAN_GROUP_TASK, KSPAN_GROUP_SCHED, KSPAN_GROUP_FUTEX,
				     KSPAN_GROUP_FUTEX_SYSCALLS, KSPAN_GROUP_BLOCK, KSPAN_GROUP_TCP };
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
	if (!any_attached) {
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

	/* Main loop: epoll on the rings (woken only when data piles up), stdin,
	 * signals, and a CLOCK_REALTIME timer that is cancelled when the clock is
	 * set; the epoll timeout is the drain period. */
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
		ring_buffer__consume(rings);
		/* at most every 10 ms: the watermark is read live by the daemon */
		if (now - last_drained >= 10000000ull) {
			emit_drained(now);
			last_drained = now;
		}
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
	{
		__u64 before = now_ns(CLOCK_MONOTONIC);
		ring_buffer__consume(rings);
		emit_drained(before);
	}
	emit_drops();
	out_flush();
	if (out_broken)
		fprintf(stderr, "kspan-probe: stdout closed, exiting\n");
	/* The stream is complete: let the reader see EOF now. Detaching uprobes
	 * below can take ~0.1 s per probe in the kernel. */
	close(STDOUT_FILENO);
	if (opt.stats)
		print_prog_stats();
out:
	for (size_t i = 0; i < N_PROGS; i++)
		bpf_link__destroy(progs[i].link);
	for (int l = 0; l < n_cuda_libs; l++)
		for (int k = 0; k < cuda_libs[l].n_links; k++)
			bpf_link__destroy(cuda_libs[l].links[k]);
	ring_buffer__free(rings);
	kspan_bpf__destroy(skel);
	return exit_code;
}

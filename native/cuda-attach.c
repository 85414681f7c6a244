// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* CUDA attach (cuda-attach.h). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cuda-attach.h"
#include "elf-sym.h"
#include "kspan-probe.h"
#include "output.h"

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
int n_cuda_libs;

static bool is_cuda_lib(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return !strncmp(base, "libcudart.so", 12) || !strncmp(base, "libcuda.so", 10);
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

int add_cuda_lib(const char *path, int pid)
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
void scan_cuda_maps(void)
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

void cuda_reattach(void)
{
	for (int l = 0; l < n_cuda_libs; l++)
		if (!cuda_libs[l].n_links)
			attach_cuda_lib(&cuda_libs[l]);
}

void cuda_detach(void)
{
	for (int l = 0; l < n_cuda_libs; l++) {
		for (int k = 0; k < cuda_libs[l].n_links; k++)
			bpf_link__destroy(cuda_libs[l].links[k]);
		cuda_libs[l].n_links = 0;
	}
}

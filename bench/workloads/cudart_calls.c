/*
 * Per-call cost workload for bench/cudart.ts: dlopen a CUDA runtime (NVIDIA's
 * real libcudart.so.12 from the wheel in .venv) and call
 * cudaStreamSynchronize(STREAM) CALLS times in a tight loop on one thread.
 * Without a GPU driver each call returns 35 (cudaErrorInsufficientDriver) at
 * once, so the loop measures the call itself, and with kspan's uprobe +
 * uretprobe attached, what they add per call.
 * usage: cudart_calls LIBCUDART [CALLS=1000000]
 * Prints {"calls":N,"seconds":S,"calls_per_s":R,"ns_per_call":T,"ret":r,"pid":P}.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: cudart_calls LIBCUDART [CALLS]\n");
		return 2;
	}
	long calls = argc > 2 ? atol(argv[2]) : 1000000;
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	int (*sync)(void *) = (int (*)(void *))dlsym(h, "cudaStreamSynchronize");
	if (!sync) {
		fprintf(stderr, "dlsym: %s\n", dlerror());
		return 1;
	}
	int ret = sync((void *)0x5151000); /* runtime initialisation (fails: no driver) */
	double t = now();
	for (long i = 0; i < calls; i++)
		ret = sync((void *)0x5151000);
	double s = now() - t;
	printf("{\"calls\":%ld,\"seconds\":%.6f,\"calls_per_s\":%.1f,\"ns_per_call\":%.1f,\"ret\":%d,\"pid\":%d}\n",
	       calls, s, calls / s, s * 1e9 / calls, ret, (int)getpid());
	return 0;
}

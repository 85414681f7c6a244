/*
 * cudart_standin.c -> build/libcudart.so.12 (SONAME libcudart.so.12)
 *
 * The example's stand-in for the CUDA runtime. There is no GPU: this library
 * exports functions with the real CUDA runtime names and C signatures
 * (cudaError_t = int, handles = pointers, dim3 passed by value), so kspan's
 * uprobes/uretprobes attach to it exactly as they would to the libcudart.so.12
 * a PyTorch wheel ships, and see the same arguments.
 *
 * A tiny model of an asynchronous device, per process:
 *   - every kernel launch queues `kernel_us` of "GPU work" behind the work
 *     already queued (the device runs one kernel at a time);
 *   - cudaMemcpyAsync queues bytes / copy_bytes_per_us of copy work;
 *   - cudaStreamSynchronize / cudaDeviceSynchronize sleep (clock_nanosleep,
 *     the thread is off CPU, as when the real runtime blocks in an ioctl or a
 *     futex) until the queued work is done;
 *   - cudaMemcpy (synchronous) waits for the queue, then copies.
 * `kernel_us` comes from env KSPAN_DEMO_KERNEL_US (default 300) or from
 * kspan_demo_gpu_config(); copies run at 10 GB/s (10000 bytes per µs).
 * All functions return cudaSuccess (0).
 *
 * Everything that is not CUDA API is prefixed kspan_demo_.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define API __attribute__((visibility("default"), noinline, used))
#define BARRIER() __asm__ volatile("" ::: "memory")

typedef int cudaError_t;
typedef void *cudaStream_t;
typedef void *cudaEvent_t;
typedef struct {
	unsigned int x, y, z;
} dim3;

#define cudaSuccess 0

static pthread_mutex_t gpu_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t gpu_free_at_ns;      /* CLOCK_MONOTONIC time the queued work ends */
static long kernel_us = -1;
static const uint64_t copy_bytes_per_us = 10000;
static uint64_t n_launch, n_sync, n_copy;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long kernel_cost_us(void)
{
	if (kernel_us < 0) {
		const char *v = getenv("KSPAN_DEMO_KERNEL_US");
		long us = v ? strtol(v, NULL, 10) : 300;
		kernel_us = us >= 0 ? us : 0;
	}
	return kernel_us;
}

/* queue `ns` of device work behind what is already queued */
static void enqueue(uint64_t ns)
{
	pthread_mutex_lock(&gpu_lock);
	uint64_t now = mono_ns();
	uint64_t start = gpu_free_at_ns > now ? gpu_free_at_ns : now;
	gpu_free_at_ns = start + ns;
	pthread_mutex_unlock(&gpu_lock);
}

/* block (off CPU) until the queued device work is done */
static void wait_idle(void)
{
	pthread_mutex_lock(&gpu_lock);
	uint64_t until = gpu_free_at_ns;
	pthread_mutex_unlock(&gpu_lock);
	struct timespec ts = { (time_t)(until / 1000000000ull), (long)(until % 1000000000ull) };
	while (mono_ns() < until && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---- not CUDA: configuration and counters for the example ---- */

API void kspan_demo_gpu_config(long kernel_cost_us_)
{
	kernel_us = kernel_cost_us_ >= 0 ? kernel_cost_us_ : 0;
}

API uint64_t kspan_demo_gpu_calls(void)
{
	return n_launch + n_sync + n_copy;
}

/* ---- CUDA runtime API (real names and signatures) ---- */

API cudaError_t cudaGetDeviceCount(int *count)
{
	if (count)
		*count = 1;
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaSetDevice(int device)
{
	(void)device;
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaStreamCreate(cudaStream_t *stream)
{
	static char streams[16];
	static int next;
	if (stream)
		*stream = &streams[__atomic_fetch_add(&next, 1, __ATOMIC_RELAXED) % 16];
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaMalloc(void **ptr, size_t size)
{
	if (ptr)
		*ptr = malloc(size ? size : 1);
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaFree(void *ptr)
{
	free(ptr);
	BARRIER();
	return cudaSuccess;
}

static cudaError_t launch(void)
{
	__atomic_fetch_add(&n_launch, 1, __ATOMIC_RELAXED);
	enqueue((uint64_t)kernel_cost_us() * 1000ull);
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
				 size_t sharedMem, cudaStream_t stream)
{
	(void)func; (void)gridDim; (void)blockDim; (void)args; (void)sharedMem; (void)stream;
	return launch();
}

API cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 gridDim, dim3 blockDim, void **args,
				      size_t sharedMem, cudaStream_t stream)
{
	(void)func; (void)gridDim; (void)blockDim; (void)args; (void)sharedMem; (void)stream;
	return launch();
}

static void copy(void *dst, const void *src, size_t count)
{
	__atomic_fetch_add(&n_copy, 1, __ATOMIC_RELAXED);
	if (dst && src && count)
		memmove(dst, src, count);
	enqueue((uint64_t)count * 1000ull / copy_bytes_per_us);
}

API cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind, cudaStream_t stream)
{
	(void)kind; (void)stream;
	copy(dst, src, count);
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaMemcpyAsync_ptsz(void *dst, const void *src, size_t count, int kind,
				     cudaStream_t stream)
{
	(void)kind; (void)stream;
	copy(dst, src, count);
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, int kind)
{
	(void)kind;
	wait_idle();
	copy(dst, src, count);
	wait_idle();
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
	(void)stream;
	__atomic_fetch_add(&n_sync, 1, __ATOMIC_RELAXED);
	wait_idle();
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaStreamSynchronize_ptsz(cudaStream_t stream)
{
	(void)stream;
	__atomic_fetch_add(&n_sync, 1, __ATOMIC_RELAXED);
	wait_idle();
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaDeviceSynchronize(void)
{
	__atomic_fetch_add(&n_sync, 1, __ATOMIC_RELAXED);
	wait_idle();
	BARRIER();
	return cudaSuccess;
}

API cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
	(void)event;
	__atomic_fetch_add(&n_sync, 1, __ATOMIC_RELAXED);
	wait_idle();
	BARRIER();
	return cudaSuccess;
}

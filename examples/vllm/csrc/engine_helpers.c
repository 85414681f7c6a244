/*
 * engine_helpers.c -> build/libkspan_vllm_engine.so
 *
 * Native helpers the example's engine process calls through ctypes. ctypes
 * releases the GIL around every foreign call, so the kernel sees exactly the
 * behaviour written here (plain pthread mutex futex waits, CPU burn, sleeps),
 * not the interpreter's GIL hand-offs.
 *
 *   kspan_demo_tokenizer_run()   run the tokenizer loop in the calling thread
 *                                (names it "tokenizer"): hold the input-queue
 *                                lock for hold_us, release it, wait gap_us,
 *                                again, until kspan_demo_tokenizer_stop()
 *   kspan_demo_tokenizer_set(hold_us, gap_us)   change the pattern live
 *   kspan_demo_tokenizer_tid()   the tokenizer's OS thread id (0 before it runs)
 *   kspan_demo_schedule(cpu_us)  the engine's scheduler step: take the
 *                                input-queue lock (blocking on a futex while
 *                                the tokenizer holds it), burn cpu_us of CPU,
 *                                release it; returns the ns spent waiting
 *   kspan_demo_burn(cpu_us)      burn cpu_us of this thread's CPU time (the
 *                                wall time grows when the CPU is taken away)
 *   kspan_demo_set_thread_name(name)   prctl(PR_SET_NAME) for the caller
 *   kspan_demo_gettid()
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

static pthread_mutex_t input_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int tok_stop;
static volatile long tok_hold_us = 10000, tok_gap_us = 20000;
static volatile int tok_tid;

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us)
{
	if (us <= 0)
		return;
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

API int kspan_demo_gettid(void)
{
	return (int)syscall(SYS_gettid);
}

API void kspan_demo_set_thread_name(const char *name)
{
	prctl(PR_SET_NAME, name, 0, 0, 0);
}

API void kspan_demo_burn(long cpu_us)
{
	uint64_t end = clock_ns(CLOCK_THREAD_CPUTIME_ID) + (uint64_t)cpu_us * 1000ull;
	volatile uint64_t x = 0;
	while (clock_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 2000; i++)
			x += (uint64_t)i * 2654435761u;
}

API void kspan_demo_tokenizer_set(long hold_us, long gap_us)
{
	tok_hold_us = hold_us > 0 ? hold_us : 0;
	tok_gap_us = gap_us > 0 ? gap_us : 1000;
}

API void kspan_demo_tokenizer_stop(void)
{
	tok_stop = 1;
}

API int kspan_demo_tokenizer_tid(void)
{
	return tok_tid;
}

API void kspan_demo_tokenizer_run(void)
{
	prctl(PR_SET_NAME, "tokenizer", 0, 0, 0);
	tok_tid = (int)syscall(SYS_gettid);
	while (!tok_stop) {
		long hold = tok_hold_us;
		if (hold > 0) {
			pthread_mutex_lock(&input_lock);
			/* "tokenizing a long prompt" while holding the input queue */
			sleep_us(hold);
			pthread_mutex_unlock(&input_lock);
		}
		sleep_us(tok_gap_us);
	}
}

API int64_t kspan_demo_schedule(long cpu_us)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	pthread_mutex_lock(&input_lock);
	uint64_t waited = clock_ns(CLOCK_MONOTONIC) - t0;
	kspan_demo_burn(cpu_us);
	pthread_mutex_unlock(&input_lock);
	return (int64_t)waited;
}

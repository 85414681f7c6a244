/*
 * Overhead workload (b): a context-switch storm. Two threads hand a token
 * back and forth through a futex word for SECONDS: every hand-off is a
 * FUTEX_WAKE, a wakeup and two context switches. Prints
 * Both threads are pinned to CPU 0. Prints
 * {"ops":round_trips,"seconds":S,"ops_per_s":R,"cpu_s":C,"pid":P}.
 * usage: futex_pingpong [SECONDS=3]
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static atomic_int turn; /* 0: ping's turn, 1: pong's turn, 2: stop */
static long rounds;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void wait_for(int want)
{
	int v;
	while ((v = atomic_load(&turn)) != want && v != 2)
		syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void give(int to)
{
	atomic_store(&turn, to);
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *pong(void *arg)
{
	(void)arg;
	for (;;) {
		wait_for(1);
		if (atomic_load(&turn) == 2) return NULL;
		give(0);
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	pthread_t t;
	/* Both threads on one CPU: every hand-off is a direct context switch,
	 * and the rate doesn't depend on where the scheduler put them. */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one);
	pthread_create(&t, NULL, pong, NULL);
	double start = now(), end = start + seconds;
	while (now() < end) {
		give(1);
		wait_for(0);
		rounds++;
	}
	atomic_store(&turn, 2);
	syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(t, NULL);
	double took = now() - start;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("{\"ops\":%ld,\"seconds\":%.6f,\"ops_per_s\":%.1f,\"cpu_s\":%.6f,\"pid\":%d}\n", rounds, took, rounds / took, cpu, (int)getpid());
	return 0;
}

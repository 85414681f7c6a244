/*
 * Overhead workload (a): a request loop like a small service's worker pool.
 * THREADS threads (default 2) each serve requests for SECONDS: per request
 * ~WORK_US of CPU work, a short sleep (SLEEP_US), then a critical section of
 * ~CS_US under a mutex shared by all threads (so the lock is contended and
 * futex waits/wakes happen). Prints {"ops":N,"seconds":S,"ops_per_s":R,"cpu_s":C,"pid":P}.
 * usage: request_loop [SECONDS=3] [THREADS=2] [WORK_US=200] [SLEEP_US=100] [CS_US=20]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <time.h>

static double seconds = 3;
static int work_us = 200, sleep_us = 100, cs_us = 20;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long ops;
static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Busy work for about `us` microseconds of CPU. */
static void spin(int us)
{
	double end = now() + us / 1e6;
	unsigned long x = sink;
	while (now() < end)
		for (int i = 0; i < 200; i++)
			x = x * 6364136223846793005ul + 1442695040888963407ul;
	sink = x;
}

static void *worker(void *arg)
{
	double end = *(double *)arg;
	struct timespec nap = { 0, sleep_us * 1000L };
	while (now() < end) {
		spin(work_us);
		nanosleep(&nap, NULL);
		pthread_mutex_lock(&lock);
		spin(cs_us);
		pthread_mutex_unlock(&lock);
		atomic_fetch_add(&ops, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 2;
	if (argc > 1) seconds = atof(argv[1]);
	if (argc > 2) threads = atoi(argv[2]);
	if (argc > 3) work_us = atoi(argv[3]);
	if (argc > 4) sleep_us = atoi(argv[4]);
	if (argc > 5) cs_us = atoi(argv[5]);
	pthread_t t[64];
	if (threads < 1 || threads > 64) return 2;
	double start = now(), end = start + seconds;
	for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, &end);
	for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
	double took = now() - start;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("{\"ops\":%ld,\"seconds\":%.6f,\"ops_per_s\":%.1f,\"cpu_s\":%.6f,\"pid\":%d}\n", (long)ops, took, ops / took, cpu, (int)getpid());
	return 0;
}

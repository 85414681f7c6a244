// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The command line (options.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "groups.h"
#include "kspan-probe.h"

struct opts opt = {
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

int parse_args(int argc, char **argv)
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
	int c;

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
				fprintf(stderr, "kspan-probe: bad --groups %s (sched,task,futex,blocked,block,tcp,cuda,futex-syscalls)\n", optarg);
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
	return -1;
}

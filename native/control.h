/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The control protocol (docs/probe.md): newline-terminated commands on stdin,
 * "SEQ COMMAND [ARGS]" (ping, flush, pid, follow, stacks, attach, detach,
 * cuda, set, stop), each answered by one KSPAN_ACK record with that SEQ.
 * They change the running capture through the BPF maps and the .bss config.
 */
#ifndef KSPAN_CONTROL_H
#define KSPAN_CONTROL_H

#include <stdbool.h>
#include <linux/types.h>

/* Set by `stop` (and by the main loop on a signal or EOF on stdin). */
extern bool stop_requested;

/* Reads what stdin has and runs every complete line. Returns false on EOF. */
bool read_commands(void);

/* `pid add|exclude|del PID`, also used for --pid and --exclude-pid. 0 or -errno. */
int pid_filter(const char *verb, __u32 pid);

#endif /* KSPAN_CONTROL_H */

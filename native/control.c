// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The control protocol (control.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "control.h"
#include "cuda-attach.h"
#include "groups.h"
#include "kspan-probe.h"
#include "output.h"
#include "drain.h"

int pid_filter(const char *verb, __u32 pid)
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

bool stop_requested;

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
		bool marked = drain(true);
		emit_ack(seq, 0, marked ? "flushed" : "flushed (watermark held: a record is still being written)");
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
				cuda_reattach();
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

bool read_commands(void)
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

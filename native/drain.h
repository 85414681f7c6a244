/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Draining the rings and the ingest watermark (KSPAN_DRAINED): a marker says
 * "every record of an event before T is in the stream", so it is written only
 * once the drain has consumed every record reserved before T.
 */
#ifndef KSPAN_DRAIN_H
#define KSPAN_DRAIN_H

#include <stdbool.h>

/* Map the rings' producer/consumer position pages (after load). Without them
 * (mmap refused) drains mark as before: trusting that a record is submitted
 * within microseconds of its reservation. */
void drain_init(void);
/* Consume what the rings hold. With `mark`, then write DRAINED for the time
 * the drain began if it caught up with what was reserved by then; returns
 * whether it wrote one (false: a record reserved earlier is still being
 * written, e.g. its CPU was preempted between reserve and submit; the next
 * drain marks). */
bool drain(bool mark);
/* Drains that could not mark so far (stuck behind an unsubmitted record). */
unsigned long drain_stalls(void);

#endif /* KSPAN_DRAIN_H */

// Off-CPU intervals still open at the probe's latest snapshot (schema
// OpenInterval, kept by the writer until their switch-in record is
// committed) as events: an interval is recorded at its switch-in, so without
// these a thread still blocked at the watermark reads as running up to it.

import { Kind, OffcpuFlag } from '../capture/index.js';
import { F, type EventList } from './codec.js';
import type { OpenInterval, SessionMeta } from './schema.js';

/** Did thread tid run after t, by its events in `list` (a switch-in, a futex wait's end, a wake it made, a CUDA call)? */
function ranAfter(list: EventList, tid: number, t: number): boolean {
  for (let i = 0; i < list.count; i++) {
    if (list.tid[i] !== tid) continue;
    const k = list.kind[i];
    if ((k === Kind.OFFCPU || k === Kind.FUTEX_WAIT) && list.end[i] > t) return true;
    if ((k === Kind.FUTEX_WAKE || k === Kind.CUDA_CALL) && list.start[i] > t) return true;
  }
  return false;
}

/**
 * How far an open interval is known to last: to the end of its capture
 * session once that ended, else to how far the running capture is known
 * (`knownThrough`; the session's end when null).
 */
function openIntervalEnd(o: OpenInterval, sessions: readonly SessionMeta[], knownThrough: number | null): number {
  let s: SessionMeta | null = null;
  for (const x of sessions) if (x.startNs <= o.start && (!s || x.startNs >= s.startNs)) s = x;
  if (!s) return o.asOf;
  return s.closed ? s.endNs : Math.max(o.asOf, knownThrough ?? s.endNs);
}

/**
 * Append `o` to `list` as an off-CPU event flagged OPEN ending at `end`: not
 * woken, blocked throughout (runnable = end); woken, runnable from then. In a
 * futex wait, also that wait (FUTEX_WAIT, same span; return 0: not known).
 * There is no switch-in, so no last_* (who ran before it). In a list of the
 * thread's events with no later switch-in (ranAfter false) it starts after
 * every interval of the thread, so appending keeps their start order.
 */
function appendOpenInterval(list: EventList, o: OpenInterval, end: number): void {
  if (list.count + 2 > list.capacity) list.grow(Math.max(16, list.capacity * 2));
  const f = list.f;
  const j = appendRow(list, Kind.OFFCPU, o, end);
  f[F.offcpu.runnableNs][j] = o.runnable || end;
  f[F.offcpu.flags][j] = o.flags | OffcpuFlag.OPEN;
  f[F.offcpu.prevState][j] = o.prevState;
  f[F.offcpu.wakerPid][j] = o.wakerPid;
  f[F.offcpu.wakerTid][j] = o.wakerTid;
  f[F.offcpu.preemptPid][j] = o.preemptPid;
  f[F.offcpu.preemptTid][j] = o.preemptTid;
  f[F.offcpu.outCpu][j] = o.cpu;
  if (!o.uaddr) return;
  // the futex wait it is blocked in, as its record will be (its return is not known yet: 0)
  const k = appendRow(list, Kind.FUTEX_WAIT, o, end);
  f[F.futexWait.uaddr][k] = o.uaddr;
  f[F.futexWait.op][k] = o.op;
  f[F.futexWait.val][k] = o.val;
  f[F.futexWait.ownerTid][k] = o.ownerTid;
  f[F.futexWait.ownerSrc][k] = o.ownerSrc;
}

/** A row of `kind` for o's thread over [o.start, end], numeric fields 0, no byte fields (capacity reserved by the caller). */
function appendRow(list: EventList, kind: number, o: OpenInterval, end: number): number {
  const j = list.count++;
  list.kind[j] = kind;
  list.cpu[j] = o.cpu;
  list.pid[j] = o.pid;
  list.tid[j] = o.tid;
  list.start[j] = o.start;
  list.end[j] = end;
  for (const col of list.f) col[j] = 0;
  list.blobOff[j] = list.blobUsed;
  list.blobLen[j] = 0;
  return j;
}

/**
 * Add thread tid's open intervals (`rows`, reader.openIntervals) that overlap
 * [a, b] to `list`, which holds the thread's events over [a, b], unless the
 * list shows the thread running after one began (its switch-in is there).
 * Each ends at b or where it is known to end (openIntervalEnd), or where the
 * scheduler ring lost records after its last report (`lossWindows`, sorted:
 * its switch-in may be among them; the time after that is the caller's
 * lost-record rule's). Returns how many were added.
 */
export function addOpenIntervals(
  list: EventList, rows: readonly OpenInterval[], tid: number, a: number, b: number,
  sessions: readonly SessionMeta[], knownThrough: number | null, lossWindows: readonly (readonly [number, number])[] = [],
): number {
  let n = 0;
  for (const o of rows) {
    if (o.tid !== tid || o.start > b || ranAfter(list, tid, o.start)) continue;
    let end = Math.min(b, openIntervalEnd(o, sessions, knownThrough));
    for (const [p, q] of lossWindows) {
      if (q > o.asOf) {
        end = Math.min(end, Math.max(p, o.asOf));
        break;
      }
    }
    if (end < a || end <= o.start) continue;
    appendOpenInterval(list, o, end);
    n++;
  }
  return n;
}

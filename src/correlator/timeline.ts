// Per-thread timeline of a window [a, b] (monotonic ns): the thread's off-CPU
// intervals cut into labelled pieces, CUDA sync calls, and the breakdown.
//
// Precedence at every instant of [a, b] (so the parts add up exactly):
//   1. not captured (outside reader.coverage ranges)           -> unknown
//   2. runqueue part of an off-CPU interval                    -> runqueue
//   3. blocked part of an off-CPU interval, classified:
//        inside a blocking CUDA call (cudaApiBlocks)           -> cuda_sync
//        inside a futex wait (futex_wait record, or IN_FUTEX)  -> futex
//        D state (prev_state & TASK_UNINTERRUPTIBLE, not NOLOAD)-> io
//        anything else (S, idle D, stopped, ...)               -> sleep
//   4. on CPU inside a blocking CUDA call (spin-wait)          -> cuda_sync
//   5. the rest of the covered time                            -> on_cpu
// An interval that began before the probe attached (START_UNKNOWN: its start
// is the probe's, its kind not known) is off CPU of unknown kind -> unknown.
// An interval still open at the watermark (OPEN: from the probe's blocked-task
// snapshot, session.ts) counts by its kind up to the window's end; if it was
// woken, the wait for a CPU after the waking is unknown (no switch-in says
// who held the CPU).
// Off-CPU intervals shorter than the capture threshold (50 µs default) are
// not recorded, so they count as on_cpu.
//
// "The rest is on CPU" holds only where no off-CPU record of the thread can
// be missing. A record is emitted at switch-in and describes the whole
// interval before it, so one lost by the kernel ring (reserve failure, in a
// loss window (p, q] of store/drops.ts) hides an interval that ended in
// (p, q] and began anywhere after the thread's previous record: in the gap
// between the thread's seen intervals that reaches into the window. That gap,
// from its start to the window's end, counts as unknown, not on_cpu.

import { Kind, OffcpuFlag, cudaApiBlocks } from '../capture/index.js';
import { F, type EventList } from '../store/index.js';
import type { Breakdown } from './types.js';

/** 'unknown': off CPU, but since before the probe attached (OffcpuFlag.START_UNKNOWN): not a cause, not on CPU */
export type PieceLabel = 'runqueue' | 'futex' | 'io' | 'sleep' | 'cuda_sync' | 'unknown';
/** sleep pieces: woken by a timer/irq or never woken ('timer'), by a task ('woken'), other states ('other') */
export type SleepSub = 'timer' | 'woken' | 'other' | '';

export interface Piece {
  label: PieceLabel;
  sub: SleepSub;
  /** index of the off-CPU event in tl.list */
  i: number;
  /** clipped to the window */
  a: number;
  b: number;
  /** covered length of [a, b] (what the breakdown counts) */
  eff: number;
  tl: Timeline;
  /** futex pieces: index of the futex_wait record in tl.list, -1 when known only from IN_FUTEX */
  wait: number;
}

export interface Timeline {
  tid: number;
  pid: number;
  a: number;
  b: number;
  list: EventList;
  /** indexes into list, by kind, overlapping [a, b], in start order */
  offcpu: number[];
  futexWaits: number[];
  cudaSync: number[];
  cudaLaunch: number[];
  blockIo: number[];
  pieces: Piece[];
  /** on-CPU time inside blocking CUDA calls (covered) */
  cudaOnCpu: number;
  bd: Breakdown;
  /** events of this thread in [a, b] (any kind) */
  events: number;
  /** covered ranges, clipped to [a, b] */
  covered: [number, number][];
  /** no events and the thread directory does not know the thread then: its covered time is unknown, not on_cpu */
  unseen?: boolean;
  /** covered time that would read as on_cpu but may hide a lost off-CPU record: counted unknown */
  lostNs: number;
}

const TASK_UNINTERRUPTIBLE = 0x2;
const TASK_INTERRUPTIBLE = 0x1;
const TASK_NOLOAD = 0x400;
const RUNQ_FLAGS = OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED;
const IRQ_FLAGS = OffcpuFlag.WAKER_HARDIRQ | OffcpuFlag.WAKER_SOFTIRQ;

/** Where records may be missing (store/drops.ts lossWindows), per ring that matters here. */
export interface LossWindows {
  /** off-CPU and futex records: every thread */
  sched: readonly [number, number][];
  /** CUDA calls: threads that make them */
  cuda: readonly [number, number][];
}
const NO_LOSS: LossWindows = { sched: [], cuda: [] };

export function emptyBreakdown(): Breakdown {
  return { on_cpu: 0, runqueue: 0, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 0 };
}

/** Covered length of [x, y] given sorted disjoint ranges. */
export function coveredLen(x: number, y: number, ranges: [number, number][]): number {
  if (y <= x) return 0;
  let n = 0;
  for (const [p, q] of ranges) {
    if (q <= x) continue;
    if (p >= y) break;
    n += Math.min(q, y) - Math.max(p, x);
  }
  return n;
}

export function clipRanges(ranges: [number, number][], a: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [p, q] of ranges) {
    const x = Math.max(p, a);
    const y = Math.min(q, b);
    if (y > x) out.push([x, y]);
  }
  return out;
}

/** Does any of the events idx (sorted by start) overlap [x, y]? Returns the one overlapping most, or -1. */
function bestOverlap(list: EventList, idx: number[], x: number, y: number): number {
  let best = -1;
  let bestLen = 0;
  for (const j of idx) {
    const s = list.start[j];
    if (s >= y) break;
    const e = list.end[j];
    if (e <= x) continue;
    const len = Math.min(e, y) - Math.max(s, x);
    if (len > bestLen) {
      bestLen = len;
      best = j;
    }
  }
  return best;
}

/**
 * Build the timeline of thread `tid` over [a, b] from `list` (the thread's
 * events overlapping a window that contains [a, b], sorted by start).
 * Events recorded under another pid than `pid` (tid reuse) are ignored when
 * pid > 0.
 */
export function buildTimeline(
  list: EventList, tid: number, pid: number, a: number, b: number, covered: [number, number][],
  loss: LossWindows = NO_LOSS,
): Timeline {
  const cov = clipRanges(covered, a, b);
  const tl: Timeline = {
    tid, pid, a, b, list, offcpu: [], futexWaits: [], cudaSync: [], cudaLaunch: [], blockIo: [], pieces: [],
    cudaOnCpu: 0, bd: emptyBreakdown(), events: 0, covered: cov, lostNs: 0,
  };
  const n = list.count;
  const K = list.kind;
  const api = list.f[F.cudaCall.api];
  let cudaCalls = 0;
  for (let i = 0; i < n; i++) {
    if (list.tid[i] !== tid) continue;
    if (pid > 0 && list.pid[i] !== pid) continue;
    const s = list.start[i];
    const e = list.end[i];
    if (e < a || s > b) continue;
    tl.events++;
    switch (K[i]) {
      case Kind.OFFCPU: if (e > a && s < b) tl.offcpu.push(i); break;
      case Kind.FUTEX_WAIT: tl.futexWaits.push(i); break;
      case Kind.CUDA_CALL:
        cudaCalls++;
        if (cudaApiBlocks(api[i])) tl.cudaSync.push(i);
        else if (api[i] === 1 || api[i] === 16) tl.cudaLaunch.push(i);
        break;
      case Kind.BLOCK_IO: tl.blockIo.push(i); break;
      default: break;
    }
  }
  const fl = list.f[F.offcpu.flags];
  const rn = list.f[F.offcpu.runnableNs];
  const ps = list.f[F.offcpu.prevState];
  const wt = list.f[F.offcpu.wakerTid];
  let cursor = a; // pieces stay disjoint even if records overlap (bad data)
  const push = (label: PieceLabel, sub: SleepSub, i: number, x: number, y: number, wait: number): void => {
    x = Math.max(x, a, cursor);
    y = Math.min(y, b);
    if (y <= x) return;
    cursor = y;
    const eff = coveredLen(x, y, cov);
    tl.pieces.push({ label, sub, i, a: x, b: y, eff, tl, wait });
  };
  for (const i of tl.offcpu) {
    const s = list.start[i];
    const e = list.end[i];
    const flags = fl[i];
    if (flags & OffcpuFlag.START_UNKNOWN) {
      push('unknown', '', i, s, e, -1);
      continue;
    }
    const rq0 = flags & RUNQ_FLAGS ? s : Math.min(e, Math.max(s, rn[i]));
    if (rq0 > s) {
      // blocked part [s, rq0]
      const x = Math.max(s, a);
      const y = Math.min(rq0, b);
      let label: PieceLabel = 'sleep';
      let sub: SleepSub = '';
      let wait = -1;
      if (y > x && bestOverlap(list, tl.cudaSync, x, y) >= 0) {
        label = 'cuda_sync';
      } else {
        wait = y > x ? bestOverlap(list, tl.futexWaits, x, y) : -1;
        const st = ps[i];
        if (wait >= 0 || flags & OffcpuFlag.IN_FUTEX) label = 'futex';
        else if (st & TASK_UNINTERRUPTIBLE && !(st & TASK_NOLOAD)) label = 'io';
        else {
          label = 'sleep';
          if (!(st & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE))) sub = 'other';
          else if (!(flags & OffcpuFlag.WOKEN) || flags & IRQ_FLAGS || !wt[i]) sub = 'timer';
          else sub = 'woken';
        }
      }
      push(label, sub, i, s, rq0, wait);
    }
    // still open at a snapshot and woken: waiting for a CPU, but who held it is not known
    push(flags & OffcpuFlag.OPEN && !(flags & RUNQ_FLAGS) ? 'unknown' : 'runqueue', '', i, rq0, e, -1);
  }
  // breakdown
  const bd = tl.bd;
  let covLen = 0;
  for (const [p, q] of cov) covLen += q - p;
  bd.unknown = b - a - covLen;
  let off = 0;
  for (const p of tl.pieces) {
    bd[p.label] += p.eff;
    off += p.eff;
  }
  // on-CPU inside blocking CUDA calls: union of the calls (runtime and driver calls nest), covered, minus off-CPU pieces
  const u: [number, number][] = [];
  if (tl.cudaSync.length) {
    for (const i of tl.cudaSync) {
      const x = Math.max(list.start[i], a);
      const y = Math.min(list.end[i], b);
      if (y <= x) continue;
      const last = u[u.length - 1];
      if (last && x <= last[1]) last[1] = Math.max(last[1], y);
      else u.push([x, y]);
    }
    let spin = 0;
    for (const [x, y] of u) {
      let c = coveredLen(x, y, cov);
      for (const p of tl.pieces) {
        if (p.a >= y) break;
        if (p.b <= x) continue;
        c -= coveredLen(Math.max(p.a, x), Math.min(p.b, y), cov);
      }
      spin += c;
    }
    tl.cudaOnCpu = spin;
    bd.cuda_sync += spin;
    off += spin;
  }
  bd.on_cpu = covLen - off;
  // a thread that makes CUDA calls also loses time to the CUDA ring's losses (a lost sync call reads as on CPU)
  const lossWindows = loss.cuda.length && cudaCalls > 0
    ? [...loss.sched, ...loss.cuda].sort((x, y) => x[0] - y[0]) : loss.sched;
  if (lossWindows.length) {
    tl.lostNs = Math.min(bd.on_cpu, lostOnCpu(tl, cov, lossWindows, u));
    bd.on_cpu -= tl.lostNs;
    bd.unknown += tl.lostNs;
  }
  return tl;
}

/**
 * Covered time of the gaps between the thread's off-CPU pieces (what reads as
 * on CPU) that may hide an interval lost in one of `windows`: each gap that
 * reaches into a window, from its start to the window's end. A gap is first
 * cut where the thread is known to have run (its own futex wakes and CUDA
 * calls happen in its context): a lost interval cannot span such an instant.
 * On-CPU time inside blocking CUDA calls (`cudaCalls`) stays cuda_sync.
 */
function lostOnCpu(tl: Timeline, cov: [number, number][], windows: readonly [number, number][], cudaCalls: [number, number][]): number {
  const ran = ranAt(tl);
  let n = 0;
  let r = 0;
  const part = (x: number, y: number): void => {
    let end = x;
    for (const [p, q] of windows) {
      if (p >= y) break;
      if (q > x) end = Math.max(end, Math.min(y, q));
    }
    if (end <= x) return;
    n += coveredLen(x, end, cov);
    for (const [cx, cy] of cudaCalls) n -= coveredLen(Math.max(cx, x), Math.min(cy, end), cov);
  };
  const gap = (g0: number, g1: number): void => {
    if (g1 <= g0) return;
    while (r < ran.length && ran[r] <= g0) r++;
    let x = g0;
    for (; r < ran.length && ran[r] < g1; r++) {
      part(x, ran[r]);
      x = ran[r];
    }
    part(x, g1);
  };
  let g = tl.a;
  for (const p of tl.pieces) {
    gap(g, p.a);
    if (p.b > g) g = p.b;
  }
  gap(g, tl.b);
  return Math.max(0, n);
}

/**
 * Times inside (a, b) at which the thread was on CPU by its own records,
 * sorted: a futex wake's start (the waking, or sys_enter, in the waker's
 * context; its end is the woken thread's switch-in in registers mode) and a
 * CUDA call's entry and return (uprobes run in the caller's context).
 */
function ranAt(tl: Timeline): number[] {
  const { list, tid, pid, a, b } = tl;
  const out: number[] = [];
  const add = (t: number): void => {
    if (t > a && t < b) out.push(t);
  };
  for (let i = 0; i < list.count; i++) {
    const k = list.kind[i];
    if ((k !== Kind.FUTEX_WAKE && k !== Kind.CUDA_CALL) || list.tid[i] !== tid || (pid > 0 && list.pid[i] !== pid)) continue;
    add(list.start[i]);
    if (k === Kind.CUDA_CALL) add(list.end[i]);
  }
  return out.sort((x, y) => x - y);
}

/** Who held the CPU during a runqueue piece: preempt_* for PREEMPTED/RESCHED, last_* otherwise. */
export function runqueueCulprit(list: EventList, i: number): { pid: number; tid: number; cpu: number } {
  const flags = list.f[F.offcpu.flags][i];
  if (flags & RUNQ_FLAGS) {
    return { pid: list.f[F.offcpu.preemptPid][i], tid: list.f[F.offcpu.preemptTid][i], cpu: list.f[F.offcpu.outCpu][i] };
  }
  return { pid: list.f[F.offcpu.lastPid][i], tid: list.f[F.offcpu.lastTid][i], cpu: list.cpu[i] };
}

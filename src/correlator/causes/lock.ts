// lock_contention: futex waits, their holder or waker (from the lock word's
// owner field, the wakeup, or the lock word's wake calls) and the chain of
// what the holder did meanwhile (Perfetto's critical path, one path).

import { OWNER_SRC_NAMES, OffcpuFlag, fmtDur } from '../../capture/index.js';
import { F } from '../../store/index.js';
import type { SpanCtx } from '../session.js';
import type { Piece, Timeline } from '../timeline.js';
import type { ChainStep, Culprit, Evidence } from '../types.js';
import { type CauseFinder, type Draft } from './cause.js';
import { preemptors } from './cpu.js';
import { IRQ_FLAGS, MS, hex, pct } from '../util.js';

const ETIMEDOUT = -110;
/** futex op flag: the word is private to one process (mm), so its owner is a thread of the waiter's process */
const FUTEX_PRIVATE_FLAG = 128;

interface WaitGroup {
  tl: Timeline;
  /** futex_wait record index, -1 when only IN_FUTEX told us */
  wait: number;
  pieces: Piece[];
  t: number;
  uaddr: number;
}

interface LockCulprit extends Culprit {
  via: 'held_by' | 'woken_by';
  source: string;
}

function groupWaits(pieces: Piece[]): WaitGroup[] {
  const m = new Map<string, WaitGroup>();
  for (const p of pieces) {
    if (p.label !== 'futex') continue;
    const k = p.wait >= 0 ? `${p.tl.tid}:${p.wait}` : `${p.tl.tid}:o${p.i}`;
    let g = m.get(k);
    if (!g) {
      const l = p.tl.list;
      let uaddr = 0;
      if (p.wait >= 0) uaddr = l.f[F.futexWait.uaddr][p.wait];
      else if (l.f[F.offcpu.flags][p.i] & OffcpuFlag.WAKER_FUTEX) uaddr = l.f[F.offcpu.wakerUaddr][p.i];
      g = { tl: p.tl, wait: p.wait, pieces: [], t: 0, uaddr };
      m.set(k, g);
    }
    g.pieces.push(p);
    g.t += p.eff;
  }
  return [...m.values()].sort((x, y) => y.t - x.t);
}

function lockCulprit(ctx: SpanCtx, g: WaitGroup): LockCulprit | null {
  const l = g.tl.list;
  const self = g.tl.tid;
  const at = g.pieces[0].a;
  if (g.wait >= 0) {
    const owner = l.f[F.futexWait.ownerTid][g.wait];
    const src = l.f[F.futexWait.ownerSrc][g.wait];
    if (owner && src && owner !== self) {
      // a tid read from the lock word: its process comes from the thread directory, not from the waiter
      // (a process-shared mutex's holder lives in another process); a private futex's owner shares the waiter's
      const priv = (l.f[F.futexWait.op][g.wait] & FUTEX_PRIVATE_FLAG) !== 0;
      const pid = ctx.t.threadAt(owner, at)?.pid ?? (priv ? g.tl.pid : 0);
      return { ...ctx.t.culprit(pid, owner, at), via: 'held_by', source: OWNER_SRC_NAMES[src] ?? `owner_src_${src}` };
    }
  }
  // the waker of the off-CPU interval that ended the wait
  const last = g.pieces[g.pieces.length - 1];
  const fl = l.f[F.offcpu.flags][last.i];
  const wt = l.f[F.offcpu.wakerTid][last.i];
  if (fl & OffcpuFlag.WOKEN && !(fl & IRQ_FLAGS) && wt && wt !== self) {
    const futexWake = (fl & OffcpuFlag.WAKER_FUTEX) !== 0 && (!g.uaddr || l.f[F.offcpu.wakerUaddr][last.i] === g.uaddr);
    return {
      ...ctx.t.culprit(l.f[F.offcpu.wakerPid][last.i], wt, last.b), via: 'woken_by', source: futexWake ? 'futex_wake' : 'waker',
    };
  }
  if (g.wait >= 0 && l.f[F.futexWait.ret][g.wait] === ETIMEDOUT) return null;
  // the wake call on the lock word that ended the wait (futex index by lock word)
  if (g.uaddr && g.tl.pid) {
    const ws = l.start[g.wait >= 0 ? g.wait : last.i];
    const we = l.end[g.wait >= 0 ? g.wait : last.i];
    const wakes = ctx.t.reader.futexWakesByUaddr(g.tl.pid, g.uaddr, ws, we + 1 * MS);
    let best = -1;
    for (let i = 0; i < wakes.count; i++) {
      if (wakes.tid[i] === self) continue;
      if (best < 0 || Math.abs(wakes.end[i] - we) < Math.abs(wakes.end[best] - we)) best = i;
    }
    if (best >= 0) return { ...ctx.t.culprit(wakes.pid[best], wakes.tid[best], wakes.start[best]), via: 'woken_by', source: 'futex_wake_record' };
  }
  return null;
}

/**
 * Chain of one futex wait (Perfetto's critical path, one path): the wait, who
 * held the lock or woke it, and what that thread did during the wait — its
 * CPU time, who preempted it, and what it was blocked on (futex: recursion
 * with depth + 1; io, sleep, cuda). Cycles stop at a thread already on the path.
 */
function lockChain(ctx: SpanCtx, g: WaitGroup, culprit: LockCulprit | null, depth: number, visited: Set<number>, steps: ChainStep[]): void {
  const l = g.tl.list;
  const wa = g.pieces[0].a;
  const wb = g.pieces[g.pieces.length - 1].b;
  const step: ChainStep = {
    step: 'futex_wait', depth, pid: g.tl.pid, tid: g.tl.tid, comm: ctx.t.comm(g.tl.tid, wa), uaddr: g.uaddr ? hex(g.uaddr) : null,
    start_unix_nano: ctx.t.epoch(wa), end_unix_nano: ctx.t.epoch(wb), duration_ns: g.t,
  };
  if (g.wait >= 0) step.ret = l.f[F.futexWait.ret][g.wait];
  steps.push(step);
  if (!culprit) {
    const timedOut = g.wait >= 0 && l.f[F.futexWait.ret][g.wait] === ETIMEDOUT;
    steps.push({ step: timedOut ? 'timed_out' : 'waker_unknown', depth });
    return;
  }
  steps.push({ step: culprit.via, depth, pid: culprit.pid, tid: culprit.tid, comm: culprit.comm, source: culprit.source });
  if (visited.has(culprit.tid)) {
    steps.push({ step: 'cycle', depth: depth + 1, tid: culprit.tid, comm: culprit.comm });
    return;
  }
  if (depth + 1 > ctx.t.maxDepth) {
    steps.push({ step: 'depth_limit', depth: depth + 1, tid: culprit.tid });
    return;
  }
  const sub = ctx.timeline(culprit.tid, culprit.pid, wa, wb);
  const win = wb - wa;
  const bd = sub.bd;
  steps.push({
    step: 'timeline', depth: depth + 1, pid: culprit.pid, tid: culprit.tid, comm: culprit.comm, window_ns: win,
    on_cpu_ns: bd.on_cpu, runqueue_ns: bd.runqueue, futex_ns: bd.futex, io_ns: bd.io, sleep_ns: bd.sleep,
    cuda_sync_ns: bd.cuda_sync, unknown_ns: bd.unknown, events: sub.events,
    ...(sub.unseen ? { unseen: true } : {}),
  });
  const minT = Math.max(1, 0.02 * win);
  for (const pg of preemptors(ctx, sub.pieces).slice(0, 3)) {
    if (pg.t < minT) break;
    steps.push({
      step: 'preempted_by', depth: depth + 1, pid: pg.c.pid, tid: pg.c.tid, comm: pg.c.comm, duration_ns: pg.t,
      cpu: [...pg.cpus].sort((a, b) => a - b).join(','),
      ...(pg.c.observer ? { observer: true } : {}),
    });
  }
  const next = new Set(visited).add(culprit.tid);
  for (const w of groupWaits(sub.pieces).slice(0, 2)) {
    if (w.t < Math.max(1, 0.05 * win)) break;
    lockChain(ctx, w, lockCulprit(ctx, w), depth + 1, next, steps);
  }
  if (bd.io >= 0.05 * win && bd.io > 0) steps.push({ step: 'io_wait', depth: depth + 1, tid: culprit.tid, duration_ns: bd.io });
  if (bd.cuda_sync >= 0.05 * win && bd.cuda_sync > 0) steps.push({ step: 'cuda_sync', depth: depth + 1, tid: culprit.tid, duration_ns: bd.cuda_sync });
  if (bd.sleep >= 0.05 * win && bd.sleep > 0) steps.push({ step: 'sleep', depth: depth + 1, tid: culprit.tid, duration_ns: bd.sleep });
}

function lockCauses(ctx: SpanCtx, pieces: Piece[]): Draft[] {
  const waits = groupWaits(pieces);
  if (!waits.length) return [];
  // one cause per lock word (pid, uaddr); waits with no known word stay apart per culprit
  interface LockG { pid: number; uaddr: number; t: number; waits: { g: WaitGroup; c: LockCulprit | null }[] }
  const locks = new Map<string, LockG>();
  let resolved = 0;
  for (const g of waits) {
    // culprits of the largest waits are resolved (a futex index lookup each, at most); the rest stay anonymous
    const c = resolved++ < 64 ? lockCulprit(ctx, g) : null;
    const k = g.uaddr ? `${g.tl.pid}:${g.uaddr}` : `${g.tl.pid}:?:${c?.tid ?? 0}`;
    let L = locks.get(k);
    if (!L) {
      L = { pid: g.tl.pid, uaddr: g.uaddr, t: 0, waits: [] };
      locks.set(k, L);
    }
    L.t += g.t;
    L.waits.push({ g, c });
  }
  const out: Draft[] = [];
  for (const L of [...locks.values()].sort((x, y) => y.t - x.t).slice(0, 5)) {
    const byC = new Map<number, { c: LockCulprit; t: number }>();
    for (const w of L.waits) {
      if (!w.c) continue;
      const e = byC.get(w.c.tid) ?? byC.set(w.c.tid, { c: w.c, t: 0 }).get(w.c.tid)!;
      e.t += w.g.t;
    }
    const cs = [...byC.values()].sort((x, y) => y.t - x.t);
    const top = cs[0]?.c ?? null;
    const chain: ChainStep[] = [];
    const main = L.waits[0];
    lockChain(ctx, main.g, main.c, 0, new Set([main.g.tl.tid]), chain);
    const evidence: Evidence[] = L.waits.slice(0, ctx.t.maxEvidence).map(({ g, c }) => {
      const l = g.tl.list;
      const i = g.wait >= 0 ? g.wait : g.pieces[0].i;
      const ev: Evidence = {
        kind: g.wait >= 0 ? 'futex_wait' : 'offcpu', tid: g.tl.tid, pid: g.tl.pid,
        start_unix_nano: ctx.t.epoch(l.start[i]), end_unix_nano: ctx.t.epoch(l.end[i]),
        uaddr: g.uaddr ? hex(g.uaddr) : null, blocked_ns: g.t,
        culprit_tid: c?.tid ?? null, culprit_via: c ? `${c.via}:${c.source}` : null,
      };
      if (g.wait >= 0) {
        ev.op = l.f[F.futexWait.op][i];
        ev.ret = l.f[F.futexWait.ret][i];
        ev.owner_tid = l.f[F.futexWait.ownerTid][i];
        ev.owner_src = OWNER_SRC_NAMES[l.f[F.futexWait.ownerSrc][i]] ?? null;
      }
      return ev;
    });
    // the deepest preemption on the main path names the root cause
    let root: ChainStep | null = null;
    for (const s of chain) if (s.step === 'preempted_by' && s.depth > 0 && (!root || (s.duration_ns as number) > (root.duration_ns as number))) root = s;
    const lockName = L.uaddr ? `futex ${hex(L.uaddr)}` : 'a futex';
    const holderTl = chain.find((s) => s.step === 'timeline' && s.depth === 1);
    let remediation: string;
    if (root) {
      remediation = `The lock holder lost its CPU to pid ${root.pid} (${root.comm || '?'}) for ${fmtDur(root.duration_ns as number)} while this thread waited on ${lockName}: isolate pid ${root.pid} with cpusets/taskset or lower its priority (nice/SCHED_IDLE), or raise the holder's priority; then keep the critical section short.`;
    } else if (holderTl && (holderTl.io_ns as number) > 0.3 * (holderTl.window_ns as number)) {
      remediation = `The holder (tid ${top?.tid}) was blocked on I/O while holding ${lockName}: move the I/O out of the critical section.`;
    } else if (holderTl && (holderTl.on_cpu_ns as number) > 0.5 * (holderTl.window_ns as number)) {
      remediation = `The holder (tid ${top?.tid}, ${top?.comm || '?'}) was running for ${fmtDur(holderTl.on_cpu_ns as number)} while holding ${lockName}: shorten the critical section, split the lock, or use a reader/writer or lock-free structure.`;
    } else if (top) {
      remediation = `Contention on ${lockName} with tid ${top.tid} (${top.comm || '?'}): shorten the critical section or reduce sharing of this lock.`;
    } else {
      remediation = `Waited on ${lockName} but no holder or waker was recorded (timeout, or a wake below the capture threshold): check timed waits and condition variables on this path.`;
    }
    out.push({
      kind: 'lock_contention', t: L.t, culprit: top ? { pid: top.pid, tid: top.tid, comm: top.comm } : null,
      culprits: cs.slice(0, 10).map((x) => ({ pid: x.c.pid, tid: x.c.tid, comm: x.c.comm, duration_ns: x.t })),
      chain, evidence,
      summary: (d, share) => {
        let s = `Waited ${fmtDur(d)} (${pct(share)} of the span) on ${lockName} in ${L.waits.length} wait(s)`;
        if (top) s += `; ${top.via === 'held_by' ? 'held by' : 'woken by'} tid ${top.tid} (${top.comm || '?'}, pid ${top.pid})`;
        if (root) s += `, which was itself preempted for ${fmtDur(root.duration_ns as number)} by pid ${root.pid} (${root.comm || '?'})`;
        return s + '.';
      },
      remediation,
      details: { uaddr: L.uaddr ? hex(L.uaddr) : null, waits: L.waits.length, culprit_source: top?.source ?? null },
    });
  }
  return out;
}

export const lockFinder: CauseFinder = (x) => lockCauses(x.ctx, x.pieces);

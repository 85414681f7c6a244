// The MCP tools' queries, computed from the store reader's public read
// methods (eventsOnThread / eventsOfProcess / threadsInWindow / threadAt /
// coverage / dropsIn / ...). Read-only; every result is bounded.

import {
  Kind, OffcpuFlag, OWNER_SRC_NAMES, cudaApiName, errnoName, futexOpName, stateLetters, type ClockHistory,
} from '../capture/index.js';
import { EventList, F, type StoreReader } from '../store/index.js';
import { ToolInputError, epochStr } from './time.js';

/** Threads scanned at most by a host-wide query (no pid/tid given). */
export const MAX_THREADS_SCANNED = 4000;
/** Values kept at most per distribution (beyond: reservoir sample; `sampled` says so). */
export const MAX_SAMPLES = 2_000_000;

export interface Scope {
  pid?: number;
  tid?: number;
}

export interface Who {
  pid: number;
  tid: number;
  comm: string;
}

class Names {
  private readonly m = new Map<number, string>();
  constructor(private readonly r: StoreReader) {}
  comm(tid: number, t: number): string {
    if (tid === 0) return 'swapper';
    let c = this.m.get(tid);
    if (c === undefined) {
      const th = this.r.threadAt(tid, t) ?? this.r.threadIncarnations(tid).at(-1) ?? null;
      c = th?.comm ?? '?';
      this.m.set(tid, c);
    }
    return c;
  }
  who(pid: number, tid: number, t: number): Who {
    return { pid, tid, comm: this.comm(tid, t) };
  }
}

/** Events of the kinds in `kindMask` overlapping [a, b]: one thread, one process, or every thread with events (bounded). */
export function collect(r: StoreReader, scope: Scope, a: number, b: number, kindMask: number): { list: EventList; threads: number; truncated: boolean } {
  const list = new EventList();
  if (scope.tid !== undefined) {
    r.eventsOnThread(scope.tid, a, b, list, kindMask);
    if (scope.pid !== undefined) filterRows(list, (i) => list.pid[i] === scope.pid);
    return { list, threads: 1, truncated: false };
  }
  if (scope.pid !== undefined) {
    r.eventsOfProcess(scope.pid, a, b, list, kindMask);
    const tids = new Set<number>();
    for (let i = 0; i < list.count; i++) tids.add(list.tid[i]);
    return { list, threads: tids.size, truncated: false };
  }
  const pairs = r.threadsInWindow(a, b, MAX_THREADS_SCANNED * 2);
  const tids = [...new Set(pairs.map(([, t]) => t))];
  const truncated = tids.length > MAX_THREADS_SCANNED;
  const parts = r.partitions();
  for (const t of tids.slice(0, MAX_THREADS_SCANNED)) r.eventsOnThread(t, a, b, list, kindMask, parts, true);
  list.sortByStart();
  return { list, threads: Math.min(tids.length, MAX_THREADS_SCANNED), truncated };
}

function filterRows(l: EventList, keep: (i: number) => boolean): void {
  let w = 0;
  for (let i = 0; i < l.count; i++) {
    if (!keep(i)) continue;
    if (w !== i) l.moveRow(i, w);
    w++;
  }
  l.count = w;
}

// ---------------------------------------------------------------------------
// distributions

export interface Dist {
  count: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  p999_ns: number;
  max_ns: number;
  min_ns: number;
  total_ns: number;
}

/** Nearest-rank percentiles of `v` (sorted in place). */
export function distOf(v: Float64Array | number[]): Dist {
  const s = Float64Array.from(v).sort();
  const n = s.length;
  const q = (p: number): number => (n ? s[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] : 0);
  let total = 0;
  for (let i = 0; i < n; i++) total += s[i];
  return { count: n, p50_ns: q(0.5), p90_ns: q(0.9), p99_ns: q(0.99), p999_ns: q(0.999), max_ns: n ? s[n - 1] : 0, min_ns: n ? s[0] : 0, total_ns: total };
}

export const DIST_KINDS = ['off_cpu', 'runqueue', 'futex_wait', 'io', 'cuda'] as const;
export type DistKind = (typeof DIST_KINDS)[number];

export interface DistributionResult {
  kind: DistKind;
  /** what one value is */
  measure: string;
  groups: ({ key: string } & Dist)[];
  all: Dist;
  threads_scanned: number;
  truncated: boolean;
  notes: string[];
}

class Values {
  v: number[] = [];
  seen = 0;
  push(x: number): void {
    this.seen++;
    if (this.v.length < MAX_SAMPLES) this.v.push(x);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < MAX_SAMPLES) this.v[j] = x;
    }
  }
}

/** Latency distribution of one kind of kernel event ending in [a, b]. */
export function latencyDistribution(r: StoreReader, kind: DistKind, scope: Scope, a: number, b: number): DistributionResult {
  const kindBit = kind === 'off_cpu' || kind === 'runqueue' ? Kind.OFFCPU : kind === 'futex_wait' ? Kind.FUTEX_WAIT : kind === 'io' ? Kind.BLOCK_IO : Kind.CUDA_CALL;
  const { list: l, threads, truncated } = collect(r, scope, a, b, 1 << kindBit);
  const groups = new Map<string, Values>();
  const all = new Values();
  const add = (key: string, x: number): void => {
    let g = groups.get(key);
    if (!g) groups.set(key, (g = new Values()));
    g.push(x);
    all.push(x);
  };
  let measure = '';
  const notes: string[] = [];
  for (let i = 0; i < l.count; i++) {
    if (l.kind[i] !== kindBit || l.end[i] < a || l.end[i] > b) continue;
    const d = l.end[i] - l.start[i];
    switch (kind) {
      case 'off_cpu': {
        const flags = l.f[F.offcpu.flags][i];
        const st = stateLetters(l.f[F.offcpu.prevState][i], (flags & OffcpuFlag.PREEMPTED) !== 0);
        add(st, d);
        measure = 'off-CPU interval (switch-out to switch-in), grouped by state at switch-out (R+ preempted, R yielded runnable, S sleep, D uninterruptible, ...)';
        break;
      }
      case 'runqueue': {
        const flags = l.f[F.offcpu.flags][i];
        const runnableAtSwitch = (flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
        const rq = runnableAtSwitch ? d : l.end[i] - l.f[F.offcpu.runnableNs][i];
        if (rq > 0) add(runnableAtSwitch ? 'preempted' : 'wakeup_latency', rq);
        measure = 'time runnable but not running: whole interval when preempted, wakeup-to-run latency otherwise';
        break;
      }
      case 'futex_wait':
        add(futexOpName(l.f[F.futexWait.op][i]), d);
        measure = 'futex wait syscall duration, grouped by futex op';
        break;
      case 'io': {
        const write = (l.f[F.blockIo.flags][i] & 1) !== 0;
        const dev = l.f[F.blockIo.dev][i];
        add(`${write ? 'write' : 'read'} ${dev >>> 20}:${dev & 0xfffff}`, d);
        measure = 'block I/O request latency (insert/issue to completion), grouped by direction and device major:minor';
        break;
      }
      case 'cuda':
        add(cudaApiName(l.f[F.cudaCall.api][i]), d);
        measure = 'CUDA API call duration (entry to return), grouped by API';
        break;
    }
  }
  if (!measure) measure = { off_cpu: 'off-CPU interval', runqueue: 'runqueue wait', futex_wait: 'futex wait', io: 'block I/O latency', cuda: 'CUDA call duration' }[kind];
  if (all.seen > all.v.length) notes.push(`${all.seen} values, percentiles from a uniform sample of ${all.v.length}`);
  if (truncated) notes.push(`host-wide query: only the first ${MAX_THREADS_SCANNED} threads were scanned; give pid or tid`);
  if (kind === 'off_cpu' || kind === 'runqueue') notes.push('off-CPU intervals shorter than the capture threshold (default 50 µs) are not recorded');
  const out = [...groups.entries()].map(([key, v]) => ({ key, ...distOf(v.v), count: v.seen }))
    .sort((x, y) => y.total_ns - x.total_ns).slice(0, 50);
  if (groups.size > 50) notes.push(`${groups.size} groups, the 50 with most total time shown`);
  return { kind, measure, groups: out, all: { ...distOf(all.v), count: all.seen }, threads_scanned: threads, truncated, notes };
}

// ---------------------------------------------------------------------------
// off-CPU intervals

export interface OffCpuInterval {
  pid: number;
  tid: number;
  comm: string;
  start_unix_nano: string;
  end_unix_nano: string;
  duration_ns: number;
  blocked_ns: number;
  runqueue_ns: number;
  state: string;
  flags: string[];
  cpu: number;
  out_cpu: number;
  waker: (Who & { context: string; uaddr: string | null }) | null;
  preempted_by: Who | null;
  /** the task that ran on the CPU right before this one got it back */
  previous_on_cpu: Who | null;
}

const FLAG_NAMES: [number, string][] = [
  [OffcpuFlag.PREEMPTED, 'preempted'], [OffcpuFlag.RESCHED, 'resched'], [OffcpuFlag.WOKEN, 'woken'],
  [OffcpuFlag.WAKER_HARDIRQ, 'waker_hardirq'], [OffcpuFlag.WAKER_SOFTIRQ, 'waker_softirq'], [OffcpuFlag.WAKER_FUTEX, 'waker_futex'],
  [OffcpuFlag.NEW, 'new'], [OffcpuFlag.IN_FUTEX, 'in_futex'], [OffcpuFlag.HAS_STACK, 'has_stack'],
];

function offcpuRow(l: EventList, i: number, clock: ClockHistory, names: Names): OffCpuInterval {
  const o = F.offcpu;
  const flags = l.f[o.flags][i];
  const preempted = (flags & OffcpuFlag.PREEMPTED) !== 0;
  const runnableAtSwitch = (flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
  const s = l.start[i], e = l.end[i];
  const runnable = runnableAtSwitch ? s : Math.min(e, Math.max(s, l.f[o.runnableNs][i]));
  let waker: OffCpuInterval['waker'] = null;
  if (flags & OffcpuFlag.WOKEN) {
    const ctx = flags & OffcpuFlag.WAKER_HARDIRQ ? 'hardirq' : flags & OffcpuFlag.WAKER_SOFTIRQ ? 'softirq' : flags & OffcpuFlag.WAKER_FUTEX ? 'futex_wake' : 'task';
    const ua = l.f[o.wakerUaddr][i];
    waker = { ...names.who(l.f[o.wakerPid][i], l.f[o.wakerTid][i], runnable), context: ctx, uaddr: ua ? '0x' + ua.toString(16) : null };
  }
  const pt = l.f[o.preemptTid][i];
  const lt = l.f[o.lastTid][i];
  return {
    pid: l.pid[i], tid: l.tid[i], comm: names.comm(l.tid[i], s),
    start_unix_nano: epochStr(clock, s), end_unix_nano: epochStr(clock, e), duration_ns: e - s,
    blocked_ns: runnable - s, runqueue_ns: e - runnable,
    state: stateLetters(l.f[o.prevState][i], preempted),
    flags: FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n),
    cpu: l.cpu[i], out_cpu: l.f[o.outCpu][i],
    waker,
    preempted_by: runnableAtSwitch && pt ? names.who(l.f[o.preemptPid][i], pt, s) : null,
    previous_on_cpu: lt ? names.who(l.f[o.lastPid][i], lt, e) : null,
  };
}

export interface OffCpuResult {
  intervals: OffCpuInterval[];
  matched: number;
  total_off_cpu_ns: number;
  by_state_ns: Record<string, number>;
  returned: number;
  truncated: boolean;
  order: 'longest' | 'time';
  threads_scanned: number;
}

export function offCpuIntervals(r: StoreReader, clock: ClockHistory, scope: Scope, a: number, b: number, minNs: number, limit: number, order: 'longest' | 'time'): OffCpuResult {
  const { list: l, threads } = collect(r, scope, a, b, 1 << Kind.OFFCPU);
  const names = new Names(r);
  const idx: number[] = [];
  let total = 0;
  const byState: Record<string, number> = {};
  for (let i = 0; i < l.count; i++) {
    if (l.kind[i] !== Kind.OFFCPU) continue;
    const d = l.end[i] - l.start[i];
    if (d < minNs) continue;
    idx.push(i);
    const clipped = Math.min(l.end[i], b) - Math.max(l.start[i], a);
    total += clipped;
    const st = stateLetters(l.f[F.offcpu.prevState][i], (l.f[F.offcpu.flags][i] & OffcpuFlag.PREEMPTED) !== 0);
    byState[st] = (byState[st] ?? 0) + clipped;
  }
  if (order === 'longest') idx.sort((x, y) => (l.end[y] - l.start[y]) - (l.end[x] - l.start[x]));
  const take = idx.slice(0, limit);
  return {
    intervals: take.map((i) => offcpuRow(l, i, clock, names)), matched: idx.length, total_off_cpu_ns: total,
    by_state_ns: byState, returned: take.length, truncated: idx.length > take.length, order, threads_scanned: threads,
  };
}

// ---------------------------------------------------------------------------
// who_woke

export interface WhoWokeResult {
  tid: number;
  at_unix_nano: string;
  /** the thread was off CPU at `at` (false: it was running, or no data; see nearest) */
  off_cpu_at: boolean;
  interval: OffCpuInterval | null;
  /** futex waits of the thread overlapping the interval (what it was blocked on) */
  futex_waits: { uaddr: string; op: string; start_unix_nano: string; end_unix_nano: string; duration_ns: number; ret: number; error: string | null; owner: Who | null; owner_source: string }[];
  /** futex wake calls by the waker on those words around the wakeup */
  waker_futex_wakes: { tid: number; uaddr: string; op: string; at_unix_nano: string; woken: number }[];
  /** when off_cpu_at is false: the nearest off-CPU intervals before and after `at` (within 10 s) */
  nearest: { before: OffCpuInterval | null; after: OffCpuInterval | null };
  summary: string;
}

export function whoWoke(r: StoreReader, clock: ClockHistory, tid: number, atMono: number, atEpoch: bigint): WhoWokeResult {
  const names = new Names(r);
  const l = new EventList();
  r.eventsOnThread(tid, atMono, atMono, l, (1 << Kind.OFFCPU) | (1 << Kind.FUTEX_WAIT));
  let hit = -1;
  for (let i = 0; i < l.count; i++) if (l.kind[i] === Kind.OFFCPU && l.start[i] <= atMono && l.end[i] >= atMono) hit = i;
  const res: WhoWokeResult = {
    tid, at_unix_nano: atEpoch.toString(), off_cpu_at: hit >= 0, interval: null, futex_waits: [], waker_futex_wakes: [],
    nearest: { before: null, after: null }, summary: '',
  };
  if (hit < 0) {
    const near = new EventList();
    r.eventsOnThread(tid, Math.max(0, atMono - 10e9), atMono + 10e9, near, 1 << Kind.OFFCPU);
    let bi = -1, ai = -1;
    for (let i = 0; i < near.count; i++) {
      if (near.end[i] < atMono && (bi < 0 || near.end[i] > near.end[bi])) bi = i;
      if (near.start[i] > atMono && (ai < 0 || near.start[i] < near.start[ai])) ai = i;
    }
    res.nearest.before = bi >= 0 ? offcpuRow(near, bi, clock, names) : null;
    res.nearest.after = ai >= 0 ? offcpuRow(near, ai, clock, names) : null;
    const known = r.threadAt(tid, atMono) ?? r.threadIncarnations(tid).at(-1);
    res.summary = !known && near.count === 0
      ? `no data for tid ${tid} around that time`
      : `tid ${tid} was not off CPU at that time (running, or blocked shorter than the capture threshold)`;
    return res;
  }
  const iv = offcpuRow(l, hit, clock, names);
  res.interval = iv;
  const s = l.start[hit], e = l.end[hit];
  const fw = F.futexWait;
  for (let i = 0; i < l.count && res.futex_waits.length < 10; i++) {
    if (l.kind[i] !== Kind.FUTEX_WAIT || l.end[i] < s || l.start[i] > e) continue;
    const ownerTid = l.f[fw.ownerTid][i];
    const ret = l.f[fw.ret][i];
    res.futex_waits.push({
      uaddr: '0x' + l.f[fw.uaddr][i].toString(16), op: futexOpName(l.f[fw.op][i]),
      start_unix_nano: epochStr(clock, l.start[i]), end_unix_nano: epochStr(clock, l.end[i]), duration_ns: l.end[i] - l.start[i],
      ret, error: ret < 0 ? errnoName(-ret) : null,
      owner: ownerTid ? names.who(l.pid[i], ownerTid, l.start[i]) : null, owner_source: OWNER_SRC_NAMES[l.f[fw.ownerSrc][i]] ?? 'none',
    });
  }
  if (iv.waker && iv.waker.tid) {
    const wl = new EventList();
    r.eventsOnThread(iv.waker.tid, s, e + 1e6, wl, 1 << Kind.FUTEX_WAKE);
    for (let i = 0; i < wl.count && res.waker_futex_wakes.length < 10; i++) {
      const ua = wl.f[F.futexWake.uaddr][i];
      const onOurs = res.futex_waits.some((w) => w.uaddr === '0x' + ua.toString(16));
      if (!onOurs && res.futex_waits.length) continue;
      res.waker_futex_wakes.push({
        tid: wl.tid[i], uaddr: '0x' + ua.toString(16), op: futexOpName(wl.f[F.futexWake.op][i]),
        at_unix_nano: epochStr(clock, wl.end[i]), woken: wl.f[F.futexWake.ret][i],
      });
    }
  }
  const dur = (ns: number): string => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : `${(ns / 1e3).toFixed(1)} µs`);
  const who = (w: Who): string => `${w.comm} (pid ${w.pid}, tid ${w.tid})`;
  const base = `tid ${tid} (${iv.comm}) was off CPU for ${dur(iv.duration_ns)} in state ${iv.state}`;
  if (iv.preempted_by) res.summary = `${base}: preempted by ${who(iv.preempted_by)}; nobody had to wake it, it waited ${dur(iv.runqueue_ns)} for a CPU`;
  else if (iv.waker) {
    const fut = res.futex_waits[0];
    res.summary = `${base}: woken by ${iv.waker.tid ? who(iv.waker) : 'interrupt context'} (${iv.waker.context}` +
      `${iv.waker.uaddr ? ` on futex ${iv.waker.uaddr}` : ''}) after ${dur(iv.blocked_ns)} blocked` +
      `${fut ? `, waiting on futex ${fut.uaddr}${fut.owner ? ` held by ${who(fut.owner)}` : ''}` : ''}; then ${dur(iv.runqueue_ns)} in the runqueue`;
  } else res.summary = `${base}: no wakeup recorded (woken before capture, or by a path kspan does not see)`;
  return res;
}

// ---------------------------------------------------------------------------
// futex contention

export interface LockWord {
  pid: number;
  comm: string;
  uaddr: string;
  /** "lock" (wakes or owners seen) or "thread_join" (waits on a thread's tid word, no wake calls: pthread_join) or "unknown" */
  guess: 'lock' | 'thread_join' | 'unknown';
  waits: number;
  timed_out: number;
  wait_total_ns: number;
  wait: Dist;
  waiters: (Who & { waits: number; wait_ns: number })[];
  /** owner tid recorded with the waits (glibc mutex owner field or PI word) */
  holders: (Who & { waits: number; wait_ns: number; source: string })[];
  /** threads that called FUTEX_WAKE on the word and woke someone */
  wakers: (Who & { wakes: number; woken: number })[];
}

export interface FutexContentionResult {
  words: LockWord[];
  words_total: number;
  returned: number;
  truncated: boolean;
  thread_join_words_omitted: number;
  threads_scanned: number;
  notes: string[];
}

export function futexContention(r: StoreReader, scope: Scope, a: number, b: number, limit: number, includeJoin: boolean): FutexContentionResult {
  const { list: l, threads, truncated: thrTrunc } = collect(r, scope, a, b, (1 << Kind.FUTEX_WAIT) | (1 << Kind.FUTEX_WAKE));
  const names = new Names(r);
  interface Acc {
    pid: number; uaddr: number; waits: number[]; timed: number; waiters: Map<number, [number, number]>;
    holders: Map<number, [number, number, number]>; wakers: Map<number, [number, number]>; vals: Set<number>; t: number;
  }
  const words = new Map<string, Acc>();
  const get = (pid: number, ua: number, t: number): Acc => {
    const k = `${pid}/${ua}`;
    let w = words.get(k);
    if (!w) words.set(k, (w = { pid, uaddr: ua, waits: [], timed: 0, waiters: new Map(), holders: new Map(), wakers: new Map(), vals: new Set(), t }));
    return w;
  };
  const tidsSeen = new Set<number>();
  for (let i = 0; i < l.count; i++) {
    tidsSeen.add(l.tid[i]);
    if (l.kind[i] === Kind.FUTEX_WAIT) {
      if (l.end[i] < a || l.end[i] > b) continue;
      const w = get(l.pid[i], l.f[F.futexWait.uaddr][i], l.start[i]);
      const d = l.end[i] - l.start[i];
      w.waits.push(d);
      if (l.f[F.futexWait.ret][i] === -110) w.timed++;
      w.vals.add(l.f[F.futexWait.val][i]);
      const wt = w.waiters.get(l.tid[i]) ?? [0, 0];
      wt[0]++; wt[1] += d;
      w.waiters.set(l.tid[i], wt);
      const owner = l.f[F.futexWait.ownerTid][i];
      if (owner) {
        const h = w.holders.get(owner) ?? [0, 0, l.f[F.futexWait.ownerSrc][i]];
        h[0]++; h[1] += d;
        w.holders.set(owner, h);
      }
    } else if (l.kind[i] === Kind.FUTEX_WAKE) {
      const woken = l.f[F.futexWake.ret][i];
      if (woken < 1 || l.end[i] < a || l.end[i] > b) continue;
      const w = get(l.pid[i], l.f[F.futexWake.uaddr][i], l.start[i]);
      const wk = w.wakers.get(l.tid[i]) ?? [0, 0];
      wk[0]++; wk[1] += woken;
      w.wakers.set(l.tid[i], wk);
    }
  }
  const out: LockWord[] = [];
  let joinOmitted = 0;
  for (const w of words.values()) {
    if (!w.waits.length) continue; // wakes only: nobody waited on it in the window
    const valsAreTids = [...w.vals].every((v) => v > 0 && (tidsSeen.has(v) || r.threadIncarnations(v).some((t) => t.pid === w.pid)));
    const guess: LockWord['guess'] = w.wakers.size || w.holders.size ? 'lock' : valsAreTids ? 'thread_join' : 'unknown';
    if (guess === 'thread_join' && !includeJoin) {
      joinOmitted++;
      continue;
    }
    const dist = distOf(w.waits);
    out.push({
      pid: w.pid, comm: names.comm(w.pid, w.t), uaddr: '0x' + w.uaddr.toString(16), guess,
      waits: w.waits.length, timed_out: w.timed, wait_total_ns: dist.total_ns, wait: dist,
      waiters: [...w.waiters].sort((x, y) => y[1][1] - x[1][1]).slice(0, 5).map(([tid, [n, ns]]) => ({ ...names.who(w.pid, tid, w.t), waits: n, wait_ns: ns })),
      holders: [...w.holders].sort((x, y) => y[1][1] - x[1][1]).slice(0, 5)
        .map(([tid, [n, ns, src]]) => ({ ...names.who(w.pid, tid, w.t), waits: n, wait_ns: ns, source: OWNER_SRC_NAMES[src] ?? 'none' })),
      wakers: [...w.wakers].sort((x, y) => y[1][1] - x[1][1]).slice(0, 5).map(([tid, [n, k]]) => ({ ...names.who(w.pid, tid, w.t), wakes: n, woken: k })),
    });
  }
  out.sort((x, y) => y.wait_total_ns - x.wait_total_ns);
  const take = out.slice(0, limit);
  const notes: string[] = [];
  if (joinOmitted) notes.push(`${joinOmitted} word(s) that look like pthread_join waits (value = a thread id, no wake calls) left out; include_thread_join: true shows them`);
  if (thrTrunc) notes.push(`host-wide query: only the first ${MAX_THREADS_SCANNED} threads were scanned; give pid`);
  notes.push('futex waits shorter than the capture threshold (default 50 µs) are not recorded');
  return { words: take, words_total: out.length, returned: take.length, truncated: out.length > take.length, thread_join_words_omitted: joinOmitted, threads_scanned: threads, notes };
}

// ---------------------------------------------------------------------------
// processes

export interface ProcessRow {
  pid: number;
  comm: string;
  threads: number;
  thread_sample: { tid: number; comm: string }[];
  parent_pid: number | null;
  exited: boolean;
}

export function listProcesses(r: StoreReader, a: number, b: number, limit: number): { processes: ProcessRow[]; total: number; returned: number; truncated: boolean } {
  const pairs = r.threadsInWindow(a, b, 200_000);
  const byPid = new Map<number, number[]>();
  for (const [pid, tid] of pairs) (byPid.get(pid) ?? byPid.set(pid, []).get(pid)!).push(tid);
  const rows: ProcessRow[] = [];
  for (const [pid, tids] of byPid) {
    const uniq = [...new Set(tids)].sort((x, y) => x - y);
    const leader = r.threadAt(pid, b) ?? r.threadAt(pid, a) ?? r.threadIncarnations(pid).at(-1) ?? null;
    const any = leader ?? r.threadAt(uniq[0], b) ?? r.threadIncarnations(uniq[0]).at(-1) ?? null;
    rows.push({
      pid, comm: leader?.comm ?? any?.pcomm ?? '?', threads: uniq.length,
      thread_sample: uniq.slice(0, 8).map((t) => ({ tid: t, comm: r.threadAt(t, b)?.comm ?? r.threadIncarnations(t).at(-1)?.comm ?? '?' })),
      parent_pid: leader?.parentPid ?? null, exited: leader?.exitTs != null && leader.exitTs <= b,
    });
  }
  rows.sort((x, y) => y.threads - x.threads || x.pid - y.pid);
  const take = rows.slice(0, limit);
  return { processes: take, total: rows.length, returned: take.length, truncated: rows.length > take.length };
}

export function checkScope(pid: number | undefined, tid: number | undefined, need: boolean): Scope {
  if (need && pid === undefined && tid === undefined) throw new ToolInputError('give pid or tid');
  return { pid, tid };
}

// The MCP tools' queries, computed from the store reader's public read
// methods through the sliced scan of src/store/queries.ts (scanEvents): every
// query streams the events thread by thread in bounded reads, aggregates as
// it goes, yields to the event loop between reads and stops when its Budget
// (time, rows, AbortSignal) runs out, saying so. Read-only; every result is
// bounded.

import {
  IoFlag, Kind, OffcpuFlag, OWNER_SRC_NAMES, TASK_EVENT_NAMES, TCP_STATE_NAMES, cudaApiName, devMajor, devMinor,
  errnoName, formatAddr, futexOpName, offcpuState, type ClockHistory,
} from '../capture/index.js';
import { EventList, F, ThreadDirectory, addOpenIntervals, type StoreReader } from '../store/index.js';
import { MAX_SCAN_THREADS, scanEvents, type EventScanQuery, type EventScanResult } from '../store/queries.js';
import type { Budget } from './budget.js';
import { ToolInputError, epochStr } from './time.js';

/** Threads scanned at most by a host-wide query (no pid/tid given). */
export const MAX_THREADS_SCANNED = MAX_SCAN_THREADS;
/** Values kept at most per distribution (beyond: reservoir sample; a note says so). */
export const MAX_SAMPLES = 200_000;

export interface Scope {
  pid?: number;
  tid?: number;
  /** explicit thread list (e.g. the threads matching a comm) */
  tids?: number[];
}

export interface Who {
  pid: number;
  tid: number;
  comm: string;
}

/** The names of one query's threads: the thread directory's naming rule (store/threads.ts incarnationNear) at each time. */
export class Names {
  readonly threads: ThreadDirectory;
  constructor(r: StoreReader) {
    this.threads = new ThreadDirectory(r);
  }
  comm(tid: number, t: number): string {
    if (tid === 0) return 'swapper';
    return this.threads.nameNear(tid, t) ?? '?';
  }
  who(pid: number, tid: number, t: number): Who {
    return { pid, tid, comm: this.comm(tid, t) };
  }
}

/** What a scan covered, for the tools' results. */
export interface ScanInfo {
  threads_scanned: number;
  events_examined: number;
  /** the scan stopped early (time or row budget, or the request was cancelled): the numbers cover part of the window */
  partial: boolean;
}

/** Scan the scope's events of `kindMask` overlapping [a, b] under the budget. */
export async function scan(
  r: StoreReader, scope: Scope, a: number, b: number, kindMask: number, visit: (l: EventList) => void, budget: Budget, open = false,
): Promise<EventScanResult> {
  const q: EventScanQuery = { a, b, kindMask, pid: scope.pid, tid: scope.tid, tids: scope.tids, open };
  return scanEvents(r, q, visit, budget);
}

function scanNotes(res: EventScanResult, budget: Budget, notes: string[]): ScanInfo {
  const n = budget.note();
  if (n) notes.push(n + ` (${res.threads} of ${res.threadsTotal} threads done)`);
  if (res.threadsTruncated) notes.push(`host-wide query: only ${MAX_THREADS_SCANNED} of ${res.threadsTotal}+ threads were scanned; give pid or tid`);
  return { threads_scanned: res.threads, events_examined: budget.events, partial: !res.complete };
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
  truncated: boolean;
  notes: string[];
}

/** Values of one distribution: an exact count and sum, percentiles from at most MAX_SAMPLES (reservoir sample). */
export class Values {
  v: number[] = [];
  seen = 0;
  total = 0;
  max = -Infinity;
  min = Infinity;
  add(x: number): void {
    this.seen++;
    this.total += x;
    if (x > this.max) this.max = x;
    if (x < this.min) this.min = x;
    if (this.v.length < MAX_SAMPLES) this.v.push(x);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < MAX_SAMPLES) this.v[j] = x;
    }
  }
  dist(): Dist {
    const d = distOf(this.v);
    return this.seen ? { ...d, count: this.seen, total_ns: this.total, max_ns: this.max, min_ns: this.min } : d;
  }
}

/** Latency distribution of one kind of kernel event ending in [a, b]. */
export async function latencyDistribution(r: StoreReader, kind: DistKind, scope: Scope, a: number, b: number, budget: Budget): Promise<DistributionResult & ScanInfo> {
  const kindBit = kind === 'off_cpu' || kind === 'runqueue' ? Kind.OFFCPU : kind === 'futex_wait' ? Kind.FUTEX_WAIT : kind === 'io' ? Kind.BLOCK_IO : Kind.CUDA_CALL;
  const groups = new Map<string, Values>();
  const all = new Values();
  const add = (key: string, x: number): void => {
    let g = groups.get(key);
    if (!g) groups.set(key, (g = new Values()));
    g.add(x);
    all.add(x);
  };
  const measure = {
    off_cpu: 'off-CPU interval (switch-out to switch-in), grouped by state at switch-out (R+ preempted, R yielded runnable, S sleep, D uninterruptible, ...)',
    runqueue: 'time runnable but not running: whole interval when preempted, wakeup-to-run latency otherwise',
    futex_wait: 'futex wait syscall duration, grouped by futex op',
    io: 'block I/O request latency (insert/issue to completion), grouped by direction and device major:minor',
    cuda: 'CUDA API call duration (entry to return), grouped by API',
  }[kind];
  const notes: string[] = [];
  const res = await scan(r, scope, a, b, 1 << kindBit, (l) => {
    for (let i = 0; i < l.count; i++) {
      if (l.kind[i] !== kindBit || l.end[i] < a || l.end[i] > b) continue;
      const d = l.end[i] - l.start[i];
      switch (kind) {
        case 'off_cpu': {
          const flags = l.f[F.offcpu.flags][i];
          add(offcpuState(l.f[F.offcpu.prevState][i], flags), d);
          break;
        }
        case 'runqueue': {
          const flags = l.f[F.offcpu.flags][i];
          const runnableAtSwitch = (flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
          const rq = runnableAtSwitch ? d : l.end[i] - l.f[F.offcpu.runnableNs][i];
          if (rq > 0) add(runnableAtSwitch ? 'preempted' : 'wakeup_latency', rq);
          break;
        }
        case 'futex_wait':
          add(futexOpName(l.f[F.futexWait.op][i]), d);
          break;
        case 'io': {
          const write = (l.f[F.blockIo.flags][i] & IoFlag.WRITE) !== 0;
          const dev = l.f[F.blockIo.dev][i];
          add(`${write ? 'write' : 'read'} ${devMajor(dev)}:${devMinor(dev)}`, d);
          break;
        }
        case 'cuda':
          add(cudaApiName(l.f[F.cudaCall.api][i]), d);
          break;
      }
    }
  }, budget);
  const info = scanNotes(res, budget, notes);
  if (all.seen > all.v.length) notes.push(`${all.seen} values, percentiles from a uniform sample of ${all.v.length}`);
  if (kind === 'off_cpu' || kind === 'runqueue') notes.push('off-CPU intervals shorter than the capture threshold (default 50 µs) are not recorded');
  const out = [...groups.entries()].map(([key, v]) => ({ key, ...v.dist() }))
    .sort((x, y) => y.total_ns - x.total_ns).slice(0, 50);
  if (groups.size > 50) notes.push(`${groups.size} groups, the 50 with most total time shown`);
  return { kind, measure, groups: out, all: all.dist(), truncated: info.partial || res.threadsTruncated, notes, ...info };
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
  /** still off CPU at end_unix_nano (no switch-in yet: the end is how far capture is known); runqueue_ns is then time since its waking */
  open?: true;
}

const FLAG_NAMES: [number, string][] = [
  [OffcpuFlag.PREEMPTED, 'preempted'], [OffcpuFlag.RESCHED, 'resched'], [OffcpuFlag.WOKEN, 'woken'],
  [OffcpuFlag.WAKER_HARDIRQ, 'waker_hardirq'], [OffcpuFlag.WAKER_SOFTIRQ, 'waker_softirq'], [OffcpuFlag.WAKER_FUTEX, 'waker_futex'],
  [OffcpuFlag.NEW, 'new'], [OffcpuFlag.IN_FUTEX, 'in_futex'], [OffcpuFlag.HAS_STACK, 'has_stack'],
  [OffcpuFlag.START_UNKNOWN, 'start_unknown'], [OffcpuFlag.OPEN, 'open'],
];

function offcpuRow(l: EventList, i: number, clock: ClockHistory, names: Names): OffCpuInterval {
  const o = F.offcpu;
  const flags = l.f[o.flags][i];
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
    state: offcpuState(l.f[o.prevState][i], flags),
    flags: FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n),
    cpu: l.cpu[i], out_cpu: l.f[o.outCpu][i],
    waker,
    preempted_by: runnableAtSwitch && pt ? names.who(l.f[o.preemptPid][i], pt, s) : null,
    previous_on_cpu: lt ? names.who(l.f[o.lastPid][i], lt, e) : null,
    ...(flags & OffcpuFlag.OPEN ? { open: true as const } : {}),
  };
}

export interface OffCpuResult extends ScanInfo {
  intervals: OffCpuInterval[];
  matched: number;
  total_off_cpu_ns: number;
  by_state_ns: Record<string, number>;
  returned: number;
  truncated: boolean;
  order: 'longest' | 'time';
  notes: string[];
}

/**
 * The best `limit` events seen by a streaming scan, by a score (higher
 * first): rows are copied out of the scan's reused list; pruned now and then.
 */
export class TopRows {
  list = new EventList(256);
  private scores: number[] = [];
  constructor(readonly limit: number, readonly score: (l: EventList, i: number) => number) {}
  add(src: EventList, i: number): void {
    this.list.appendFrom(src, i);
    this.scores.push(this.score(src, i));
    if (this.list.count > 2 * this.limit + 1024) this.prune();
  }
  private prune(): void {
    const keep = this.order().slice(0, this.limit);
    const l = new EventList(Math.max(256, keep.length));
    const sc: number[] = [];
    for (const i of keep) {
      l.appendFrom(this.list, i);
      sc.push(this.scores[i]);
    }
    this.list = l;
    this.scores = sc;
  }
  private order(): number[] {
    const idx = this.scores.map((_, i) => i);
    const s = this.scores;
    const st = this.list.start;
    return idx.sort((x, y) => s[y] - s[x] || st[x] - st[y]);
  }
  /** row indexes into `list`, best first, at most `limit` */
  best(): number[] {
    return this.order().slice(0, this.limit);
  }
}

export async function offCpuIntervals(
  r: StoreReader, clock: ClockHistory, scope: Scope, a: number, b: number, minNs: number, limit: number, order: 'longest' | 'time', budget: Budget,
): Promise<OffCpuResult> {
  const names = new Names(r);
  const top = new TopRows(limit, order === 'longest' ? (l, i) => l.end[i] - l.start[i] : (l, i) => -l.start[i]);
  let matched = 0;
  let total = 0;
  const byState: Record<string, number> = {};
  const res = await scan(r, scope, a, b, 1 << Kind.OFFCPU, (l) => {
    for (let i = 0; i < l.count; i++) {
      if (l.kind[i] !== Kind.OFFCPU) continue;
      const d = l.end[i] - l.start[i];
      if (d < minNs) continue;
      matched++;
      top.add(l, i);
      const clipped = Math.min(l.end[i], b) - Math.max(l.start[i], a);
      total += clipped;
      const st = offcpuState(l.f[F.offcpu.prevState][i], l.f[F.offcpu.flags][i]);
      byState[st] = (byState[st] ?? 0) + clipped;
    }
  }, budget, true);
  const notes: string[] = [];
  const info = scanNotes(res, budget, notes);
  const take = top.best();
  return {
    intervals: take.map((i) => offcpuRow(top.list, i, clock, names)), matched, total_off_cpu_ns: total,
    by_state_ns: byState, returned: take.length, truncated: matched > take.length || info.partial, order, notes, ...info,
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
  // still off CPU at the latest snapshot, and no switch-in since (store/open-intervals.ts)
  const open = r.openIntervals(tid);
  const sessions = open.length ? r.sessions() : [];
  const knownThrough = open.length ? r.knownThroughNs() : null;
  // (shown to where they are known to end, not cut at `at`)
  if (open.length) addOpenIntervals(l, open, tid, atMono, Infinity, sessions, knownThrough);
  let hit = -1;
  for (let i = 0; i < l.count; i++) if (l.kind[i] === Kind.OFFCPU && l.start[i] <= atMono && l.end[i] >= atMono) hit = i;
  const res: WhoWokeResult = {
    tid, at_unix_nano: atEpoch.toString(), off_cpu_at: hit >= 0, interval: null, futex_waits: [], waker_futex_wakes: [],
    nearest: { before: null, after: null }, summary: '',
  };
  if (hit < 0) {
    const near = new EventList();
    r.eventsOnThread(tid, Math.max(0, atMono - 10e9), atMono + 10e9, near, 1 << Kind.OFFCPU);
    if (open.length) addOpenIntervals(near, open, tid, Math.max(0, atMono - 10e9), Infinity, sessions, knownThrough);
    let bi = -1, ai = -1;
    for (let i = 0; i < near.count; i++) {
      if (near.end[i] < atMono && (bi < 0 || near.end[i] > near.end[bi])) bi = i;
      if (near.start[i] > atMono && (ai < 0 || near.start[i] < near.start[ai])) ai = i;
    }
    res.nearest.before = bi >= 0 ? offcpuRow(near, bi, clock, names) : null;
    res.nearest.after = ai >= 0 ? offcpuRow(near, ai, clock, names) : null;
    const known = names.threads.incarnations(tid).length > 0;
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
  if (iv.open) {
    // no switch-in yet: what it waits on so far, not who ended the wait
    const fut = res.futex_waits[0];
    res.summary = `tid ${tid} (${iv.comm}) is still off CPU as far as capture is known (${dur(iv.duration_ns)} so far, state ${iv.state})` +
      (iv.preempted_by ? `: preempted by ${who(iv.preempted_by)}, waiting for a CPU` : iv.waker ? `: woken by ${iv.waker.tid ? who(iv.waker) : 'interrupt context'} ${dur(iv.runqueue_ns)} ago, waiting for a CPU` : ': not woken yet') +
      (fut ? `; blocked on futex ${fut.uaddr}${fut.owner ? ` held by ${who(fut.owner)}` : ''}` : '');
  } else if (iv.preempted_by) res.summary = `${base}: preempted by ${who(iv.preempted_by)}; nobody had to wake it, it waited ${dur(iv.runqueue_ns)} for a CPU`;
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

export interface FutexContentionResult extends ScanInfo {
  words: LockWord[];
  words_total: number;
  returned: number;
  truncated: boolean;
  thread_join_words_omitted: number;
  notes: string[];
}

/** Lock words tracked at most by one futex_contention call. */
const MAX_WORDS = 100_000;

export async function futexContention(r: StoreReader, scope: Scope, a: number, b: number, limit: number, includeJoin: boolean, budget: Budget): Promise<FutexContentionResult> {
  const names = new Names(r);
  interface Acc {
    pid: number; uaddr: number; waits: Values; timed: number; waiters: Map<number, [number, number]>;
    holders: Map<number, [number, number, number]>; wakers: Map<number, [number, number]>; vals: Set<number>; manyVals: boolean; t: number;
  }
  const words = new Map<string, Acc>();
  let wordsDropped = 0;
  const get = (pid: number, ua: number, t: number): Acc | null => {
    const k = `${pid}/${ua}`;
    let w = words.get(k);
    if (!w) {
      if (words.size >= MAX_WORDS) {
        wordsDropped++;
        return null;
      }
      words.set(k, (w = { pid, uaddr: ua, waits: new Values(), timed: 0, waiters: new Map(), holders: new Map(), wakers: new Map(), vals: new Set(), manyVals: false, t }));
    }
    return w;
  };
  const tidsSeen = new Set<number>();
  const res = await scan(r, scope, a, b, (1 << Kind.FUTEX_WAIT) | (1 << Kind.FUTEX_WAKE), (l) => {
    for (let i = 0; i < l.count; i++) {
      tidsSeen.add(l.tid[i]);
      if (l.kind[i] === Kind.FUTEX_WAIT) {
        if (l.end[i] < a || l.end[i] > b) continue;
        const w = get(l.pid[i], l.f[F.futexWait.uaddr][i], l.start[i]);
        if (!w) continue;
        const d = l.end[i] - l.start[i];
        w.waits.add(d);
        if (l.f[F.futexWait.ret][i] === -110) w.timed++;
        if (!w.manyVals) {
          w.vals.add(l.f[F.futexWait.val][i]);
          if (w.vals.size > 64) w.manyVals = true;
        }
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
        if (!w) continue;
        const wk = w.wakers.get(l.tid[i]) ?? [0, 0];
        wk[0]++; wk[1] += woken;
        w.wakers.set(l.tid[i], wk);
      }
    }
  }, budget);
  const notes: string[] = [];
  const info = scanNotes(res, budget, notes);
  const out: LockWord[] = [];
  let joinOmitted = 0;
  const top5 = <T>(m: Map<number, T>, by: (v: T) => number): [number, T][] => [...m].sort((x, y) => by(y[1]) - by(x[1])).slice(0, 5);
  for (const w of words.values()) {
    if (!w.waits.seen) continue; // wakes only: nobody waited on it in the window
    const valsAreTids = !w.manyVals && [...w.vals].every((v) => v > 0 && (tidsSeen.has(v) || names.threads.incarnations(v).some((t) => t.pid === w.pid)));
    const guess: LockWord['guess'] = w.wakers.size || w.holders.size ? 'lock' : valsAreTids ? 'thread_join' : 'unknown';
    if (guess === 'thread_join' && !includeJoin) {
      joinOmitted++;
      continue;
    }
    const dist = w.waits.dist();
    out.push({
      pid: w.pid, comm: names.comm(w.pid, w.t), uaddr: '0x' + w.uaddr.toString(16), guess,
      waits: dist.count, timed_out: w.timed, wait_total_ns: dist.total_ns, wait: dist,
      waiters: top5(w.waiters, (v) => v[1]).map(([tid, [n, ns]]) => ({ ...names.who(w.pid, tid, w.t), waits: n, wait_ns: ns })),
      holders: top5(w.holders, (v) => v[1]).map(([tid, [n, ns, src]]) => ({ ...names.who(w.pid, tid, w.t), waits: n, wait_ns: ns, source: OWNER_SRC_NAMES[src] ?? 'none' })),
      wakers: top5(w.wakers, (v) => v[1]).map(([tid, [n, k]]) => ({ ...names.who(w.pid, tid, w.t), wakes: n, woken: k })),
    });
  }
  out.sort((x, y) => y.wait_total_ns - x.wait_total_ns);
  const take = out.slice(0, limit);
  if (joinOmitted) notes.push(`${joinOmitted} word(s) that look like pthread_join waits (value = a thread id, no wake calls) left out; include_thread_join: true shows them`);
  if (wordsDropped) notes.push(`more than ${MAX_WORDS} lock words: ${wordsDropped} events on further words were not counted; give pid`);
  notes.push('futex waits shorter than the capture threshold (default 50 µs) are not recorded');
  return {
    words: take, words_total: out.length, returned: take.length, truncated: out.length > take.length || info.partial,
    thread_join_words_omitted: joinOmitted, notes, ...info,
  };
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

export async function listProcesses(r: StoreReader, a: number, b: number, limit: number, budget: Budget): Promise<{ processes: ProcessRow[]; total: number; returned: number; truncated: boolean }> {
  const pairs = r.threadsInWindow(a, b, 200_000);
  const byPid = new Map<number, Set<number>>();
  for (const [pid, tid] of pairs) (byPid.get(pid) ?? byPid.set(pid, new Set()).get(pid)!).add(tid);
  const order = [...byPid].sort((x, y) => y[1].size - x[1].size || x[0] - y[0]);
  const rows: ProcessRow[] = [];
  const threads = new ThreadDirectory(r);
  for (const [pid, set] of order.slice(0, limit)) {
    const uniq = [...set].sort((x, y) => x - y);
    const leader = threads.near(pid, b);
    const any = leader ?? threads.near(uniq[0], b);
    rows.push({
      pid, comm: leader?.comm ?? any?.pcomm ?? '?', threads: uniq.length,
      thread_sample: uniq.slice(0, 8).map((t) => ({ tid: t, comm: threads.nameNear(t, b) ?? '?' })),
      parent_pid: leader?.parentPid ?? null, exited: leader?.exitTs != null && leader.exitTs <= b,
    });
    const t = budget.tick();
    if (t !== true && !(await t)) break;
  }
  return { processes: rows, total: order.length, returned: rows.length, truncated: order.length > rows.length };
}

export function checkScope(pid: number | undefined, tid: number | undefined, need: boolean): Scope {
  if (need && pid === undefined && tid === undefined) throw new ToolInputError('give pid or tid (list_processes shows them)');
  return { pid, tid };
}

/** Threads with events in [a, b] (of `pid` when given) whose name or whose process's name is `comm`. */
export function threadsByComm(r: StoreReader, a: number, b: number, comm: string, pid?: number): number[] {
  const names = new Names(r);
  const out = new Set<number>();
  for (const [p, tid] of r.threadsInWindow(a, b, 200_000)) {
    if (pid !== undefined && p !== pid) continue;
    if (names.comm(tid, b) === comm || names.comm(p, b) === comm) out.add(tid);
  }
  return [...out].sort((x, y) => x - y);
}

// ---------------------------------------------------------------------------
// query_events: a typed query over the raw events

export const EVENT_KINDS = {
  off_cpu: Kind.OFFCPU, futex_wait: Kind.FUTEX_WAIT, futex_wake: Kind.FUTEX_WAKE, block_io: Kind.BLOCK_IO,
  tcp_retransmit: Kind.TCP_RETRANS, cuda_call: Kind.CUDA_CALL, task: Kind.TASK,
} as const;
export type EventKindName = keyof typeof EVENT_KINDS;
export const EVENT_KIND_NAMES = Object.keys(EVENT_KINDS) as [EventKindName, ...EventKindName[]];

export const GROUP_FIELDS = ['tid', 'pid', 'comm', 'cpu', 'state', 'preempted_by', 'waker', 'op', 'uaddr', 'dev', 'api', 'event', 'dst'] as const;
export type GroupField = (typeof GROUP_FIELDS)[number];

/** Kind-specific group fields and the kinds they apply to. */
const GROUP_KINDS: Partial<Record<GroupField, EventKindName[]>> = {
  state: ['off_cpu'], preempted_by: ['off_cpu'], waker: ['off_cpu'], op: ['futex_wait', 'futex_wake', 'block_io'], uaddr: ['futex_wait', 'futex_wake'], dev: ['block_io'],
  api: ['cuda_call'], event: ['task'], dst: ['tcp_retransmit'],
};

const CUDA_API_IDS = new Map<string, number>();
for (let i = 0; i < 64; i++) {
  const n = cudaApiName(i);
  if (!n.startsWith('cuda_api_')) CUDA_API_IDS.set(n.toLowerCase(), i);
}

export interface EventQuery {
  kind: EventKindName;
  scope: Scope;
  a: number;
  b: number;
  minNs: number;
  api?: string;
  uaddr?: string;
  dev?: string;
  groupBy?: GroupField;
  order: 'longest' | 'time';
  limit: number;
}

export interface EventRow {
  kind: string;
  pid: number;
  tid: number;
  comm: string;
  cpu: number;
  start_unix_nano: string;
  duration_ns: number;
  /** kind-specific fields */
  fields: Record<string, string | number | boolean | null>;
}

export interface EventAggregate {
  count: number;
  sum_ns: number;
  p50_ns: number;
  p99_ns: number;
  p999_ns: number;
  max_ns: number;
}

export interface EventQueryResult extends ScanInfo {
  kind: EventKindName;
  rows?: EventRow[];
  group_by?: GroupField;
  groups?: ({ key: string } & EventAggregate)[];
  all: EventAggregate;
  matched: number;
  returned: number;
  truncated: boolean;
  notes: string[];
}

/** Parse and check query_events' filters; the message names the fix. */
export function checkEventQuery(q: Omit<EventQuery, 'scope' | 'a' | 'b'>): { api?: number; uaddr?: number; dev?: number } {
  const out: { api?: number; uaddr?: number; dev?: number } = {};
  if (q.api !== undefined) {
    if (q.kind !== 'cuda_call') throw new ToolInputError('api filters kind cuda_call: set kind to cuda_call or drop api');
    const id = CUDA_API_IDS.get(q.api.toLowerCase());
    if (id === undefined) throw new ToolInputError(`api: unknown CUDA API "${q.api}"; one of ${[...new Set([...CUDA_API_IDS.keys()].map((k) => cudaApiName(CUDA_API_IDS.get(k)!)))].join(', ')}`);
    out.api = id;
  }
  if (q.uaddr !== undefined) {
    if (q.kind !== 'futex_wait' && q.kind !== 'futex_wake') throw new ToolInputError('uaddr filters futex kinds: set kind to futex_wait or futex_wake, or drop uaddr');
    const m = /^(0x[0-9a-f]{1,16}|\d{1,20})$/i.exec(q.uaddr.trim());
    const v = m ? Number(BigInt(m[1])) : NaN;
    if (!Number.isSafeInteger(v)) throw new ToolInputError(`uaddr: want a lock word address like "0x7f3a2c001040", got "${q.uaddr}"`);
    out.uaddr = v;
  }
  if (q.dev !== undefined) {
    if (q.kind !== 'block_io') throw new ToolInputError('dev filters kind block_io: set kind to block_io or drop dev');
    const m = /^(\d{1,4}):(\d{1,7})$/.exec(q.dev.trim());
    if (!m) throw new ToolInputError(`dev: want "major:minor" like "8:0" or "259:1", got "${q.dev}"`);
    out.dev = ((Number(m[1]) << 20) | Number(m[2])) >>> 0;
  }
  if (q.groupBy) {
    const kinds = GROUP_KINDS[q.groupBy];
    if (kinds && !kinds.includes(q.kind)) throw new ToolInputError(`group_by ${q.groupBy} applies to kind ${kinds.join(' or ')}; use tid, pid, comm or cpu for ${q.kind}`);
  }
  return out;
}

const isInterval = (kind: number): boolean => kind !== Kind.TCP_RETRANS && kind !== Kind.TASK;

export async function queryEvents(r: StoreReader, clock: ClockHistory, q: EventQuery, budget: Budget): Promise<EventQueryResult> {
  const f = checkEventQuery(q);
  const kind = EVENT_KINDS[q.kind];
  const names = new Names(r);
  const hex = (v: number): string => '0x' + v.toString(16);
  const devStr = (d: number): string => `${devMajor(d)}:${devMinor(d)}`;
  const tcpFam = (l: EventList, i: number): number => l.f[F.tcpRetrans.family][i];
  const dst = (l: EventList, i: number): string => {
    const a = formatAddr(tcpFam(l, i), l.bytesField(i, 'daddr'));
    return `${a.includes(':') ? `[${a}]` : a}:${l.f[F.tcpRetrans.dport][i]}`;
  };
  const keyOf = (l: EventList, i: number): string => {
    switch (q.groupBy!) {
      case 'tid': return String(l.tid[i]);
      case 'pid': return String(l.pid[i]);
      case 'comm': return names.comm(l.tid[i], l.start[i]);
      case 'cpu': return String(l.cpu[i]);
      case 'state': return offcpuState(l.f[F.offcpu.prevState][i], l.f[F.offcpu.flags][i]);
      case 'preempted_by': {
        const fl = l.f[F.offcpu.flags][i];
        const pt = l.f[F.offcpu.preemptTid][i];
        return fl & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED) && pt ? `${names.comm(pt, l.start[i])} pid ${l.f[F.offcpu.preemptPid][i]} tid ${pt}` : 'not preempted';
      }
      case 'waker': {
        const fl = l.f[F.offcpu.flags][i];
        const wt = l.f[F.offcpu.wakerTid][i];
        return fl & OffcpuFlag.WOKEN ? (wt ? `${names.comm(wt, l.end[i])} pid ${l.f[F.offcpu.wakerPid][i]} tid ${wt}` : 'irq') : 'not woken';
      }
      case 'op': return kind === Kind.BLOCK_IO ? ((l.f[F.blockIo.flags][i] & IoFlag.WRITE) !== 0 ? 'write' : 'read')
        : futexOpName(l.f[kind === Kind.FUTEX_WAIT ? F.futexWait.op : F.futexWake.op][i]);
      case 'uaddr': return `${l.pid[i]}/${hex(l.f[kind === Kind.FUTEX_WAIT ? F.futexWait.uaddr : F.futexWake.uaddr][i])}`;
      case 'dev': return devStr(l.f[F.blockIo.dev][i]);
      case 'api': return cudaApiName(l.f[F.cudaCall.api][i]);
      case 'event': return TASK_EVENT_NAMES[l.f[F.task.event][i]] ?? `event${l.f[F.task.event][i]}`;
      case 'dst': return dst(l, i);
    }
  };
  const keep = (l: EventList, i: number): boolean => {
    if (l.kind[i] !== kind || l.end[i] < q.a || l.end[i] > q.b) return false;
    if (l.end[i] - l.start[i] < q.minNs) return false;
    if (f.api !== undefined && l.f[F.cudaCall.api][i] !== f.api) return false;
    if (f.uaddr !== undefined && l.f[kind === Kind.FUTEX_WAIT ? F.futexWait.uaddr : F.futexWake.uaddr][i] !== f.uaddr) return false;
    if (f.dev !== undefined && l.f[F.blockIo.dev][i] !== f.dev) return false;
    return true;
  };
  const all = new Values();
  const groups = new Map<string, Values>();
  const top = q.groupBy ? null : new TopRows(q.limit, q.order === 'longest' ? (l, i) => l.end[i] - l.start[i] : (l, i) => -l.start[i]);
  let matched = 0;
  const res = await scan(r, q.scope, q.a, q.b, 1 << kind, (l) => {
    for (let i = 0; i < l.count; i++) {
      if (!keep(l, i)) continue;
      matched++;
      const d = l.end[i] - l.start[i];
      all.add(d);
      if (top) top.add(l, i);
      else {
        const k = keyOf(l, i);
        let g = groups.get(k);
        if (!g) {
          if (groups.size >= 10_000) continue;
          groups.set(k, (g = new Values()));
        }
        g.add(d);
      }
    }
  }, budget);
  const notes: string[] = [];
  const info = scanNotes(res, budget, notes);
  const agg = (v: Values): EventAggregate => {
    const d = v.dist();
    return { count: d.count, sum_ns: d.total_ns, p50_ns: d.p50_ns, p99_ns: d.p99_ns, p999_ns: d.p999_ns, max_ns: d.max_ns };
  };
  if (!isInterval(kind)) notes.push(`${q.kind} events are points in time: durations are 0, counts are what matter`);
  if (all.seen > all.v.length) notes.push(`${all.seen} values, percentiles from a uniform sample of ${all.v.length}`);
  const out: EventQueryResult = { kind: q.kind, all: agg(all), matched, returned: 0, truncated: info.partial, notes, ...info };
  if (top) {
    const take = top.best();
    const l = top.list;
    out.rows = take.map((i) => eventRow(l, i, clock, names));
    out.returned = out.rows.length;
    out.truncated ||= matched > take.length;
  } else {
    const gs = [...groups].map(([key, v]) => ({ key, ...agg(v) }))
      .sort((x, y) => y.sum_ns - x.sum_ns || y.count - x.count);
    out.group_by = q.groupBy;
    out.groups = gs.slice(0, q.limit);
    out.returned = out.groups.length;
    out.truncated ||= gs.length > q.limit;
    if (groups.size >= 10_000) notes.push('more than 10,000 groups: events of further groups were left out of the groups (not of all)');
  }
  return out;

  function eventRow(l: EventList, i: number, c: ClockHistory, nm: Names): EventRow {
    const k = l.kind[i];
    const fields: EventRow['fields'] = {};
    switch (k) {
      case Kind.OFFCPU: {
        const fl = l.f[F.offcpu.flags][i];
        fields.state = offcpuState(l.f[F.offcpu.prevState][i], fl);
        const runnableAtSwitch = (fl & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
        fields.runqueue_ns = runnableAtSwitch ? l.end[i] - l.start[i] : Math.max(0, l.end[i] - Math.max(l.start[i], l.f[F.offcpu.runnableNs][i]));
        const wt = l.f[F.offcpu.wakerTid][i];
        fields.waker = fl & OffcpuFlag.WOKEN ? (wt ? `${nm.comm(wt, l.end[i])}/${wt}` : 'irq') : null;
        const pt = l.f[F.offcpu.preemptTid][i];
        fields.preempted_by = runnableAtSwitch && pt ? `${nm.comm(pt, l.start[i])}/${pt}` : null;
        break;
      }
      case Kind.FUTEX_WAIT: {
        fields.uaddr = hex(l.f[F.futexWait.uaddr][i]);
        fields.op = futexOpName(l.f[F.futexWait.op][i]);
        const ret = l.f[F.futexWait.ret][i];
        fields.error = ret < 0 ? errnoName(ret) : null;
        const ot = l.f[F.futexWait.ownerTid][i];
        fields.owner = ot ? `${nm.comm(ot, l.start[i])}/${ot}` : null;
        break;
      }
      case Kind.FUTEX_WAKE:
        fields.uaddr = hex(l.f[F.futexWake.uaddr][i]);
        fields.op = futexOpName(l.f[F.futexWake.op][i]);
        fields.woken = l.f[F.futexWake.ret][i];
        break;
      case Kind.BLOCK_IO: {
        fields.dev = devStr(l.f[F.blockIo.dev][i]);
        fields.op = (l.f[F.blockIo.flags][i] & IoFlag.WRITE) !== 0 ? 'write' : 'read';
        fields.bytes = l.f[F.blockIo.bytes][i];
        const issue = l.f[F.blockIo.issueNs][i];
        fields.queue_ns = issue > l.start[i] ? issue - l.start[i] : 0;
        fields.error = l.f[F.blockIo.error][i] || null;
        break;
      }
      case Kind.TCP_RETRANS: {
        const fam = tcpFam(l, i);
        const sa = formatAddr(fam, l.bytesField(i, 'saddr'));
        fields.src = `${sa.includes(':') ? `[${sa}]` : sa}:${l.f[F.tcpRetrans.sport][i]}`;
        fields.dst = dst(l, i);
        fields.state = TCP_STATE_NAMES[l.f[F.tcpRetrans.state][i]] ?? `state${l.f[F.tcpRetrans.state][i]}`;
        break;
      }
      case Kind.CUDA_CALL: {
        fields.api = cudaApiName(l.f[F.cudaCall.api][i]);
        fields.ret = l.f[F.cudaCall.ret][i];
        break;
      }
      case Kind.TASK: {
        const ev = l.f[F.task.event][i];
        fields.event = TASK_EVENT_NAMES[ev] ?? `event${ev}`;
        fields.name = l.str(i, 'comm');
        const ot = l.f[F.task.otherTid][i];
        if (ot) fields.other_tid = ot;
        if (ev === 4) fields.exit_code = l.f[F.task.exitCode][i];
        break;
      }
    }
    return {
      kind: q.kind, pid: l.pid[i], tid: l.tid[i], comm: nm.comm(l.tid[i], l.start[i]), cpu: l.cpu[i],
      start_unix_nano: epochStr(c, l.start[i]), duration_ns: l.end[i] - l.start[i], fields,
    };
  }
}

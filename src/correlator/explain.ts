// explainTrace / explainWindow: join spans to kernel events, break their wall
// time down, and rank the causes with culprits, chains and evidence.
// Rules: see README.md in this directory (they are the documentation of
// record; keep both in sync).

import { Kind, OWNER_SRC_NAMES, OffcpuFlag, cudaApiName, fmtDur } from '../capture/index.js';
import { EventList, F, incarnationAt, type Coverage, type PartitionMeta, type StoreReader, type StoredSpan, type ThreadMeta } from '../store/index.js';
import { readerCaches, type ClockCache, type DropsCache } from './cache.js';
import { buildTimeline, emptyBreakdown, runqueueCulprit, type Piece, type Timeline } from './timeline.js';
import type {
  Breakdown, Cause, CauseKind, ChainStep, Correlation, Culprit, DataQuality, Evidence, ExplainOptions, Explanation, Severity,
  SpanDataQuality, SpanExplanation,
} from './types.js';

const MS = 1_000_000;
const IRQ_FLAGS = OffcpuFlag.WAKER_HARDIRQ | OffcpuFlag.WAKER_SOFTIRQ;
const ETIMEDOUT = -110;
/** futex op flag: the word is private to one process (mm), so its owner is a thread of the waiter's process */
const FUTEX_PRIVATE_FLAG = 128;
/** Threads scanned at most when looking for competing I/O issuers / retransmits (no per-device / per-tuple index). */
const MAX_SCAN_THREADS = 20_000;

// ---------------------------------------------------------------------------
// severity

/**
 * Severity of a cause, from its share of the span and its absolute time:
 *   high    share >= 0.20 and duration >= 5 ms
 *   medium  share >= 0.05 and duration >= 1 ms
 *   low     otherwise
 * Both conditions must hold, so a tiny span cannot get a "high" for 100 µs and
 * a long span cannot get one for a small fraction of it. A healthy span (pure
 * CPU work) has no cause above low: on-CPU time is never a cause.
 */
export function severityOf(durationNs: number, share: number): Severity {
  if (share >= 0.2 && durationNs >= 5 * MS) return 'high';
  if (share >= 0.05 && durationNs >= 1 * MS) return 'medium';
  return 'low';
}
const SEV_RANK: Record<Severity, number> = { high: 2, medium: 1, low: 0 };

// ---------------------------------------------------------------------------
// helpers

const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
const hex = (v: number): string => '0x' + v.toString(16);
const devName = (dev: number): string => `${Math.floor(dev / 1048576)}:${dev % 1048576}`;

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/**
 * `SERVICE=COMM` arguments (the CLI's repeatable --service-process) as
 * ExplainOptions.serviceProcess; throws on a malformed one. COMM may be the
 * full process name: the join compares its first 15 bytes, as the kernel
 * keeps them.
 */
export function parseServiceProcess(list: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of list ?? []) {
    const i = m.indexOf('=');
    if (i <= 0 || i === m.length - 1) throw new Error(`--service-process wants SERVICE=COMM, got "${m}"`);
    out[m.slice(0, i)] = m.slice(i + 1);
  }
  return out;
}

/** A span as the store keeps it (SpanInput or StoredSpan). */
export interface ExplainableSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string | null;
  name: string;
  service: string;
  /** epoch ns (bigint, or a decimal string as StoredSpan has it) */
  startUnixNano: bigint | string;
  endUnixNano: bigint | string;
  pid?: number | null;
  tid?: number | null;
  vllmProcessId?: string | null;
  attributes?: Record<string, string | number | boolean>;
}

interface SpanLike {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  service: string;
  startEpoch: bigint;
  durationNs: number;
  pid: number | null;
  tid: number | null;
  vllmProcessId: string | null;
  attributes: Record<string, string | number | boolean>;
  /** explainWindow: the join is given */
  forced?: Correlation;
}

/** EventLists reused across spans and calls (explain is synchronous; lists are released when a span is done). */
const POOL: EventList[] = [];
function takeList(): EventList {
  return POOL.pop()?.clear() ?? new EventList(1024);
}
function releaseLists(ls: Iterable<EventList>): void {
  for (const l of ls) if (POOL.length < 256) POOL.push(l);
}

/** Shared by the spans of one explain call; built and used inside one reader.snapshot(). */
class TraceCtx {
  readonly clock: ClockCache;
  readonly drops: DropsCache;
  readonly incarnations = new Map<number, ThreadMeta[]>();
  /** tcp retransmits in the trace window (lazy; no per-tuple index in the store) */
  retrans: EventList | null = null;
  retransWindow: [number, number] = [0, 0];
  readonly maxDepth: number;
  readonly maxEvidence: number;
  readonly parts: PartitionMeta[];
  readonly sessions: ReturnType<StoreReader['sessions']>;
  /** capture coverage of the whole trace window (spans clip it) */
  cov: Coverage | null = null;
  covWindow: [number, number] = [0, 0];
  /** how far the running capture is known (null: none running): later time is not seen yet */
  readonly knownThrough: number | null;
  /** kspan's own processes (probe and consumer): culprits among them are the observer */
  readonly observers: Set<number>;

  constructor(readonly reader: StoreReader, readonly o: ExplainOptions) {
    const c = readerCaches(reader);
    this.clock = c.clock;
    this.drops = c.drops;
    this.maxDepth = o.maxDepth ?? 3;
    this.maxEvidence = o.maxEvidence ?? 20;
    this.parts = reader.partitions();
    this.sessions = reader.sessions();
    this.knownThrough = reader.knownThroughNs();
    this.observers = new Set<number>();
    for (const s of this.sessions) {
      if (s.probePid) this.observers.add(s.probePid);
      for (const p of s.observerPids ?? []) this.observers.add(p);
    }
  }

  epoch(mono: number): string {
    return this.clock.toEpoch(mono).toString();
  }

  /** The thread directory's rule (store/threads.ts), incarnations cached per tid. */
  threadAt(tid: number, t: number): ThreadMeta | null {
    let inc = this.incarnations.get(tid);
    if (!inc) {
      inc = this.reader.threadIncarnations(tid);
      this.incarnations.set(tid, inc);
    }
    return incarnationAt(inc, t);
  }

  comm(tid: number, t: number): string {
    if (tid === 0) return 'swapper';
    const m = this.threadAt(tid, t);
    if (m) return m.comm;
    const inc = this.incarnations.get(tid)!;
    return inc.length ? inc[inc.length - 1].comm : '';
  }

  /**
   * A culprit named at time t. A tid learned from memory (a lock word's owner
   * field) comes with pid 0: its process is looked up in the thread directory.
   */
  culprit(pid: number, tid: number, t: number): Culprit {
    if (!pid && tid) pid = this.threadAt(tid, t)?.pid ?? 0;
    const c: Culprit = { pid, tid, comm: this.comm(tid, t) };
    if (pid && this.observers.has(pid)) c.observer = true;
    return c;
  }

  /** reader.coverage(a, b), from one lookup over the trace window when it contains [a, b]. */
  coverage(a: number, b: number): Coverage {
    if (!this.cov || a < this.covWindow[0] || b > this.covWindow[1]) return this.reader.coverage(a, b);
    const ranges: [number, number][] = [];
    let len = 0;
    for (const [p, q] of this.cov.ranges) {
      const x = Math.max(p, a);
      const y = Math.min(q, b);
      if (y >= x) {
        ranges.push([x, y]);
        len += y - x;
      }
    }
    const span = b - a;
    const fraction = span <= 0 ? (ranges.length ? 1 : 0) : Math.min(1, len / span);
    return { covered: ranges.length === 1 && ranges[0][0] <= a && ranges[0][1] >= b, fraction, ranges };
  }
}

/** Per span: the window, its coverage, and each thread's events over it (fetched once). */
class SpanCtx {
  readonly ev = new Map<number, EventList>();
  constructor(readonly t: TraceCtx, readonly S: number, readonly E: number, readonly covered: [number, number][]) {}

  events(tid: number): EventList {
    let l = this.ev.get(tid);
    if (!l) {
      l = this.t.reader.eventsOnThread(tid, this.S, this.E, takeList(), 0, this.t.parts);
      this.ev.set(tid, l);
    }
    return l;
  }

  release(): void {
    releaseLists(this.ev.values());
    this.ev.clear();
  }

  /**
   * Thread tid's timeline over [a, b] (clipped to the span). A thread with no
   * events there counts as on CPU only when the thread directory shows it
   * existed then (capture named it); otherwise its time is unknown.
   */
  timeline(tid: number, pid: number, a: number, b: number): Timeline {
    const x = Math.max(a, this.S);
    const y = Math.min(b, this.E);
    const tl = buildTimeline(this.events(tid), tid, pid, x, y, this.covered);
    if (tl.events === 0 && !this.t.threadAt(tid, x) && !this.t.threadAt(tid, y)) {
      tl.bd.unknown += tl.bd.on_cpu;
      tl.bd.on_cpu = 0;
      tl.unseen = true;
    }
    return tl;
  }
}

// ---------------------------------------------------------------------------
// join

function numAttr(attrs: Record<string, string | number | boolean>, ...names: string[]): number | null {
  for (const n of names) {
    const v = attrs[n];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
    if (typeof v === 'string' && /^\d+$/.test(v) && Number(v) > 0) return Number(v);
  }
  return null;
}

/** pids whose process comm (leader comm, 15 chars) is `name`, with events in [a, b]; most threads first. */
function pidsByComm(reader: StoreReader, name: string, a: number, b: number): number[] {
  const want = name.slice(0, 15);
  const tids = new Map<number, number[]>();
  for (const [pid, tid] of reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) (tids.get(pid) ?? tids.set(pid, []).get(pid)!).push(tid);
  const out: [number, number][] = [];
  for (const [pid, ts] of tids) {
    // the process comm: the leader's metadata, else any of its threads' pcomm
    let pcomm = '';
    for (const tid of [pid, ...ts.slice(0, 8)]) {
      const m = reader.threadAt(tid, a) ?? reader.threadAt(tid, b);
      if (m && m.pid === pid) pcomm = m.pcomm || (tid === pid ? m.comm : '');
      if (pcomm) break;
    }
    if (pcomm === want || pcomm === name) out.push([pid, ts.length]);
  }
  return out.sort((x, y) => y[1] - x[1]).map((x) => x[0]);
}

interface Join {
  c: Correlation;
}

function resolveJoin(t: TraceCtx, s: SpanLike, S: number, E: number): Join {
  if (s.forced) return { c: s.forced };
  const A = s.attributes ?? {};
  const tid = s.tid ?? (t.o.threadIdIsOsTid ? numAttr(A, 'linux.tid', 'thread.id') : numAttr(A, 'linux.tid'));
  let pid = s.pid ?? numAttr(A, 'process.pid');
  if (tid) {
    let reason = s.tid ? 'span carries linux.tid and process.pid' : (t.o.threadIdIsOsTid ? 'span attribute linux.tid/thread.id (declared to be the OS thread id)' : 'span attribute linux.tid');
    if (!pid) {
      const m = t.threadAt(tid, S) ?? t.threadAt(tid, E);
      if (m) {
        pid = m.pid;
        reason += '; pid from the thread metadata';
      } else {
        const l = t.reader.eventsOnThread(tid, S, E);
        if (l.count) {
          pid = l.pid[0];
          reason += '; pid from the thread\'s events';
        }
      }
    }
    if (pid) return { c: { method: 'thread', pid, tid, reason } };
  }
  const mapped = t.o.serviceProcess?.[s.service];
  if (mapped) {
    const pids = pidsByComm(t.reader, mapped, S, E);
    if (pids.length) {
      return { c: { method: 'process', pid: pids[0], tid: null, reason: `service "${s.service}" mapped to process "${mapped}"${pids.length > 1 ? ` (${pids.length} such processes; the one with most threads)` : ''}` } };
    }
  }
  if (pid) return { c: { method: 'process', pid, tid: null, reason: 'span carries process.pid only' } };
  const vp = s.vllmProcessId ?? (typeof A['vllm.process_id'] === 'string' || typeof A['vllm.process_id'] === 'number' ? String(A['vllm.process_id']) : null);
  if (vp && /^\d+$/.test(vp) && Number(vp) > 0) {
    return { c: { method: 'process', pid: Number(vp), tid: null, reason: 'vllm.process_id' } };
  }
  return {
    c: {
      method: 'none', pid: null, tid: null,
      reason: mapped ? `no process named "${mapped}" had events in the window` : 'the span carries no linux.tid, process.pid or vllm.process_id, and its service has no process mapping',
    },
  };
}

/** Spans of the same service (and process) overlapping [from, to] (epoch), this one included. */
function concurrentSpans(t: TraceCtx, s: SpanLike, pid: number, from: bigint, to: bigint): number {
  const idx = t.reader.spans;
  const p = Buffer.concat([Buffer.from(s.service, 'utf8'), Buffer.from([0])]);
  // longest span of the service bounds how far back an overlapping span can start
  let maxDur = 0n;
  const top = Buffer.concat([p, Buffer.alloc(8, 0xff)]);
  for (const key of idx.byDur.getKeys({ start: top, end: p, reverse: true, limit: 1 })) maxDur = (key as Buffer).readBigUInt64BE(p.length);
  const u64 = (v: bigint): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v < 0n ? 0n : v);
    return b;
  };
  let n = 0;
  let seen = 0;
  for (const { key, value } of idx.byTime.getRange({ start: Buffer.concat([p, u64(from - maxDur)]), end: Buffer.concat([p, u64(to + 1n)]) })) {
    const k = key as Buffer;
    const st = k.readBigUInt64BE(p.length);
    const d = BigInt(Math.round((value as Buffer).readDoubleLE(0)));
    if (st + d < from) continue;
    if (++seen > 100_000) break;
    const sp = idx.byId.get(Buffer.from(k.subarray(p.length + 8))) as StoredSpan | undefined;
    if (!sp) continue;
    const spid = sp.pid ?? numAttr(sp.attributes ?? {}, 'process.pid') ?? (sp.vllmProcessId && /^\d+$/.test(sp.vllmProcessId) ? Number(sp.vllmProcessId) : null);
    // mapped services: every span of the service runs in the mapped process
    if (t.o.serviceProcess?.[s.service] || spid === null || spid === pid || sp.spanId === s.spanId) n++;
  }
  return Math.max(1, n);
}

// ---------------------------------------------------------------------------
// causes

interface Draft {
  kind: CauseKind;
  /** thread-time (process join: summed over threads) */
  t: number;
  culprit: Culprit | null;
  culprits?: (Culprit & { duration_ns: number; cpus?: number[]; requests?: number; bytes?: number })[];
  chain: ChainStep[];
  evidence: Evidence[];
  /** summary, given the span-scaled duration and share */
  summary: (d: number, share: number) => string;
  remediation: string;
  details?: Record<string, unknown>;
}

function offcpuEvidence(ctx: SpanCtx, p: Piece, extra: Record<string, string | number | boolean | null> = {}): Evidence {
  const l = p.tl.list;
  const i = p.i;
  return {
    kind: 'offcpu', tid: p.tl.tid, pid: p.tl.pid, start_unix_nano: ctx.t.epoch(l.start[i]), end_unix_nano: ctx.t.epoch(l.end[i]),
    part: p.label, part_start_unix_nano: ctx.t.epoch(p.a), part_end_unix_nano: ctx.t.epoch(p.b), duration_ns: p.eff,
    cpu: l.cpu[i], flags: l.f[F.offcpu.flags][i], prev_state: l.f[F.offcpu.prevState][i], ...extra,
  };
}

/** Runqueue pieces grouped by who held the CPU. */
function preemptors(ctx: SpanCtx, pieces: Piece[]): { c: Culprit; t: number; cpus: Set<number>; pieces: Piece[] }[] {
  const m = new Map<string, { c: Culprit; t: number; cpus: Set<number>; pieces: Piece[] }>();
  for (const p of pieces) {
    if (p.label !== 'runqueue' || p.eff <= 0) continue;
    const w = runqueueCulprit(p.tl.list, p.i);
    const k = `${w.pid}/${w.tid}`;
    let g = m.get(k);
    if (!g) {
      g = { c: ctx.t.culprit(w.pid, w.tid, p.a), t: 0, cpus: new Set(), pieces: [] };
      m.set(k, g);
    }
    g.t += p.eff;
    g.cpus.add(w.cpu);
    g.pieces.push(p);
  }
  return [...m.values()].sort((x, y) => y.t - x.t);
}

function cpuCause(ctx: SpanCtx, pieces: Piece[]): Draft | null {
  const groups = preemptors(ctx, pieces);
  if (!groups.length) return null;
  const total = groups.reduce((a, g) => a + g.t, 0);
  const named = groups.filter((g) => g.c.tid !== 0);
  const top = named[0] ?? null;
  const idle = groups.find((g) => g.c.tid === 0);
  const rq = pieces.filter((p) => p.label === 'runqueue' && p.eff > 0).sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence);
  const evidence = rq.map((p) => {
    const w = runqueueCulprit(p.tl.list, p.i);
    return offcpuEvidence(ctx, p, {
      preempted: (p.tl.list.f[F.offcpu.flags][p.i] & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0,
      cpu_holder_pid: w.pid, cpu_holder_tid: w.tid, held_cpu: w.cpu,
    });
  });
  const who = (g: { c: Culprit }): string => `${g.c.observer ? 'kspan itself, ' : ''}pid ${g.c.pid} (${g.c.comm || '?'}, tid ${g.c.tid})`;
  const cpuList = (g: { cpus: Set<number> }): string => [...g.cpus].sort((a, b) => a - b).join(',');
  let remediation: string;
  if (top?.c.observer) {
    // the observer, not a neighbour: on a small host the capture's own consumer can take the app's CPU
    remediation = `kspan's own capture (${who(top)}) took the CPU for ${fmtDur(top.t)} of this request on CPU ${cpuList(top)}: give kspan a CPU of its own (systemd CPUAffinity, a cpuset) or a lower priority (Nice=, CPUWeight=), or capture less (--groups, --pid).`;
  } else if (top) {
    remediation = `${who(top)} took the CPU for ${fmtDur(top.t)} of this request on CPU ${cpuList(top)}: isolate it with cpusets/taskset (or move this thread to other CPUs), or lower its priority (nice, SCHED_IDLE/SCHED_BATCH).`;
  } else {
    remediation = 'The CPU was idle when this thread was picked to run: wakeup/migration latency. Check CPU idle states (C-states), frequency scaling and cross-CPU wakeups; pinning the thread near its wakers helps.';
  }
  return {
    kind: 'cpu_preemption', t: total, culprit: top?.c ?? null,
    culprits: groups.slice(0, 10).map((g) => ({ ...g.c, duration_ns: g.t, cpus: [...g.cpus].sort((a, b) => a - b) })),
    chain: groups.slice(0, 5).map((g) => ({ step: 'preempted_by', depth: 0, pid: g.c.pid, tid: g.c.tid, comm: g.c.comm, duration_ns: g.t, cpu: cpuList(g), ...(g.c.observer ? { observer: true } : {}) })),
    evidence,
    summary: (d, share) => {
      let s = `Runnable but waiting for a CPU for ${fmtDur(d)} (${pct(share)} of the span) in ${groups.reduce((a, g) => a + g.pieces.length, 0)} interval(s)`;
      if (top) s += `; ${who(top)} held the CPU for ${fmtDur(top.t)} on CPU ${cpuList(top)}`;
      if (named.length > 1) s += `, ${named.length - 1} other task(s) ${fmtDur(named.slice(1).reduce((a, g) => a + g.t, 0))}`;
      if (idle) s += `; ${fmtDur(idle.t)} with the CPU idle before switch-in (wakeup latency)`;
      return s + '.';
    },
    remediation,
    details: { intervals: groups.reduce((a, g) => a + g.pieces.length, 0) },
  };
}

// ---- lock contention

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

// ---- I/O

interface IoIssuer { pid: number; tid: number; comm: string; requests: number; bytes: number }

function ioCause(ctx: SpanCtx, pieces: Piece[], a: number, b: number): Draft | null {
  const io = pieces.filter((p) => p.label === 'io' && p.eff > 0);
  if (!io.length) return null;
  const total = io.reduce((x, p) => x + p.eff, 0);
  // this thread's requests in flight during its D intervals
  const own: { tl: Timeline; i: number }[] = [];
  let withIo = 0;
  for (const p of io) {
    let hit = false;
    for (const i of p.tl.blockIo) {
      const l = p.tl.list;
      if (l.start[i] < p.b && l.end[i] > p.a) {
        hit = true;
        if (!own.some((o) => o.tl === p.tl && o.i === i)) own.push({ tl: p.tl, i });
      }
    }
    if (hit) withIo += p.eff;
  }
  const devs = new Map<number, { requests: number; bytes: number }>();
  const lat: number[] = [];
  let bytes = 0;
  for (const { tl, i } of own) {
    const l = tl.list;
    const dev = l.f[F.blockIo.dev][i];
    const d = devs.get(dev) ?? devs.set(dev, { requests: 0, bytes: 0 }).get(dev)!;
    d.requests++;
    d.bytes += l.f[F.blockIo.bytes][i];
    bytes += l.f[F.blockIo.bytes][i];
    lat.push(l.end[i] - l.start[i]);
  }
  lat.sort((x, y) => x - y);
  // competing issuers on the same device(s) in the window: no per-device index, so every thread with events is scanned
  const selfTids = new Set(io.map((p) => p.tl.tid));
  const comp = new Map<string, IoIssuer>();
  if (devs.size) {
    const l = new EventList(64);
    for (const [pid, tid] of ctx.t.reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) {
      if (selfTids.has(tid)) continue;
      ctx.t.reader.eventsOnThread(tid, a, b, l, 1 << Kind.BLOCK_IO);
      for (let i = 0; i < l.count; i++) {
        if (!devs.has(l.f[F.blockIo.dev][i]) || l.pid[i] !== pid) continue;
        const k = `${pid}/${tid}`;
        const c = comp.get(k) ?? comp.set(k, { pid, tid, comm: l.str(i, 'comm'), requests: 0, bytes: 0 }).get(k)!;
        c.requests++;
        c.bytes += l.f[F.blockIo.bytes][i];
      }
    }
  }
  const competitors = [...comp.values()].sort((x, y) => y.bytes - x.bytes);
  const topC = competitors[0];
  const culprit = topC && topC.bytes >= bytes ? { pid: topC.pid, tid: topC.tid, comm: topC.comm || ctx.t.comm(topC.tid, a) } : null;
  const evidence: Evidence[] = own.slice(0, ctx.t.maxEvidence).map(({ tl, i }) => {
    const l = tl.list;
    const issue = l.f[F.blockIo.issueNs][i];
    return {
      kind: 'block_io', tid: tl.tid, pid: tl.pid, start_unix_nano: ctx.t.epoch(l.start[i]), end_unix_nano: ctx.t.epoch(l.end[i]),
      dev: devName(l.f[F.blockIo.dev][i]), sector: l.f[F.blockIo.sector][i], bytes: l.f[F.blockIo.bytes][i], flags: l.f[F.blockIo.flags][i],
      latency_ns: l.end[i] - l.start[i], device_ns: issue ? l.end[i] - issue : null, error: l.f[F.blockIo.error][i],
    };
  });
  for (const p of io.sort((x, y) => y.eff - x.eff).slice(0, Math.max(0, ctx.t.maxEvidence - evidence.length))) evidence.push(offcpuEvidence(ctx, p));
  const devList = [...devs.entries()].map(([dev, d]) => ({ dev: devName(dev), ...d }));
  return {
    kind: 'io_wait', t: total, culprit,
    culprits: competitors.slice(0, 10).map((c) => ({ pid: c.pid, tid: c.tid, comm: c.comm, duration_ns: 0, requests: c.requests, bytes: c.bytes })),
    chain: [], evidence,
    summary: (d, share) => {
      let s = `Blocked in uninterruptible (D) sleep for ${fmtDur(d)} (${pct(share)} of the span)`;
      if (own.length) {
        s += `; ${own.length} block request(s) of this thread in flight (${(bytes / 1024).toFixed(0)} KiB on ${devList.map((x) => x.dev).join(', ')}, latency p50 ${fmtDur(percentile(lat, 0.5))}, max ${fmtDur(lat[lat.length - 1])})`;
      } else {
        s += '; no block I/O issued by this thread was in flight (page faults, writeback by kernel threads, or a kernel lock)';
      }
      if (competitors.length) s += `; ${competitors.length} other issuer(s) on the device, top ${topC.comm || '?'} (pid ${topC.pid}) ${(topC.bytes / 1024).toFixed(0)} KiB in ${topC.requests} request(s)`;
      return s + '.';
    },
    remediation: own.length
      ? culprit
        ? `pid ${culprit.pid} (${culprit.comm}) issued more I/O to ${devList.map((x) => x.dev).join(', ')} than this request during it: separate the devices, throttle it (io.max / ionice -c3), or give this workload I/O priority.`
        : `Synchronous I/O on the request path (${own.length} request(s), ${(bytes / 1024).toFixed(0)} KiB): batch or defer fsync/O_DIRECT writes, move them off the request thread, or use a faster device.`
      : 'D-state waits without block I/O of this thread: check page faults (memory pressure, mmap of cold files), writeback throttling (dirty limits), and kernel lock contention.',
    details: {
      requests: own.length, bytes, devices: devList, latency_p50_ns: percentile(lat, 0.5), latency_p99_ns: percentile(lat, 0.99),
      latency_max_ns: lat.length ? lat[lat.length - 1] : 0, d_state_with_own_io_ns: withIo, competing_issuers: competitors.length,
    },
  };
}

// ---- CUDA

function cudaCause(ctx: SpanCtx, pieces: Piece[], tls: Timeline[]): Draft | null {
  const off = pieces.filter((p) => p.label === 'cuda_sync' && p.eff > 0).reduce((x, p) => x + p.eff, 0);
  const spin = tls.reduce((x, tl) => x + tl.cudaOnCpu, 0);
  const total = off + spin;
  if (total <= 0) return null;
  const byApi = new Map<string, { calls: number; total_ns: number }>();
  const calls: { tl: Timeline; i: number; d: number }[] = [];
  const launch: number[] = [];
  for (const tl of tls) {
    const l = tl.list;
    for (const i of tl.cudaSync) {
      const name = cudaApiName(l.f[F.cudaCall.api][i]);
      const d = Math.min(l.end[i], tl.b) - Math.max(l.start[i], tl.a);
      const e = byApi.get(name) ?? byApi.set(name, { calls: 0, total_ns: 0 }).get(name)!;
      e.calls++;
      e.total_ns += d;
      calls.push({ tl, i, d });
    }
    for (const i of tl.cudaLaunch) launch.push(l.end[i] - l.start[i]);
  }
  launch.sort((x, y) => x - y);
  const p50 = percentile(launch, 0.5);
  const p99 = percentile(launch, 0.99);
  const apis = [...byApi.entries()].sort((x, y) => y[1].total_ns - x[1].total_ns);
  const evidence: Evidence[] = calls.sort((x, y) => y.d - x.d).slice(0, ctx.t.maxEvidence).map(({ tl, i }) => ({
    kind: 'cuda_call', tid: tl.tid, pid: tl.pid, start_unix_nano: ctx.t.epoch(tl.list.start[i]), end_unix_nano: ctx.t.epoch(tl.list.end[i]),
    api: cudaApiName(tl.list.f[F.cudaCall.api][i]), duration_ns: tl.list.end[i] - tl.list.start[i], ret: tl.list.f[F.cudaCall.ret][i],
    arg: hex(tl.list.f[F.cudaCall.arg][i]),
  }));
  // a tail worth acting on: 5x the median and long in absolute terms (launches are µs; 8 µs vs 1 µs is noise)
  const tail = launch.length >= 10 && p99 > 5 * p50 && p99 >= 100_000;
  return {
    kind: 'cuda_sync', t: total, culprit: null, chain: [], evidence,
    summary: (d, share) => {
      let s = `Inside CUDA synchronizing calls for ${fmtDur(d)} (${pct(share)} of the span): ${apis.map(([n, e]) => `${e.calls}× ${n} ${fmtDur(e.total_ns)}`).join(', ')}; ${fmtDur(off)} blocked off CPU, ${fmtDur(spin)} spinning on CPU`;
      if (launch.length) s += `; kernel launch latency p50 ${fmtDur(p50)}, p99 ${fmtDur(p99)} over ${launch.length} launch(es)`;
      return s + '.';
    },
    remediation: tail
      ? `The thread waited on the GPU, and its kernel launches have a long tail (p99 ${fmtDur(p99)} vs p50 ${fmtDur(p50)}): the launching thread is starved (check its CPU preemption) — pin it, and batch launches (CUDA graphs).`
      : 'The request waited for GPU work: overlap host work with the GPU (async copies, streams, CUDA graphs), avoid synchronizing in the request path, or the GPU itself is the bottleneck (check its utilization).',
    details: {
      off_cpu_ns: off, on_cpu_spin_ns: spin, calls: Object.fromEntries(apis), launches: launch.length,
      launch_p50_ns: p50, launch_p99_ns: p99, launch_max_ns: launch.length ? launch[launch.length - 1] : 0,
    },
  };
}

// ---- network retransmits

function ipBytes(s: string): Buffer | null {
  s = s.trim().replace(/^\[|\]$/g, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(s)) return Buffer.from(s.split('.').map(Number));
  if (!s.includes(':')) return null;
  const m4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m4) {
    const v4 = m4[2].split('.').map(Number);
    s = `${m4[1]}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const [h, t] = s.split('::');
  const hs = h ? h.split(':') : [];
  const ts = t !== undefined && t ? t.split(':') : [];
  const fill = s.includes('::') ? 8 - hs.length - ts.length : 0;
  const groups = [...hs, ...new Array(fill).fill('0'), ...ts];
  if (groups.length !== 8) return null;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16) || 0, 2 * i));
  // v4-mapped -> v4
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return Buffer.from(b.subarray(12));
  return b;
}

function retransMatches(l: EventList, i: number, peer: Buffer, port: number | null): boolean {
  if (port !== null && l.f[F.tcpRetrans.dport][i] !== port && l.f[F.tcpRetrans.sport][i] !== port) return false;
  const fam = l.f[F.tcpRetrans.family][i];
  const d = l.bytesField(i, 'daddr');
  const sa = l.bytesField(i, 'saddr');
  const eq = (x: Buffer): boolean => {
    if (peer.length === 4) {
      if (fam === 2) return x[0] === peer[0] && x[1] === peer[1] && x[2] === peer[2] && x[3] === peer[3];
      // v4-mapped v6
      return x.subarray(0, 10).every((v) => v === 0) && x[10] === 0xff && x[11] === 0xff && x.subarray(12, 16).equals(peer);
    }
    return fam === 10 && x.equals(peer);
  };
  return eq(d) || eq(sa);
}

function retransIn(t: TraceCtx, a: number, b: number): EventList {
  if (t.retrans && t.retransWindow[0] <= a && t.retransWindow[1] >= b) return t.retrans;
  // trace-wide: one scan of every thread with events (retransmits fire in softirq, on whatever task ran: no per-tuple index)
  const out = new EventList(64);
  const tmp = new EventList(64);
  for (const [, tid] of t.reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) {
    t.reader.eventsOnThread(tid, a, b, tmp, 1 << Kind.TCP_RETRANS);
    for (let i = 0; i < tmp.count; i++) out.appendFrom(tmp, i);
  }
  out.sortByStart();
  t.retrans = out;
  t.retransWindow = [a, b];
  return out;
}


interface Peer { addr: string; bytes: Buffer; port: number | null }

function peerOf(s: SpanLike): Peer | null {
  const A = s.attributes ?? {};
  for (const [ak, pk] of [['network.peer.address', 'network.peer.port'], ['server.address', 'server.port'], ['net.peer.ip', 'net.peer.port']]) {
    const v = A[ak];
    if (typeof v !== 'string') continue;
    const bytes = ipBytes(v);
    if (!bytes) continue;
    const p = A[pk];
    const port = typeof p === 'number' ? p : typeof p === 'string' && /^\d+$/.test(p) ? Number(p) : null;
    return { addr: v, bytes, port };
  }
  return null;
}

/** Retransmit cause; removes the sleep pieces it explains from `pieces` (returned). */
function retransCause(ctx: SpanCtx, peer: Peer, pieces: Piece[], a: number, b: number, win: [number, number]): { d: Draft | null; rest: Piece[] } {
  const all = retransIn(ctx.t, win[0], win[1]);
  const hits: number[] = [];
  for (let i = 0; i < all.count; i++) {
    if (all.end[i] < a || all.start[i] > b) continue;
    if (retransMatches(all, i, peer.bytes, peer.port)) hits.push(i);
  }
  if (!hits.length) return { d: null, rest: pieces };
  const explained = new Set<Piece>();
  for (const p of pieces) {
    if (p.label !== 'sleep') continue;
    for (const i of hits) if (all.end[i] >= p.a && all.end[i] <= p.b) explained.add(p);
  }
  const t = [...explained].reduce((x, p) => x + p.eff, 0);
  const evidence: Evidence[] = hits.slice(0, ctx.t.maxEvidence).map((i) => ({
    kind: 'tcp_retrans', tid: all.tid[i], pid: all.pid[i], start_unix_nano: ctx.t.epoch(all.start[i]), end_unix_nano: ctx.t.epoch(all.end[i]),
    sport: all.f[F.tcpRetrans.sport][i], dport: all.f[F.tcpRetrans.dport][i], state: all.f[F.tcpRetrans.state][i],
    in_irq: all.f[F.tcpRetrans.inIrq][i], sock_ino: all.f[F.tcpRetrans.sockIno][i],
  }));
  return {
    d: {
      kind: 'network_retransmit', t, culprit: null, chain: [], evidence,
      summary: (d, share) => `${hits.length} TCP retransmit(s) to/from ${peer.addr}${peer.port !== null ? `:${peer.port}` : ''} during the span; ${fmtDur(d)} (${pct(share)}) of blocked time contained one.`,
      remediation: `Packets to ${peer.addr} were lost and resent (each costs at least one RTO, 200 ms by default on Linux): check the path (drops, congestion, NIC queues), and lower the retransmit timeout for this route if latency matters (ip route ... rto_min).`,
      details: { retransmits: hits.length, peer: peer.addr, port: peer.port, blocked_with_retransmit_ns: t },
    },
    rest: pieces.filter((p) => !explained.has(p)),
  };
}

// ---- sleep / other block

function sleepCauses(ctx: SpanCtx, pieces: Piece[]): Draft[] {
  const out: Draft[] = [];
  const timer = pieces.filter((p) => p.label === 'sleep' && p.sub === 'timer' && p.eff > 0);
  if (timer.length) {
    const t = timer.reduce((x, p) => x + p.eff, 0);
    const irq = timer.filter((p) => p.tl.list.f[F.offcpu.flags][p.i] & IRQ_FLAGS).length;
    out.push({
      kind: 'sleep', t, culprit: null, chain: [],
      evidence: timer.sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence).map((p) => offcpuEvidence(ctx, p)),
      summary: (d, share) => `Voluntarily sleeping for ${fmtDur(d)} (${pct(share)} of the span) in ${timer.length} interval(s), ${irq} ended by a timer or interrupt (sleep, poll/epoll timeouts, socket reads completed by the network).`,
      remediation: 'Timed or interrupt-ended waits in the request path: look for sleeps, polling loops and timeouts; if the thread waited for network data, the peer was slow (check the downstream span).',
      details: { intervals: timer.length, irq_woken: irq },
    });
  }
  const other = pieces.filter((p) => p.label === 'sleep' && p.sub !== 'timer' && p.eff > 0);
  if (other.length) {
    const t = other.reduce((x, p) => x + p.eff, 0);
    const byW = new Map<string, { c: Culprit; t: number }>();
    for (const p of other) {
      const l = p.tl.list;
      const wt = l.f[F.offcpu.wakerTid][p.i];
      if (p.sub !== 'woken' || !wt) continue;
      const wp = l.f[F.offcpu.wakerPid][p.i];
      const k = `${wp}/${wt}`;
      const e = byW.get(k) ?? byW.set(k, { c: ctx.t.culprit(wp, wt, p.b), t: 0 }).get(k)!;
      e.t += p.eff;
    }
    const ws = [...byW.values()].sort((x, y) => y.t - x.t);
    const top = ws[0]?.c ?? null;
    out.push({
      kind: 'other_block', t, culprit: top,
      culprits: ws.slice(0, 10).map((w) => ({ ...w.c, duration_ns: w.t })),
      chain: ws.slice(0, 5).map((w) => ({ step: 'woken_by', depth: 0, pid: w.c.pid, tid: w.c.tid, comm: w.c.comm, duration_ns: w.t })),
      evidence: other.sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence).map((p) => offcpuEvidence(ctx, p, { waker_tid: p.tl.list.f[F.offcpu.wakerTid][p.i] })),
      summary: (d, share) => `Blocked ${fmtDur(d)} (${pct(share)} of the span) waiting for another task (not a futex: pipe, socket, epoll, signal, or an untraced wait)${top ? `; woken mostly by tid ${top.tid} (${top.comm || '?'}, pid ${top.pid})` : ''}.`,
      remediation: top
        ? `This request waited for work done by tid ${top.tid} (${top.comm || '?'}): explain that thread's window too (kspan explain --tid ${top.tid}), or decouple the hand-off.`
        : 'Blocked in a non-futex wait with no recorded waker: check pipes/sockets/epoll on this path.',
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// one span

function scaleBreakdown(sum: Breakdown, D: number): Breakdown {
  const keys = Object.keys(sum) as (keyof Breakdown)[];
  const tot = keys.reduce((a, k) => a + sum[k], 0);
  const out = emptyBreakdown();
  if (tot <= 0) {
    out.unknown = D;
    return out;
  }
  // largest remainder: integers adding up to D exactly
  const raw = keys.map((k) => (sum[k] * D) / tot);
  let used = 0;
  keys.forEach((k, i) => {
    out[k] = Math.floor(raw[i]);
    used += out[k];
  });
  const order = keys.map((k, i) => [i, raw[i] - Math.floor(raw[i])] as [number, number]).sort((x, y) => y[1] - x[1]);
  for (let r = 0; used < D; r = (r + 1) % keys.length, used++) out[keys[order[r][0]]]++;
  return out;
}

function explainOne(t: TraceCtx, s: SpanLike): { e: SpanExplanation; dq: SpanDataQuality; S: number; E: number } {
  const D = s.durationNs;
  const S = t.clock.toMono(s.startEpoch);
  const E = S + D;
  const join = resolveJoin(t, s, S, E);
  const cov = t.coverage(S, E);
  const drops = t.drops.dropsIn(S, E);
  const sessions = t.sessions.filter((x) => x.startNs <= E && x.endNs >= S);
  const thr = sessions.map((x) => x.offcpuMinNs).filter((x): x is number => typeof x === 'number');
  const notes: string[] = [];
  const dq: SpanDataQuality = {
    lost_events: drops.total, covered: cov.covered, coverage: cov.fraction, lost_known: drops.known,
    offcpu_threshold_ns: thr.length ? Math.max(...thr) : null, threads_joined: 0, notes,
  };
  if (t.knownThrough !== null && E > t.knownThrough) {
    // past the running capture's watermark nothing is seen yet: coverage stops there, so it is unknown
    const missing = Math.min(D, E - Math.max(S, t.knownThrough));
    dq.settling = true;
    dq.not_ingested_ns = missing;
    notes.push(`the last ${fmtDur(missing)} of the window were not yet ${t.reader.hasHead ? 'ingested' : 'committed to the store'} when explained: counted as unknown (kernel data for them may still arrive)`);
  }
  if (drops.total > 0) notes.push(`${drops.total} kernel record(s) were lost during the window: intervals may be missing`);
  if (!cov.covered) notes.push(`capture covered ${pct(cov.fraction)} of the window; the rest is "unknown"`);
  notes.push(`off-CPU intervals shorter than ${fmtDur(dq.offcpu_threshold_ns ?? 50_000)} are not recorded and count as on_cpu`);
  const base: SpanExplanation = {
    span_id: s.spanId, name: s.name, service: s.service, start_unix_nano: s.startEpoch.toString(), duration_ns: D,
    correlation: join.c, breakdown_ns: emptyBreakdown(), causes: [], parent_span_id: s.parentSpanId, data_quality: dq,
  };
  if (join.c.method === 'none' || D <= 0) {
    base.breakdown_ns.unknown = D;
    return { e: base, dq, S, E };
  }
  const ctx = new SpanCtx(t, S, E, cov.ranges);
  try {
    let tls: Timeline[];
    let scale = 1;
    if (join.c.method === 'thread') {
      tls = [ctx.timeline(join.c.tid!, join.c.pid ?? 0, S, E)];
      dq.threads_joined = 1;
      base.breakdown_ns = { ...tls[0].bd };
      if (tls[0].unseen) notes.push(`tid ${join.c.tid} had no events in the window and capture never saw it: its time is unknown (not traced, or a wrong linux.tid)`);
      else if (tls[0].events === 0 && cov.fraction > 0) notes.push(`no events of tid ${join.c.tid} in the window: on CPU throughout, or not traced (pid filter?)`);
    } else {
      const pid = join.c.pid!;
      const all = t.reader.threadsOfProcess(pid, S, E, t.parts).map((tid) => ctx.timeline(tid, pid, S, E));
      const covLen = cov.ranges.reduce((a, [x, y]) => a + (y - x), 0);
      // active: events in the window, and running (on CPU, runqueue or CUDA) >= 5% of the covered window
      tls = all.filter((tl) => tl.events > 0 && tl.bd.on_cpu + tl.bd.runqueue + tl.bd.cuda_sync >= 0.05 * covLen);
      dq.threads_joined = all.length;
      dq.threads_active = tls.length;
      const sum = emptyBreakdown();
      for (const tl of tls) for (const k of Object.keys(sum) as (keyof Breakdown)[]) sum[k] += tl.bd[k];
      base.breakdown_thread_ns = sum;
      if (tls.length) {
        scale = 1 / tls.length;
        base.breakdown_ns = scaleBreakdown(sum, D);
      } else {
        base.breakdown_ns = { ...emptyBreakdown(), unknown: D };
      }
      notes.push(`process join: ${tls.length} of ${all.length} thread(s) of pid ${pid} were active in the window (events, and running >= 5% of it); breakdown_ns is their per-thread time summed and scaled to the span (÷ ${tls.length}; breakdown_thread_ns has the sums), causes are shared by the process's concurrent requests`);
    }
    let pieces = tls.flatMap((tl) => tl.pieces);
    const drafts: Draft[] = [];
    const peer = peerOf(s);
    if (peer) {
      const r = retransCause(ctx, peer, pieces, S, E, t.retransWindow[1] > 0 ? t.retransWindow : [S, E]);
      if (r.d) drafts.push(r.d);
      pieces = r.rest;
    }
    const cpu = cpuCause(ctx, pieces);
    if (cpu) drafts.push(cpu);
    drafts.push(...lockCauses(ctx, pieces));
    const io = ioCause(ctx, pieces, S, E);
    if (io) drafts.push(io);
    const cu = cudaCause(ctx, pieces, tls);
    if (cu) drafts.push(cu);
    drafts.push(...sleepCauses(ctx, pieces));
    const concurrent = join.c.method === 'process' && !s.forced ? concurrentSpans(t, s, join.c.pid!, s.startEpoch, s.startEpoch + BigInt(D)) : undefined;
    const causes: Cause[] = [];
    for (const d of drafts) {
      if (d.t <= 0 && d.kind !== 'network_retransmit') continue;
      const dur = Math.min(D, Math.round(d.t * scale));
      const share = D > 0 ? dur / D : 0;
      const c: Cause = {
        kind: d.kind, severity: severityOf(dur, share), duration_ns: dur, share: Math.round(share * 1e4) / 1e4,
        culprit: d.culprit, chain: d.chain, evidence: d.evidence, summary: d.summary(dur, share), remediation: d.remediation,
      };
      if (join.c.method === 'process') {
        c.shared = true;
        if (concurrent !== undefined) c.concurrent_spans = concurrent;
        c.thread_time_ns = d.t;
        c.summary += ` Shared: process-level, ${concurrent !== undefined ? `${concurrent} concurrent span(s) of this process` : 'across the process\'s threads'}.`;
      }
      if (d.culprits) c.culprits = d.culprits;
      if (d.details) c.details = d.details;
      causes.push(c);
    }
    causes.sort((x, y) => y.duration_ns - x.duration_ns || SEV_RANK[y.severity] - SEV_RANK[x.severity]);
    base.causes = causes;
  } finally {
    ctx.release();
  }
  return { e: base, dq, S, E };
}

// ---------------------------------------------------------------------------
// public entry points

function assemble(traceId: string, spans: { e: SpanExplanation; dq: SpanDataQuality; S: number; E: number }[], t: TraceCtx): Explanation {
  const methods: Record<string, number> = {};
  for (const s of spans) methods[s.e.correlation.method] = (methods[s.e.correlation.method] ?? 0) + 1;
  const S = Math.min(...spans.map((s) => s.S));
  const E = Math.max(...spans.map((s) => s.E));
  const drops = t.drops.dropsIn(S, E);
  const thr = spans.map((s) => s.dq.offcpu_threshold_ns).filter((x): x is number => x !== null);
  const notes = [...new Set(spans.flatMap((s) => s.dq.notes))];
  const dq: DataQuality = {
    lost_events: drops.total, covered: spans.every((s) => s.dq.covered), coverage: Math.min(...spans.map((s) => s.dq.coverage)),
    lost_known: drops.known, offcpu_threshold_ns: thr.length ? Math.max(...thr) : null, correlation: methods,
    threads_joined: spans.reduce((a, s) => a + s.dq.threads_joined, 0), notes,
  };
  // top cause: severity first, then time
  let best: { s: SpanExplanation; c: Cause } | null = null;
  for (const { e } of spans) {
    for (const c of e.causes) {
      if (!best || SEV_RANK[c.severity] > SEV_RANK[best.c.severity] || (SEV_RANK[c.severity] === SEV_RANK[best.c.severity] && c.duration_ns > best.c.duration_ns)) best = { s: e, c };
    }
  }
  let summary: string;
  const joined = spans.filter((s) => s.e.correlation.method !== 'none').length;
  if (!joined) {
    summary = `None of the ${spans.length} span(s) could be joined to kernel events (no linux.tid, process.pid, vllm.process_id or service mapping).`;
  } else if (!best || best.c.severity === 'low') {
    const onCpu = spans.reduce((a, s) => a + s.e.breakdown_ns.on_cpu, 0);
    const tot = spans.reduce((a, s) => a + s.e.duration_ns, 0);
    summary = `No kernel-side cause above low severity in ${spans.length} span(s) (${pct(tot ? onCpu / tot : 0)} of their time on CPU)${best ? `; largest: ${best.c.kind} ${fmtDur(best.c.duration_ns)} in "${best.s.name}"` : ''}.`;
  } else {
    summary = `Top cause: ${best.c.kind} (${best.c.severity}) in "${best.s.name}" (${best.s.service || 'window'}, ${fmtDur(best.s.duration_ns)}): ${best.c.summary}`;
  }
  if (!dq.covered) summary += ` Capture covered ${pct(dq.coverage)} of the least-covered span.`;
  return { trace_id: traceId, found: true, summary, spans: spans.map((s) => s.e), data_quality: dq };
}

/** Explain every span of a trace. found:false (and no spans) when the trace is not in the store. */
export function explainTrace(reader: StoreReader, traceId: string, o: ExplainOptions = {}): Explanation {
  const id = traceId.toLowerCase();
  return reader.snapshot(() => {
    const stored = /^[0-9a-f]{32}$/.test(id) ? reader.spans.getTrace(id) : [];
    if (!stored.length) {
      return {
        trace_id: id, found: false, summary: `trace ${id} not found in the store`, spans: [],
        data_quality: { lost_events: 0, covered: false, coverage: 0, lost_known: false, offcpu_threshold_ns: null, correlation: {}, threads_joined: 0, notes: ['trace not found'] },
      };
    }
    return explainSpans(reader, id, stored, o);
  });
}

/**
 * Explain the given spans of one trace (all of it, or the part the OTel
 * pipeline holds) without reading them from the span index. Spans in the
 * store shape (SpanInput or StoredSpan): epoch-ns start and end.
 */
export function explainSpans(reader: StoreReader, traceId: string, given: readonly ExplainableSpan[], o: ExplainOptions = {}): Explanation {
  return explainSpanGroups(reader, [{ traceId, spans: given }], o)[0];
}

/**
 * explainSpans for several traces at once, sharing one snapshot of the store
 * and its caches (thread names, clock, drops): what the OTel pipeline does
 * with the traces that became ready together.
 */
export function explainSpanGroups(
  reader: StoreReader, groups: readonly { traceId: string; spans: readonly ExplainableSpan[] }[], o: ExplainOptions = {},
): Explanation[] {
  return reader.snapshot(() => {
    const t = new TraceCtx(reader, o);
    return groups.map((g) => {
      const spans = g.spans.map((sp): SpanLike => {
        const start = BigInt(sp.startUnixNano);
        const end = BigInt(sp.endUnixNano);
        return {
          traceId: sp.traceId, spanId: sp.spanId, parentSpanId: sp.parentSpanId ?? null, name: sp.name, service: sp.service,
          startEpoch: start, durationNs: end > start ? Number(end - start) : 0, pid: sp.pid ?? null, tid: sp.tid ?? null,
          vllmProcessId: sp.vllmProcessId ?? null, attributes: sp.attributes ?? {},
        };
      });
      // retransmit lookups (a scan of every thread) are done once for the whole trace window
      let S = Infinity;
      let E = -Infinity;
      for (const s of spans) {
        const m = t.clock.toMono(s.startEpoch);
        if (m < S) S = m;
        if (m + s.durationNs > E) E = m + s.durationNs;
      }
      t.retrans = null;
      t.retransWindow = spans.some((s) => peerOf(s)) ? [S, E] : [0, 0];
      t.cov = reader.coverage(S, E);
      t.covWindow = [S, E];
      return assemble(g.traceId.toLowerCase(), spans.map((s) => explainOne(t, s)), t);
    });
  });
}

/** Explain a thread's (tid) or a process's (pid) window with no span: one pseudo-span, same shape. */
export function explainWindow(
  reader: StoreReader, w: { tid?: number; pid?: number; fromUnixNano: bigint; toUnixNano: bigint }, o: ExplainOptions = {},
): Explanation {
  const D = Number(w.toUnixNano - w.fromUnixNano);
  if (!(D > 0)) throw new Error('explainWindow: the window must end after it starts');
  if (!w.tid && !w.pid) throw new Error('explainWindow: give tid or pid');
  return reader.snapshot(() => explainWindowIn(new TraceCtx(reader, o), w, D));
}

function explainWindowIn(t: TraceCtx, w: { tid?: number; pid?: number; fromUnixNano: bigint; toUnixNano: bigint }, D: number): Explanation {
  const reader = t.reader;
  const S = t.clock.toMono(w.fromUnixNano);
  let forced: Correlation;
  if (w.tid) {
    let pid = w.pid ?? reader.threadAt(w.tid, S)?.pid ?? reader.threadAt(w.tid, S + D)?.pid ?? null;
    if (!pid) {
      const l = reader.eventsOnThread(w.tid, S, S + D);
      pid = l.count ? l.pid[0] : null;
    }
    forced = { method: 'thread', pid, tid: w.tid, reason: 'window of one thread' };
  } else {
    forced = { method: 'process', pid: w.pid!, tid: null, reason: 'window of one process' };
  }
  const s: SpanLike = {
    traceId: '', spanId: '0000000000000000', parentSpanId: null, name: w.tid ? `tid ${w.tid} window` : `pid ${w.pid} window`, service: '',
    startEpoch: w.fromUnixNano, durationNs: D, pid: forced.pid, tid: forced.tid, vllmProcessId: null, attributes: {}, forced,
  };
  return assemble('', [explainOne(t, s)], t);
}

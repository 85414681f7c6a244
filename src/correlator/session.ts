// ExplainSession: what the spans of one explain call share (one store
// snapshot: clock and drops caches, thread directory lookups, sessions and
// coverage, the observer's pids, the retransmit scan), and SpanCtx: one
// span's window with each thread's events fetched once.

import {
  CUDA_RING, SCHED_RING, ThreadDirectory, EventList, addOpenIntervals, type Coverage, type OpenInterval, type PartitionMeta, type SessionMeta,
  type StatusMeta,
  type StoreReader, type ThreadMeta,
} from '../store/index.js';
import { STATUS_DETACHED, fmtDur, type ClockHistory } from '../capture/index.js';
import { readerCaches, type DropsCache } from './cache.js';
import { buildTimeline, type LossWindows, type Timeline } from './timeline.js';
import type { Correlation, Culprit, ExplainOptions } from './types.js';

/** A span as the correlator works on it (epoch start, ns duration). */
export interface SpanLike {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  service: string;
  startEpoch: bigint;
  durationNs: number;
  pid: number | null;
  tid: number | null;
  /** a server's process-id attribute value (store/service-attributes.ts) */
  processId: string | null;
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
export class ExplainSession {
  readonly clock: ClockHistory;
  readonly drops: DropsCache;
  readonly threads: ThreadDirectory;
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
  /** sessions and retention horizon of this snapshot, for reader.coverage */
  readonly known: { sessions: readonly SessionMeta[]; retainedFromNs: number };
  /** the hosts that wrote the store (host records) */
  private hosts: ReturnType<StoreReader['hosts']> | null = null;

  constructor(readonly reader: StoreReader, readonly o: ExplainOptions) {
    const c = readerCaches(reader);
    this.clock = c.clock;
    this.threads = new ThreadDirectory(reader);
    this.drops = c.drops;
    this.maxDepth = o.maxDepth ?? 3;
    this.maxEvidence = o.maxEvidence ?? 20;
    this.parts = reader.partitions();
    this.sessions = reader.sessions();
    this.knownThrough = reader.knownThroughNs();
    this.known = { sessions: this.sessions, retainedFromNs: reader.retainedFromNs() };
    this.observers = new Set<number>();
    for (const s of this.sessions) {
      if (s.probePid) this.observers.add(s.probePid);
      for (const p of s.observerPids ?? []) this.observers.add(p);
    }
  }

  /** The host whose kernel data covers epoch ns `at` (explain JSON `host`). */
  hostAt(at: bigint): { name: string | null; boot_id: string | null } {
    this.hosts ??= this.reader.hosts();
    // one host (or none) wrote the store: the same answer for every span, without the per-span division
    const h = this.hosts.length <= 1 ? this.hosts[0] : this.reader.hostAt(Number(at / 1_000_000n), this.hosts);
    return { name: h?.name ?? null, boot_id: h?.bootId ?? null };
  }

  private readonly thresholdNotes = new Map<number, string>();
  /** The note every joined span carries about the off-CPU threshold (one string per threshold, not per span). */
  thresholdNote(ns: number): string {
    let n = this.thresholdNotes.get(ns);
    if (n === undefined) {
      n = `off-CPU intervals shorter than ${fmtDur(ns)} are not recorded and count as on_cpu`;
      this.thresholdNotes.set(ns, n);
    }
    return n;
  }

  epoch(mono: number): string {
    return this.clock.toEpochNs(mono).toString();
  }

  private readonly openByTid = new Map<number, OpenInterval[]>();
  /** reader.openIntervals(tid), once per call (a batch's spans share their threads) */
  openIntervals(tid: number): OpenInterval[] {
    let l = this.openByTid.get(tid);
    if (l === undefined) {
      l = this.reader.openIntervals(tid);
      if (this.openByTid.size >= 4096) this.openByTid.clear();
      this.openByTid.set(tid, l);
    }
    return l;
  }

  /** The thread alive at t (store/threads.ts). */
  threadAt(tid: number, t: number): ThreadMeta | null {
    return this.threads.at(tid, t);
  }

  comm(tid: number, t: number): string {
    if (tid === 0) return 'swapper';
    return this.threads.near(tid, t)?.comm ?? '';
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

  /** the sessions whose data ends without blocked-task snapshots, with their note (null: not looked at yet) */
  private blindEnds: { from: number; to: number; note: string }[] | null = null;

  /**
   * The note for a window [S, E] when a session it overlaps had no
   * blocked-task snapshots where its data ends (its end, or the watermark of
   * the running one): an interval still open there was never recorded, so
   * that thread reads as on CPU from its last run (probe group `blocked`).
   */
  blindOpenNote(S: number, E: number): string | null {
    if (this.blindEnds === null) {
      this.blindEnds = [];
      let statuses: StatusMeta[] | undefined;
      for (const s of this.sessions) {
        const end = !s.closed && this.knownThrough !== null ? Math.min(s.endNs, this.knownThrough) : s.endNs;
        // each group's last range begun by then (ranges are in time order)
        const at = (g: string) => {
          const rs = s.groups[g]?.ranges ?? [];
          let last: (typeof rs)[number] | undefined;
          for (const r of rs) if (r.from <= end) last = r;
          return last;
        };
        const sched = at('sched');
        if (!sched || sched.err !== 0 || (sched.to !== null && sched.to < end)) continue; // nothing seen at the end anyway
        const b = at('blocked');
        if (b && b.err === 0 && (b.to === null || b.to >= end)) continue;
        // the group's last STATUS in the session says why (coverage keeps only the ranges)
        let last: StatusMeta | undefined;
        for (const st of (statuses ??= this.reader.statusRecords())) {
          if (st.name === 'blocked' && st.ts >= s.startNs && st.ts <= end) last = st;
        }
        const why = !last ? 'not captured: a probe before ABI 5, or --groups without blocked'
          : last.err === STATUS_DETACHED ? 'detached' : last.err < 0 ? `failing (${last.detail})` : 'not attached then';
        this.blindEnds.push({
          from: s.startNs, to: end,
          note: `threads still off CPU where this capture's data ends (${s.closed ? 'its end' : 'the watermark'}) could not be seen (blocked-task snapshots ${why}): such a thread reads as on CPU from its last run to there`,
        });
      }
    }
    for (const b of this.blindEnds) if (b.from <= E && b.to >= S) return b.note;
    return null;
  }

  /** reader.coverage(a, b), from one lookup over the trace window when it contains [a, b]. */
  coverage(a: number, b: number): Coverage {
    if (!this.cov || a < this.covWindow[0] || b > this.covWindow[1]) return this.reader.coverage(a, b, undefined, this.known);
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

/** Where capture ends in [S, E], given its covered ranges there (S when none): losses matter, and must be known, up to it. */
export function capturedThrough(covered: readonly [number, number][], S: number, E: number): number {
  return covered.length ? Math.min(E, covered[covered.length - 1][1]) : S;
}

/** Per span: the window, its coverage, and each thread's events over it (fetched once). */
export class SpanCtx {
  readonly ev = new Map<number, EventList>();
  /** threads whose still-open intervals were added to their list */
  private readonly opened = new Set<number>();
  /** where the rings lost records (or their losses are not known yet) over the span: the timelines' on-CPU reading stops there */
  readonly loss: LossWindows;
  constructor(readonly t: ExplainSession, readonly S: number, readonly E: number, readonly covered: [number, number][]) {
    // (only up to the end of capture: no record can be lost where nothing was captured)
    const end = capturedThrough(covered, S, E);
    this.loss = { sched: t.drops.lossWindows(SCHED_RING, S, end), cuda: t.drops.lossWindows(CUDA_RING, S, end) };
  }

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
    this.opened.clear();
  }

  /**
   * Thread tid's intervals that were still off CPU at the probe's latest
   * snapshots and have no switch-in record in its list (it had not run again
   * by the watermark), added to the list up to the span's end (or where they
   * are known to end: store/open-intervals.ts): off CPU there, not on CPU.
   */
  private addOpen(tid: number, list: EventList): void {
    if (this.opened.has(tid)) return;
    this.opened.add(tid);
    const rows = this.t.openIntervals(tid);
    if (rows.length) addOpenIntervals(list, rows, tid, this.S, this.E, this.t.sessions, this.t.knownThrough, this.loss.sched);
  }

  /**
   * Thread tid's timeline over [a, b] (clipped to the span). A thread with no
   * events there counts as on CPU only when the thread directory shows it
   * existed then (capture named it); otherwise its time is unknown. Its
   * intervals still open at the watermark are looked up for every thread,
   * the span's own too: a span ended on another thread than the one named
   * by its thread id (async code) leaves that one anywhere.
   */
  timeline(tid: number, pid: number, a: number, b: number): Timeline {
    const x = Math.max(a, this.S);
    const y = Math.min(b, this.E);
    const list = this.events(tid);
    this.addOpen(tid, list);
    const tl = buildTimeline(list, tid, pid, x, y, this.covered, this.loss);
    if (tl.events === 0 && !this.t.threadAt(tid, x) && !this.t.threadAt(tid, y)) {
      tl.bd.unknown += tl.bd.on_cpu;
      tl.bd.on_cpu = 0;
      tl.unseen = true;
    }
    return tl;
  }
}


// Read-only queries for the MCP server (src/mcp) over the StoreReader's
// public API: span queries that need the span index's key layout (spans.ts)
// and are not part of SpanIndex itself (the services present, the slowest
// spans across every service, a lookup by request id, the spans' time
// range), and a sliced scan of the kernel events of many threads.
//
// Long scans take a ScanControl: they work in bounded reads and call
// `tick()` between them; when it returns a promise they await it (the
// caller yields to the event loop there) and stop when it resolves false.
// Nothing here writes.

import type { Database } from 'lmdb';
import { Kind } from '../capture/index.js';
import { EventList } from './codec.js';
import { addOpenIntervals } from './open-intervals.js';
import type { StoreReader } from './reader.js';
import { clockSampleRange, type ClockSampleMeta, type PartitionMeta } from './schema.js';
import { REQUEST_ID_ATTRIBUTES } from './service-attributes.js';
import { storedSpan, type StoredSpan } from './spans.js';

/** Cooperative control of a long scan (the MCP tools' Budget implements it). */
export interface ScanControl {
  /** go on? A promise: the scan awaits it (yield point); false: stop now */
  tick(): boolean | Promise<boolean>;
  /** count events examined (a row budget) */
  rows?(n: number): void;
  /** true when the current slice is used up (the scan should reach a tick() soon) */
  due?(): boolean;
}

/** No budget: scan everything, never yield. */
export const UNBOUNDED: ScanControl = { tick: () => true };

/** Entries read at most between two tick() calls by the sliced key-range scans (fewer when ctl.due()). */
const RANGE_CHUNK = 4096;

/**
 * Visit the entries of `db` in [start, end) in chunks, calling ctl.tick()
 * between chunks; no LMDB cursor is kept across a yield (the range restarts
 * after the last key seen, on a fresh read transaction). `visit` returns
 * false to stop. Resolves false when the control stopped the scan.
 */
export async function forRangeSliced(
  db: Database, start: Buffer | undefined, end: Buffer | undefined,
  visit: (key: Buffer, value: unknown) => boolean, ctl: ScanControl, keysOnly = false,
): Promise<boolean> {
  let from = start;
  for (;;) {
    let n = 0;
    let last: Buffer | undefined;
    let stop = false;
    const it = keysOnly
      ? (db.getKeys({ start: from, end, limit: RANGE_CHUNK }) as Iterable<unknown>)
      : (db.getRange({ start: from, end, limit: RANGE_CHUNK }) as Iterable<{ key: unknown; value: unknown }>);
    let cut = false;
    for (const e of it) {
      const key = (keysOnly ? e : (e as { key: unknown }).key) as Buffer;
      n++;
      last = key;
      if (!visit(key, keysOnly ? undefined : (e as { value: unknown }).value)) {
        stop = true;
        break;
      }
      if ((n & 127) === 0 && ctl.due?.()) {
        cut = true;
        break;
      }
    }
    ctl.rows?.(n);
    if (stop || (!cut && n < RANGE_CHUNK) || !last) return true;
    from = Buffer.concat([last, Buffer.from([0])]);
    const t = ctl.tick();
    if (t !== true && !(await t)) return false;
  }
}


/** Distinct service names in the span index (sorted), at most `limit`. One key seek per service. */
export function spanServices(r: StoreReader, limit = 1000): string[] {
  r.refresh();
  const out: string[] = [];
  let start: Buffer | undefined;
  const db = r.spans.byTime;
  for (let first = true; (first || start) && out.length < limit; first = false) {
    let next: Buffer | undefined;
    for (const key of db.getKeys(start ? { start, limit: 1 } : { limit: 1 })) {
      const k = key as Buffer;
      const z = k.indexOf(0);
      if (z < 0) break;
      out.push(k.toString('utf8', 0, z));
      // the next service: the prefix with its NUL separator replaced by 0x01
      next = Buffer.concat([k.subarray(0, z), Buffer.from([1])]);
    }
    start = next;
  }
  return out;
}

export interface SlowSpansAnyQuery {
  /** one service, or every service when omitted */
  service?: string;
  /** epoch ns window on span start (inclusive) */
  fromUnixNano: bigint;
  toUnixNano: bigint;
  minDurationNs?: number;
  /** default 20 */
  limit?: number;
  /** stop scanning after this many index entries (bounds the cost; `truncated` says so). Default 1,000,000 */
  maxScan?: number;
}

export interface SlowSpansResult {
  spans: StoredSpan[];
  /** spans started in the window with duration >= minDurationNs */
  matched: number;
  /** the scan stopped at maxScan: matched and spans cover only part of the window */
  truncated: boolean;
}

function u64be(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v < 0n ? 0n : v));
  return b;
}

/** Slowest spans started in [from, to], of one service or of all, longest first. */
export async function findSlowSpansAny(r: StoreReader, q: SlowSpansAnyQuery, ctl: ScanControl = UNBOUNDED): Promise<SlowSpansResult> {
  const services = q.service !== undefined ? [q.service] : spanServices(r);
  const limit = q.limit ?? 20;
  const minDur = q.minDurationNs ?? 0;
  const maxScan = q.maxScan ?? 1_000_000;
  r.refresh();
  const cand: { d: number; id: Buffer }[] = [];
  let scanned = 0;
  let matched = 0;
  let truncated = false;
  for (const svc of services) {
    if (svc.includes('\0')) continue;
    const p = Buffer.concat([Buffer.from(svc, 'utf8'), Buffer.from([0])]);
    const start = Buffer.concat([p, u64be(q.fromUnixNano)]);
    const end = Buffer.concat([p, u64be(q.toUnixNano + 1n)]);
    const done = await forRangeSliced(r.spans.byTime, start, end, (key, value) => {
      if (++scanned > maxScan) {
        truncated = true;
        return false;
      }
      const d = (value as Buffer).readDoubleLE(0);
      if (d < minDur) return true;
      matched++;
      cand.push({ d, id: Buffer.from(key.subarray(p.length + 8)) });
      // keep the candidate list small: prune to the best `limit` now and then
      if (cand.length > 4 * limit + 1024) {
        cand.sort((x, y) => y.d - x.d);
        cand.length = limit;
      }
      return true;
    }, ctl);
    if (!done) truncated = true;
    if (truncated) break;
  }
  cand.sort((x, y) => y.d - x.d);
  const spans: StoredSpan[] = [];
  for (const c of cand.slice(0, limit)) {
    const v = r.spans.byId.get(c.id);
    const s = v === undefined ? undefined : storedSpan(v);
    if (s) spans.push(s);
  }
  return { spans, matched, truncated };
}

export interface RequestIdMatch {
  span: StoredSpan;
  /** the attribute that matched */
  attribute: string;
}

/**
 * Spans whose request id (gen_ai.request.id, or a kept request-id attribute)
 * equals `requestId`. A scan of the span table (there is no request-id
 * index), stopping after `maxScan` spans, `limit` matches, or when `ctl` says.
 */
export async function spansByRequestId(
  r: StoreReader, requestId: string, limit = 50, maxScan = 2_000_000, ctl: ScanControl = UNBOUNDED,
): Promise<{ matches: RequestIdMatch[]; truncated: boolean }> {
  r.refresh();
  const matches: RequestIdMatch[] = [];
  let n = 0;
  let truncated = false;
  const done = await forRangeSliced(r.spans.byId, undefined, undefined, (_k, value) => {
    if (++n > maxScan) {
      truncated = true;
      return false;
    }
    const s = storedSpan(value);
    // every request-id attribute is kept on the span, so the attributes say which one matched
    let attr = REQUEST_ID_ATTRIBUTES.find((a) => s.attributes?.[a] !== undefined && String(s.attributes[a]) === requestId) ?? null;
    // spans stored before they were all kept: requestId held gen_ai.request.id
    if (!attr && s.requestId === requestId) attr = REQUEST_ID_ATTRIBUTES[0];
    if (attr) matches.push({ span: s, attribute: attr });
    return matches.length < limit;
  }, ctl);
  return { matches, truncated: truncated || !done };
}

/**
 * Visit the stored clock samples taken after `afterMono` (all when omitted),
 * in monotonic order, read in slices (StoreReader.clockSamples reads them in
 * one go: a long capture has one per second). Resolves false when ctl
 * stopped it (the samples visited so far are a prefix).
 */
export function clockSamplesSliced(r: StoreReader, afterMono: number | undefined, visit: (s: ClockSampleMeta) => void, ctl: ScanControl): Promise<boolean> {
  r.refresh();
  const { start, end } = clockSampleRange(afterMono);
  return forRangeSliced(r.meta, start, end, (_k, v) => {
    visit(v as ClockSampleMeta);
    return true;
  }, ctl);
}

/** Start times (epoch ns) of the earliest and the latest stored span, or null when there is none. One key seek per service and end. */
export function spanTimeRange(r: StoreReader): { fromUnixNano: bigint; toUnixNano: bigint } | null {
  let lo: bigint | null = null;
  let hi: bigint | null = null;
  const db = r.spans.byTime;
  for (const svc of spanServices(r)) {
    const p = Buffer.concat([Buffer.from(svc, 'utf8'), Buffer.from([0])]);
    const pEnd = Buffer.concat([Buffer.from(svc, 'utf8'), Buffer.from([1])]);
    for (const k of db.getKeys({ start: p, end: pEnd, limit: 1 })) {
      const t = (k as Buffer).readBigUInt64BE(p.length);
      if (lo === null || t < lo) lo = t;
    }
    for (const k of db.getKeys({ start: pEnd, end: p, reverse: true, limit: 1 })) {
      const t = (k as Buffer).readBigUInt64BE(p.length);
      if (hi === null || t > hi) hi = t;
    }
  }
  return lo === null || hi === null ? null : { fromUnixNano: lo, toUnixNano: hi };
}

/** Monotonic range [min end, max end] of the stored kernel events (partition metadata), or null when empty. */
export function eventTimeRange(r: StoreReader, parts: PartitionMeta[] = r.partitions()): { fromNs: number; toNs: number; events: number } | null {
  let from = Infinity;
  let to = -Infinity;
  let events = 0;
  for (const p of parts) {
    if (!p.events) continue;
    events += p.events;
    if (p.minEnd < from) from = p.minEnd;
    if (p.maxEnd > to) to = p.maxEnd;
  }
  return Number.isFinite(from) ? { fromNs: from, toNs: to, events } : null;
}

// ---------------------------------------------------------------------------
// Sliced scans of kernel events

/** Events read at most per eventsOnThread call of a sliced scan (a few ms of decoding). */
const SCAN_TARGET_EVENTS = 4096;
/** Threads scanned at most by a host-wide scan (no pid/tid). */
export const MAX_SCAN_THREADS = 4000;

export interface EventScanQuery {
  /** monotonic ns window: events overlapping [a, b] */
  a: number;
  b: number;
  /** bit (1 << Kind.X) per wanted kind; 0 = all */
  kindMask: number;
  /** one thread (with pid: only its events under that pid) */
  tid?: number;
  /** every thread of one process (only events recorded with that pid) */
  pid?: number;
  /** these threads (overrides tid/pid's thread list; pid still filters) */
  tids?: number[];
  /** host-wide: threads scanned at most (default 4000) */
  maxThreads?: number;
  /**
   * also each thread's off-CPU intervals still open at the probe's latest
   * snapshot (flagged OffcpuFlag.OPEN, ending at b or where they are known to
   * end), visited after its recorded events
   */
  open?: boolean;
}

export interface EventScanResult {
  /** threads read completely */
  threads: number;
  /** threads the scope had (host-wide: with events in the window, up to 2 x maxThreads) */
  threadsTotal: number;
  /** host-wide scope cut at maxThreads */
  threadsTruncated: boolean;
  /** events passed to visit */
  events: number;
  /** false: the control stopped the scan (the events seen are a prefix, thread by thread in time order) */
  complete: boolean;
}

/** The threads a scan covers: tids, or tid, or the process's threads, or every thread with events in the window (capped). */
export function scanThreads(r: StoreReader, q: EventScanQuery, parts?: PartitionMeta[]): { tids: number[]; total: number; truncated: boolean } {
  if (q.tids) return { tids: q.tids, total: q.tids.length, truncated: false };
  if (q.tid !== undefined) return { tids: [q.tid], total: 1, truncated: false };
  if (q.pid !== undefined) {
    const tids = r.threadsOfProcess(q.pid, q.a, q.b, parts);
    return { tids, total: tids.length, truncated: false };
  }
  const max = q.maxThreads ?? MAX_SCAN_THREADS;
  const tids = [...new Set(r.threadsInWindow(q.a, q.b, max * 2).map(([, t]) => t))].sort((x, y) => x - y);
  return { tids: tids.slice(0, max), total: tids.length, truncated: tids.length > max };
}

/**
 * Every event overlapping [a, b] of the scope's threads, thread by thread,
 * each thread in time slices sized to ~4 k events (adapted to the thread's
 * density): `visit` gets each slice as an EventList (reused: read it, do not
 * keep it), sorted by start. Each event is passed once (a slice keeps the
 * events that end in it). ctl.tick() runs between reads.
 */
export async function scanEvents(r: StoreReader, q: EventScanQuery, visit: (l: EventList) => void, ctl: ScanControl = UNBOUNDED): Promise<EventScanResult> {
  r.refresh();
  const parts = r.partitions();
  const { tids, total, truncated } = scanThreads(r, q, parts);
  const res: EventScanResult = { threads: 0, threadsTotal: total, threadsTruncated: truncated, events: 0, complete: true };
  const { a, b } = q;
  if (b < a || !tids.length) return res;
  // First read of each thread: as wide as is safe if that one thread had every
  // event of the window (partition metadata); then adapt to its density.
  let evInWindow = 0;
  for (const p of parts) {
    if (p.maxEnd < a || p.minEnd - p.maxDur > b) continue;
    const span = Math.max(1, p.maxEnd - p.minEnd);
    const overlap = Math.max(0, Math.min(b, p.maxEnd) - Math.max(a, p.minEnd));
    evInWindow += p.events * Math.min(1, Math.max(overlap, 1) / span);
  }
  const width0 = Math.max(1e3, ((b - a) * SCAN_TARGET_EVENTS) / Math.max(1, evInWindow));
  const l = new EventList(4096);
  const open = q.open && (q.kindMask === 0 || (q.kindMask & (1 << Kind.OFFCPU)) !== 0)
    ? { sessions: r.sessions(), knownThrough: r.knownThroughNs() } : null;
  for (const tid of tids) {
    let s = a;
    let w = width0;
    for (;;) {
      const e = Math.min(b, s + w);
      const last = e >= b;
      r.eventsOnThread(tid, s, e, l, q.kindMask, parts);
      const n = l.count;
      // keep the events that end in this slice (the last one: every end >= s), of the pid when given
      let k = 0;
      for (let i = 0; i < n; i++) {
        const end = l.end[i];
        if (end < s || (!last && end >= e)) continue;
        if (q.pid !== undefined && l.pid[i] !== q.pid) continue;
        if (k !== i) l.moveRow(i, k);
        k++;
      }
      l.count = k;
      ctl.rows?.(n);
      if (k) {
        res.events += k;
        visit(l);
      }
      if (last) break;
      // next slice: aim at SCAN_TARGET_EVENTS per read
      w = Math.max(1e3, w * Math.min(32, Math.max(0.125, SCAN_TARGET_EVENTS / Math.max(1, n))));
      s = e;
      const t = ctl.tick();
      if (t !== true && !(await t)) {
        res.complete = false;
        return res;
      }
    }
    if (open) {
      // (a row lasts until the thread's switch-in is visible to this reader: none of these has one yet)
      const rows = r.openIntervals(tid).filter((o) => q.pid === undefined || o.pid === q.pid);
      l.clear();
      if (rows.length && addOpenIntervals(l, rows, tid, a, b, open.sessions, open.knownThrough)) {
        res.events += l.count;
        visit(l);
      }
    }
    res.threads++;
    const t = ctl.tick();
    if (t !== true && !(await t)) {
      res.complete = res.threads === tids.length;
      return res;
    }
  }
  return res;
}

// Spans index: written by the OTel bridge, read by the correlator and MCP.
//   spans          [16 trace_id][8 span_id]                          -> msgpack StoredSpan
//   spans_by_time  [service][0x00][u64 start_epoch_ns][16][8]         -> f64 duration_ns (binary)
//   spans_by_dur   [service][0x00][u64 duration_ns][u64 start][16][8] -> empty
// Epoch ns are u64 (bigint / decimal string in the API: they exceed 2^53).

import type { Database, RootDatabase } from 'lmdb';
import { describeCommitError } from './commit-error.js';
import { encodeStoredSpan, storedSpanMaxBytes } from './span-record.js';

export interface SpanInput {
  /** 32 lowercase hex */
  traceId: string;
  /** 16 lowercase hex */
  spanId: string;
  parentSpanId?: string | null;
  service: string;
  name: string;
  /** epoch ns */
  startUnixNano: bigint;
  endUnixNano: bigint;
  kind?: number;
  statusCode?: number;
  /** correlation attributes, when present on the span or its resource */
  pid?: number | null;
  /** linux.tid (or thread.id when known to be the OS id) */
  tid?: number | null;
  /** the first process-id attribute present (service-attributes.ts: vllm.process_id, ...) */
  processId?: string | null;
  /** the first request-id attribute present (service-attributes.ts: gen_ai.request.id, ...) */
  requestId?: string | null;
  /** any further attributes worth keeping for correlation (small) */
  attributes?: Record<string, string | number | boolean>;
}

export interface StoredSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  service: string;
  name: string;
  /** decimal strings (exact u64) */
  startUnixNano: string;
  endUnixNano: string;
  durationNs: number;
  kind: number;
  statusCode: number;
  pid: number | null;
  tid: number | null;
  /** the first process-id attribute present (spans stored before 2026-12 had it as `vllmProcessId`: read through storedSpan()) */
  processId: string | null;
  requestId: string | null;
  attributes: Record<string, string | number | boolean>;
}

export interface SlowSpanQuery {
  service: string;
  /** epoch ns window on span start (inclusive); omitted = unbounded */
  fromUnixNano?: bigint;
  toUnixNano?: bigint;
  minDurationNs?: number;
  /** default 20 */
  limit?: number;
}

/** A stored span as read from the index (older stores named processId `vllmProcessId`). */
export function storedSpan(v: unknown): StoredSpan {
  const s = v as StoredSpan & { vllmProcessId?: string | null };
  if (s.processId === undefined) s.processId = s.vllmProcessId ?? null;
  return s;
}

function idBytes(traceId: string, spanId: string): Buffer {
  const b = Buffer.allocUnsafe(24);
  idBytesInto(traceId, spanId, b, 0);
  return b;
}

/** A lowercase hex digit's value, or -1 */
function hexNibble(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
}

/** The 24 id bytes at b[at] (trace id, span id); throws on ids that are not lowercase hex of the right length. */
function idBytesInto(traceId: string, spanId: string, b: Buffer, at: number): void {
  hexInto(traceId, 16, b, at, 'trace');
  hexInto(spanId, 8, b, at + 16, 'span');
}

/** `n` bytes from 2n lowercase hex digits at b[at]. */
function hexInto(s: string, n: number, b: Buffer, at: number, what: string): void {
  if (s.length !== 2 * n) throw new Error(`bad ${what} id ${s}`);
  for (let i = 0; i < n; i++) {
    const v = (hexNibble(s.charCodeAt(2 * i)) << 4) | hexNibble(s.charCodeAt(2 * i + 1));
    if (v < 0) throw new Error(`bad ${what} id ${s}`);
    b[at + i] = v;
  }
}

function u64be(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v < 0n ? 0n : v));
  return b;
}

function svcPrefix(service: string): Buffer {
  if (service.includes('\0')) throw new Error('service name contains NUL');
  return Buffer.concat([Buffer.from(service, 'utf8'), Buffer.from([0])]);
}

const EMPTY = Buffer.alloc(0);
const U64_MAX = (1n << 64n) - 1n;

/** Where the next service's keys start, given a key of a service ending (its NUL) at z: the same bytes, then 0x01. */
function nextServiceKey(key: Buffer, z: number): Buffer {
  const b = Buffer.allocUnsafe(z + 1);
  key.copy(b, 0, 0, z);
  b[z] = 1;
  return b;
}

/**
 * A span's spans_by_time and spans_by_dur keys, in one allocation:
 * [service][0][u64 start][id] and [service][0][u64 duration][u64 start][id].
 */
function indexKeys(service: string, start: bigint, durationNs: number, id: Buffer): [Buffer, Buffer] {
  const n = Buffer.byteLength(service, 'utf8');
  const t = n + 1 + 8 + id.length;
  const b = Buffer.allocUnsafe(2 * t + 8);
  const s64 = start < 0n ? 0n : start > U64_MAX ? U64_MAX : start;
  // u64s as two u32s: one BigInt split for the start (written twice), none for the duration (< 2^53)
  const sHi = Number(s64 >> 32n);
  const sLo = Number(s64 & 0xffffffffn);
  b.write(service, 0, 'utf8');
  b[n] = 0;
  b.writeUInt32BE(sHi, n + 1);
  b.writeUInt32BE(sLo, n + 5);
  id.copy(b, n + 9);
  b.copy(b, t, 0, n + 1);
  b.writeUInt32BE(Math.min(0xffffffff, Math.floor(durationNs / 2 ** 32)), t + n + 1);
  b.writeUInt32BE(durationNs >>> 0, t + n + 5);
  b.writeUInt32BE(sHi, t + n + 9);
  b.writeUInt32BE(sLo, t + n + 13);
  id.copy(b, t + n + 17);
  return [b.subarray(0, t), b.subarray(t)];
}

/** One putSpans call's spans, ready to be written. */
interface PendingPut {
  kind: 'put';
  spans: SpanInput[];
  stored: StoredSpan[];
  olds: (StoredSpan | undefined)[];
  ids: Buffer[];
}

/** One expireBefore call: its victims are chosen when its batch is built (see commit). */
interface PendingExpire {
  kind: 'expire';
  before: bigint;
  max: number;
  /** filled in by commit */
  result: { deleted: number; more: boolean };
}

/**
 * Spans expired per expireBefore call at most by default: a batch of row
 * deletes takes ~6 µs a span of the calling thread (bench:span-index), so
 * ~12 ms of the OTel receiving thread per batch.
 */
export const SPAN_EXPIRE_BATCH = 2_000;

export class SpanIndex {
  readonly byId: Database;
  /** the same table without lmdb-js's encoder: values encoded by span-record.ts, in the bytes it would write */
  private readonly byIdRaw: Database;
  readonly byTime: Database;
  readonly byDur: Database;
  /** spans written by this process and not yet committed, by trace id (the span index's head) */
  private readonly pending = new Map<string, StoredSpan[]>();
  /** the puts waiting for the batch in flight to commit (enqueue) */
  private next: { parts: (PendingPut | PendingExpire)[]; promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } | null = null;
  private inFlight = false;
  /** lmdb-js batches (commits) written so far */
  batches = 0;
  /** the latest batch failed (a full disk): lmdb-js's close then waits for a flush that never comes */
  lastCommitFailed = false;

  constructor(private readonly root: RootDatabase, private readonly owner: { refresh(): void }) {
    this.byId = root.openDB('spans', { keyEncoding: 'binary', encoding: 'msgpack' });
    this.byIdRaw = root.openDB('spans', { keyEncoding: 'binary', encoding: 'binary' });
    this.byTime = root.openDB('spans_by_time', { keyEncoding: 'binary', encoding: 'binary' });
    this.byDur = root.openDB('spans_by_dur', { keyEncoding: 'binary', encoding: 'binary' });
  }

  /** the latest commits, unless the owning reader is inside a snapshot */
  private auto(): void {
    this.owner.refresh();
  }

  /**
   * Store spans (in one transaction, perhaps with other calls' spans: see
   * enqueue). Re-putting a span replaces it and its index entries.
   *
   * The puts go to lmdb-js as a batch: encoded here (span-record.ts) and
   * applied to the B-trees on lmdb-js's own write thread (a `transaction`
   * callback would run the B-tree work on this thread, the OTel receiving
   * thread: bench:span-index 17.5 -> 15.4 µs of it per span). A batch reads
   * the committed store, not the batches still in flight, so the copy a
   * re-put replaces is looked up in `pending` (this process's uncommitted
   * puts, in order) before the store.
   */
  async putSpans(spans: SpanInput[]): Promise<void> {
    const stored: StoredSpan[] = new Array(spans.length);
    const ids: Buffer[] = new Array(spans.length);
    const idBuf = Buffer.allocUnsafe(24 * spans.length);
    // checked before any of them is made readable: a bad span rejects the call and leaves nothing behind
    for (let k = 0; k < spans.length; k++) {
      const s = spans[k];
      if (s.service.includes('\0')) throw new Error('service name contains NUL');
      idBytesInto(s.traceId, s.spanId, idBuf, 24 * k);
      ids[k] = idBuf.subarray(24 * k, 24 * k + 24);
      stored[k] = {
        traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? null, service: s.service, name: s.name,
        startUnixNano: s.startUnixNano.toString(), endUnixNano: s.endUnixNano.toString(), durationNs: Math.max(0, Number(s.endUnixNano - s.startUnixNano)),
        kind: s.kind ?? 0, statusCode: s.statusCode ?? 0, pid: s.pid ?? null, tid: s.tid ?? null,
        processId: s.processId ?? null, requestId: s.requestId ?? null, attributes: s.attributes ?? {},
      };
    }
    const olds: (StoredSpan | undefined)[] = new Array(spans.length);
    try {
      for (let k = 0; k < spans.length; k++) {
        const st = stored[k];
        // the copy this put replaces: the latest uncommitted one (this call's earlier ones included), else the store's
        const l = this.pending.get(st.traceId);
        let old: StoredSpan | undefined;
        if (l) for (let j = l.length - 1; j >= 0; j--) if (l[j].spanId === st.spanId) { old = l[j]; break; }
        olds[k] = old ?? (this.byId.get(ids[k]) as StoredSpan | undefined); // only its index keys are used
        // readable by getTrace in this process until the batch commits
        if (l) l.push(st);
        else this.pending.set(st.traceId, [st]);
      }
      await this.enqueue({ kind: 'put', spans, stored, olds, ids });
    } finally {
      for (const st of stored) {
        const l = this.pending.get(st.traceId);
        const i = l ? l.indexOf(st) : -1;
        if (i >= 0) l!.splice(i, 1);
        if (l && !l.length) this.pending.delete(st.traceId);
      }
    }
  }

  /**
   * One lmdb-js batch (one LMDB transaction, one commit: a page write-out and
   * an fdatasync on lmdb-js's write thread) in flight at a time: the calls
   * that come while it commits go together in the next. Under load a commit
   * then carries several calls' spans (its fixed cost shared); a lone call
   * commits at once. Each call resolves (or rejects) with its batch.
   */
  private enqueue(part: PendingPut | PendingExpire): Promise<void> {
    if (!this.next) {
      let resolve!: () => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      this.next = { parts: [], promise, resolve, reject };
    }
    this.next.parts.push(part);
    const p = this.next.promise;
    if (!this.inFlight) this.commitNext();
    return p;
  }

  private commitNext(): void {
    const g = this.next;
    this.next = null;
    if (!g) return;
    this.batches++;
    this.inFlight = true;
    this.commit(g.parts).then(
      () => { this.lastCommitFailed = false; g.resolve(); },
      (e: Error) => { this.lastCommitFailed = true; g.reject(e); },
    ).finally(() => {
      this.inFlight = false;
      this.commitNext();
    });
  }

  private async commit(parts: (PendingPut | PendingExpire)[]): Promise<void> {
    // the values of the batch in one buffer (lmdb-js keeps a reference to it until the batch is written)
    let room = 0;
    for (const part of parts) if (part.kind === 'put') for (const st of part.stored) room += storedSpanMaxBytes(st) + 8;
    const vals = Buffer.allocUnsafe(room);
    let at = 0;
    // expiries read the committed store: the batch before this one has committed (one in flight)
    if (parts.some((part) => part.kind === 'expire')) this.auto();
    try {
      await this.root.batch(() => {
        for (const part of parts) {
          if (part.kind === 'expire') {
            this.expireInBatch(part);
            continue;
          }
          const { spans, stored, olds, ids } = part;
          for (let k = 0; k < stored.length; k++) {
            const old = olds[k];
            if (old) this.removeIndex(old, ids[k]);
            const st = stored[k];
            const end = encodeStoredSpan(st, vals, at);
            if (end < 0) {
              this.byId.put(ids[k], st); // what span-record.ts does not take: lmdb-js's encoder
            } else {
              this.byIdRaw.put(ids[k], vals.subarray(at, end));
              at = end;
            }
            const [timeKey, durKey] = indexKeys(st.service, spans[k].startUnixNano, st.durationNs, ids[k]);
            vals.writeDoubleLE(st.durationNs, at);
            this.byTime.put(timeKey, vals.subarray(at, at + 8));
            at += 8;
            this.byDur.put(durKey, EMPTY);
          }
        }
      });
    } catch (e) {
      // a failed commit (disk full): its cause is handled here, the caller gets one error that says it
      const d = await describeCommitError(e);
      throw new Error(`span index commit failed: ${d.message}`);
    }
  }

  private removeIndex(old: StoredSpan, id: Buffer): void {
    const [timeKey, durKey] = indexKeys(old.service, BigInt(old.startUnixNano), old.durationNs, id);
    this.byTime.remove(timeKey);
    this.byDur.remove(durKey);
  }

  getSpan(traceId: string, spanId: string): StoredSpan | null {
    this.auto();
    const v = this.byId.get(idBytes(traceId, spanId));
    return v === undefined ? null : storedSpan(v);
  }

  /** All spans of a trace, ordered by start time. */
  getTrace(traceId: string): StoredSpan[] {
    this.auto();
    const t = Buffer.from(traceId, 'hex');
    if (t.length !== 16) throw new Error(`bad trace id ${traceId}`);
    const end = Buffer.from(t);
    // next prefix: increment the 16-byte id (all-ones trace ids end at the table's end)
    let i = 15;
    while (i >= 0 && end[i] === 0xff) end[i--] = 0;
    const out: StoredSpan[] = [];
    for (const { value } of this.byId.getRange({ start: t, end: i < 0 ? undefined : (end[i]++, end) })) out.push(storedSpan(value));
    // the head: this process's puts not committed yet (a re-put replaces the committed copy)
    for (const p of this.pending.get(traceId.toLowerCase()) ?? []) {
      const k = out.findIndex((o) => o.spanId === p.spanId);
      if (k >= 0) out[k] = p;
      else out.push(p);
    }
    out.sort((a, b) => (BigInt(a.startUnixNano) < BigInt(b.startUnixNano) ? -1 : BigInt(a.startUnixNano) > BigInt(b.startUnixNano) ? 1 : 0));
    return out;
  }

  /**
   * Slowest spans of a service: with a time window, scans the service's
   * spans started in the window (by-time index); without one, walks the
   * by-duration index from the slowest down. Ordered by duration, longest first.
   */
  findSlowSpans(q: SlowSpanQuery): StoredSpan[] {
    this.auto();
    const limit = q.limit ?? 20;
    const p = svcPrefix(q.service);
    const minDur = q.minDurationNs ?? 0;
    const ids: Buffer[] = [];
    if (q.fromUnixNano === undefined && q.toUnixNano === undefined) {
      const start = Buffer.concat([p, u64be((1n << 64n) - 1n)]);
      for (const key of this.byDur.getKeys({ start, end: p, reverse: true })) {
        const k = key as Buffer;
        if (Number(k.readBigUInt64BE(p.length)) < minDur) break;
        ids.push(k.subarray(p.length + 16));
        if (ids.length >= limit) break;
      }
    } else {
      const from = Buffer.concat([p, u64be(q.fromUnixNano ?? 0n)]);
      const to = Buffer.concat([p, u64be((q.toUnixNano ?? (1n << 64n) - 2n) + 1n)]);
      const cand: { d: number; id: Buffer }[] = [];
      for (const { key, value } of this.byTime.getRange({ start: from, end: to })) {
        const d = (value as Buffer).readDoubleLE(0);
        if (d >= minDur) cand.push({ d, id: (key as Buffer).subarray(p.length + 8) });
      }
      cand.sort((x, y) => y.d - x.d);
      for (const c of cand.slice(0, limit)) ids.push(c.id);
    }
    const out: StoredSpan[] = [];
    for (const id of ids) {
      const s = this.byId.get(Buffer.from(id));
      if (s !== undefined) out.push(storedSpan(s));
    }
    return out;
  }

  /**
   * Spans of `service` whose [start, end] overlaps [from, to] (epoch ns) and
   * that `match` accepts; examines at most `maxExamined` candidates. The
   * service's longest span bounds how far back an overlapping one can start.
   */
  countOverlapping(service: string, from: bigint, to: bigint, match: (s: StoredSpan) => boolean, maxExamined = 100_000): number {
    this.auto();
    const p = svcPrefix(service);
    let maxDur = 0n;
    for (const key of this.byDur.getKeys({ start: Buffer.concat([p, Buffer.alloc(8, 0xff)]), end: p, reverse: true, limit: 1 })) {
      maxDur = (key as Buffer).readBigUInt64BE(p.length);
    }
    let n = 0;
    let seen = 0;
    for (const { key, value } of this.byTime.getRange({ start: Buffer.concat([p, u64be(from - maxDur)]), end: Buffer.concat([p, u64be(to + 1n)]) })) {
      const k = key as Buffer;
      if (k.readBigUInt64BE(p.length) + BigInt(Math.round((value as Buffer).readDoubleLE(0))) < from) continue;
      if (++seen > maxExamined) break;
      const sp = this.byId.get(Buffer.from(k.subarray(p.length + 8)));
      if (sp !== undefined && match(storedSpan(sp))) n++;
    }
    return n;
  }

  /**
   * Delete spans that started before `beforeUnixNano` (epoch ns), at most
   * `max` (each service's oldest first): the retention of the span index,
   * which is not partitioned (row deletes, found and removed by their
   * time-index keys: no span is read). It goes through the put queue, so it
   * commits in order with the puts around it, and a span this process is
   * putting again meanwhile is kept. `more`: spans before the time may remain.
   */
  async expireBefore(beforeUnixNano: bigint, max = SPAN_EXPIRE_BATCH): Promise<{ deleted: number; more: boolean }> {
    // nothing to delete (the usual answer of a retention check): no batch, no commit
    if (!this.anyStartedBefore(beforeUnixNano)) return { deleted: 0, more: false };
    const part: PendingExpire = { kind: 'expire', before: beforeUnixNano, max, result: { deleted: 0, more: false } };
    await this.enqueue(part);
    return part.result;
  }

  /**
   * The oldest time-index key of the first service at or after `from` (all
   * services when undefined), copied, with `z`: where its service name ends
   * (keys are [service][0][u64 start][id]; services hold no NUL, refused at
   * put). Null past the last service.
   */
  private serviceOldest(from: Buffer | undefined): { key: Buffer; z: number } | null {
    for (const k of this.byTime.getKeys(from ? { start: from, limit: 1 } : { limit: 1 })) {
      const key = Buffer.from(k as Buffer);
      const z = key.indexOf(0);
      return z >= 0 && key.length >= z + 9 ? { key, z } : null; // not this layout (cannot happen): stop rather than loop
    }
    return null;
  }

  /** Did any committed span start before `before`? One key read per service: each one's oldest. */
  private anyStartedBefore(before: bigint): boolean {
    this.auto();
    for (let s = this.serviceOldest(undefined); s; s = this.serviceOldest(nextServiceKey(s.key, s.z))) {
      if (s.key.readBigUInt64BE(s.z + 1) < before) return true;
    }
    return false;
  }

  /** An expiry's deletes, written into the batch being built (see expireBefore). */
  private expireInBatch(x: PendingExpire): void {
    let n = 0;
    for (let s = this.serviceOldest(undefined); s && n < x.max; s = this.serviceOldest(nextServiceKey(s.key, s.z))) {
      const service = s.key.toString('utf8', 0, s.z);
      // this service's keys that start before x.before: [service][0] up to [service][0][before]
      const [end] = indexKeys(service, x.before, 0, EMPTY);
      for (const { key, value } of this.byTime.getRange({ start: s.key.subarray(0, s.z + 1), end, limit: x.max - n })) {
        const k = key as Buffer;
        const id = Buffer.from(k.subarray(s.z + 9));
        if (id.length !== 24) continue;
        if (this.pending.size && this.isPending(id)) continue;
        const d = (value as Buffer).length === 8 ? (value as Buffer).readDoubleLE(0) : 0;
        const [timeKey, durKey] = indexKeys(service, k.readBigUInt64BE(s.z + 1), d, id);
        this.byTime.remove(timeKey);
        this.byDur.remove(durKey);
        this.byIdRaw.remove(id);
        n++;
      }
    }
    x.result.deleted = n;
    x.result.more = n >= x.max;
  }

  /** Is span id (24 bytes) among this process's uncommitted puts? */
  private isPending(id: Buffer): boolean {
    const l = this.pending.get(id.toString('hex', 0, 16));
    if (!l) return false;
    const spanId = id.toString('hex', 16, 24);
    return l.some((st) => st.spanId === spanId);
  }

}

// Forwarding spans upstream (the backend or the next collector), byte-exact:
// each span is encoded with kspan's own OTLP encoder (otlp-encode.ts) when it
// is queued, and batches of those bytes go out as ExportTraceServiceRequests
// over OTLP/gRPC (default) or OTLP/HTTP protobuf (upstream-transport.ts).
// Nothing is converted on the way: ids, flags, trace state, kind, 64-bit
// times, every attribute type (a double 1.0 stays a double, int64 stays
// exact), dropped counts, events, links, status, resource, scope and schema
// URLs go out as they were decoded.
//
// A queue bounded by spans and by bytes sits in front; one export call at a
// time takes up to maxBatchSpans / maxBatchBytes from its head.
//   - upstream down / overloaded / slow (retryable): the batch is kept and
//     retried with exponential backoff (or the server's RetryInfo/Retry-After);
//   - the data refused (INVALID_ARGUMENT, RESOURCE_EXHAUSTED for size, HTTP
//     400/413): the batch is split in halves and retried; a single span still
//     refused is dropped (counted, logged with its ids), so one bad span never
//     blocks the ones after it;
//   - refused for good (UNAUTHENTICATED, UNIMPLEMENTED, ...): the batch is
//     dropped, counted;
//   - queue over its bounds: the oldest waiting spans are dropped, counted.
// Delivery is at least once: a batch whose answer never came (timeout) is sent
// again, and the upstream may have taken it the first time.

import { PbWriter, encodeSpanRun, writeResourceFields, writeScopeFields, writeStringField } from './otlp-encode.js';
import { GrpcTransport, HttpTransport, type ExportOutcome, type ExportTransport } from './upstream-transport.js';
import type { InstrumentationScope, KeyValue, ResourceSpans, Span } from './types.js';

export type UpstreamProtocol = 'grpc' | 'http/protobuf';

export interface UpstreamOptions {
  /** e.g. http://127.0.0.1:4317 (gRPC) or http://collector:4318/v1/traces (HTTP) */
  url: string;
  /** default: http/protobuf when the URL path ends in /v1/traces, else grpc */
  protocol?: UpstreamProtocol;
  /** spans held while upstream is slow or down (default 100,000); past it the oldest are dropped */
  maxQueueSpans?: number;
  /** bytes held (encoded spans plus ~100 B each for bookkeeping; default 256 MiB); past it the oldest are dropped */
  maxQueueBytes?: number;
  /** spans per export call (default 512) */
  maxBatchSpans?: number;
  /** encoded bytes per export call (default 3 MiB, under the 4 MiB gRPC receive limit of collectors); a larger single span goes alone */
  maxBatchBytes?: number;
  /** one export attempt: gRPC deadline / HTTP request timeout (default 10 s) */
  timeoutMs?: number;
  /** backoff between failed attempts: first and largest (default 500 ms, 30 s) */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** gzip the export requests (default false) */
  compression?: boolean;
  /** headers (HTTP) / metadata (gRPC), e.g. an auth token */
  headers?: Record<string, string>;
  log?: (msg: string) => void;
  /** inject a transport (tests); default: gRPC or HTTP from url/protocol */
  transport?: ExportTransport;
}

export interface UpstreamCounters {
  /** spans accepted into the queue */
  queued: number;
  /** spans the upstream acknowledged */
  exported: number;
  /** export attempts that failed with a retryable error (each is retried) */
  failedAttempts: number;
  /** batches split in halves after the upstream refused the data */
  splits: number;
  /**
   * queueFull: oldest spans dropped past maxQueueSpans / maxQueueBytes;
   * rejected: refused by the upstream (a single span still refused after
   * splitting, a batch refused for good, or partial_success.rejected_spans);
   * shutdown: still queued at close()
   */
  dropped: { queueFull: number; rejected: number; shutdown: number };
}

/** A span ready to go: the span, its resource and its scope. */
export interface OutgoingSpan {
  span: Span;
  resource: ResourceRef;
  scope: InstrumentationScope;
  scopeSchemaUrl: string;
}

/** A received resource, shared by the spans of one ResourceSpans (batches group spans by it). */
export class ResourceRef {
  constructor(readonly attributes: KeyValue[], readonly schemaUrl: string, readonly droppedAttributesCount = 0) {}
  static of(rs: ResourceSpans): ResourceRef {
    return new ResourceRef(rs.resource.attributes, rs.schemaUrl, rs.resource.droppedAttributesCount);
  }
}

export function defaultProtocol(url: string): UpstreamProtocol {
  try {
    return new URL(url).pathname.replace(/\/+$/, '').endsWith('/v1/traces') ? 'http/protobuf' : 'grpc';
  } catch {
    return 'grpc';
  }
}

/** Bookkeeping per queued span, counted against maxQueueBytes besides its encoded bytes. */
export const QUEUE_ENTRY_OVERHEAD = 96;

/** One queued span: its encoded Span message at chunk[off, off + len). */
interface Entry {
  chunk: Buffer;
  off: number;
  len: number;
  resource: ResourceRef;
  scope: InstrumentationScope;
  scopeSchemaUrl: string;
  traceId: string;
  spanId: string;
}

/** Encode spans (one Span message each) into one buffer. */
function encodeEntries(spans: OutgoingSpan[]): Entry[] {
  const { chunk, ends } = encodeSpanRun(spans.length, (i) => spans[i].span);
  const out: Entry[] = new Array(spans.length);
  let off = 0;
  for (let i = 0; i < spans.length; i++) {
    const o = spans[i];
    out[i] = { chunk, off, len: ends[i] - off, resource: o.resource, scope: o.scope, scopeSchemaUrl: o.scopeSchemaUrl, traceId: o.span.traceId, spanId: o.span.spanId };
    off = ends[i];
  }
  return out;
}

interface ScopeGroup { scope: InstrumentationScope; schemaUrl: string; entries: Entry[] }

/** ExportTraceServiceRequest for a batch: spans grouped by resource, then scope, in first-seen order. */
function encodeBatch(batch: readonly Entry[]): Buffer {
  const groups = new Map<ResourceRef, ScopeGroup[]>();
  let size = 256;
  for (const e of batch) {
    size += e.len + 6;
    let scopes = groups.get(e.resource);
    if (!scopes) { scopes = []; groups.set(e.resource, scopes); }
    let g: ScopeGroup | undefined;
    for (const x of scopes) if (x.scope === e.scope && x.schemaUrl === e.scopeSchemaUrl) { g = x; break; }
    if (!g) { g = { scope: e.scope, schemaUrl: e.scopeSchemaUrl, entries: [] }; scopes.push(g); }
    g.entries.push(e);
  }
  const w = new PbWriter(size);
  for (const [res, scopes] of groups) {
    w.fork(); // ResourceSpans
    w.fork();
    writeResourceFields(w, res.attributes, res.droppedAttributesCount);
    w.join(1);
    for (const g of scopes) {
      w.fork(); // ScopeSpans
      w.fork();
      writeScopeFields(w, g.scope);
      w.join(1);
      for (const e of g.entries) {
        w.tag(2, 2);
        w.varint(e.len);
        w.raw(e.chunk.subarray(e.off, e.off + e.len));
      }
      writeStringField(w, 3, g.schemaUrl);
      w.join(2);
    }
    writeStringField(w, 3, res.schemaUrl);
    w.join(1);
  }
  return w.finish();
}

/** Rate-limited logging: at most `max` lines per window, then one summary of what was left out. */
class LogLimiter {
  private windowStart = 0;
  private n = 0;
  private skipped = 0;
  constructor(private readonly log: (m: string) => void, private readonly max: number, private readonly windowMs: number) {}
  say(m: string): void {
    const now = Date.now();
    if (now - this.windowStart > this.windowMs) {
      if (this.skipped) this.log(`(${this.skipped} similar message(s) left out)`);
      this.windowStart = now;
      this.n = 0;
      this.skipped = 0;
    }
    if (this.n++ < this.max) this.log(m);
    else this.skipped++;
  }
}

export class UpstreamExporter {
  readonly counters: UpstreamCounters = { queued: 0, exported: 0, failedAttempts: 0, splits: 0, dropped: { queueFull: 0, rejected: 0, shutdown: 0 } };
  readonly url: string;
  readonly protocol: UpstreamProtocol;
  /** true while the last attempt failed with a retryable error */
  down = false;
  lastError = '';
  private readonly transport: ExportTransport;
  /** spans waiting, oldest first, from queueHead on; the batch in flight and split halves are held apart */
  private queue: Entry[] = [];
  private queueHead = 0;
  private batch: Entry[] | null = null;
  /** halves of a refused batch, still to send (a stack: the next one is last) */
  private splits: Entry[][] = [];
  private heldSpans = 0;
  private heldBytes = 0;
  private inflight = false;
  private backoff: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private lastDropLog = 0;
  private dropsSinceLog = 0;
  private readonly maxQueue: number;
  private readonly maxQueueBytes: number;
  private readonly maxBatch: number;
  private readonly maxBatchBytes: number;
  private readonly log: (msg: string) => void;
  private readonly refusals: LogLimiter;

  constructor(private readonly o: UpstreamOptions) {
    this.url = o.url;
    this.protocol = o.protocol ?? defaultProtocol(o.url);
    this.maxQueue = o.maxQueueSpans ?? 100_000;
    this.maxQueueBytes = o.maxQueueBytes ?? 256 * 1024 * 1024;
    this.maxBatch = o.maxBatchSpans ?? 512;
    this.maxBatchBytes = o.maxBatchBytes ?? 3 * 1024 * 1024;
    this.backoff = o.backoffMs ?? 500;
    this.log = o.log ?? ((m) => process.stderr.write(`kspan: ${m}\n`));
    this.refusals = new LogLimiter((m) => this.log(`upstream ${this.url}: ${m}`), 20, 60_000);
    const t = { url: o.url, timeoutMs: o.timeoutMs ?? 10_000, compression: o.compression ?? false, headers: o.headers };
    this.transport = o.transport ?? (this.protocol === 'grpc' ? new GrpcTransport(t) : new HttpTransport(t));
  }

  /** Spans waiting (queued, in flight, or split halves still to send). */
  get pending(): number {
    return this.heldSpans;
  }

  /** Bytes held for them, as counted against maxQueueBytes. */
  get pendingBytes(): number {
    return this.heldBytes;
  }

  /**
   * Why the queue cannot take more without dropping, or null: what it holds
   * plus what is still coming to it (`comingSpans`: spans a caller holds for
   * it, counted at the queue's mean bytes a span) reaches 90% of a bound.
   * Callers refuse new spans then (back-pressure) instead of accepting spans
   * this queue would drop.
   */
  saturated(comingSpans = 0): string | null {
    const comingBytes = this.heldSpans > 0 ? comingSpans * (this.heldBytes / this.heldSpans) : 0;
    if (this.heldSpans + comingSpans < 0.9 * this.maxQueue && this.heldBytes + comingBytes < 0.9 * this.maxQueueBytes) return null;
    return `upstream ${this.url} is behind: ${this.heldSpans} span(s) / ${Math.round(this.heldBytes / 1048576)} MiB queued` +
      `${comingSpans ? ` and ${comingSpans} more waiting for enrichment` : ''} (bounds ${this.maxQueue} spans / ${Math.round(this.maxQueueBytes / 1048576)} MiB)`;
  }

  /** Queue spans for export (encoded now: later changes to the span objects do not go out). Never throws; past the bounds the oldest waiting spans are dropped (counted). */
  send(spans: OutgoingSpan[]): void {
    if (!spans.length) return;
    if (this.closed) {
      this.counters.dropped.shutdown += spans.length;
      this.log(`upstream: ${spans.length} span(s) arrived after shutdown, dropped`);
      return;
    }
    const entries = encodeEntries(spans);
    for (const e of entries) {
      this.queue.push(e);
      this.heldBytes += e.len + QUEUE_ENTRY_OVERHEAD;
    }
    this.heldSpans += entries.length;
    this.counters.queued += entries.length;
    this.enforceBound();
    this.pump();
  }

  private enforceBound(): void {
    // the batch in flight and split halves are not dropped here: they are counted when their export ends
    let dropped = 0;
    while ((this.heldSpans > this.maxQueue || this.heldBytes > this.maxQueueBytes) && this.queueHead < this.queue.length) {
      const e = this.queue[this.queueHead++];
      this.heldSpans--;
      this.heldBytes -= e.len + QUEUE_ENTRY_OVERHEAD;
      dropped++;
    }
    if (!dropped) return;
    this.compact();
    this.counters.dropped.queueFull += dropped;
    this.dropsSinceLog += dropped;
    const now = Date.now();
    // one line per burst of drops (at most one per 10 s)
    if (now - this.lastDropLog > 10_000) {
      this.lastDropLog = now;
      this.log(`upstream ${this.url}: queue full (${this.maxQueue} spans / ${Math.round(this.maxQueueBytes / 1048576)} MiB) — dropped the ${this.dropsSinceLog} oldest; ${this.counters.dropped.queueFull} dropped so far`);
      this.dropsSinceLog = 0;
    }
  }

  private compact(): void {
    if (this.queueHead === this.queue.length) { this.queue = []; this.queueHead = 0; return; }
    if (this.queueHead > 4096 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private takeBatch(): Entry[] | null {
    if (this.queueHead >= this.queue.length) return null;
    // coalesce whatever is queued into one export call, up to maxBatch spans and maxBatchBytes
    let n = 0;
    let bytes = 0;
    const avail = this.queue.length - this.queueHead;
    while (n < avail && n < this.maxBatch) {
      const len = this.queue[this.queueHead + n].len + 6;
      if (n > 0 && bytes + len > this.maxBatchBytes) break;
      bytes += len;
      n++;
    }
    const b = this.queue.slice(this.queueHead, this.queueHead + n);
    this.queueHead += n;
    this.compact();
    return b;
  }

  private pump(): void {
    if (this.inflight || this.timer || this.closed) return;
    if (!this.batch) this.batch = this.splits.pop() ?? this.takeBatch();
    const batch = this.batch;
    if (!batch) { this.settleIdle(); return; }
    this.inflight = true;
    let body: Buffer;
    try {
      body = encodeBatch(batch);
    } catch (e) {
      // cannot happen with decoded spans; never let it wedge the queue
      this.inflight = false;
      this.finishBatch(batch, 'rejected', `could not encode ${batch.length} span(s): ${(e as Error).message}`);
      this.pump();
      return;
    }
    this.transport.send(body).then(
      (r) => this.onOutcome(batch, r),
      (e: Error) => this.onOutcome(batch, { kind: 'retry', error: e.message }),
    );
  }

  /** a batch leaves the queue: exported, or dropped with a reason */
  private finishBatch(batch: Entry[], how: 'exported' | 'rejected' | 'shutdown', why?: string): void {
    if (this.batch === batch) this.batch = null;
    this.heldSpans -= batch.length;
    for (const e of batch) this.heldBytes -= e.len + QUEUE_ENTRY_OVERHEAD;
    if (how === 'exported') this.counters.exported += batch.length;
    else {
      this.counters.dropped[how] += batch.length;
      if (why) this.refusals.say(why);
    }
  }

  private onOutcome(batch: Entry[], r: ExportOutcome): void {
    this.inflight = false;
    if (this.closed) return; // counted at close()
    switch (r.kind) {
      case 'ok': {
        const rejected = Math.min(batch.length, r.rejectedSpans);
        this.finishBatch(batch, 'exported');
        if (rejected > 0) {
          this.counters.exported -= rejected;
          this.counters.dropped.rejected += rejected;
        }
        if (rejected > 0 || r.message) {
          this.refusals.say(`partial success: ${rejected} of ${batch.length} span(s) rejected${r.message ? `: ${r.message}` : ''}`);
        }
        if (this.down) this.log(`upstream ${this.url}: reachable again, ${this.pending} span(s) still queued`);
        this.down = false;
        this.backoff = this.o.backoffMs ?? 500;
        break;
      }
      case 'split': {
        if (batch.length > 1) {
          this.counters.splits++;
          const half = Math.ceil(batch.length / 2);
          this.splits.push(batch.slice(half));
          this.batch = batch.slice(0, half);
          this.refusals.say(`refused a batch of ${batch.length} span(s) (${r.error}); retrying it in halves`);
        } else {
          const e = batch[0];
          this.finishBatch(batch, 'rejected', `refused span trace_id=${e.traceId || '(empty)'} span_id=${e.spanId || '(empty)'} (${e.len} bytes): ${r.error}; dropped`);
        }
        break;
      }
      case 'drop':
        this.finishBatch(batch, 'rejected', `rejected ${batch.length} span(s), not retried: ${r.error}`);
        break;
      case 'retry': {
        // keep the batch; try again after the backoff (or the server's delay, if longer)
        this.counters.failedAttempts++;
        this.lastError = r.error;
        if (!this.down) this.log(`upstream ${this.url}: export failed (${r.error}); retrying with backoff, queueing up to ${this.maxQueue} spans / ${Math.round(this.maxQueueBytes / 1048576)} MiB`);
        this.down = true;
        const maxB = this.o.maxBackoffMs ?? 30_000;
        const wait = Math.max(this.backoff * (0.75 + Math.random() * 0.5), Math.min(r.delayMs ?? 0, maxB));
        this.backoff = Math.min(this.backoff * 2, maxB);
        this.timer = setTimeout(() => { this.timer = null; this.pump(); }, wait);
        this.timer.unref?.();
        return;
      }
    }
    this.pump();
  }

  private settleIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Resolves when everything queued was exported (or dropped), or after timeoutMs; returns spans still pending. */
  async flush(timeoutMs = 10_000): Promise<number> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; this.pump(); }
    if (this.pending === 0) return 0;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => { clearTimeout(t); resolve(); });
    });
    return this.pending;
  }

  /** Flush (bounded), then close the connection; spans still queued are counted as dropped (shutdown) and logged. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    const left = await this.flush(timeoutMs);
    this.closed = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (left > 0) {
      this.counters.dropped.shutdown += left;
      this.log(`upstream ${this.url}: ${left} span(s) not delivered at shutdown (${this.lastError || 'upstream unreachable'})`);
      this.queue = [];
      this.queueHead = 0;
      this.batch = null;
      this.splits = [];
      this.heldSpans = 0;
      this.heldBytes = 0;
    }
    this.settleIdle();
    await this.transport.close();
  }
}

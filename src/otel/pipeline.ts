// The OTel bridge's pipeline, a SpanConsumer behind the OTLP receivers:
//
//   receive ─► span index (store) ─► per-trace buffer ─► explain ─► enrich ─► upstream
//
// A trace's spans wait in the buffer until the kernel events of their window
// are ingested (the store writer's ingest watermark — the probe's last
// drain — converted to epoch time, passes the latest span end; the daemon's
// reader reads ingested events before they are committed) or until the
// bounded wait passes, whichever is first. Then the correlator explains them
// and each span with kernel data gets kspan's attributes and events
// (span-events mode) or a `kspan` child span (child-spans mode). A span
// explained before its whole window was ingested (the wait expired) says so:
// the missing part is `unknown` and `kspan.data.settling` is set; it is
// counted as enriched-partial.
//
// No span is dropped here: when the kernel side is down, when a span has no
// kernel data, when explaining fails, when the buffer is full, the span is
// forwarded unchanged and counted (`passed`). Drops can only happen upstream
// (bounded queue), counted there.

import type { StoreReader } from '../store/index.js';
import { mayJoin, type ExplainOptions } from '../correlator/index.js';
import type { SpanInput } from '../store/index.js';
import { applyEncodedEnrichment, kspanChildSpanOf, type EnrichOptions } from './enrich.js';
import { ExplainPool } from './explain-pool.js';
import { estimateAttributesBytes, estimateDecodedSpanBytes } from './otlp-decode.js';
import { compactSpans } from './otlp-encode.js';
import { explainBatch, type ExplainGroup, type GroupResult } from './explain-worker.js';
import { StoreSpanConsumer, type SpanSink, type StoreSpanConsumerOptions } from './store-consumer.js';
import type { ConsumeMeta, ConsumeResult, DecodedTraceRequest, Span, SpanConsumer } from './types.js';
import { ResourceRef, type OutgoingSpan, type UpstreamExporter } from './upstream.js';

/** What the pipeline needs from the capture side. */
export interface KernelSide {
  /** the store to explain from (null: no store, nothing is enriched) */
  readonly reader: StoreReader | null;
  /** epoch ns before which every kernel event is ingested and readable through `reader`; null when capture is not running */
  watermarkUnixNano(): bigint | null;
  /**
   * epoch ns before which every kernel event is committed to the store (what
   * explain workers, which cannot see the writer's head, can read); default:
   * the watermark (a reader with no head). Needed for explain workers.
   */
  committedUnixNano?(): bigint | null;
  /** the store's directory: explain workers open it read-only (none: no workers) */
  storeDir?: string;
}

export type EmitMode = 'span-events' | 'child-spans';

/** Default bound on the estimated memory of the spans waiting for enrichment (maxBufferedBytes). */
export const DEFAULT_BUFFER_BYTES = 128 * 1024 * 1024;

/**
 * Spans explained per store snapshot before the tick may yield: small enough
 * that one chunk keeps the event loop (OTLP intake, capture) for ~30 ms, large
 * enough to share the snapshot's caches.
 */
const EXPLAIN_CHUNK_SPANS = 128;

/** Spans per batch sent to an explain worker (one store snapshot there). */
const WORKER_BATCH_SPANS = 256;

/**
 * Memory the buffer holds per span kept decoded besides the decoded span (the
 * receiver's estimate): its stored form (SpanInput), the outgoing record and
 * the entry. Measured on Node 20 with the bench's spans (bench/otlp-pipeline.ts
 * mix), decoded: ~1.7 KB of heap per buffered span, of which the scan
 * estimates ~1.1 KB.
 */
const ENTRY_BYTES = 600;

/**
 * Memory a span held encoded (compactHeld) takes besides its bytes and its
 * share of the resource and scope: the light Span and the view on its bytes,
 * its stored form (SpanInput), the outgoing record and the entry. Measured
 * the same way: 831 B of heap per held span of the bench mix, its bytes apart.
 */
const HELD_ENTRY_BYTES = 850;

/** A resource's or scope's own records (objects, the ResourceRef), besides its attributes. */
const SHARED_RECORD_BYTES = 200;

export interface PipelineOptions {
  kernel: KernelSide;
  /** where received spans are indexed (the store's span index); null: not stored */
  spanSink?: SpanSink | null;
  /** where spans go after enrichment; null: enrich and store only */
  upstream?: UpstreamExporter | null;
  /** default span-events */
  emit?: EmitMode;
  /** longest a span waits for the watermark, ms (default 1000) */
  waitMs?: number;
  /** margin added to a span's end before the watermark counts it as covered (clock conversion), ms (default 5) */
  lagMs?: number;
  /** spans held in the buffer at most (default 50,000); past it the oldest traces go out unchanged */
  maxBufferedSpans?: number;
  /**
   * estimated memory of the spans held in the buffer at most, bytes (default
   * 128 MiB); past it the oldest traces go out unchanged. Spans are counted
   * as the receiver estimated their decoded size (ConsumeMeta.decodedBytes)
   * plus the buffer's own records, so a flood of large spans is bounded too.
   */
  maxBufferedBytes?: number;
  /** spans shorter than this are forwarded unchanged without explaining (default 0: explain all) */
  minDurationMs?: number;
  /** how often the buffer is checked, ms (default 50) */
  tickMs?: number;
  /** most time spent explaining per tick before yielding to the receivers, ms (default 50) */
  tickBudgetMs?: number;
  /**
   * explain workers (worker_threads; default 0: explain on the receiving
   * thread). With workers, traces whose window is committed are explained
   * there; the rest (the writer's head holds part of them) on the receiving
   * thread as without. Needs kernel.storeDir.
   */
  explainWorkers?: number;
  /** explain-worker batches in flight per worker at most (default 2) */
  workerInFlight?: number;
  explain?: ExplainOptions;
  enrich?: EnrichOptions;
  storeOptions?: StoreSpanConsumerOptions;
  log?: (msg: string) => void;
}

export interface PipelineCounters {
  /** spans received */
  received: number;
  /** spans written to the span index */
  stored: number;
  /** spans the store refused (invalid ids) or that failed to be written */
  notStored: number;
  /** notStored by reason: invalid ids, or the store could not commit (disk full) */
  notStoredBy: { invalid: number; storeError: number };
  /** spans that got kspan's attributes/events (or a child span) */
  enriched: number;
  /** of those, explained before their whole window was ingested (the wait expired): the rest is `unknown` */
  enrichedPartial: number;
  /** spans forwarded unchanged, by reason */
  passed: { noKernelData: number; kernelDown: number; bufferFull: number; short: number; explainError: number; shutdown: number; workerLost: number };
  /** child spans emitted (child-spans mode) */
  childSpans: number;
  /** traces explained */
  traces: number;
  /** ms spent explaining and enriching (on the receiving thread) */
  explainMs: number;
  /** explain workers: spans sent, spans a worker had not seen all of (explained here instead), batches lost with a worker that died */
  workers: { spans: number; unseen: number; lostBatches: number };
}

interface Entry {
  out: OutgoingSpan;
  input: SpanInput | null;
  endNs: bigint;
  /** estimated memory held for it (counted against maxBufferedBytes) */
  bytes: number;
  /** its share of its resource's and scope's memory (held while any span of them is) */
  shared: number;
}

/** Does the span carry kspan's own attributes or events (kspan behind kspan)? Enriching replaces them, so it is held decoded. */
function hasKspanFields(s: Span): boolean {
  for (const a of s.attributes) if (a.key.startsWith('kspan.')) return true;
  for (const ev of s.events) if (ev.name.startsWith('kspan.')) return true;
  return false;
}

/**
 * Spans going into the buffer are held encoded (compactSpans): a few hundred
 * bytes of records and their protobuf bytes instead of ~2 KB of decoded
 * objects each, which would live through old-generation collections while
 * they wait. Their account is then what they hold: records, bytes, share of
 * the resource and scope.
 */
function compactHeld(held: Entry[]): void {
  const spans: Span[] = [];
  const which: Entry[] = [];
  for (const e of held) {
    if (hasKspanFields(e.out.span)) continue;
    spans.push(e.out.span);
    which.push(e);
  }
  if (!spans.length) return;
  const sizes = compactSpans(spans);
  for (let i = 0; i < which.length; i++) {
    if (sizes[i] < 0) continue; // left decoded (already encoded in part): its estimate stands
    const e = which[i];
    e.out.span = spans[i];
    e.bytes = HELD_ENTRY_BYTES + sizes[i] + e.shared;
  }
}

interface TraceBuffer {
  entries: Entry[];
  /** sum of the entries' bytes */
  bytes: number;
  firstAtMs: number;
  maxEndNs: bigint;
  /** a worker could not see all of its window: explain it here (with the head) */
  here?: boolean;
}

export class EnrichPipeline implements SpanConsumer {
  readonly counters: PipelineCounters = {
    received: 0, stored: 0, notStored: 0, notStoredBy: { invalid: 0, storeError: 0 }, enriched: 0, enrichedPartial: 0,
    passed: { noKernelData: 0, kernelDown: 0, bufferFull: 0, short: 0, explainError: 0, shutdown: 0, workerLost: 0 },
    childSpans: 0, traces: 0, explainMs: 0, workers: { spans: 0, unseen: 0, lostBatches: 0 },
  };
  private readonly traces = new Map<string, TraceBuffer>();
  private readonly storeWrites = new Set<Promise<void>>();
  private buffered = 0;
  private bufferedBytes = 0;
  /** buffered traces marked `here` (a worker could not see them): they break the buffer's arrival order (tick) */
  private hereTraces = 0;
  /** the latest span end of the traces buffered since the buffer was last empty: a watermark past it covers the whole buffer (tick) */
  private maxHeldEndNs = 0n;
  private readonly mapper: StoreSpanConsumer;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastErrLog = 0;
  private readonly log: (msg: string) => void;
  private readonly emit: EmitMode;
  private readonly waitMs: number;
  private readonly lagNs: bigint;
  private readonly maxBuffered: number;
  private readonly maxBufferedBytes: number;
  private readonly minDurNs: bigint;
  private readonly explainOpts: ExplainOptions;
  /** explain workers (null: none) */
  readonly pool: ExplainPool | null;
  /** spans in batches at the workers */
  private atWorkers = 0;
  /** worker batches answered out of order wait here to go out in the order they were sent */
  private readonly doneBatches = new Map<number, OutgoingSpan[]>();
  private nextBatch = 0;
  private nextToSend = 0;
  private draining = false;
  /** a tick is due as soon as the event loop is free: a worker has answered and has room again */
  private feedDue: NodeJS.Immediate | null = null;

  constructor(private readonly o: PipelineOptions) {
    this.log = o.log ?? ((m) => process.stderr.write(`kspan: ${m}\n`));
    this.emit = o.emit ?? 'span-events';
    this.waitMs = o.waitMs ?? 1000;
    this.lagNs = BigInt(Math.round((o.lagMs ?? 5) * 1e6));
    this.maxBuffered = o.maxBufferedSpans ?? 50_000;
    this.maxBufferedBytes = o.maxBufferedBytes ?? DEFAULT_BUFFER_BYTES;
    this.minDurNs = BigInt(Math.round((o.minDurationMs ?? 0) * 1e6));
    // span events carry no evidence lists: keep the correlator from building long ones
    this.explainOpts = { maxEvidence: 2, ...o.explain };
    this.mapper = new StoreSpanConsumer({ putSpans: async () => {} }, o.storeOptions);
    const nw = o.explainWorkers ?? 0;
    this.pool = nw > 0 && o.kernel.storeDir && o.kernel.reader
      ? new ExplainPool({
        workers: nw, dir: o.kernel.storeDir, explain: this.explainOpts, enrich: o.enrich, maxInFlight: o.workerInFlight, log: this.log,
      })
      : null;
    if (nw > 0 && !this.pool) this.log('explain workers need the store directory and a reader: explaining on the receiving thread');
    this.timer = setInterval(() => this.tick(false), o.tickMs ?? 50);
    this.timer.unref?.();
  }

  /** spans waiting in the buffer or being explained by workers */
  get bufferedSpans(): number {
    return this.buffered + this.atWorkers;
  }

  /** estimated memory of the spans waiting in the buffer, bytes (what maxBufferedBytes bounds) */
  get bufferedSpanBytes(): number {
    return this.bufferedBytes;
  }

  /**
   * Back-pressure: the upstream queue, with what the buffer will still send
   * it, is near its bound, so the receivers refuse new requests (retryable)
   * rather than accept spans the queue would drop. Null when it has room.
   */
  saturated(): string | null {
    const up = this.o.upstream;
    if (!up) return null;
    return up.saturated(this.emit === 'span-events' ? this.bufferedSpans : 0);
  }

  /** A trace into the buffer (new, or back from a worker). */
  private hold(id: string, t: TraceBuffer): void {
    this.traces.set(id, t);
    this.buffered += t.entries.length;
    this.bufferedBytes += t.bytes;
    if (t.here) this.hereTraces++;
    if (t.maxEndNs > this.maxHeldEndNs) this.maxHeldEndNs = t.maxEndNs;
  }

  /** A trace out of the buffer. */
  private release(id: string, t: TraceBuffer): void {
    this.traces.delete(id);
    this.buffered -= t.entries.length;
    this.bufferedBytes -= t.bytes;
    if (t.here) this.hereTraces--;
    // an empty buffer starts the bound over (one span with a far-future end does not keep it up for good)
    if (this.traces.size === 0) this.maxHeldEndNs = 0n;
  }

  async consume(req: DecodedTraceRequest, meta: ConsumeMeta): Promise<ConsumeResult> {
    const arrivals: Entry[] = [];
    const inputs: SpanInput[] = [];
    const why: string[] = [];
    // each span's share of the request's estimated decoded size (resource and scope included); without one, its own estimate
    const share = meta.decodedBytes !== undefined && meta.spanCount > 0 ? Math.ceil(meta.decodedBytes / meta.spanCount) : -1;
    for (const rs of req.resourceSpans) {
      const resource = ResourceRef.of(rs);
      let rsSpans = 0;
      for (const ss of rs.scopeSpans) rsSpans += ss.spans.length;
      const rsShare = Math.ceil((SHARED_RECORD_BYTES + estimateAttributesBytes(rs.resource.attributes) + rs.schemaUrl.length) / Math.max(1, rsSpans));
      for (const ss of rs.scopeSpans) {
        const sc = ss.scope;
        const ssShare = Math.ceil((SHARED_RECORD_BYTES + sc.name.length + sc.version.length + estimateAttributesBytes(sc.attributes)) / Math.max(1, ss.spans.length));
        for (const span of ss.spans) {
          const input = this.mapper.toSpanInput(span, rs.resource.attributes, why);
          if (input) inputs.push(input);
          const bytes = ENTRY_BYTES + (share >= 0 ? share : estimateDecodedSpanBytes(span));
          arrivals.push({ out: { span, resource, scope: ss.scope, scopeSchemaUrl: ss.schemaUrl }, input, endNs: span.endTimeUnixNano, bytes, shared: rsShare + ssShare });
        }
      }
    }
    this.counters.received += arrivals.length;
    this.counters.notStored += arrivals.length - inputs.length;
    this.counters.notStoredBy.invalid += arrivals.length - inputs.length;
    const sink = this.o.spanSink;
    if (inputs.length && sink && sink.writable?.() === false) {
      // the store cannot commit (disk full): forwarded, counted, not tried until it can again
      this.counters.notStored += inputs.length;
      this.counters.notStoredBy.storeError += inputs.length;
    } else if (inputs.length && sink) {
      // The span index write commits asynchronously; the OTLP answer does not
      // wait for it (the spans are in the buffer), unless writes pile up.
      const w = sink.putSpans(inputs).then(
        () => { this.counters.stored += inputs.length; },
        (err: Error) => {
          // a full disk or a closed store must not stop spans flowing upstream
          this.counters.notStored += inputs.length;
          this.counters.notStoredBy.storeError += inputs.length;
          // the daemon reports a store that cannot commit itself (once)
          if (sink.writable?.() !== false) this.rateLimitedLog(`span index write failed (${err.message}); spans are forwarded, not stored`);
        },
      ).finally(() => { this.storeWrites.delete(w); });
      this.storeWrites.add(w);
      if (this.storeWrites.size > 32) await Promise.race(this.storeWrites);
    }
    if (this.closed) {
      this.passUnchanged(arrivals, 'shutdown');
    } else if (!this.o.kernel.reader || this.o.kernel.watermarkUnixNano() === null) {
      this.passUnchanged(arrivals, 'kernelDown');
    } else {
      const now = Date.now();
      const held: Entry[] = [];
      for (const e of arrivals) {
        if (!e.input || e.endNs - e.out.span.startTimeUnixNano < this.minDurNs) {
          this.passUnchanged([e], e.input ? 'short' : 'noKernelData');
          continue;
        }
        // nothing to join it to (no tid, pid, process id or mapped service): the explanation would be empty
        if (!mayJoin(e.input, this.explainOpts)) {
          this.passUnchanged([e], 'noKernelData');
          continue;
        }
        held.push(e);
      }
      compactHeld(held);
      for (const e of held) {
        let t = this.traces.get(e.input!.traceId);
        if (!t) {
          t = { entries: [], bytes: 0, firstAtMs: now, maxEndNs: 0n };
          this.traces.set(e.input!.traceId, t);
        }
        t.entries.push(e);
        t.bytes += e.bytes;
        if (e.endNs > t.maxEndNs) t.maxEndNs = e.endNs;
        if (e.endNs > this.maxHeldEndNs) this.maxHeldEndNs = e.endNs;
        this.buffered++;
        this.bufferedBytes += e.bytes;
      }
      if (this.overBound()) this.shed();
    }
    if (why.length) {
      return { rejectedSpans: 0, message: `${why.length} span(s) not indexed (${why[0]}); forwarded unchanged` };
    }
    return { rejectedSpans: 0 };
  }

  private overBound(): boolean {
    return this.buffered > this.maxBuffered || this.bufferedBytes > this.maxBufferedBytes;
  }

  /** Buffer over its bound (spans or bytes): the oldest traces go out unchanged. */
  private shed(): void {
    let n = 0;
    for (const [id, t] of this.traces) {
      if (!this.overBound()) break;
      this.release(id, t);
      n += t.entries.length;
      this.passUnchanged(t.entries, 'bufferFull');
    }
    if (n) {
      this.rateLimitedLog(`enrichment buffer full (${this.maxBuffered} spans / ${Math.round(this.maxBufferedBytes / 1048576)} MiB): forwarded ${n} span(s) unchanged`);
    }
  }

  private passUnchanged(entries: Entry[], reason: keyof PipelineCounters['passed'], into?: OutgoingSpan[]): void {
    this.counters.passed[reason] += entries.length;
    if (this.emit !== 'span-events') return;
    if (into) for (const e of entries) into.push(e.out);
    else this.o.upstream?.send(entries.map((e) => e.out));
  }

  private rateLimitedLog(msg: string): void {
    const now = Date.now();
    if (now - this.lastErrLog < 10_000) return;
    this.lastErrLog = now;
    this.log(msg);
  }

  /** One pass over the buffer: explain and send the traces that are ready (all of them when `all`). */
  tick(all: boolean): void {
    if (!this.traces.size) return;
    const w = this.o.kernel.watermarkUnixNano();
    const now = Date.now();
    const t0 = performance.now();
    const budget = all ? Infinity : (this.o.tickBudgetMs ?? 50);
    // explain workers take the ready traces whose window is committed (they cannot see the writer's head)
    const pool = this.pool && !all && !this.draining && this.pool.live > 0 ? this.pool : null;
    const committed = pool ? (this.o.kernel.committedUnixNano ? this.o.kernel.committedUnixNano() : w) : null;
    let slots = pool ? pool.capacity : 0;
    let batch: [string, TraceBuffer][] = [];
    let batchSpans = 0;
    let ready: [string, TraceBuffer][] = [];
    let spans = 0;
    let overBudget = false;
    // what the watermark covers is committed too (the workers would take every covered trace), and no
    // trace must stay here: with the workers full, only a trace past its wait and not covered can go
    // anywhere (explained here, partly unknown)
    const workersTakeAll = committed !== null && w !== null && committed >= w && this.hereTraces === 0;
    // ... and none is: the watermark covers the whole buffer
    const allCovered = w !== null && w >= this.maxHeldEndNs + this.lagNs;
    for (const [id, t] of this.traces) {
      // The workers are full and (see above) nothing left can go anywhere this tick: every trace is
      // covered, or this one is still within its wait and so is every later one (the buffer is in
      // arrival order). Stop: a scan of the whole buffer per tick (one after each worker answer) was
      // O(buffered traces) each, ~6% of the receiving thread's time under a flood.
      if (slots <= 0 && workersTakeAll && (allCovered || now - t.firstAtMs < this.waitMs)) break;
      const covered = w !== null && w >= t.maxEndNs + this.lagNs;
      if (!all && !covered && now - t.firstAtMs < this.waitMs) continue;
      if (w === null && !all) {
        this.release(id, t);
        this.passUnchanged(t.entries, 'kernelDown');
        continue;
      }
      if (committed !== null && !t.here && committed >= t.maxEndNs + this.lagNs) {
        if (slots <= 0) continue; // the workers are busy: it waits (the buffer bound still applies)
        this.release(id, t);
        batch.push([id, t]);
        batchSpans += t.entries.length;
        if (batchSpans >= WORKER_BATCH_SPANS) {
          this.toWorkers(pool!, batch);
          batch = [];
          batchSpans = 0;
          slots--;
        }
        continue;
      }
      if (overBudget) continue;
      this.release(id, t);
      ready.push([id, t]);
      spans += t.entries.length;
      // explain in chunks (one store snapshot each), yielding to the receivers when over budget
      if (spans >= EXPLAIN_CHUNK_SPANS) {
        this.explainAndSend(ready);
        ready = [];
        spans = 0;
        if (performance.now() - t0 > budget) {
          if (!pool) break;
          overBudget = true; // keep handing committed traces to the workers
        }
      }
    }
    if (batch.length) this.toWorkers(pool!, batch);
    if (ready.length) this.explainAndSend(ready);
    this.counters.explainMs += performance.now() - t0;
  }

  /** Send a batch of traces to a worker; their spans go out (in the order batches were sent) when it answers. */
  private toWorkers(pool: ExplainPool, batch: [string, TraceBuffer][]): void {
    const seq = this.nextBatch++;
    let n = 0;
    const groups: ExplainGroup[] = batch.map(([traceId, t]) => {
      n += t.entries.length;
      return { traceId, spans: t.entries.map((e) => e.input!) };
    });
    this.atWorkers += n;
    this.counters.workers.spans += n;
    // the head holds what the workers cannot see: they answer `unseen` for windows past what is committed
    const r = this.o.kernel.reader;
    const onlyKnown = !!r && r.hasHead && r.knownThroughNs() !== null;
    void pool.submit(groups, this.resultMode, onlyKnown).then((res) => {
      this.atWorkers -= n;
      const out: OutgoingSpan[] = [];
      if (!res) {
        // the worker died: forwarded unchanged, counted
        this.counters.workers.lostBatches++;
        for (const [, t] of batch) this.passUnchanged(t.entries, 'workerLost', out);
      } else {
        batch.forEach(([traceId, t], k) => {
          const r = res[k];
          if (r.kind === 'unseen') {
            // committed after all only in the writer's view: explained here, with the head, next tick
            this.counters.workers.unseen += t.entries.length;
            t.here = true;
            const cur = this.traces.get(traceId);
            if (cur) {
              // spans of the trace arrived meanwhile: one buffer entry
              cur.entries.push(...t.entries);
              cur.bytes += t.bytes;
              if (t.maxEndNs > cur.maxEndNs) cur.maxEndNs = t.maxEndNs;
              if (!cur.here) { cur.here = true; this.hereTraces++; }
              this.buffered += t.entries.length;
              this.bufferedBytes += t.bytes;
            } else this.hold(traceId, t);
            return;
          }
          this.applyResult(traceId, t, r, out);
        });
      }
      this.doneBatches.set(seq, out);
      while (this.doneBatches.has(this.nextToSend)) {
        const o = this.doneBatches.get(this.nextToSend)!;
        this.doneBatches.delete(this.nextToSend++);
        if (o.length) this.o.upstream?.send(o);
      }
      this.tickSoon();
    });
  }

  /**
   * A tick as soon as the event loop is free, not at the next timer tick,
   * when a worker answered: it has room. (Fed only by the timer, a worker
   * that explains its batches faster than the tick period waited for it:
   * idle ~15% of a flood on the bench's full store.)
   */
  private tickSoon(): void {
    if (this.feedDue || this.timer === null || this.draining || this.closed || !this.traces.size) return;
    // (close() clears it before it stops the timer or drains)
    this.feedDue = setImmediate(() => {
      this.feedDue = null;
      this.tick(false);
    });
  }

  private explainAndSend(ready: [string, TraceBuffer][]): void {
    const reader = this.o.kernel.reader;
    if (!reader) { for (const [, t] of ready) this.passUnchanged(t.entries, 'kernelDown'); return; }
    const res = explainBatch(reader, ready.map(([traceId, t]) => ({ traceId, spans: t.entries.map((e) => e.input!) })), this.resultMode, false, this.explainOpts, this.o.enrich);
    const out: OutgoingSpan[] = [];
    ready.forEach(([traceId, t], k) => this.applyResult(traceId, t, res[k], out));
    this.o.upstream?.send(out);
  }

  /**
   * What explains answer, here and in workers: in span-events mode each span's kspan attributes and
   * events already encoded (written straight from the explanation; one buffer a batch from a worker,
   * little to copy), in child-spans mode the enrichment as objects for the child span.
   */
  private get resultMode(): 'encoded' | 'enrich' {
    return this.emit === 'span-events' ? 'encoded' : 'enrich';
  }

  /** A trace's explain result into its spans (kspan attributes and events, or child spans), onto `out`. */
  private applyResult(traceId: string, t: TraceBuffer, r: GroupResult, out: OutgoingSpan[]): void {
    if (r.kind === 'encoded' && r.bytes && r.meta && this.emit === 'span-events') {
      this.counters.traces++;
      const { bytes, meta } = r;
      t.entries.forEach((e, i) => {
        const row = 4 * (r.at + i);
        if (!(meta[row + 3] & 1)) {
          this.counters.passed.noKernelData++;
          out.push(e.out);
          return;
        }
        this.counters.enriched++;
        if (meta[row + 3] & 2) this.counters.enrichedPartial++;
        applyEncodedEnrichment(e.out.span, bytes.subarray(meta[row], meta[row] + meta[row + 1]), meta[row + 2]);
        out.push(e.out);
      });
      return;
    }
    if (r.kind !== 'enriched') {
      if (r.kind === 'error') this.rateLimitedLog(`explaining trace ${traceId} failed: ${r.message}; its spans are forwarded unchanged`);
      this.passUnchanged(t.entries, 'explainError', out);
      return;
    }
    // child-spans mode (resultMode): the original was exported elsewhere; only the kspan child goes out
    this.counters.traces++;
    t.entries.forEach((e, i) => {
      const x = r.spans[i];
      if (!x) {
        this.counters.passed.noKernelData++;
        return;
      }
      this.counters.enriched++;
      if (x.settling) this.counters.enrichedPartial++;
      out.push({ ...e.out, span: kspanChildSpanOf(e.out.span, x) });
      this.counters.childSpans++;
    });
  }

  /** Explain and send everything buffered now (graceful shutdown); later spans go out unchanged. */
  async close(): Promise<void> {
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    if (this.feedDue) { clearImmediate(this.feedDue); this.feedDue = null; }
    await Promise.all(this.storeWrites);
    // the workers' batches come back (or are counted lost); what is left is explained here
    this.draining = true;
    await this.pool?.drain();
    this.tick(true);
    this.closed = true;
    await this.pool?.close();
  }
}

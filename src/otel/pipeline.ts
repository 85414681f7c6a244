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
import { explainSpanGroups, mayJoin, type Explanation, type ExplainOptions } from '../correlator/index.js';
import type { SpanInput } from '../store/index.js';
import { enrichSpan, hasKernelData, kspanChildSpan, type EnrichOptions } from './enrich.js';
import { StoreSpanConsumer, type SpanSink, type StoreSpanConsumerOptions } from './store-consumer.js';
import type { ConsumeMeta, ConsumeResult, DecodedTraceRequest, SpanConsumer } from './types.js';
import { ResourceRef, type OutgoingSpan, type UpstreamExporter } from './upstream.js';

/** What the pipeline needs from the capture side. */
export interface KernelSide {
  /** the store to explain from (null: no store, nothing is enriched) */
  readonly reader: StoreReader | null;
  /** epoch ns before which every kernel event is ingested and readable through `reader`; null when capture is not running */
  watermarkUnixNano(): bigint | null;
}

export type EmitMode = 'span-events' | 'child-spans';

/**
 * Spans explained per store snapshot before the tick may yield: small enough
 * that one chunk keeps the event loop (OTLP intake, capture) for ~30 ms, large
 * enough to share the snapshot's caches.
 */
const EXPLAIN_CHUNK_SPANS = 128;

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
  /** spans shorter than this are forwarded unchanged without explaining (default 0: explain all) */
  minDurationMs?: number;
  /** how often the buffer is checked, ms (default 50) */
  tickMs?: number;
  /** most time spent explaining per tick before yielding to the receivers, ms (default 50) */
  tickBudgetMs?: number;
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
  passed: { noKernelData: number; kernelDown: number; bufferFull: number; short: number; explainError: number; shutdown: number };
  /** child spans emitted (child-spans mode) */
  childSpans: number;
  /** traces explained */
  traces: number;
  /** ms spent explaining and enriching */
  explainMs: number;
}

interface Entry {
  out: OutgoingSpan;
  input: SpanInput | null;
  endNs: bigint;
}

interface TraceBuffer {
  entries: Entry[];
  firstAtMs: number;
  maxEndNs: bigint;
}

export class EnrichPipeline implements SpanConsumer {
  readonly counters: PipelineCounters = {
    received: 0, stored: 0, notStored: 0, notStoredBy: { invalid: 0, storeError: 0 }, enriched: 0, enrichedPartial: 0,
    passed: { noKernelData: 0, kernelDown: 0, bufferFull: 0, short: 0, explainError: 0, shutdown: 0 },
    childSpans: 0, traces: 0, explainMs: 0,
  };
  private readonly traces = new Map<string, TraceBuffer>();
  private readonly storeWrites = new Set<Promise<void>>();
  private buffered = 0;
  private readonly mapper: StoreSpanConsumer;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastErrLog = 0;
  private readonly log: (msg: string) => void;
  private readonly emit: EmitMode;
  private readonly waitMs: number;
  private readonly lagNs: bigint;
  private readonly maxBuffered: number;
  private readonly minDurNs: bigint;
  private readonly explainOpts: ExplainOptions;

  constructor(private readonly o: PipelineOptions) {
    this.log = o.log ?? ((m) => process.stderr.write(`kspan: ${m}\n`));
    this.emit = o.emit ?? 'span-events';
    this.waitMs = o.waitMs ?? 1000;
    this.lagNs = BigInt(Math.round((o.lagMs ?? 5) * 1e6));
    this.maxBuffered = o.maxBufferedSpans ?? 50_000;
    this.minDurNs = BigInt(Math.round((o.minDurationMs ?? 0) * 1e6));
    // span events carry no evidence lists: keep the correlator from building long ones
    this.explainOpts = { maxEvidence: 2, ...o.explain };
    this.mapper = new StoreSpanConsumer({ putSpans: async () => {} }, o.storeOptions);
    this.timer = setInterval(() => this.tick(false), o.tickMs ?? 50);
    this.timer.unref?.();
  }

  /** spans waiting in the buffer */
  get bufferedSpans(): number {
    return this.buffered;
  }

  async consume(req: DecodedTraceRequest, _meta: ConsumeMeta): Promise<ConsumeResult> {
    const arrivals: Entry[] = [];
    const inputs: SpanInput[] = [];
    const why: string[] = [];
    for (const rs of req.resourceSpans) {
      const resource = ResourceRef.of(rs);
      for (const ss of rs.scopeSpans) {
        for (const span of ss.spans) {
          const input = this.mapper.toSpanInput(span, rs.resource.attributes, why);
          if (input) inputs.push(input);
          arrivals.push({ out: { span, resource, scope: ss.scope, scopeSchemaUrl: ss.schemaUrl }, input, endNs: span.endTimeUnixNano });
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
        let t = this.traces.get(e.input.traceId);
        if (!t) {
          t = { entries: [], firstAtMs: now, maxEndNs: 0n };
          this.traces.set(e.input.traceId, t);
        }
        t.entries.push(e);
        if (e.endNs > t.maxEndNs) t.maxEndNs = e.endNs;
        this.buffered++;
      }
      if (this.buffered > this.maxBuffered) this.shed();
    }
    if (why.length) {
      return { rejectedSpans: 0, message: `${why.length} span(s) not indexed (${why[0]}); forwarded unchanged` };
    }
    return { rejectedSpans: 0 };
  }

  /** Buffer over its bound: the oldest traces go out unchanged. */
  private shed(): void {
    let n = 0;
    for (const [id, t] of this.traces) {
      if (this.buffered <= this.maxBuffered) break;
      this.traces.delete(id);
      this.buffered -= t.entries.length;
      n += t.entries.length;
      this.passUnchanged(t.entries, 'bufferFull');
    }
    if (n) this.rateLimitedLog(`enrichment buffer full (${this.maxBuffered} spans): forwarded ${n} span(s) unchanged`);
  }

  private passUnchanged(entries: Entry[], reason: keyof PipelineCounters['passed']): void {
    this.counters.passed[reason] += entries.length;
    if (this.emit === 'span-events') this.o.upstream?.send(entries.map((e) => e.out));
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
    let ready: [string, TraceBuffer][] = [];
    let spans = 0;
    for (const [id, t] of this.traces) {
      const covered = w !== null && w >= t.maxEndNs + this.lagNs;
      if (!all && !covered && now - t.firstAtMs < this.waitMs) continue;
      this.traces.delete(id);
      this.buffered -= t.entries.length;
      if (w === null && !all) { this.passUnchanged(t.entries, 'kernelDown'); continue; }
      ready.push([id, t]);
      spans += t.entries.length;
      // explain in chunks (one store snapshot each), yielding to the receivers when over budget
      if (spans >= EXPLAIN_CHUNK_SPANS) {
        this.explainAndSend(ready);
        ready = [];
        spans = 0;
        if (performance.now() - t0 > budget) break;
      }
    }
    if (ready.length) this.explainAndSend(ready);
    this.counters.explainMs += performance.now() - t0;
  }

  private explainAndSend(ready: [string, TraceBuffer][]): void {
    const reader = this.o.kernel.reader;
    if (!reader) { for (const [, t] of ready) this.passUnchanged(t.entries, 'kernelDown'); return; }
    let explained: Explanation[];
    try {
      explained = explainSpanGroups(reader, ready.map(([traceId, t]) => ({ traceId, spans: t.entries.map((e) => e.input!) })), this.explainOpts);
    } catch (err) {
      // one bad trace must not cost the others their enrichment: retry one by one
      if (ready.length > 1) {
        for (const r of ready) this.explainAndSend([r]);
        return;
      }
      this.rateLimitedLog(`explaining trace ${ready[0][0]} failed: ${(err as Error).stack ?? err}; its spans are forwarded unchanged`);
      this.passUnchanged(ready[0][1].entries, 'explainError');
      return;
    }
    const out: OutgoingSpan[] = [];
    ready.forEach(([, t], k) => {
      this.counters.traces++;
      const byId = new Map(explained[k].spans.map((s) => [s.span_id, s]));
      for (const e of t.entries) {
        const x = byId.get(e.out.span.spanId);
        if (!x || !hasKernelData(x)) {
          this.counters.passed.noKernelData++;
          if (this.emit === 'span-events') out.push(e.out);
          continue;
        }
        this.counters.enriched++;
        if (x.data_quality?.settling) this.counters.enrichedPartial++;
        if (this.emit === 'span-events') {
          enrichSpan(e.out.span, x, this.o.enrich);
          out.push(e.out);
        } else {
          out.push({ ...e.out, span: kspanChildSpan(e.out.span, x, this.o.enrich) });
          this.counters.childSpans++;
        }
      }
    });
    this.o.upstream?.send(out);
  }

  /** Explain and send everything buffered now (graceful shutdown); later spans go out unchanged. */
  async close(): Promise<void> {
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    await Promise.all(this.storeWrites);
    this.tick(true);
    this.closed = true;
  }
}

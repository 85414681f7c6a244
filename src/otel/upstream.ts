// Forwarding spans upstream (the backend or the next collector) with the
// OpenTelemetry JS OTLP exporters: OTLP/gRPC (`@opentelemetry/exporter-trace-otlp-grpc`,
// the default) or OTLP/HTTP protobuf (`@opentelemetry/exporter-trace-otlp-proto`).
//
// Spans keep their original trace/span/parent ids, flags, trace state, times,
// attributes, events, links, status, resource and scope: each decoded span is
// presented to the exporter as a ReadableSpan. The exporter's own encoder
// decides two details: an integral double goes out as an int, and ints past
// 2^53 lose precision (JS numbers); resource/scope dropped-attribute counts
// are not carried.
//
// A bounded queue sits in front of the exporter; one export call at a time
// takes up to maxBatchSpans from its head. A failed export (upstream down,
// retryable status) keeps its batch and is retried with exponential backoff;
// the exporter's own retries run inside each attempt.
// When the queue is full the oldest spans are dropped, counted and logged.
// A permanent rejection (e.g. INVALID_ARGUMENT) drops that batch, counted.

import { Metadata } from '@grpc/grpc-js';
import type { HrTime, Link, SpanContext, SpanKind, SpanStatus, Attributes, AttributeValue } from '@opentelemetry/api';
import { ExportResultCode, TraceState, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter as OtlpGrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { AnyValue, InstrumentationScope, KeyValue, ResourceSpans, Span } from './types.js';

export type UpstreamProtocol = 'grpc' | 'http/protobuf';

export interface UpstreamOptions {
  /** e.g. http://127.0.0.1:4317 (gRPC) or http://collector:4318/v1/traces (HTTP) */
  url: string;
  /** default: http/protobuf when the URL path ends in /v1/traces, else grpc */
  protocol?: UpstreamProtocol;
  /** spans held while upstream is slow or down (default 100,000); past it the oldest are dropped */
  maxQueueSpans?: number;
  /** spans per export call (default 512) */
  maxBatchSpans?: number;
  /** one export attempt, including the exporter's own retries (default 10 s) */
  timeoutMs?: number;
  /** backoff between failed attempts: first and largest (default 500 ms, 30 s) */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** gzip the export requests (default false) */
  compression?: boolean;
  /** headers (HTTP) / metadata (gRPC), e.g. an auth token */
  headers?: Record<string, string>;
  log?: (msg: string) => void;
  /** inject an exporter (tests); default: built from url/protocol */
  exporter?: SpanExporter;
}

export interface UpstreamCounters {
  /** spans accepted into the queue */
  queued: number;
  /** spans the upstream acknowledged */
  exported: number;
  /** export attempts that failed (each is retried) */
  failedAttempts: number;
  dropped: { queueFull: number; rejected: number; shutdown: number };
}

/** A span ready to go: the span, its resource and its scope. */
export interface OutgoingSpan {
  span: Span;
  resource: ResourceRef;
  scope: InstrumentationScope;
  scopeSchemaUrl: string;
}

/**
 * A received resource, converted once per request for the exporter (which
 * groups spans by resource object identity).
 */
export class ResourceRef {
  private sdk: Resource | null = null;
  constructor(readonly attributes: KeyValue[], readonly schemaUrl: string) {}
  static of(rs: ResourceSpans): ResourceRef {
    return new ResourceRef(rs.resource.attributes, rs.schemaUrl);
  }
  toSdk(): Resource {
    if (!this.sdk) this.sdk = resourceFromAttributes(toAttributes(this.attributes), this.schemaUrl ? { schemaUrl: this.schemaUrl } : undefined);
    return this.sdk;
  }
}

const RETRYABLE_GRPC = new Set([1, 4, 8, 10, 11, 14, 15]); // CANCELLED DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED OUT_OF_RANGE UNAVAILABLE DATA_LOSS
const RETRYABLE_HTTP = new Set([429, 502, 503, 504]);

/** Is an export error worth retrying (upstream down or overloaded) rather than a rejection of the data? */
export function isRetryable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number') {
    if (code >= 100) return RETRYABLE_HTTP.has(code);
    return RETRYABLE_GRPC.has(code);
  }
  return true; // connection errors, timeouts: no status at all
}

export function defaultProtocol(url: string): UpstreamProtocol {
  try {
    return new URL(url).pathname.replace(/\/+$/, '').endsWith('/v1/traces') ? 'http/protobuf' : 'grpc';
  } catch {
    return 'grpc';
  }
}

/**
 * The OTel JS OTLP trace exporter for an upstream: gRPC (a bare host:port
 * gets http://) or OTLP/HTTP protobuf, with gzip and headers/metadata.
 * UpstreamExporter uses it; so does the daemon's own tracer (MCP calls).
 */
export function createOtlpTraceExporter(o: Pick<UpstreamOptions, 'url' | 'protocol' | 'timeoutMs' | 'compression' | 'headers'>): SpanExporter {
  const timeoutMillis = o.timeoutMs ?? 10_000;
  if ((o.protocol ?? defaultProtocol(o.url)) === 'grpc') {
    const url = /^[a-z]+:\/\//i.test(o.url) ? o.url : `http://${o.url}`;
    const cfg: ConstructorParameters<typeof OtlpGrpcTraceExporter>[0] = { url, timeoutMillis, concurrencyLimit: 4 };
    if (o.compression) cfg.compression = 'gzip' as never;
    if (o.headers) {
      const md = new Metadata();
      for (const [k, v] of Object.entries(o.headers)) md.set(k, v);
      cfg.metadata = md;
    }
    return new OtlpGrpcTraceExporter(cfg);
  }
  const cfg: ConstructorParameters<typeof OtlpProtoTraceExporter>[0] = { url: o.url, timeoutMillis, concurrencyLimit: 4 };
  if (o.compression) cfg.compression = 'gzip' as never;
  if (o.headers) cfg.headers = o.headers;
  return new OtlpProtoTraceExporter(cfg);
}

export class UpstreamExporter {
  readonly counters: UpstreamCounters = { queued: 0, exported: 0, failedAttempts: 0, dropped: { queueFull: 0, rejected: 0, shutdown: 0 } };
  readonly url: string;
  readonly protocol: UpstreamProtocol;
  /** true while the last attempt failed */
  down = false;
  lastError = '';
  private readonly exporter: SpanExporter;
  /** spans waiting, oldest first, from queueHead on; the batch in flight is held apart */
  private queue: OutgoingSpan[] = [];
  private queueHead = 0;
  private batch: OutgoingSpan[] | null = null;
  private inflight = false;
  private backoff: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private lastDropLog = 0;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly log: (msg: string) => void;

  constructor(private readonly o: UpstreamOptions) {
    this.url = o.url;
    this.protocol = o.protocol ?? defaultProtocol(o.url);
    this.maxQueue = o.maxQueueSpans ?? 100_000;
    this.maxBatch = o.maxBatchSpans ?? 512;
    this.backoff = o.backoffMs ?? 500;
    this.log = o.log ?? ((m) => process.stderr.write(`kspan: ${m}\n`));
    this.exporter = o.exporter ?? createOtlpTraceExporter({ ...o, protocol: this.protocol });
  }

  /** Spans waiting (queued or in flight). */
  get pending(): number {
    return this.queue.length - this.queueHead + (this.batch?.length ?? 0);
  }

  /** Queue spans for export. Never throws; past the bound the oldest queued spans are dropped (counted). */
  send(spans: OutgoingSpan[]): void {
    if (!spans.length) return;
    if (this.closed) {
      this.counters.dropped.shutdown += spans.length;
      this.log(`upstream: ${spans.length} span(s) arrived after shutdown, dropped`);
      return;
    }
    for (const x of spans) this.queue.push(x);
    this.counters.queued += spans.length;
    this.enforceBound();
    this.pump();
  }

  private enforceBound(): void {
    // the batch in flight is not dropped: it is counted when its export ends
    const over = this.pending - this.maxQueue;
    const waiting = this.queue.length - this.queueHead;
    const dropped = Math.min(Math.max(0, over), waiting);
    if (dropped <= 0) return;
    this.queueHead += dropped;
    this.compact();
    this.counters.dropped.queueFull += dropped;
    const now = Date.now();
    if (now - this.lastDropLog > 10_000) {
      this.lastDropLog = now;
      this.log(`upstream ${this.url}: queue full (${this.maxQueue} spans) — dropped the oldest; ${this.counters.dropped.queueFull} dropped so far`);
    }
  }

  private compact(): void {
    if (this.queueHead > 4096 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private pump(): void {
    if (this.inflight || this.timer) return;
    if (!this.batch) {
      if (this.queueHead >= this.queue.length) { this.settleIdle(); return; }
      // coalesce whatever is queued into one export call, up to maxBatch spans
      const n = Math.min(this.maxBatch, this.queue.length - this.queueHead);
      this.batch = this.queue.slice(this.queueHead, this.queueHead + n);
      this.queueHead += n;
      if (this.queueHead === this.queue.length) { this.queue = []; this.queueHead = 0; } else this.compact();
    }
    const batch = this.batch;
    this.inflight = true;
    const readable = batch.map(toReadableSpan);
    let done = false;
    const finish = (r: ExportResult): void => {
      if (done) return;
      done = true;
      this.inflight = false;
      if (r.code === ExportResultCode.SUCCESS) {
        this.batch = null;
        this.counters.exported += batch.length;
        if (this.down) this.log(`upstream ${this.url}: reachable again, ${this.pending} span(s) still queued`);
        this.down = false;
        this.backoff = this.o.backoffMs ?? 500;
      } else if (!isRetryable(r.error)) {
        this.batch = null;
        this.counters.dropped.rejected += batch.length;
        this.log(`upstream ${this.url}: rejected ${batch.length} span(s), not retried: ${errText(r.error)}`);
      } else {
        // keep the batch; try again after the backoff
        this.counters.failedAttempts++;
        this.lastError = errText(r.error);
        if (!this.down) this.log(`upstream ${this.url}: export failed (${this.lastError}); retrying with backoff, queueing up to ${this.maxQueue} spans`);
        this.down = true;
        const wait = this.backoff * (0.75 + Math.random() * 0.5);
        this.backoff = Math.min(this.backoff * 2, this.o.maxBackoffMs ?? 30_000);
        this.timer = setTimeout(() => { this.timer = null; this.pump(); }, wait);
        this.timer.unref?.();
        return;
      }
      this.pump();
    };
    try {
      this.exporter.export(readable, finish);
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
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

  /** Flush (bounded), then shut the exporter down; spans still queued are counted as dropped (shutdown) and logged. */
  async close(timeoutMs = 10_000): Promise<void> {
    const left = await this.flush(timeoutMs);
    this.closed = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (left > 0) {
      this.counters.dropped.shutdown += left;
      this.log(`upstream ${this.url}: ${left} span(s) not delivered at shutdown (${this.lastError || 'upstream unreachable'})`);
      this.queue = [];
      this.queueHead = 0;
      this.batch = null;
    }
    await this.exporter.shutdown().catch(() => {});
  }
}

function errText(e: unknown): string {
  if (!e) return 'unknown error';
  if (e instanceof Error) return e.message.split('\n')[0].slice(0, 300);
  return String(e).slice(0, 300);
}

// ---------------------------------------------------------------------------
// decoded span -> ReadableSpan

function hr(ns: bigint): HrTime {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

function attrValue(v: AnyValue): unknown {
  switch (v.type) {
    case 'string': case 'bool': case 'double': return v.value;
    case 'int': return Number(v.value);
    case 'bytes': return new Uint8Array(v.value.buffer, v.value.byteOffset, v.value.byteLength);
    case 'array': return v.value.map(attrValue);
    case 'kvlist': {
      const o: Record<string, unknown> = {};
      for (const kv of v.value) o[kv.key] = attrValue(kv.value);
      return o;
    }
    case 'empty': return undefined;
  }
}

/** OTLP key/values as an SDK attributes object (maps and byte arrays go through: the exporter encodes them). */
export function toAttributes(kvs: KeyValue[]): Attributes {
  const o: Record<string, unknown> = {};
  for (const kv of kvs) o[kv.key] = attrValue(kv.value);
  return o as Record<string, AttributeValue>;
}

function traceState(s: string): TraceState | undefined {
  return s ? new TraceState(s) : undefined;
}

const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

export function toReadableSpan(o: OutgoingSpan): ReadableSpan {
  const s = o.span;
  const ctx: SpanContext = { traceId: s.traceId, spanId: s.spanId, traceFlags: s.flags & 0xff, traceState: traceState(s.traceState) };
  const parent: SpanContext | undefined = s.parentSpanId && s.parentSpanId !== '0000000000000000'
    ? { traceId: s.traceId, spanId: s.parentSpanId, traceFlags: s.flags & 0xff, isRemote: (s.flags & HAS_IS_REMOTE) !== 0 && (s.flags & IS_REMOTE) !== 0 }
    : undefined;
  const start = hr(s.startTimeUnixNano);
  const end = hr(s.endTimeUnixNano);
  const d = s.endTimeUnixNano > s.startTimeUnixNano ? s.endTimeUnixNano - s.startTimeUnixNano : 0n;
  const events: TimedEvent[] = s.events.map((e) => ({ time: hr(e.timeUnixNano), name: e.name, attributes: toAttributes(e.attributes), droppedAttributesCount: e.droppedAttributesCount }));
  const links: Link[] = s.links.map((l) => ({
    context: { traceId: l.traceId, spanId: l.spanId, traceFlags: l.flags & 0xff, traceState: traceState(l.traceState), isRemote: (l.flags & IS_REMOTE) !== 0 },
    attributes: toAttributes(l.attributes), droppedAttributesCount: l.droppedAttributesCount,
  }));
  return {
    name: s.name,
    // the API's SpanKind has no "unspecified": OTLP kind - 1, unspecified -> internal
    kind: (s.kind > 0 ? s.kind - 1 : 0) as SpanKind,
    spanContext: () => ctx,
    parentSpanContext: parent,
    startTime: start,
    endTime: end,
    status: { code: s.status.code, message: s.status.message || undefined } as SpanStatus,
    attributes: toAttributes(s.attributes),
    links,
    events,
    duration: hr(d),
    ended: true,
    resource: o.resource.toSdk(),
    instrumentationScope: {
      name: o.scope.name, version: o.scope.version || undefined, schemaUrl: o.scopeSchemaUrl || undefined,
      ...(o.scope.attributes.length ? { attributes: toAttributes(o.scope.attributes) } : {}),
    } as ReadableSpan['instrumentationScope'],
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  };
}

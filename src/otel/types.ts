// Typed OTLP trace structures, produced by both decoders (protobuf and JSON)
// in src/otel/otlp-decode.ts. Complete enough to re-encode a span with its
// original ids, resource and scope (see encodeTraceRequest in otlp-encode.ts).
//
// Conventions: ids are lowercase hex ('' when absent on the wire); 64-bit
// integers (times, int attribute values) are bigint; enums are plain numbers.

export type AnyValue =
  | { type: 'string'; value: string }
  | { type: 'bool'; value: boolean }
  | { type: 'int'; value: bigint }
  | { type: 'double'; value: number }
  | { type: 'bytes'; value: Buffer }
  | { type: 'array'; value: AnyValue[] }
  | { type: 'kvlist'; value: KeyValue[] }
  /** AnyValue with no value set (OTLP allows it: "empty") */
  | { type: 'empty' };

export interface KeyValue {
  key: string;
  value: AnyValue;
}

export interface Resource {
  attributes: KeyValue[];
  droppedAttributesCount: number;
}

export interface InstrumentationScope {
  name: string;
  version: string;
  attributes: KeyValue[];
  droppedAttributesCount: number;
}

export interface SpanEvent {
  timeUnixNano: bigint;
  name: string;
  attributes: KeyValue[];
  droppedAttributesCount: number;
}

export interface SpanLink {
  traceId: string;
  spanId: string;
  traceState: string;
  attributes: KeyValue[];
  droppedAttributesCount: number;
  flags: number;
}

export interface SpanStatus {
  /** 0 unset, 1 ok, 2 error */
  code: number;
  message: string;
}

export interface Span {
  /** 32 lowercase hex, or '' when absent */
  traceId: string;
  /** 16 lowercase hex, or '' when absent */
  spanId: string;
  traceState: string;
  /** 16 lowercase hex, or '' for a root span */
  parentSpanId: string;
  /** W3C trace flags (low 8 bits) + OTLP span flags bits 8..9 */
  flags: number;
  name: string;
  /** 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: KeyValue[];
  droppedAttributesCount: number;
  events: SpanEvent[];
  droppedEventsCount: number;
  links: SpanLink[];
  droppedLinksCount: number;
  status: SpanStatus;
  /**
   * Span message fields already encoded (protobuf), written after the others:
   * kspan's attributes (field 9) and events (field 11) as an explain worker
   * built them. Repeated fields may come in any order on the wire: decoded,
   * they follow `attributes` and `events` (what concatenating them would give).
   */
  encodedExtra?: Uint8Array;
  /**
   * The span's own fields (1-16) already encoded (otlp-encode.ts
   * compactSpans): when set, writeSpanFields writes these bytes (then
   * encodedExtra) and the object keeps only ids, name, kind and times; its
   * attributes, events, links and status are empty and frozen, not the span's.
   */
  encodedFields?: Uint8Array;
}

export interface ScopeSpans {
  scope: InstrumentationScope;
  spans: Span[];
  schemaUrl: string;
}

export interface ResourceSpans {
  resource: Resource;
  scopeSpans: ScopeSpans[];
  schemaUrl: string;
}

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest */
export interface DecodedTraceRequest {
  resourceSpans: ResourceSpans[];
}

/** Where a request came from (for consumers, logs and counters). */
export interface ConsumeMeta {
  transport: 'http' | 'grpc';
  encoding: 'protobuf' | 'json';
  /** body size on the wire (compressed) and decoded (uncompressed) */
  wireBytes: number;
  bodyBytes: number;
  /** number of spans in the request */
  spanCount: number;
  /** estimated memory of the decoded request, bytes (the receiver's scan); absent: the consumer estimates per span */
  decodedBytes?: number;
  /** remote address, when known */
  peer?: string;
  /** epoch ns when the request was received */
  receivedUnixNano: bigint;
}

export interface ConsumeResult {
  /** spans not accepted (OTLP partial_success.rejected_spans) */
  rejectedSpans: number;
  /** partial_success.error_message (also allowed with rejectedSpans 0, as a warning) */
  message?: string;
}

/**
 * Receives decoded requests from the OTLP receivers (HTTP and gRPC). A thrown
 * error / rejected promise means "temporarily unavailable" (HTTP 503, gRPC
 * UNAVAILABLE: the client retries); per-span problems go in rejectedSpans.
 */
export interface SpanConsumer {
  consume(req: DecodedTraceRequest, meta: ConsumeMeta): Promise<ConsumeResult>;
  /**
   * Why new requests should be refused now (retryable: 503 / RESOURCE_EXHAUSTED
   * with RetryInfo), or null: a consumer that would otherwise have to drop
   * what it accepted (its upstream is behind) pushes back on the senders.
   */
  saturated?(): string | null;
}

/** Number of spans in a request. */
export function countSpans(req: DecodedTraceRequest): number {
  let n = 0;
  for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length;
  return n;
}

/** Attribute lookup helpers (first match wins). */
export function findAttr(attrs: KeyValue[], key: string): AnyValue | undefined {
  for (const kv of attrs) if (kv.key === key) return kv.value;
  return undefined;
}

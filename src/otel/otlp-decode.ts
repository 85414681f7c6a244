// OTLP trace request decoding, by hand from the protocol's field numbers
// (opentelemetry-proto: collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
// common/v1/common.proto, resource/v1/resource.proto) — no generated code.
//
//   decodeTraceRequestProtobuf(bytes)  ExportTraceServiceRequest (also TracesData: same field 1)
//   decodeTraceRequestJson(textOrBytes) OTLP/JSON (hex ids, int64 as string or number, enums as ints)
//
// Both return the same DecodedTraceRequest. Malformed or truncated input throws
// OtlpDecodeError (never a partial result). Unknown fields are skipped (protobuf)
// or ignored (JSON), as the spec requires.

import type {
  AnyValue, DecodedTraceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, SpanEvent,
  SpanLink, SpanStatus,
} from './types.js';

export type OtlpDecodeErrorKind = 'truncated' | 'malformed';

export class OtlpDecodeError extends Error {
  override readonly name = 'OtlpDecodeError';
  constructor(readonly kind: OtlpDecodeErrorKind, message: string, readonly offset?: number) {
    super(message);
  }
}

/** Nesting limit for AnyValue arrays / kvlists (protects the stack). */
export const MAX_VALUE_DEPTH = 32;

// ---------------------------------------------------------------- protobuf

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;
const WT_NAME = ['varint', 'i64', 'len', 'sgroup', 'egroup', 'i32', '6', '7'];

/** Minimal protobuf reader over one Buffer; each message decoder reads [pos, end). */
class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  fail(kind: OtlpDecodeErrorKind, what: string): never {
    throw new OtlpDecodeError(kind, `${kind} protobuf: ${what} at byte ${this.pos}`, this.pos);
  }

  /** varint as a number (exact below 2^53; callers that need 64 bits use varint64) */
  varint(end: number): number {
    const b = this.buf;
    let p = this.pos;
    let x = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= end) { this.pos = p; this.fail('truncated', 'varint runs past the end'); }
      const c = b[p++];
      x += (c & 0x7f) * mul;
      if (c < 0x80) { this.pos = p; return x; }
      mul *= 128;
    }
    this.pos = p;
    return this.fail('malformed', 'varint longer than 10 bytes');
  }

  /** varint as a u64 bigint */
  varint64(end: number): bigint {
    const b = this.buf;
    const start = this.pos;
    let p = start;
    // fast path: up to 7 bytes (< 2^49) is exact in a double
    let x = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      if (p >= end) { this.pos = p; this.fail('truncated', 'varint runs past the end'); }
      const c = b[p++];
      x += (c & 0x7f) * mul;
      if (c < 0x80) { this.pos = p; return BigInt(x); }
      mul *= 128;
    }
    p = start;
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (p >= end) { this.pos = p; this.fail('truncated', 'varint runs past the end'); }
      const c = b[p++];
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) { this.pos = p; return BigInt.asUintN(64, v); }
      shift += 7n;
    }
    this.pos = p;
    return this.fail('malformed', 'varint longer than 10 bytes');
  }

  /** an int32 (enum) value: negative numbers come as 10-byte (sign-extended) varints */
  int32(end: number): number {
    const start = this.pos;
    const x = this.varint(end);
    if (x <= 0x7fffffff) return x;
    this.pos = start;
    return Number(BigInt.asIntN(32, this.varint64(end)));
  }

  fixed64(end: number): bigint {
    if (this.pos + 8 > end) this.fail('truncated', 'fixed64 runs past the end');
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  fixed32(end: number): number {
    if (this.pos + 4 > end) this.fail('truncated', 'fixed32 runs past the end');
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  double(end: number): number {
    if (this.pos + 8 > end) this.fail('truncated', 'double runs past the end');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** length prefix; returns the end offset of the field's bytes */
  len(end: number): number {
    const n = this.varint(end);
    const e = this.pos + n;
    if (e > end) this.fail('truncated', `length-delimited field of ${n} bytes runs past the end`);
    return e;
  }

  string(end: number): string {
    const e = this.len(end);
    const s = this.buf.toString('utf8', this.pos, e);
    this.pos = e;
    return s;
  }

  bytes(end: number): Buffer {
    const e = this.len(end);
    const out = Buffer.from(this.buf.subarray(this.pos, e)); // copy: don't pin the request buffer
    this.pos = e;
    return out;
  }

  /** an id of exactly `size` bytes (or empty) as lowercase hex */
  id(end: number, size: number, what: string): string {
    const e = this.len(end);
    const n = e - this.pos;
    if (n !== size && n !== 0) this.fail('malformed', `${what} must be ${size} bytes, got ${n}`);
    const s = n === 0 ? '' : this.buf.toString('hex', this.pos, e);
    this.pos = e;
    return s;
  }

  skip(wt: number, end: number): void {
    switch (wt) {
      case WT_VARINT: this.varint64(end); return;
      case WT_I64: if (this.pos + 8 > end) this.fail('truncated', 'fixed64 runs past the end'); this.pos += 8; return;
      case WT_LEN: this.pos = this.len(end); return;
      case WT_I32: if (this.pos + 4 > end) this.fail('truncated', 'fixed32 runs past the end'); this.pos += 4; return;
      default: this.fail('malformed', `unsupported wire type ${wt}`);
    }
  }

  /** read a tag; checks the wire type of known fields via expect() */
  expect(wt: number, want: number, field: string): void {
    if (wt !== want) this.fail('malformed', `${field} has wire type ${WT_NAME[wt]}, expected ${WT_NAME[want]}`);
  }

  tag(end: number): number {
    const t = this.varint(end);
    if (t >>> 3 === 0) this.fail('malformed', 'field number 0');
    return t;
  }
}

function pbAnyValue(r: Reader, end: number, depth: number): AnyValue {
  if (depth > MAX_VALUE_DEPTH) r.fail('malformed', `AnyValue nested deeper than ${MAX_VALUE_DEPTH}`);
  let v: AnyValue = { type: 'empty' };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    switch (f) {
      case 1: r.expect(wt, WT_LEN, 'AnyValue.string_value'); v = { type: 'string', value: r.string(end) }; break;
      case 2: r.expect(wt, WT_VARINT, 'AnyValue.bool_value'); v = { type: 'bool', value: r.varint64(end) !== 0n }; break;
      case 3: r.expect(wt, WT_VARINT, 'AnyValue.int_value'); v = { type: 'int', value: BigInt.asIntN(64, r.varint64(end)) }; break;
      case 4: r.expect(wt, WT_I64, 'AnyValue.double_value'); v = { type: 'double', value: r.double(end) }; break;
      case 5: {
        r.expect(wt, WT_LEN, 'AnyValue.array_value');
        const e = r.len(end);
        const values: AnyValue[] = [];
        while (r.pos < e) {
          const t2 = r.tag(e);
          if (t2 >>> 3 === 1) { r.expect(t2 & 7, WT_LEN, 'ArrayValue.values'); const e2 = r.len(e); values.push(pbAnyValue(r, e2, depth + 1)); r.pos = e2; }
          else r.skip(t2 & 7, e);
        }
        v = { type: 'array', value: values };
        break;
      }
      case 6: {
        r.expect(wt, WT_LEN, 'AnyValue.kvlist_value');
        const e = r.len(end);
        const values: KeyValue[] = [];
        while (r.pos < e) {
          const t2 = r.tag(e);
          if (t2 >>> 3 === 1) { r.expect(t2 & 7, WT_LEN, 'KeyValueList.values'); const e2 = r.len(e); values.push(pbKeyValue(r, e2, depth + 1)); r.pos = e2; }
          else r.skip(t2 & 7, e);
        }
        v = { type: 'kvlist', value: values };
        break;
      }
      case 7: r.expect(wt, WT_LEN, 'AnyValue.bytes_value'); v = { type: 'bytes', value: r.bytes(end) }; break;
      default: r.skip(wt, end);
    }
  }
  return v;
}

function pbKeyValue(r: Reader, end: number, depth: number): KeyValue {
  let key = '';
  let value: AnyValue = { type: 'empty' };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_LEN, 'KeyValue.key'); key = r.string(end); }
    else if (f === 2) { r.expect(wt, WT_LEN, 'KeyValue.value'); const e = r.len(end); value = pbAnyValue(r, e, depth); r.pos = e; }
    else r.skip(wt, end);
  }
  return { key, value };
}

/** a repeated KeyValue field element: reads the length and the message */
function pbAttr(r: Reader, wt: number, end: number, attrs: KeyValue[], field: string): void {
  r.expect(wt, WT_LEN, field);
  const e = r.len(end);
  attrs.push(pbKeyValue(r, e, 0));
  r.pos = e;
}

function pbU32(r: Reader, wt: number, end: number, field: string): number {
  r.expect(wt, WT_VARINT, field);
  return r.varint(end) >>> 0;
}

function pbResource(r: Reader, end: number): Resource {
  const res: Resource = { attributes: [], droppedAttributesCount: 0 };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) pbAttr(r, wt, end, res.attributes, 'Resource.attributes');
    else if (f === 2) res.droppedAttributesCount = pbU32(r, wt, end, 'Resource.dropped_attributes_count');
    else r.skip(wt, end);
  }
  return res;
}

function pbScope(r: Reader, end: number): InstrumentationScope {
  const s: InstrumentationScope = { name: '', version: '', attributes: [], droppedAttributesCount: 0 };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_LEN, 'InstrumentationScope.name'); s.name = r.string(end); }
    else if (f === 2) { r.expect(wt, WT_LEN, 'InstrumentationScope.version'); s.version = r.string(end); }
    else if (f === 3) pbAttr(r, wt, end, s.attributes, 'InstrumentationScope.attributes');
    else if (f === 4) s.droppedAttributesCount = pbU32(r, wt, end, 'InstrumentationScope.dropped_attributes_count');
    else r.skip(wt, end);
  }
  return s;
}

function pbEvent(r: Reader, end: number): SpanEvent {
  const ev: SpanEvent = { timeUnixNano: 0n, name: '', attributes: [], droppedAttributesCount: 0 };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_I64, 'Event.time_unix_nano'); ev.timeUnixNano = r.fixed64(end); }
    else if (f === 2) { r.expect(wt, WT_LEN, 'Event.name'); ev.name = r.string(end); }
    else if (f === 3) pbAttr(r, wt, end, ev.attributes, 'Event.attributes');
    else if (f === 4) ev.droppedAttributesCount = pbU32(r, wt, end, 'Event.dropped_attributes_count');
    else r.skip(wt, end);
  }
  return ev;
}

function pbLink(r: Reader, end: number): SpanLink {
  const l: SpanLink = { traceId: '', spanId: '', traceState: '', attributes: [], droppedAttributesCount: 0, flags: 0 };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_LEN, 'Link.trace_id'); l.traceId = r.id(end, 16, 'Link.trace_id'); }
    else if (f === 2) { r.expect(wt, WT_LEN, 'Link.span_id'); l.spanId = r.id(end, 8, 'Link.span_id'); }
    else if (f === 3) { r.expect(wt, WT_LEN, 'Link.trace_state'); l.traceState = r.string(end); }
    else if (f === 4) pbAttr(r, wt, end, l.attributes, 'Link.attributes');
    else if (f === 5) l.droppedAttributesCount = pbU32(r, wt, end, 'Link.dropped_attributes_count');
    else if (f === 6) { r.expect(wt, WT_I32, 'Link.flags'); l.flags = r.fixed32(end); }
    else r.skip(wt, end);
  }
  return l;
}

function pbStatus(r: Reader, end: number): SpanStatus {
  const s: SpanStatus = { code: 0, message: '' };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 2) { r.expect(wt, WT_LEN, 'Status.message'); s.message = r.string(end); }
    else if (f === 3) { r.expect(wt, WT_VARINT, 'Status.code'); s.code = r.int32(end); }
    else r.skip(wt, end);
  }
  return s;
}

function pbSpan(r: Reader, end: number): Span {
  const s: Span = {
    traceId: '', spanId: '', traceState: '', parentSpanId: '', flags: 0, name: '', kind: 0,
    startTimeUnixNano: 0n, endTimeUnixNano: 0n, attributes: [], droppedAttributesCount: 0,
    events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
  };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    switch (f) {
      case 1: r.expect(wt, WT_LEN, 'Span.trace_id'); s.traceId = r.id(end, 16, 'Span.trace_id'); break;
      case 2: r.expect(wt, WT_LEN, 'Span.span_id'); s.spanId = r.id(end, 8, 'Span.span_id'); break;
      case 3: r.expect(wt, WT_LEN, 'Span.trace_state'); s.traceState = r.string(end); break;
      case 4: r.expect(wt, WT_LEN, 'Span.parent_span_id'); s.parentSpanId = r.id(end, 8, 'Span.parent_span_id'); break;
      case 5: r.expect(wt, WT_LEN, 'Span.name'); s.name = r.string(end); break;
      case 6: r.expect(wt, WT_VARINT, 'Span.kind'); s.kind = r.int32(end); break;
      case 7: r.expect(wt, WT_I64, 'Span.start_time_unix_nano'); s.startTimeUnixNano = r.fixed64(end); break;
      case 8: r.expect(wt, WT_I64, 'Span.end_time_unix_nano'); s.endTimeUnixNano = r.fixed64(end); break;
      case 9: pbAttr(r, wt, end, s.attributes, 'Span.attributes'); break;
      case 10: s.droppedAttributesCount = pbU32(r, wt, end, 'Span.dropped_attributes_count'); break;
      case 11: { r.expect(wt, WT_LEN, 'Span.events'); const e = r.len(end); s.events.push(pbEvent(r, e)); r.pos = e; break; }
      case 12: s.droppedEventsCount = pbU32(r, wt, end, 'Span.dropped_events_count'); break;
      case 13: { r.expect(wt, WT_LEN, 'Span.links'); const e = r.len(end); s.links.push(pbLink(r, e)); r.pos = e; break; }
      case 14: s.droppedLinksCount = pbU32(r, wt, end, 'Span.dropped_links_count'); break;
      case 15: { r.expect(wt, WT_LEN, 'Span.status'); const e = r.len(end); s.status = pbStatus(r, e); r.pos = e; break; }
      case 16: r.expect(wt, WT_I32, 'Span.flags'); s.flags = r.fixed32(end); break;
      default: r.skip(wt, end);
    }
  }
  return s;
}

function pbScopeSpans(r: Reader, end: number): ScopeSpans {
  const ss: ScopeSpans = { scope: { name: '', version: '', attributes: [], droppedAttributesCount: 0 }, spans: [], schemaUrl: '' };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_LEN, 'ScopeSpans.scope'); const e = r.len(end); ss.scope = pbScope(r, e); r.pos = e; }
    else if (f === 2) { r.expect(wt, WT_LEN, 'ScopeSpans.spans'); const e = r.len(end); ss.spans.push(pbSpan(r, e)); r.pos = e; }
    else if (f === 3) { r.expect(wt, WT_LEN, 'ScopeSpans.schema_url'); ss.schemaUrl = r.string(end); }
    else r.skip(wt, end);
  }
  return ss;
}

function pbResourceSpans(r: Reader, end: number): ResourceSpans {
  const rs: ResourceSpans = { resource: { attributes: [], droppedAttributesCount: 0 }, scopeSpans: [], schemaUrl: '' };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) { r.expect(wt, WT_LEN, 'ResourceSpans.resource'); const e = r.len(end); rs.resource = pbResource(r, e); r.pos = e; }
    else if (f === 2) { r.expect(wt, WT_LEN, 'ResourceSpans.scope_spans'); const e = r.len(end); rs.scopeSpans.push(pbScopeSpans(r, e)); r.pos = e; }
    else if (f === 3) { r.expect(wt, WT_LEN, 'ResourceSpans.schema_url'); rs.schemaUrl = r.string(end); }
    else r.skip(wt, end);
  }
  return rs;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Decode an ExportTraceServiceRequest (or TracesData) from protobuf bytes. */
export function decodeTraceRequestProtobuf(bytes: Uint8Array): DecodedTraceRequest {
  const r = new Reader(asBuffer(bytes));
  const end = r.buf.length;
  const out: DecodedTraceRequest = { resourceSpans: [] };
  while (r.pos < end) {
    const t = r.tag(end);
    const f = t >>> 3, wt = t & 7;
    if (f === 1) {
      r.expect(wt, WT_LEN, 'ExportTraceServiceRequest.resource_spans');
      const e = r.len(end);
      out.resourceSpans.push(pbResourceSpans(r, e));
      r.pos = e;
    } else r.skip(wt, end);
  }
  return out;
}

// ---------------------------------------------------------------- limits

/**
 * Per-request bounds on what decoding may build. A protobuf request is
 * scanned first (scanTraceRequestProtobuf: no allocation, stops at the first
 * bound crossed), so a small body that would expand into millions of objects
 * is refused before any of them exists.
 */
export interface DecodeLimits {
  /** spans per request (default 100,000) */
  maxSpans: number;
  /** span events per request, over all spans (default 500,000) */
  maxEvents: number;
  /** span links per request (default 500,000) */
  maxLinks: number;
  /** attribute values per request: key/values at any level (resource, scope, span, event, link, nested kvlists) plus array elements (default 1,000,000) */
  maxAttributes: number;
  /** estimated memory of the decoded request, bytes (default 128 MiB) */
  maxDecodedBytes: number;
}

export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxSpans: 100_000, maxEvents: 500_000, maxLinks: 500_000, maxAttributes: 1_000_000, maxDecodedBytes: 128 * 1024 * 1024,
});

/** A request over one of the DecodeLimits (not malformed: too big to take in one piece). */
export class OtlpLimitError extends Error {
  override readonly name = 'OtlpLimitError';
  constructor(readonly limit: keyof DecodeLimits, readonly max: number, what: string) {
    super(`request over the ${limit} limit of ${max}: ${what}`);
  }
}

/** What a request holds, from a scan (before decoding). */
export interface RequestScan {
  spans: number;
  events: number;
  links: number;
  attributes: number;
  /** estimated memory of the decoded request, bytes */
  estimatedBytes: number;
}

// Decoded size per object (V8, measured on Node 20 with empty objects; strings
// and bytes are covered by adding the body's length).
const EST_SPAN = 300;
const EST_EVENT = 100;
const EST_LINK = 120;
const EST_ATTR = 120;

function estValue(v: AnyValue): number {
  switch (v.type) {
    case 'string': return v.value.length;
    case 'bytes': return v.value.length;
    case 'array': { let n = 0; for (const x of v.value) n += EST_ATTR + estValue(x); return n; }
    case 'kvlist': return estAttrs(v.value);
    default: return 0;
  }
}

function estAttrs(attrs: KeyValue[]): number {
  let n = 0;
  for (const kv of attrs) n += EST_ATTR + kv.key.length + estValue(kv.value);
  return n;
}

/** Estimated memory of a decoded attribute list (a resource's, a scope's), on the scan's scale. */
export function estimateAttributesBytes(attrs: KeyValue[]): number {
  return estAttrs(attrs);
}

/**
 * Estimated memory of one decoded span, on the scan's scale (objects as
 * counted by scanTraceRequestProtobuf, strings and bytes by their length):
 * for spans that did not come with their request's estimate.
 */
export function estimateDecodedSpanBytes(s: Span): number {
  let n = EST_SPAN + s.name.length + s.traceState.length + s.status.message.length + estAttrs(s.attributes);
  for (const e of s.events) n += EST_EVENT + e.name.length + estAttrs(e.attributes);
  for (const l of s.links) n += EST_LINK + l.traceState.length + estAttrs(l.attributes);
  return n;
}

class Scan implements RequestScan {
  spans = 0;
  events = 0;
  links = 0;
  attributes = 0;
  estimatedBytes = 0;
  constructor(readonly lim: DecodeLimits) {}
  attr(): void {
    if (++this.attributes > this.lim.maxAttributes) throw new OtlpLimitError('maxAttributes', this.lim.maxAttributes, `more than ${this.lim.maxAttributes} attribute values`);
  }
}

function scAttrs(r: Reader, end: number, sc: Scan, depth: number): void {
  // one KeyValue: field 2 is the AnyValue
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === 0x12) { const e = r.len(end); scAnyValue(r, e, sc, depth); r.pos = e; } else r.skip(t & 7, end);
  }
}

function scAnyValue(r: Reader, end: number, sc: Scan, depth: number): void {
  if (depth > MAX_VALUE_DEPTH) r.fail('malformed', `AnyValue nested deeper than ${MAX_VALUE_DEPTH}`);
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === 0x2a || t === 0x32) { // array_value (5) / kvlist_value (6): field 1 holds the elements
      const e = r.len(end);
      while (r.pos < e) {
        const t2 = r.tag(e);
        if (t2 === 0x0a) {
          const e2 = r.len(e);
          sc.attr();
          if (t === 0x2a) scAnyValue(r, e2, sc, depth + 1); else scAttrs(r, e2, sc, depth + 1);
          r.pos = e2;
        } else r.skip(t2 & 7, e);
      }
    } else r.skip(t & 7, end);
  }
}

/** a message whose field `attrField` is repeated KeyValue; other fields skipped */
function scWithAttrs(r: Reader, end: number, sc: Scan, attrTag: number): void {
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === attrTag) { const e = r.len(end); sc.attr(); scAttrs(r, e, sc, 0); r.pos = e; } else r.skip(t & 7, end);
  }
}

function scSpan(r: Reader, end: number, sc: Scan): void {
  const lim = sc.lim;
  while (r.pos < end) {
    const t = r.tag(end);
    switch (t) {
      case 0x4a: { const e = r.len(end); sc.attr(); scAttrs(r, e, sc, 0); r.pos = e; break; } // attributes (9)
      case 0x5a: { // events (11)
        if (++sc.events > lim.maxEvents) throw new OtlpLimitError('maxEvents', lim.maxEvents, `more than ${lim.maxEvents} span events`);
        const e = r.len(end); scWithAttrs(r, e, sc, 0x1a); r.pos = e; break;
      }
      case 0x6a: { // links (13)
        if (++sc.links > lim.maxLinks) throw new OtlpLimitError('maxLinks', lim.maxLinks, `more than ${lim.maxLinks} span links`);
        const e = r.len(end); scWithAttrs(r, e, sc, 0x22); r.pos = e; break;
      }
      default: r.skip(t & 7, end);
    }
  }
}

/**
 * Count what an ExportTraceServiceRequest would decode to, without building
 * it, and check the limits: throws OtlpLimitError at the first bound crossed
 * (so a body of millions of tiny objects costs a short scan), or
 * OtlpDecodeError where the structure it walks is broken. Fields of the wrong
 * wire type are skipped here; the decoder reports them.
 */
export function scanTraceRequestProtobuf(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): RequestScan {
  const r = new Reader(asBuffer(bytes));
  const sc = new Scan(limits);
  const end = r.buf.length;
  while (r.pos < end) {
    const t = r.tag(end);
    if (t !== 0x0a) { r.skip(t & 7, end); continue; }
    const e1 = r.len(end); // ResourceSpans
    while (r.pos < e1) {
      const t1 = r.tag(e1);
      if (t1 === 0x0a) { const e = r.len(e1); scWithAttrs(r, e, sc, 0x0a); r.pos = e; } // resource
      else if (t1 === 0x12) { // ScopeSpans
        const e2 = r.len(e1);
        while (r.pos < e2) {
          const t2 = r.tag(e2);
          if (t2 === 0x0a) { const e = r.len(e2); scWithAttrs(r, e, sc, 0x1a); r.pos = e; } // scope
          else if (t2 === 0x12) {
            if (++sc.spans > limits.maxSpans) throw new OtlpLimitError('maxSpans', limits.maxSpans, `more than ${limits.maxSpans} spans`);
            const e = r.len(e2); scSpan(r, e, sc); r.pos = e;
          } else r.skip(t2 & 7, e2);
        }
      } else r.skip(t1 & 7, e1);
    }
  }
  sc.estimatedBytes = end + sc.spans * EST_SPAN + sc.events * EST_EVENT + sc.links * EST_LINK + sc.attributes * EST_ATTR;
  if (sc.estimatedBytes > limits.maxDecodedBytes) {
    throw new OtlpLimitError('maxDecodedBytes', limits.maxDecodedBytes, `would decode to ~${Math.round(sc.estimatedBytes / 1048576)} MiB`);
  }
  return { spans: sc.spans, events: sc.events, links: sc.links, attributes: sc.attributes, estimatedBytes: sc.estimatedBytes };
}

// JSON.parse builds every object of the body, so an OTLP/JSON body is bounded
// before parsing by its structure: objects, arrays and values are counted by
// one pass over the bytes (outside strings).
const EST_JSON_OBJECT = 160;
const EST_JSON_VALUE = 16;

/** Estimated memory of an OTLP/JSON body once parsed and decoded; throws OtlpLimitError over maxDecodedBytes. */
export function scanTraceRequestJson(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): number {
  let objects = 0;
  let values = 0;
  let inStr = false;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    const c = bytes[i];
    if (inStr) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inStr = false;
    } else if (c === 0x22) inStr = true;
    else if (c === 0x7b || c === 0x5b) objects++; // { [
    else if (c === 0x2c) values++; // ,
  }
  const est = 2 * n + objects * EST_JSON_OBJECT + values * EST_JSON_VALUE;
  if (est > limits.maxDecodedBytes) {
    throw new OtlpLimitError('maxDecodedBytes', limits.maxDecodedBytes, `would decode to ~${Math.round(est / 1048576)} MiB (${objects} objects)`);
  }
  return est;
}

/** Counts of a decoded request against the limits (for JSON, which is not scanned for them before parsing). */
export function checkDecodedLimits(req: DecodedTraceRequest, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): RequestScan {
  const sc = new Scan(limits);
  const attrs = (kvs: KeyValue[]): void => { for (const kv of kvs) { sc.attr(); value(kv.value); } };
  const value = (v: AnyValue): void => {
    if (v.type === 'array') for (const x of v.value) { sc.attr(); value(x); }
    else if (v.type === 'kvlist') attrs(v.value);
  };
  for (const rs of req.resourceSpans) {
    attrs(rs.resource.attributes);
    for (const ss of rs.scopeSpans) {
      attrs(ss.scope.attributes);
      if ((sc.spans += ss.spans.length) > limits.maxSpans) throw new OtlpLimitError('maxSpans', limits.maxSpans, `more than ${limits.maxSpans} spans`);
      for (const s of ss.spans) {
        attrs(s.attributes);
        if ((sc.events += s.events.length) > limits.maxEvents) throw new OtlpLimitError('maxEvents', limits.maxEvents, `more than ${limits.maxEvents} span events`);
        if ((sc.links += s.links.length) > limits.maxLinks) throw new OtlpLimitError('maxLinks', limits.maxLinks, `more than ${limits.maxLinks} span links`);
        for (const e of s.events) attrs(e.attributes);
        for (const l of s.links) attrs(l.attributes);
      }
    }
  }
  sc.estimatedBytes = sc.spans * EST_SPAN + sc.events * EST_EVENT + sc.links * EST_LINK + sc.attributes * EST_ATTR;
  return { spans: sc.spans, events: sc.events, links: sc.links, attributes: sc.attributes, estimatedBytes: sc.estimatedBytes };
}

// ---------------------------------------------------------------- responses (kspan as a client)

/** ExportTraceServiceResponse.partial_success; zeros / '' when absent. */
export function decodeTraceResponse(bytes: Uint8Array): { rejectedSpans: number; errorMessage: string } {
  const r = new Reader(asBuffer(bytes));
  const out = { rejectedSpans: 0, errorMessage: '' };
  const end = r.buf.length;
  while (r.pos < end) {
    const t = r.tag(end);
    if (t !== 0x0a) { r.skip(t & 7, end); continue; }
    const e = r.len(end);
    while (r.pos < e) {
      const t2 = r.tag(e);
      if (t2 === 0x08) out.rejectedSpans = Number(BigInt.asIntN(64, r.varint64(e)));
      else if (t2 === 0x12) out.errorMessage = r.string(e);
      else r.skip(t2 & 7, e);
    }
  }
  return out;
}

/** google.rpc.Status { code, message, details }, with a google.rpc.RetryInfo detail's delay in ms when there is one. */
export function decodeRpcStatus(bytes: Uint8Array): { code: number; message: string; retryDelayMs?: number } {
  const r = new Reader(asBuffer(bytes));
  const out: { code: number; message: string; retryDelayMs?: number } = { code: 0, message: '' };
  const end = r.buf.length;
  while (r.pos < end) {
    const t = r.tag(end);
    if (t === 0x08) out.code = r.int32(end);
    else if (t === 0x12) out.message = r.string(end);
    else if (t === 0x1a) { // details: google.protobuf.Any { type_url = 1, value = 2 }
      const e = r.len(end);
      let typeUrl = '';
      let value: Buffer | null = null;
      while (r.pos < e) {
        const t2 = r.tag(e);
        if (t2 === 0x0a) typeUrl = r.string(e);
        else if (t2 === 0x12) value = r.bytes(e);
        else r.skip(t2 & 7, e);
      }
      if (value && typeUrl.endsWith('/google.rpc.RetryInfo')) out.retryDelayMs = retryInfoMs(value);
    } else r.skip(t & 7, end);
  }
  return out;
}

/** google.rpc.RetryInfo { retry_delay: google.protobuf.Duration { seconds = 1, nanos = 2 } } in ms */
function retryInfoMs(b: Buffer): number {
  const r = new Reader(b);
  let ms = 0;
  while (r.pos < b.length) {
    const t = r.tag(b.length);
    if (t !== 0x0a) { r.skip(t & 7, b.length); continue; }
    const e = r.len(b.length);
    while (r.pos < e) {
      const t2 = r.tag(e);
      if (t2 === 0x08) ms += Number(BigInt.asIntN(64, r.varint64(e))) * 1000;
      else if (t2 === 0x10) ms += r.int32(e) / 1e6;
      else r.skip(t2 & 7, e);
    }
  }
  return Math.max(0, ms);
}

// ---------------------------------------------------------------- JSON

type J = Record<string, unknown>;


function jfail(path: string, what: string): never {
  throw new OtlpDecodeError('malformed', `malformed OTLP/JSON: ${path}: ${what}`);
}

/** field by lowerCamelCase name, falling back to the proto (snake_case) name; null = absent */
function jget(o: J, camel: string, snake: string): unknown {
  const v = o[camel];
  if (v !== undefined && v !== null) return v;
  const w = o[snake];
  return w === null ? undefined : w;
}

function jobj(v: unknown, path: string): J {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) jfail(path, 'expected an object');
  return v as J;
}

function jarr(v: unknown, path: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) jfail(path, 'expected an array');
  return v;
}

function jstr(v: unknown, path: string): string {
  if (v === undefined) return '';
  if (typeof v !== 'string') jfail(path, 'expected a string');
  return v;
}

const INT_RE = /^-?[0-9]+$/;

function jint64(v: unknown, path: string, unsigned: boolean): bigint {
  if (v === undefined) return 0n;
  let x: bigint;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) jfail(path, `expected an integer, got ${v}`);
    x = BigInt(v);
  } else if (typeof v === 'string' && INT_RE.test(v)) {
    x = BigInt(v);
  } else return jfail(path, 'expected an integer (number or decimal string)');
  if (unsigned ? x < 0n || x > 0xffffffffffffffffn : x < -(1n << 63n) || x >= 1n << 63n) jfail(path, `integer ${x} out of range`);
  return x;
}

function jint32(v: unknown, path: string, unsigned: boolean): number {
  if (v === undefined) return 0;
  const n = typeof v === 'string' && INT_RE.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) jfail(path, 'expected an integer');
  if (unsigned ? n < 0 || n > 0xffffffff : n < -0x80000000 || n > 0x7fffffff) jfail(path, `integer ${n} out of range`);
  return n;
}

function jenum(v: unknown, path: string, names: Record<string, number>): number {
  if (typeof v === 'string' && v in names) return names[v];
  return jint32(v, path, false);
}

const SPAN_KIND: Record<string, number> = {
  SPAN_KIND_UNSPECIFIED: 0, SPAN_KIND_INTERNAL: 1, SPAN_KIND_SERVER: 2, SPAN_KIND_CLIENT: 3, SPAN_KIND_PRODUCER: 4, SPAN_KIND_CONSUMER: 5,
};
const STATUS_CODE: Record<string, number> = { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 };

const HEX_RE = /^[0-9a-fA-F]*$/;

function jid(v: unknown, path: string, size: number): string {
  const s = jstr(v, path);
  if (s === '') return '';
  if (s.length !== size * 2 || !HEX_RE.test(s)) jfail(path, `expected ${size * 2} hex digits, got ${JSON.stringify(s.slice(0, 80))}`);
  return s.toLowerCase();
}

function jdouble(v: unknown, path: string): number {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return jfail(path, 'expected a number');
}

const B64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

function jAnyValue(v: unknown, path: string, depth: number): AnyValue {
  if (depth > MAX_VALUE_DEPTH) jfail(path, `AnyValue nested deeper than ${MAX_VALUE_DEPTH}`);
  if (v === undefined) return { type: 'empty' };
  const o = jobj(v, path);
  let x: unknown;
  if ((x = jget(o, 'stringValue', 'string_value')) !== undefined) return { type: 'string', value: jstr(x, path + '.stringValue') };
  if ((x = jget(o, 'boolValue', 'bool_value')) !== undefined) {
    if (typeof x !== 'boolean') jfail(path + '.boolValue', 'expected a boolean');
    return { type: 'bool', value: x };
  }
  if ((x = jget(o, 'intValue', 'int_value')) !== undefined) return { type: 'int', value: jint64(x, path + '.intValue', false) };
  if ((x = jget(o, 'doubleValue', 'double_value')) !== undefined) return { type: 'double', value: jdouble(x, path + '.doubleValue') };
  if ((x = jget(o, 'arrayValue', 'array_value')) !== undefined) {
    const a = jobj(x, path + '.arrayValue');
    return { type: 'array', value: jarr(a.values ?? undefined, path + '.arrayValue.values').map((e, i) => jAnyValue(e, `${path}.arrayValue.values[${i}]`, depth + 1)) };
  }
  if ((x = jget(o, 'kvlistValue', 'kvlist_value')) !== undefined) {
    const a = jobj(x, path + '.kvlistValue');
    return { type: 'kvlist', value: jarr(a.values ?? undefined, path + '.kvlistValue.values').map((e, i) => jKeyValue(e, `${path}.kvlistValue.values[${i}]`, depth + 1)) };
  }
  if ((x = jget(o, 'bytesValue', 'bytes_value')) !== undefined) {
    if (typeof x !== 'string' || !B64_RE.test(x)) jfail(path + '.bytesValue', 'expected base64');
    return { type: 'bytes', value: Buffer.from(x, 'base64') };
  }
  return { type: 'empty' };
}

function jKeyValue(v: unknown, path: string, depth: number): KeyValue {
  const o = jobj(v, path);
  return { key: jstr(o.key ?? undefined, path + '.key'), value: jAnyValue(o.value ?? undefined, path + '.value', depth) };
}

function jAttrs(v: unknown, path: string): KeyValue[] {
  return jarr(v, path).map((e, i) => jKeyValue(e, `${path}[${i}]`, 0));
}

function jSpan(v: unknown, p: string): Span {
  const o = jobj(v, p);
  const st = jget(o, 'status', 'status');
  let status: SpanStatus = { code: 0, message: '' };
  if (st !== undefined) {
    const so = jobj(st, p + '.status');
    status = { code: jenum(so.code ?? undefined, p + '.status.code', STATUS_CODE), message: jstr(so.message ?? undefined, p + '.status.message') };
  }
  return {
    traceId: jid(jget(o, 'traceId', 'trace_id'), p + '.traceId', 16),
    spanId: jid(jget(o, 'spanId', 'span_id'), p + '.spanId', 8),
    traceState: jstr(jget(o, 'traceState', 'trace_state'), p + '.traceState'),
    parentSpanId: jid(jget(o, 'parentSpanId', 'parent_span_id'), p + '.parentSpanId', 8),
    flags: jint32(jget(o, 'flags', 'flags'), p + '.flags', true),
    name: jstr(jget(o, 'name', 'name'), p + '.name'),
    kind: jenum(jget(o, 'kind', 'kind'), p + '.kind', SPAN_KIND),
    startTimeUnixNano: jint64(jget(o, 'startTimeUnixNano', 'start_time_unix_nano'), p + '.startTimeUnixNano', true),
    endTimeUnixNano: jint64(jget(o, 'endTimeUnixNano', 'end_time_unix_nano'), p + '.endTimeUnixNano', true),
    attributes: jAttrs(jget(o, 'attributes', 'attributes'), p + '.attributes'),
    droppedAttributesCount: jint32(jget(o, 'droppedAttributesCount', 'dropped_attributes_count'), p + '.droppedAttributesCount', true),
    events: jarr(jget(o, 'events', 'events'), p + '.events').map((e, i): SpanEvent => {
      const ep = `${p}.events[${i}]`;
      const eo = jobj(e, ep);
      return {
        timeUnixNano: jint64(jget(eo, 'timeUnixNano', 'time_unix_nano'), ep + '.timeUnixNano', true),
        name: jstr(jget(eo, 'name', 'name'), ep + '.name'),
        attributes: jAttrs(jget(eo, 'attributes', 'attributes'), ep + '.attributes'),
        droppedAttributesCount: jint32(jget(eo, 'droppedAttributesCount', 'dropped_attributes_count'), ep + '.droppedAttributesCount', true),
      };
    }),
    droppedEventsCount: jint32(jget(o, 'droppedEventsCount', 'dropped_events_count'), p + '.droppedEventsCount', true),
    links: jarr(jget(o, 'links', 'links'), p + '.links').map((e, i): SpanLink => {
      const lp = `${p}.links[${i}]`;
      const lo = jobj(e, lp);
      return {
        traceId: jid(jget(lo, 'traceId', 'trace_id'), lp + '.traceId', 16),
        spanId: jid(jget(lo, 'spanId', 'span_id'), lp + '.spanId', 8),
        traceState: jstr(jget(lo, 'traceState', 'trace_state'), lp + '.traceState'),
        attributes: jAttrs(jget(lo, 'attributes', 'attributes'), lp + '.attributes'),
        droppedAttributesCount: jint32(jget(lo, 'droppedAttributesCount', 'dropped_attributes_count'), lp + '.droppedAttributesCount', true),
        flags: jint32(jget(lo, 'flags', 'flags'), lp + '.flags', true),
      };
    }),
    droppedLinksCount: jint32(jget(o, 'droppedLinksCount', 'dropped_links_count'), p + '.droppedLinksCount', true),
    status,
  };
}

function jScope(v: unknown, p: string): InstrumentationScope {
  if (v === undefined) return { name: '', version: '', attributes: [], droppedAttributesCount: 0 };
  const o = jobj(v, p);
  return {
    name: jstr(jget(o, 'name', 'name'), p + '.name'),
    version: jstr(jget(o, 'version', 'version'), p + '.version'),
    attributes: jAttrs(jget(o, 'attributes', 'attributes'), p + '.attributes'),
    droppedAttributesCount: jint32(jget(o, 'droppedAttributesCount', 'dropped_attributes_count'), p + '.droppedAttributesCount', true),
  };
}

/** Decode an OTLP/JSON ExportTraceServiceRequest from text or UTF-8 bytes. */
export function decodeTraceRequestJson(input: string | Uint8Array): DecodedTraceRequest {
  let root: unknown;
  try {
    root = JSON.parse(typeof input === 'string' ? input : asBuffer(input).toString('utf8'));
  } catch (e) {
    throw new OtlpDecodeError('malformed', `malformed OTLP/JSON: ${(e as Error).message}`);
  }
  const o = jobj(root, '$');
  return {
    resourceSpans: jarr(jget(o, 'resourceSpans', 'resource_spans'), '$.resourceSpans').map((rv, i): ResourceSpans => {
      const rp = `$.resourceSpans[${i}]`;
      const ro = jobj(rv, rp);
      const res = jget(ro, 'resource', 'resource');
      let resource: Resource = { attributes: [], droppedAttributesCount: 0 };
      if (res !== undefined) {
        const reo = jobj(res, rp + '.resource');
        resource = {
          attributes: jAttrs(jget(reo, 'attributes', 'attributes'), rp + '.resource.attributes'),
          droppedAttributesCount: jint32(jget(reo, 'droppedAttributesCount', 'dropped_attributes_count'), rp + '.resource.droppedAttributesCount', true),
        };
      }
      return {
        resource,
        scopeSpans: jarr(jget(ro, 'scopeSpans', 'scope_spans'), rp + '.scopeSpans').map((sv, j): ScopeSpans => {
          const sp = `${rp}.scopeSpans[${j}]`;
          const so = jobj(sv, sp);
          return {
            scope: jScope(jget(so, 'scope', 'scope'), sp + '.scope'),
            spans: jarr(jget(so, 'spans', 'spans'), sp + '.spans').map((x, k) => jSpan(x, `${sp}.spans[${k}]`)),
            schemaUrl: jstr(jget(so, 'schemaUrl', 'schema_url'), sp + '.schemaUrl'),
          };
        }),
        schemaUrl: jstr(jget(ro, 'schemaUrl', 'schema_url'), rp + '.schemaUrl'),
      };
    }),
  };
}

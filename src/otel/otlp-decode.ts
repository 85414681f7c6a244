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
    else if (f === 3) { r.expect(wt, WT_VARINT, 'Status.code'); s.code = r.varint(end) | 0; }
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
      case 6: r.expect(wt, WT_VARINT, 'Span.kind'); s.kind = r.varint(end) | 0; break;
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

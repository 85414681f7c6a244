// Protobuf encoding of the OTLP messages kspan sends: ExportTraceServiceResponse,
// google.rpc.Status (HTTP error bodies), and a DecodedTraceRequest back to an
// ExportTraceServiceRequest (forwarding spans with their original ids, resource
// and scope; also used by tests and bench/otlp-decode.ts). Default-valued
// fields are omitted, as proto3 does.

import type { AnyValue, DecodedTraceRequest, InstrumentationScope, KeyValue, Span, SpanEvent } from './types.js';

/** Bytes a varint of `v` (0 <= v < 2^53) takes. */
export function varintSize(v: number): number {
  let n = 1;
  while (v > 0x7f) { v = Math.floor(v / 128); n++; }
  return n;
}

const HEX_NIBBLE = new Int8Array(128).fill(0);
for (let i = 0; i < 10; i++) HEX_NIBBLE[48 + i] = i;
for (let i = 0; i < 6; i++) { HEX_NIBBLE[97 + i] = 10 + i; HEX_NIBBLE[65 + i] = 10 + i; }

/**
 * Growable protobuf writer. Nested messages: fork() ... join(field). fork()
 * reserves two bytes (a one-byte tag and a one-byte length); join() writes
 * them, moving the body only when the header needs more (a body of 128 bytes
 * or more, or a field number above 15).
 */
export class PbWriter {
  private buf: Buffer;
  private pos = 0;
  private stack: number[] = [];

  constructor(initialSize = 1024) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  varint(v: number): void {
    this.ensure(10);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  varint64(v: bigint): void {
    let x = BigInt.asUintN(64, v);
    if (x <= 0xffffffffffffn) { this.varint(Number(x)); return; }
    this.ensure(10);
    while (x > 0x7fn) {
      this.buf[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }

  tag(field: number, wt: number): void { this.varint(field * 8 + wt); }

  fixed64(field: number, v: bigint): void {
    this.tag(field, 1);
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), this.pos);
    this.pos += 8;
  }

  fixed32(field: number, v: number): void {
    this.tag(field, 5);
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  double(field: number, v: number): void {
    this.tag(field, 1);
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  bytesField(field: number, b: Uint8Array): void {
    this.tag(field, 2);
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(field: number, s: string): void {
    this.tag(field, 2);
    const len = s.length;
    if (len < 128) {
      // short strings, ASCII by far the most: one pass, no native call
      this.ensure(len + 1);
      const b = this.buf;
      const start = this.pos;
      let p = start + 1;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === len) { b[start] = len; this.pos = p; return; }
    }
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** an id given as hex (lowercase or uppercase), written as bytes; omitted when empty */
  hex(field: number, h: string): void {
    if (h === '') return;
    const n = h.length >>> 1;
    this.tag(field, 2);
    this.varint(n);
    this.ensure(n);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) b[p++] = (HEX_NIBBLE[h.charCodeAt(2 * i) & 0x7f] << 4) | HEX_NIBBLE[h.charCodeAt(2 * i + 1) & 0x7f];
    this.pos = p;
  }

  /** start a nested message: reserve 2 bytes for its tag and length */
  fork(): void {
    this.ensure(2);
    this.stack.push(this.pos);
    this.pos += 2;
  }

  /** finish the nested message started by fork() as field `field` */
  join(field: number): void {
    const start = this.stack.pop()!;
    const bodyStart = start + 2;
    const len = this.pos - bodyStart;
    const tag = field * 8 + 2;
    if (tag < 128 && len < 128) {
      this.buf[start] = tag;
      this.buf[start + 1] = len;
      return;
    }
    // the header needs more than the 2 reserved bytes: move the body up
    const extra = varintSize(tag) + varintSize(len) - 2;
    this.ensure(extra);
    this.buf.copyWithin(bodyStart + extra, bodyStart, this.pos);
    let p = start;
    for (let v = tag; ; ) { if (v <= 0x7f) { this.buf[p++] = v; break; } this.buf[p++] = (v % 128) | 0x80; v = Math.floor(v / 128); }
    for (let v = len; ; ) { if (v <= 0x7f) { this.buf[p++] = v; break; } this.buf[p++] = (v % 128) | 0x80; v = Math.floor(v / 128); }
    this.pos += extra;
  }

  /** bytes written so far, unframed (e.g. a pre-encoded message body) */
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** an int32 (enum) field value: negative numbers take 10 bytes, as protobuf's int32 does */
  int32(v: number): void {
    if (v >= 0) this.varint(v);
    else this.varint64(BigInt(v));
  }

  get capacity(): number {
    return this.buf.length;
  }

  get length(): number {
    return this.pos;
  }

  /**
   * Forget what was written from `pos` on (a length read outside any fork()),
   * messages forked since then included (a writer that threw midway).
   */
  truncate(pos: number): void {
    if (pos < 0 || pos > this.pos) throw new RangeError(`PbWriter.truncate(${pos}) at ${this.pos}`);
    while (this.stack.length !== 0 && this.stack[this.stack.length - 1] >= pos) this.stack.pop();
    if (this.stack.length !== 0) throw new RangeError(`PbWriter.truncate(${pos}) inside a message forked at ${this.stack[this.stack.length - 1]}`);
    this.pos = pos;
  }

  /** forget what was written (keeps the buffer) */
  reset(): void {
    this.pos = 0;
    this.stack.length = 0;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

function writeAnyValue(w: PbWriter, v: AnyValue): void {
  switch (v.type) {
    case 'string': w.string(1, v.value); break;
    case 'bool': w.tag(2, 0); w.varint(v.value ? 1 : 0); break;
    case 'int': w.tag(3, 0); w.varint64(v.value); break;
    case 'double': w.double(4, v.value); break;
    case 'array': w.fork(); for (const e of v.value) { w.fork(); writeAnyValue(w, e); w.join(1); } w.join(5); break;
    case 'kvlist': w.fork(); for (const kv of v.value) { w.fork(); writeKeyValue(w, kv); w.join(1); } w.join(6); break;
    case 'bytes': w.bytesField(7, v.value); break;
    case 'empty': break;
  }
}

function writeKeyValue(w: PbWriter, kv: KeyValue): void {
  if (kv.key !== '') w.string(1, kv.key);
  w.fork();
  writeAnyValue(w, kv.value);
  w.join(2);
}

function writeAttrs(w: PbWriter, field: number, attrs: KeyValue[]): void {
  for (const kv of attrs) { w.fork(); writeKeyValue(w, kv); w.join(field); }
}

function u32(w: PbWriter, field: number, v: number): void {
  if (v !== 0) { w.tag(field, 0); w.varint(v >>> 0); }
}

function str(w: PbWriter, field: number, s: string): void {
  if (s !== '') w.string(field, s);
}

/** The fields of a Span message (no tag or length: the caller frames it, e.g. fork() ... join(2)). */
export function writeSpanFields(w: PbWriter, s: Span): void {
  if (s.encodedFields) {
    // a held span (compactSpans): its own fields were encoded when it arrived
    w.raw(s.encodedFields);
    if (s.encodedExtra) w.raw(s.encodedExtra);
    return;
  }
  w.hex(1, s.traceId);
  w.hex(2, s.spanId);
  str(w, 3, s.traceState);
  w.hex(4, s.parentSpanId);
  str(w, 5, s.name);
  if (s.kind !== 0) { w.tag(6, 0); w.int32(s.kind); }
  if (s.startTimeUnixNano !== 0n) w.fixed64(7, s.startTimeUnixNano);
  if (s.endTimeUnixNano !== 0n) w.fixed64(8, s.endTimeUnixNano);
  writeAttrs(w, 9, s.attributes);
  u32(w, 10, s.droppedAttributesCount);
  writeEvents(w, s.events);
  u32(w, 12, s.droppedEventsCount);
  for (const l of s.links) {
    w.fork();
    w.hex(1, l.traceId);
    w.hex(2, l.spanId);
    str(w, 3, l.traceState);
    writeAttrs(w, 4, l.attributes);
    u32(w, 5, l.droppedAttributesCount);
    if (l.flags !== 0) w.fixed32(6, l.flags);
    w.join(13);
  }
  u32(w, 14, s.droppedLinksCount);
  if (s.status.code !== 0 || s.status.message !== '') {
    w.fork();
    str(w, 2, s.status.message);
    if (s.status.code !== 0) { w.tag(3, 0); w.int32(s.status.code); }
    w.join(15);
  }
  if (s.flags !== 0) w.fixed32(16, s.flags);
  if (s.encodedExtra) w.raw(s.encodedExtra);
}

const NO_ATTRIBUTES: KeyValue[] = Object.freeze([]) as unknown as KeyValue[];
const NO_EVENTS: SpanEvent[] = Object.freeze([]) as unknown as SpanEvent[];
const NO_LINKS: Span['links'] = Object.freeze([]) as unknown as Span['links'];
const NO_STATUS: Span['status'] = Object.freeze({ code: 0, message: '' });
let runScratch = new PbWriter(64 * 1024);

/**
 * The fields (writeSpanFields) of spans 0..n-1 one after another in one new
 * buffer; ends[i] is where span i's bytes end (a null span takes none).
 */
export function encodeSpanRun(n: number, spanAt: (i: number) => Span | null): { chunk: Buffer; ends: number[] } {
  const w = runScratch;
  w.reset();
  const ends: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const s = spanAt(i);
    if (s) writeSpanFields(w, s);
    ends[i] = w.length;
  }
  const chunk = Buffer.from(w.finish());
  if (w.capacity > 4 * 1024 * 1024) runScratch = new PbWriter(64 * 1024); // don't keep a huge buffer after a huge span
  return { chunk, ends };
}

/**
 * Spans as a buffer holds them while they wait (seconds, tens of thousands):
 * each span's fields encoded once, exactly as writeSpanFields writes them,
 * into one buffer for all of them (a view each), and a light Span that keeps
 * its ids, name, kind and times (what the pipeline reads) with empty
 * attributes, events, links and status, frozen so that nothing adds to
 * them. The decoded objects (KeyValues, BigInts, strings: ~2 KB a span) are
 * left to the young generation instead of living on into the old one.
 * Returns the encoded bytes of each span; -1 for a span left as it is (it
 * has encodedFields or encodedExtra already).
 */
export function compactSpans(spans: Span[]): number[] {
  const { chunk, ends } = encodeSpanRun(spans.length, (i) => (spans[i].encodedFields || spans[i].encodedExtra ? null : spans[i]));
  const sizes: number[] = new Array(spans.length);
  let off = 0;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    sizes[i] = -1;
    if (!s.encodedFields && !s.encodedExtra) {
      sizes[i] = ends[i] - off;
      const fields = chunk.subarray(off, ends[i]);
      spans[i] = {
        traceId: s.traceId, spanId: s.spanId, traceState: s.traceState, parentSpanId: s.parentSpanId, flags: s.flags, name: s.name, kind: s.kind,
        startTimeUnixNano: s.startTimeUnixNano, endTimeUnixNano: s.endTimeUnixNano,
        attributes: NO_ATTRIBUTES, droppedAttributesCount: 0, events: NO_EVENTS, droppedEventsCount: 0, links: NO_LINKS, droppedLinksCount: 0,
        status: NO_STATUS, encodedFields: fields,
      };
    }
    off = ends[i];
  }
  return sizes;
}

function writeEvents(w: PbWriter, events: readonly SpanEvent[]): void {
  for (const ev of events) {
    w.fork();
    if (ev.timeUnixNano !== 0n) w.fixed64(1, ev.timeUnixNano);
    str(w, 2, ev.name);
    writeAttrs(w, 3, ev.attributes);
    u32(w, 4, ev.droppedAttributesCount);
    w.join(11);
  }
}

/** Span fields 9 (attributes) and 11 (events) for `attributes` and `events`: a Span's encodedExtra. */
export function writeSpanExtra(w: PbWriter, attributes: KeyValue[], events: readonly SpanEvent[]): void {
  writeAttrs(w, 9, attributes);
  writeEvents(w, events);
}

/** The fields of a Resource message. */
export function writeResourceFields(w: PbWriter, attributes: KeyValue[], droppedAttributesCount: number): void {
  writeAttrs(w, 1, attributes);
  u32(w, 2, droppedAttributesCount);
}

/** The fields of an InstrumentationScope message. */
export function writeScopeFields(w: PbWriter, sc: InstrumentationScope): void {
  str(w, 1, sc.name);
  str(w, 2, sc.version);
  writeAttrs(w, 3, sc.attributes);
  u32(w, 4, sc.droppedAttributesCount);
}

/** A string field, omitted when empty (proto3 default). */
export function writeStringField(w: PbWriter, field: number, s: string): void {
  str(w, field, s);
}

/**
 * Encode a DecodedTraceRequest as protobuf ExportTraceServiceRequest bytes.
 * Exact: decodeTraceRequestProtobuf(encodeTraceRequest(x)) deep-equals x
 * (ids, flags, trace state, kind, 64-bit times, every AnyValue type with
 * double and int64 kept apart, dropped counts, events, links, status,
 * resource, scope, schema URLs).
 */
export function encodeTraceRequest(req: DecodedTraceRequest): Buffer {
  const w = new PbWriter();
  for (const rs of req.resourceSpans) {
    w.fork();
    w.fork();
    writeResourceFields(w, rs.resource.attributes, rs.resource.droppedAttributesCount);
    w.join(1);
    for (const ss of rs.scopeSpans) {
      w.fork();
      w.fork();
      writeScopeFields(w, ss.scope);
      w.join(1);
      for (const s of ss.spans) {
        w.fork();
        writeSpanFields(w, s);
        w.join(2);
      }
      str(w, 3, ss.schemaUrl);
      w.join(2);
    }
    str(w, 3, rs.schemaUrl);
    w.join(1);
  }
  return Buffer.from(w.finish());
}

/** ExportTraceServiceResponse; empty (zero bytes) without a partial success. */
export function encodeTraceResponse(rejectedSpans: number, message?: string): Buffer {
  const w = new PbWriter();
  if (rejectedSpans > 0 || message) {
    w.fork();
    if (rejectedSpans > 0) { w.tag(1, 0); w.varint(rejectedSpans); }
    if (message) w.string(2, message);
    w.join(1);
  }
  return Buffer.from(w.finish());
}

/**
 * google.rpc.Status { code, message, details } (gRPC code numbers: 3 INVALID_ARGUMENT, 14 UNAVAILABLE, ...).
 * `retryDelayMs` adds a google.rpc.RetryInfo detail: how long the client should wait before retrying.
 */
export function encodeRpcStatus(code: number, message: string, retryDelayMs?: number): Buffer {
  const w = new PbWriter();
  if (code !== 0) { w.tag(1, 0); w.int32(code); }
  if (message) w.string(2, message);
  if (retryDelayMs !== undefined) {
    w.fork(); // google.protobuf.Any
    w.string(1, RETRY_INFO_TYPE_URL);
    w.fork(); // value: RetryInfo
    w.fork(); // retry_delay: google.protobuf.Duration
    const ms = Math.max(0, Math.round(retryDelayMs));
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms % 1000) * 1_000_000;
    if (seconds) { w.tag(1, 0); w.varint(seconds); }
    if (nanos) { w.tag(2, 0); w.varint(nanos); }
    w.join(1);
    w.join(2);
    w.join(3);
  }
  return Buffer.from(w.finish());
}

export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

/** OTLP/JSON ExportTraceServiceResponse body. */
export function jsonTraceResponse(rejectedSpans: number, message?: string): string {
  if (rejectedSpans <= 0 && !message) return '{}';
  const ps: Record<string, unknown> = {};
  if (rejectedSpans > 0) ps.rejectedSpans = String(rejectedSpans);
  if (message) ps.errorMessage = message;
  return JSON.stringify({ partialSuccess: ps });
}

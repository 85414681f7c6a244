// The span index's stored value (StoredSpan), encoded by hand in the bytes
// lmdb-js's msgpack encoder writes for it: a msgpackr record defined inline
// (fixext1 type 'r', slot 0x40, then the array of keys, then the values in
// key order) with the attributes as a second inline record (slot 0x41). So
// the index is read, by this version or any earlier one, through the
// database's msgpack encoding as before; only the writing is cheaper (the
// generic encoder walked the object and re-derived the record each time:
// ~3.3 µs of the receiving thread per span). bench:span-index has the figures.
//
// Spans this encoder does not take (more than 15 attributes, a string past
// 64 KiB, a field of an unexpected type) return -1: the caller writes them
// through lmdb-js's encoder.

import type { StoredSpan } from './spans.js';

/** Fields of StoredSpan in the order they are written (the object literal's order in putSpans). */
const FIELDS = [
  'traceId', 'spanId', 'parentSpanId', 'service', 'name', 'startUnixNano', 'endUnixNano', 'durationNs',
  'kind', 'statusCode', 'pid', 'tid', 'processId', 'requestId', 'attributes',
] as const satisfies readonly (keyof StoredSpan)[];

const MAX_STR = 0xffff;
const MAX_ATTRS = 15;

/** fixext1 'r' slot 0x40 + fixarray of the field names: the same for every span */
const HEAD: Buffer = (() => {
  const b = Buffer.alloc(256);
  b[0] = 0xd4; b[1] = 0x72; b[2] = 0x40; b[3] = 0x90 | FIELDS.length;
  let p = 4;
  for (const f of FIELDS) p = str(b, p, f);
  return b.subarray(0, p);
})();

const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);

/** Bytes a value of StoredSpan `st` needs at most (for the caller's buffer). */
export function storedSpanMaxBytes(st: StoredSpan): number {
  let n = HEAD.length + 16 * 9 + 4 + 3 * (st.traceId.length + st.spanId.length + (st.parentSpanId?.length ?? 0) + st.service.length + st.name.length +
    st.startUnixNano.length + st.endUnixNano.length + (st.processId?.length ?? 0) + (st.requestId?.length ?? 0) + 5 * 9);
  for (const k in st.attributes) {
    const v = st.attributes[k];
    n += 3 * k.length + 3 + 9 + (typeof v === 'string' ? 3 * v.length + 3 : 0);
  }
  return n;
}

/**
 * Write `st` at `b[p]` (room: storedSpanMaxBytes(st)); returns the end
 * offset, or -1 when this encoder does not take it (see above).
 */
export function encodeStoredSpan(st: StoredSpan, b: Buffer, p: number): number {
  b.set(HEAD, p);
  p += HEAD.length;
  if ((p = str(b, p, st.traceId)) < 0) return -1;
  if ((p = str(b, p, st.spanId)) < 0) return -1;
  if ((p = strOrNull(b, p, st.parentSpanId)) < 0) return -1;
  if ((p = str(b, p, st.service)) < 0) return -1;
  if ((p = str(b, p, st.name)) < 0) return -1;
  if ((p = str(b, p, st.startUnixNano)) < 0) return -1;
  if ((p = str(b, p, st.endUnixNano)) < 0) return -1;
  p = num(b, p, st.durationNs);
  p = num(b, p, st.kind);
  p = num(b, p, st.statusCode);
  if ((p = numOrNull(b, p, st.pid)) < 0) return -1;
  if ((p = numOrNull(b, p, st.tid)) < 0) return -1;
  if ((p = strOrNull(b, p, st.processId)) < 0) return -1;
  if ((p = strOrNull(b, p, st.requestId)) < 0) return -1;
  const attrs = st.attributes;
  let n = 0;
  for (const k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) n++;
  if (n > MAX_ATTRS) return -1;
  b[p++] = 0xd4; b[p++] = 0x72; b[p++] = 0x41; b[p++] = 0x90 | n;
  for (const k in attrs) {
    if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
    if ((p = str(b, p, k)) < 0) return -1;
  }
  for (const k in attrs) {
    if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
    const v = attrs[k];
    if (typeof v === 'string') {
      if ((p = str(b, p, v)) < 0) return -1;
    } else if (typeof v === 'number') {
      p = num(b, p, v);
    } else if (typeof v === 'boolean') {
      b[p++] = v ? 0xc3 : 0xc2;
    } else {
      return -1;
    }
  }
  return p;
}

function strOrNull(b: Buffer, p: number, s: string | null): number {
  if (s === null) {
    b[p++] = 0xc0;
    return p;
  }
  return typeof s === 'string' ? str(b, p, s) : -1;
}

function numOrNull(b: Buffer, p: number, v: number | null): number {
  if (v === null) {
    b[p++] = 0xc0;
    return p;
  }
  return typeof v === 'number' ? num(b, p, v) : -1;
}

/** A string with the smallest header its UTF-8 length allows (fixstr, str8, str16). */
function str(b: Buffer, p: number, s: string): number {
  if (typeof s !== 'string') return -1;
  // ASCII, the usual case: one byte per char, the header known up front
  const n = s.length;
  let ascii = true;
  for (let i = 0; i < n; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    if (n > MAX_STR) return -1;
    p = strHeader(b, p, n);
    for (let i = 0; i < n; i++) b[p++] = s.charCodeAt(i);
    return p;
  }
  const bytes = Buffer.byteLength(s, 'utf8');
  if (bytes > MAX_STR) return -1;
  p = strHeader(b, p, bytes);
  return p + b.write(s, p, 'utf8');
}

function strHeader(b: Buffer, p: number, n: number): number {
  if (n < 0x20) {
    b[p++] = 0xa0 | n;
  } else if (n < 0x100) {
    b[p++] = 0xd9;
    b[p++] = n;
  } else {
    b[p++] = 0xda;
    b[p++] = n >>> 8;
    b[p++] = n & 0xff;
  }
  return p;
}

/**
 * A number as msgpackr writes it with records on: the smallest integer form
 * for 32-bit integers, except that 0x40-0x7f are record references, so a
 * positive fixint stops at 0x3f; else float64.
 */
function num(b: Buffer, p: number, v: number): number {
  if (v >>> 0 === v) {
    if (v < 0x40) {
      b[p++] = v;
    } else if (v < 0x100) {
      b[p++] = 0xcc;
      b[p++] = v;
    } else if (v < 0x10000) {
      b[p++] = 0xcd;
      b[p++] = v >>> 8;
      b[p++] = v & 0xff;
    } else {
      b[p++] = 0xce;
      b[p++] = v >>> 24;
      b[p++] = (v >>> 16) & 0xff;
      b[p++] = (v >>> 8) & 0xff;
      b[p++] = v & 0xff;
    }
    return p;
  }
  if (v >> 0 === v) {
    if (v >= -0x20) {
      b[p++] = v & 0xff;
    } else if (v >= -0x80) {
      b[p++] = 0xd0;
      b[p++] = v & 0xff;
    } else if (v >= -0x8000) {
      b[p++] = 0xd1;
      b[p++] = (v >> 8) & 0xff;
      b[p++] = v & 0xff;
    } else {
      b[p++] = 0xd2;
      b[p++] = (v >> 24) & 0xff;
      b[p++] = (v >> 16) & 0xff;
      b[p++] = (v >> 8) & 0xff;
      b[p++] = v & 0xff;
    }
    return p;
  }
  // float64, big-endian (from this little-endian host's bytes)
  f64[0] = v;
  b[p++] = 0xcb;
  for (let i = 7; i >= 0; i--) b[p++] = f64b[i];
  return p;
}

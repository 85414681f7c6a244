// FrameDecoder: turns a byte stream of kspan records (probe stdout, or a file
// recorded from it) into batches of record offsets, without one object per
// record. RecordView and friends read fields out of a batch in place.
//
// Chunks arrive with arbitrary boundaries. A record split across chunks is
// completed in a preallocated staging buffer (the "bridge"); the rest of a
// chunk is decoded in place through one Uint32Array view. Records are
// 8-byte aligned within the stream, but a chunk may start anywhere, so when
// the first record of a chunk is not 4-byte aligned in memory the chunk's
// remainder is copied into an aligned scratch buffer (one memcpy per chunk).

import { endianness } from 'node:os';
import { HDR_SIZE, KIND_MAX, MAX_REC, MIN_SIZE, REC_MAGIC } from './records.js';

if (endianness() !== 'LE') throw new Error('kspan: the record decoder assumes a little-endian host');

/**
 * A set of complete records in one contiguous buffer. Valid only until the
 * next FrameDecoder.push()/finish(): the buffers and offsets are reused.
 */
export class RecordBatch {
  /** Bytes the offsets refer to (4-byte aligned in memory). */
  buf: Buffer = EMPTY;
  /** u32 view of buf, from buf.byteOffset. */
  u32: Uint32Array = EMPTY_U32;
  /** Byte offset of each record in buf; entries [0, count) are valid. */
  offsets: Uint32Array;
  count = 0;
  constructor(capacity: number) {
    this.offsets = new Uint32Array(capacity);
  }
}

const EMPTY = Buffer.alloc(0);
const EMPTY_U32 = new Uint32Array(0);

export interface DecoderCounters {
  /** Records handed out in batches. */
  records: number;
  /** Bytes of those records. */
  bytes: number;
  /** Bytes pushed in. */
  inputBytes: number;
  /** Well-formed records of a kind this decoder does not know: skipped. */
  unknownKinds: number;
  /** Bytes skipped while resynchronising after a bad header. */
  corruptBytes: number;
  /** Times the decoder lost sync (one per corrupt stretch). */
  resyncs: number;
  /** Bytes of a partial record left at the end (set by finish()). */
  truncatedBytes: number;
}

export interface FinishResult {
  /** Bytes of an incomplete record at the end of the stream (0 when it ended cleanly). */
  truncatedBytes: number;
}

export class FrameDecoder implements DecoderCounters {
  records = 0;
  bytes = 0;
  inputBytes = 0;
  unknownKinds = 0;
  corruptBytes = 0;
  resyncs = 0;
  truncatedBytes = 0;

  /** True while scanning for a plausible header after corruption. */
  private resyncing = false;
  /** Bytes to drop from the start of the next chunk (a resync step ran past the data). */
  private pendingSkip = 0;
  /** Partial record carried to the next chunk: carry[0, tailLen). */
  private readonly carry: Buffer;
  private tailLen = 0;
  /** Bridge: the carried tail followed by the head of the next chunk. Kept
   * apart from `carry` because a new tail is saved while the bridge batch is
   * still out. */
  private readonly staging: Buffer;
  private readonly stagingU32: Uint32Array;
  /** Aligned copy of a chunk whose records start unaligned; grows on demand. */
  private scratch: Buffer = Buffer.allocUnsafeSlow(64 * 1024);
  private readonly bridgeBatch = new RecordBatch(2 * MAX_REC / HDR_SIZE + 2);
  private readonly chunkBatch = new RecordBatch(64 * 1024 / HDR_SIZE + 2);
  private readonly out: RecordBatch[] = [];

  constructor() {
    this.carry = Buffer.allocUnsafeSlow(MAX_REC);
    // tail (< MAX_REC) + chunk head (MAX_REC) always fits.
    this.staging = Buffer.allocUnsafeSlow(2 * MAX_REC + 8);
    this.stagingU32 = new Uint32Array(this.staging.buffer, this.staging.byteOffset, this.staging.length >>> 2);
  }

  get counters(): DecoderCounters {
    return {
      records: this.records, bytes: this.bytes, inputBytes: this.inputBytes, unknownKinds: this.unknownKinds,
      corruptBytes: this.corruptBytes, resyncs: this.resyncs, truncatedBytes: this.truncatedBytes,
    };
  }

  /** Bytes held back waiting for the rest of a record. */
  get pendingBytes(): number {
    return this.tailLen;
  }

  /**
   * Consume one chunk. Returns the batches it completed (0, 1 or 2: a record
   * finished across the boundary, then the chunk's own records). The array
   * and the batches are reused: process them before the next push().
   */
  push(chunk: Buffer): readonly RecordBatch[] {
    const out = this.out;
    out.length = 0;
    this.inputBytes += chunk.length;
    let pos = 0;
    if (this.pendingSkip > 0) {
      pos = Math.min(this.pendingSkip, chunk.length);
      this.pendingSkip -= pos;
    }
    if (pos < chunk.length && this.tailLen > 0) pos = this.bridge(chunk, pos);
    if (pos < chunk.length) this.decodeChunk(chunk, pos);
    return out;
  }

  /**
   * End of stream: a partial record left over is counted as truncated (or as
   * corrupt when we were resynchronising anyway). Resets the carry.
   */
  finish(): FinishResult {
    this.out.length = 0;
    let truncated = 0;
    if (this.tailLen > 0) {
      if (this.resyncing) this.corruptBytes += this.tailLen;
      else truncated = this.tailLen;
    }
    this.truncatedBytes += truncated;
    this.tailLen = 0;
    this.pendingSkip = 0;
    this.resyncing = false;
    return { truncatedBytes: truncated };
  }

  /**
   * Complete the carried partial record(s) with the head of `chunk`: copy up
   * to MAX_REC bytes after the tail and decode records *starting* in the tail.
   * Returns the chunk position where in-place decoding resumes.
   */
  private bridge(chunk: Buffer, pos: number): number {
    const tail = this.tailLen;
    const take = Math.min(chunk.length - pos, MAX_REC);
    this.carry.copy(this.staging, 0, 0, tail);
    chunk.copy(this.staging, tail, pos, pos + take);
    const end = tail + take;
    const b = this.bridgeBatch;
    b.count = 0;
    const p = this.scan(this.staging, this.stagingU32, 0, end, tail, b);
    if (b.count > 0) {
      b.buf = this.staging.subarray(0, end);
      b.u32 = this.stagingU32;
      this.out.push(b);
    }
    if (p >= tail) {
      this.tailLen = 0;
      const next = pos + (p - tail);
      if (next > chunk.length) {
        this.pendingSkip = next - chunk.length;
        return chunk.length;
      }
      return next;
    }
    // The chunk was too short to finish the record starting at p: keep carrying.
    // (A record starting in the tail ends within tail + MAX_REC, so this only
    // happens when all of the chunk went into the bridge.)
    this.staging.copy(this.carry, 0, p, end);
    this.tailLen = end - p;
    return chunk.length;
  }

  private decodeChunk(chunk: Buffer, pos: number): void {
    // Records are decoded relative to `buf`, which starts at the first record
    // and is 4-byte aligned in memory (a Uint32Array view needs that).
    let buf: Buffer;
    if (((chunk.byteOffset + pos) & 3) !== 0) {
      const n = chunk.length - pos;
      if (this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(Math.max(n, this.scratch.length * 2));
      chunk.copy(this.scratch, 0, pos);
      buf = this.scratch.subarray(0, n);
    } else {
      buf = pos === 0 ? chunk : chunk.subarray(pos);
    }
    const start = 0;
    const end = buf.length;
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset, end >>> 2);
    const b = this.chunkBatch;
    const maxRecs = ((end - start) / HDR_SIZE | 0) + 1;
    if (b.offsets.length < maxRecs) b.offsets = new Uint32Array(maxRecs + (maxRecs >>> 2));
    b.count = 0;
    const p = this.scan(buf, u32, start, end, end, b);
    if (b.count > 0) {
      b.buf = buf;
      b.u32 = u32;
      this.out.push(b);
    }
    if (p < end) {
      // Partial header or record: carry it (always < MAX_REC bytes).
      buf.copy(this.carry, 0, p, end);
      this.tailLen = end - p;
    } else if (p > end) {
      this.pendingSkip = p - end;
    }
  }

  /**
   * Decode records starting at [start, limit) whose bytes lie within
   * [start, end). Appends offsets to `b`; returns the first position not
   * consumed (the start of an incomplete record, or past the data when a
   * resync step overshot it). Positions are 8-byte steps apart, so with
   * `start` 4-aligned every header read is a u32 index.
   */
  private scan(buf: Buffer, u32: Uint32Array, start: number, end: number, limit: number, b: RecordBatch): number {
    const offsets = b.offsets;
    let n = b.count;
    let p = start;
    let records = 0;
    let bytes = 0;
    while (p < limit) {
      if (p + 4 > end) break;
      const w = u32[p >>> 2];
      const size = w & 0xffff;
      const kind = (w >>> 16) & 0xff;
      const known = kind > 0 && kind < KIND_MAX;
      if (
        w >>> 24 !== REC_MAGIC || (size & 7) !== 0 || size < HDR_SIZE || size > MAX_REC ||
        (known && size < MIN_SIZE[kind]) || (this.resyncing && !known)
      ) {
        // Lost sync: step forward 8 bytes at a time until a plausible header
        // (magic, legal size, known kind) shows up.
        if (!this.resyncing) {
          this.resyncing = true;
          this.resyncs++;
        }
        this.corruptBytes += 8;
        p += 8;
        continue;
      }
      this.resyncing = false;
      if (p + size > end) break;
      if (known) {
        offsets[n++] = p;
        records++;
        bytes += size;
      } else {
        this.unknownKinds++;
      }
      p += size;
    }
    b.count = n;
    this.records += records;
    this.bytes += bytes;
    return p;
  }
}

const TWO32 = 4294967296;

/**
 * Flyweight reader over one record of a batch: `v.set(batch, i)` then read.
 * Offsets passed to u32/u64/i32 are byte offsets from the record start and
 * must be multiples of 4 (all such fields in kspan.h are).
 */
export class RecordView {
  buf: Buffer = EMPTY;
  u32a: Uint32Array = EMPTY_U32;
  /** Byte offset of the record in buf. */
  off = 0;
  /** u32 index of the record in u32a. */
  w = 0;

  set(batch: RecordBatch, i: number): this {
    const off = batch.offsets[i];
    this.buf = batch.buf;
    this.u32a = batch.u32;
    this.off = off;
    this.w = off >>> 2;
    return this;
  }

  /** Point at the same record as another view (e.g. a kind-specific view). */
  setFrom(v: RecordView): this {
    this.buf = v.buf;
    this.u32a = v.u32a;
    this.off = v.off;
    this.w = v.w;
    return this;
  }

  get size(): number {
    return this.u32a[this.w] & 0xffff;
  }
  get kind(): number {
    return (this.u32a[this.w] >>> 16) & 0xff;
  }
  get cpu(): number {
    return this.u32a[this.w + 1];
  }
  /** Event time (for intervals, the end): CLOCK_MONOTONIC ns. */
  get ts(): number {
    return this.u32a[this.w + 3] * TWO32 + this.u32a[this.w + 2];
  }
  /** tgid */
  get pid(): number {
    return this.u32a[this.w + 4];
  }
  /** kernel pid of the thread */
  get tid(): number {
    return this.u32a[this.w + 5];
  }

  u8(off: number): number {
    return this.buf[this.off + off];
  }
  u16(off: number): number {
    return this.buf[this.off + off] | (this.buf[this.off + off + 1] << 8);
  }
  u32(off: number): number {
    return this.u32a[this.w + (off >>> 2)];
  }
  i32(off: number): number {
    return this.u32a[this.w + (off >>> 2)] | 0;
  }
  /** u64 as a number: exact below 2^53 (monotonic ns, addresses, counters). */
  u64(off: number): number {
    const i = this.w + (off >>> 2);
    return this.u32a[i + 1] * TWO32 + this.u32a[i];
  }
  /** u64 exactly, as a BigInt (allocates). */
  u64n(off: number): bigint {
    const i = this.w + (off >>> 2);
    return (BigInt(this.u32a[i + 1]) << 32n) | BigInt(this.u32a[i]);
  }
  /** u64 as 0x-prefixed hex (allocates). */
  hex64(off: number): string {
    const i = this.w + (off >>> 2);
    const hi = this.u32a[i + 1];
    const lo = this.u32a[i];
    return hi === 0 ? '0x' + lo.toString(16) : '0x' + hi.toString(16) + lo.toString(16).padStart(8, '0');
  }
  /** NUL-terminated char array of `len` bytes (allocates a string). */
  str(off: number, len: number): string {
    const s = this.off + off;
    let e = s;
    const max = s + len;
    const buf = this.buf;
    while (e < max && buf[e] !== 0) e++;
    return buf.toString('utf8', s, e);
  }
  /** A comm[16] field. */
  comm(off: number): string {
    return this.str(off, 16);
  }
  /** Raw bytes of the record (a view, no copy; valid as long as the batch). */
  bytes(): Buffer {
    return this.buf.subarray(this.off, this.off + this.size);
  }
}

// Block codec: kernel events of one series (one thread) packed into one LMDB
// value. Events are appended row by row, as they arrive, into a growing byte
// buffer (delta/varint coded against the previous event of the same block);
// the block is sealed with a small header when it is flushed.
//
// Block value:
//   u8 version (1)
//   varint count
//   varint pid           (the block's usual pid; events with another pid carry it)
//   varint extent        (maxEnd - minStart: lets a reader skip a block without decoding)
//   events...
// Event:
//   u8  kind (bits 0-3) | CPU_SAME 0x10 | PID_DIFF 0x20
//   zz  end - prevEnd    (zigzag varint; prevEnd starts at 0, so the first event carries its full end)
//   v   end - start      (interval kinds only; never negative: such records are rejected)
//   v   cpu              (unless CPU_SAME)
//   v   pid              (if PID_DIFF)
//   v   change mask      (bit c set: column c differs from its previous value in this block)
//   columns whose bit is set, in spec order (see KIND_SPECS)
// Times are relative to the store's origin (time.ts). REL columns (version 2):
// varint 0 = the record had 0 there ("not seen"), else zigzag(value - start) + 1;
// version 1 blocks have zigzag(value - start), a 0 coming out as -start.
// Stacks append their frames raw (8 bytes each) after the columns.

import { REL_HI_LIMIT } from './time.js';
import { BLOCK_IO, CUDA_CALL, FUTEX_WAIT, FUTEX_WAKE, Kind, OFFCPU, STACK, TASK, TCP_RETRANS } from '../capture/index.js';

export const BLOCK_VERSION = 2;
const TWO32 = 4294967296;

/** Column value types. */
export const Col = {
  /** u32 id-like: varint */
  ID: 0,
  /** s32: zigzag varint */
  I32: 1,
  /** u64 (address, counter): varint hi, varint lo — exact for every u64 */
  U64: 2,
  /** u64 monotonic time, relative to the event's start (0 = not seen): see the block layout above */
  REL: 3,
  /** char[16] NUL-terminated: varint len + bytes */
  STR16: 4,
  /** 16 raw bytes */
  B16: 5,
  /** u16 (little-endian, in a u32 slot at an unaligned-by-2 offset) */
  U16: 6,
  /** u8 */
  U8: 7,
} as const;

export interface ColSpec {
  name: string;
  type: number;
  /** byte offset in the record */
  off: number;
}

export interface KindSpec {
  kind: number;
  name: string;
  /** interval (has start_ns at offset 24) or point (start = end = ts) */
  interval: boolean;
  cols: ColSpec[];
  /** numeric columns: index into EventList.f (only for non-byte columns) */
  numIdx: number[];
  /** byte columns (STR16/B16): offset of the column in the decoded blob */
  blobIdx: number[];
  /** fixed blob size (without stack frames) */
  blobSize: number;
  /** number of numeric columns */
  nNum: number;
  stack: boolean;
  /** each column's type (Col), in column order */
  types: number[];
  /** has STR16/B16 columns */
  hasBytes: boolean;
  /** bit c: column c is REL (stored relative to the event's start) */
  relMask: number;
}

function spec(kind: number, name: string, interval: boolean, cols: readonly ColDef[], stack = false): KindSpec {
  const s: KindSpec = {
    kind, name, interval, stack,
    cols: cols.map(([n, type, off]) => ({ name: n, type, off })),
    numIdx: [], blobIdx: [], blobSize: 0, nNum: 0, types: cols.map((c) => c[1]), hasBytes: false, relMask: 0,
  };
  let nf = 0;
  for (const c of s.cols) {
    if (c.type === Col.STR16 || c.type === Col.B16) {
      s.numIdx.push(-1);
      s.blobIdx.push(s.blobSize);
      s.blobSize += 16;
    } else {
      s.numIdx.push(nf++);
      s.blobIdx.push(-1);
    }
  }
  s.nNum = nf;
  s.hasBytes = s.blobSize > 0;
  for (let c = 0; c < cols.length; c++) if (cols[c][1] === Col.REL) s.relMask |= 1 << c;
  if (nf > NUM_FIELDS) throw new Error(`kind ${name}: too many numeric columns`);
  return s;
}

/** Numeric per-kind columns in EventList.f */
export const NUM_FIELDS = 12;

/** Bytes of one row of an EventList's columns: start, end and the numeric fields (f64), cpu, pid, tid, blobOff, blobLen (u32), kind (u8). */
const ROW_BYTES = 8 * (2 + NUM_FIELDS) + 4 * 5 + 1;
const EMPTY_F64 = new Float64Array(0);

/** sortByStart's scratch: the permutation and one column's copy */
let sortIdx = new Uint32Array(0);
let sortBuf = new ArrayBuffer(0);

// Column order: the ones that change most often first (the change mask's
// first 7 bits fit one varint byte). Offsets come from src/capture/records.ts
// (the record ABI, itself checked against bpf/kspan.h by the layout test).
type ColDef = readonly [name: string, type: number, off: number];

const OFFCPU_COLS = [
  ['runnableNs', Col.REL, OFFCPU.runnable_ns], ['wakerTid', Col.ID, OFFCPU.waker_tid], ['wakerPid', Col.ID, OFFCPU.waker_pid],
  ['lastTid', Col.ID, OFFCPU.last_tid], ['lastPid', Col.ID, OFFCPU.last_pid], ['preemptTid', Col.ID, OFFCPU.preempt_tid],
  ['preemptPid', Col.ID, OFFCPU.preempt_pid], ['flags', Col.ID, OFFCPU.flags], ['prevState', Col.ID, OFFCPU.prev_state],
  ['outCpu', Col.ID, OFFCPU.out_cpu], ['wakerCpu', Col.ID, OFFCPU.waker_cpu], ['wakerUaddr', Col.U64, OFFCPU.waker_uaddr],
] as const;
const FUTEX_WAIT_COLS = [
  ['uaddr', Col.U64, FUTEX_WAIT.uaddr], ['op', Col.ID, FUTEX_WAIT.op], ['ret', Col.I32, FUTEX_WAIT.ret], ['val', Col.ID, FUTEX_WAIT.val],
  ['ownerTid', Col.ID, FUTEX_WAIT.owner_tid], ['ownerSrc', Col.ID, FUTEX_WAIT.owner_src],
] as const;
const FUTEX_WAKE_COLS = [
  ['uaddr', Col.U64, FUTEX_WAKE.uaddr], ['uaddr2', Col.U64, FUTEX_WAKE.uaddr2], ['op', Col.ID, FUTEX_WAKE.op], ['ret', Col.I32, FUTEX_WAKE.ret],
] as const;
const BLOCK_IO_COLS = [
  ['issueNs', Col.REL, BLOCK_IO.issue_ns], ['sector', Col.U64, BLOCK_IO.sector], ['dev', Col.ID, BLOCK_IO.dev], ['bytes', Col.ID, BLOCK_IO.bytes],
  ['flags', Col.ID, BLOCK_IO.flags], ['error', Col.I32, BLOCK_IO.error], ['comm', Col.STR16, BLOCK_IO.comm],
] as const;
const TCP_RETRANS_COLS = [
  ['family', Col.U16, TCP_RETRANS.family], ['sport', Col.U16, TCP_RETRANS.sport], ['dport', Col.U16, TCP_RETRANS.dport],
  ['state', Col.U8, TCP_RETRANS.state], ['inIrq', Col.U8, TCP_RETRANS.in_irq], ['err', Col.I32, TCP_RETRANS.err],
  ['sockIno', Col.U64, TCP_RETRANS.sock_ino], ['saddr', Col.B16, TCP_RETRANS.saddr], ['daddr', Col.B16, TCP_RETRANS.daddr],
] as const;
const CUDA_CALL_COLS = [['arg', Col.U64, CUDA_CALL.arg], ['api', Col.ID, CUDA_CALL.api], ['ret', Col.I32, CUDA_CALL.ret]] as const;
const TASK_COLS = [
  ['startTime', Col.U64, TASK.start_time], ['event', Col.ID, TASK.event], ['otherPid', Col.ID, TASK.other_pid],
  ['otherTid', Col.ID, TASK.other_tid], ['exitCode', Col.I32, TASK.exit_code], ['comm', Col.STR16, TASK.comm], ['pcomm', Col.STR16, TASK.pcomm],
] as const;
const STACK_COLS = [['startNs', Col.REL, STACK.start_ns], ['nUser', Col.ID, STACK.n_user], ['nKernel', Col.ID, STACK.n_kernel]] as const;

export const KIND_SPECS: (KindSpec | undefined)[] = [];
KIND_SPECS[Kind.OFFCPU] = spec(Kind.OFFCPU, 'offcpu', true, OFFCPU_COLS);
KIND_SPECS[Kind.FUTEX_WAIT] = spec(Kind.FUTEX_WAIT, 'futex_wait', true, FUTEX_WAIT_COLS);
KIND_SPECS[Kind.FUTEX_WAKE] = spec(Kind.FUTEX_WAKE, 'futex_wake', true, FUTEX_WAKE_COLS);
KIND_SPECS[Kind.BLOCK_IO] = spec(Kind.BLOCK_IO, 'block_io', true, BLOCK_IO_COLS);
KIND_SPECS[Kind.TCP_RETRANS] = spec(Kind.TCP_RETRANS, 'tcp_retrans', false, TCP_RETRANS_COLS);
KIND_SPECS[Kind.CUDA_CALL] = spec(Kind.CUDA_CALL, 'cuda_call', true, CUDA_CALL_COLS);
KIND_SPECS[Kind.TASK] = spec(Kind.TASK, 'task', false, TASK_COLS);
KIND_SPECS[Kind.STACK] = spec(Kind.STACK, 'stack', false, STACK_COLS, true);

type ByteCol = typeof Col.STR16 | typeof Col.B16;
/** name -> index into EventList.f of a kind's numeric columns (byte columns have none) */
type NumericIndex<C extends readonly ColDef[]> = { readonly [D in C[number] as D[1] extends ByteCol ? never : D[0]]: number };

/** The numeric columns' indexes, in column order (as spec() assigns them). */
function numericIndex<C extends readonly ColDef[]>(cols: C): NumericIndex<C> {
  const out: Record<string, number> = {};
  let i = 0;
  for (const [name, type] of cols) if (type !== Col.STR16 && type !== Col.B16) out[name] = i++;
  return out as NumericIndex<C>;
}

/** Per-kind numeric field indexes into EventList.f, for hot loops (derived from the column lists above). */
export const F = {
  offcpu: numericIndex(OFFCPU_COLS),
  futexWait: numericIndex(FUTEX_WAIT_COLS),
  futexWake: numericIndex(FUTEX_WAKE_COLS),
  blockIo: numericIndex(BLOCK_IO_COLS),
  tcpRetrans: numericIndex(TCP_RETRANS_COLS),
  cudaCall: numericIndex(CUDA_CALL_COLS),
  task: numericIndex(TASK_COLS),
  stack: numericIndex(STACK_COLS),
} as const;

// ---------------------------------------------------------------------------
// varints

export function writeVarint(buf: Uint8Array, p: number, v: number): number {
  if (v < 0x80000000) {
    while (v > 0x7f) {
      buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[p++] = v;
    return p;
  }
  while (v > 0x7f) {
    buf[p++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[p++] = v;
  return p;
}

/** zigzag for numbers (exact for |v| < 2^52) */
export function zz(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}
export function unzz(u: number): number {
  // int32 arithmetic below 2^31 (most values: deltas, ids); '%' on a double is slow
  if (u <= 0x7fffffff) return (u >>> 1) ^ -(u & 1);
  return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
}

/** Reader cursor over a byte buffer. */
export class ByteReader {
  buf: Uint8Array = new Uint8Array(0);
  p = 0;
  end = 0;
  reset(buf: Uint8Array, p = 0, end = buf.length): this {
    this.buf = buf;
    this.p = p;
    this.end = end;
    return this;
  }
  varint(): number {
    // one byte (most fields: deltas, small ids) without the loop
    const p = this.p;
    if (p < this.end) {
      const c = this.buf[p];
      if (c < 0x80) {
        this.p = p + 1;
        return c;
      }
    }
    return this.varintLong();
  }

  private varintLong(): number {
    const b = this.buf;
    if (this.p >= this.end) throw new RangeError('truncated block');
    let c = b[this.p++];
    let x = c & 0x7f;
    let mul = 128;
    for (;;) {
      if (this.p >= this.end) throw new RangeError('truncated varint');
      c = b[this.p++];
      x += (c & 0x7f) * mul;
      if (c < 0x80) return x;
      mul *= 128;
      if (mul > 2 ** 63) throw new RangeError('bad varint');
    }
  }
}

// ---------------------------------------------------------------------------
// Block builder: the per-thread buffer. One per (partition, tid) while open.

const MAX_EVENT_BYTES = 64 + 16 * 5 + 8 * 128; // generous upper bound of one encoded event

export class BlockBuilder {
  bytes: Uint8Array;
  len = 0;
  count = 0;
  pid = 0;
  minStart = Infinity;
  maxEnd = -Infinity;
  minEnd = Infinity;
  /** capture time (max end seen by the writer) when the first event arrived */
  openedAt = 0;
  prevEnd = 0;
  prevCpu = -1;
  /** previous column values, per kind: [kind * 16 + col] */
  prev: Float64Array;
  /** previous byte-column values: [kind][col] -> 16 bytes */
  prevBytes: Uint8Array;
  /** kinds present (bit per kind) */
  kinds = 0;
  maxDur = 0;
  /** events per kind in this block */
  kindCounts = new Uint32Array(16);
  /** the store's time origin, high word (time.ts): REL columns are read from the record as absolute u64 */
  originHi = 0;

  constructor(public tid: number, public partition: number, initial = 256) {
    this.bytes = new Uint8Array(initial);
    this.prev = new Float64Array(16 * 16);
    this.prevBytes = new Uint8Array(16 * 2 * 16);
  }

  /** Reset for reuse (same tid, new partition). */
  reset(partition: number): void {
    this.partition = partition;
    this.len = 0;
    this.count = 0;
    this.minStart = Infinity;
    this.maxEnd = -Infinity;
    this.minEnd = Infinity;
    this.prevEnd = 0;
    this.prevCpu = -1;
    this.prev.fill(0);
    this.prevBytes.fill(0);
    this.kinds = 0;
    this.maxDur = 0;
    this.kindCounts.fill(0);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.bytes.subarray(0, this.len));
    this.bytes = nb;
  }

  /**
   * Append one record (u32 view `u32` at word index `w`, byte buffer `buf` at
   * byte offset `off`). The caller has validated kind, size and start <= end.
   * `start` and `end` are the record's start and end ns.
   */
  append(sp: KindSpec, u32: Uint32Array, w: number, buf: Uint8Array, off: number, size: number, start: number, end: number): void {
    this.ensure(MAX_EVENT_BYTES);
    const b = this.bytes;
    let p = this.len;
    const cpu = u32[w + 1];
    const pid = u32[w + 4];
    if (this.count === 0) {
      this.pid = pid;
      this.prevEnd = 0;
    }
    const kind = sp.kind;
    let head = kind;
    if (cpu === this.prevCpu) head |= 0x10;
    if (pid !== this.pid) head |= 0x20;
    b[p++] = head;
    p = writeVarint(b, p, zz(end - this.prevEnd));
    this.prevEnd = end;
    if (sp.interval) p = writeVarint(b, p, end - start);
    if (cpu !== this.prevCpu) {
      p = writeVarint(b, p, cpu);
      this.prevCpu = cpu;
    }
    if (pid !== this.pid) p = writeVarint(b, p, pid);
    // change mask: reserve room, columns after it
    const cols = sp.cols;
    const nc = cols.length;
    const prev = this.prev;
    const pb = kind * 16;
    const maskAt = p;
    p += nc > 7 ? 2 : 1;
    let mask = 0;
    for (let c = 0; c < nc; c++) {
      const col = cols[c];
      const t = col.type;
      const cw = w + (col.off >>> 2);
      switch (t) {
        case Col.ID: {
          const v = u32[cw];
          if (v !== prev[pb + c]) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, v);
          }
          break;
        }
        case Col.I32: {
          const v = u32[cw] | 0;
          if (v !== prev[pb + c]) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, v >= 0 ? v * 2 : -v * 2 - 1);
          }
          break;
        }
        case Col.U64: {
          const lo = u32[cw];
          const hi = u32[cw + 1];
          const v = hi * TWO32 + lo;
          // compare by value; above 2^53 two different u64 may collide as doubles, so always write those
          if (v !== prev[pb + c] || hi >= 0x200000) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, hi);
            p = writeVarint(b, p, lo);
          }
          break;
        }
        case Col.REL: {
          const hi = u32[cw + 1];
          const lo = u32[cw];
          // NaN: not seen (0 in the record; a time outside the store's range is stored so too). NaN !== NaN: always written
          const rh = hi - this.originHi;
          const v = (hi | lo) === 0 || rh < 0 || rh >= REL_HI_LIMIT ? NaN : rh * TWO32 + lo - start;
          if (v !== prev[pb + c]) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, v === v ? zz(v) + 1 : 0);
          }
          break;
        }
        case Col.U16: {
          const o = off + col.off;
          const v = buf[o] | (buf[o + 1] << 8);
          if (v !== prev[pb + c]) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, v);
          }
          break;
        }
        case Col.U8: {
          const v = buf[off + col.off];
          if (v !== prev[pb + c]) {
            prev[pb + c] = v;
            mask |= 1 << c;
            p = writeVarint(b, p, v);
          }
          break;
        }
        default: {
          // STR16 / B16: compare with the previous 16 bytes of this column
          const o = off + col.off;
          const slot = (kind * 2 + (sp.blobIdx[c] >>> 4)) * 16;
          const pbytes = this.prevBytes;
          let same = this.count > 0;
          if (same) for (let i = 0; i < 16; i++) if (buf[o + i] !== pbytes[slot + i]) { same = false; break; }
          if (!same || (this.kinds & (1 << kind)) === 0) {
            for (let i = 0; i < 16; i++) pbytes[slot + i] = buf[o + i];
            mask |= 1 << c;
            if (t === Col.STR16) {
              let n = 0;
              while (n < 16 && buf[o + n] !== 0) n++;
              b[p++] = n;
              for (let i = 0; i < n; i++) b[p++] = buf[o + i];
            } else {
              for (let i = 0; i < 16; i++) b[p++] = buf[o + i];
            }
          }
        }
      }
    }
    if (sp.stack) {
      const nu = u32[w + 8];
      const nk = u32[w + 9];
      const n = Math.min(nu + nk, (size - 40) >>> 3);
      p = writeVarint(b, p, n);
      const o = off + 40;
      for (let i = 0; i < n * 8; i++) b[p++] = buf[o + i];
    }
    if (nc > 7) {
      b[maskAt] = (mask & 0x7f) | 0x80;
      b[maskAt + 1] = mask >>> 7;
    } else {
      b[maskAt] = mask;
    }
    this.len = p;
    this.count++;
    this.kinds |= 1 << kind;
    this.kindCounts[kind]++;
    if (start < this.minStart) this.minStart = start;
    if (end > this.maxEnd) this.maxEnd = end;
    if (end < this.minEnd) this.minEnd = end;
    if (end - start > this.maxDur) this.maxDur = end - start;
  }

  /** Header size upper bound. */
  static readonly HEADER_MAX = 1 + 5 + 5 + 8;

  /** Seal into `out` at `p`: header + events. Returns the end offset. */
  sealInto(out: Uint8Array, p: number): number {
    out[p++] = BLOCK_VERSION;
    p = writeVarint(out, p, this.count);
    p = writeVarint(out, p, this.pid);
    p = writeVarint(out, p, this.maxEnd - this.minStart);
    out.set(this.bytes.subarray(0, this.len), p);
    return p + this.len;
  }
}

// ---------------------------------------------------------------------------
// Decoded events: columns, no object per event.

export interface EventObject {
  kind: string;
  tid: number;
  pid: number;
  cpu: number;
  startNs: number;
  endNs: number;
  [field: string]: number | string | number[] | Buffer;
}

/** A growable set of events in columns. Reused across queries (call clear()). */
export class EventList {
  count = 0;
  kind = new Uint8Array(0);
  cpu = new Uint32Array(0);
  pid = new Uint32Array(0);
  tid = new Uint32Array(0);
  start = new Float64Array(0);
  end = new Float64Array(0);
  /** numeric per-kind fields: f[j][i] (meaning per kind: see F / KIND_SPECS) */
  f: Float64Array[] = [];
  /** byte fields (comm, addresses, stack frames): blob[blobOff[i] .. + blobLen[i]] */
  blobOff = new Uint32Array(0);
  blobLen = new Uint32Array(0);
  blob: Buffer = Buffer.alloc(0);
  blobUsed = 0;
  capacity = 0;

  constructor(capacity = 1024) {
    this.grow(capacity);
  }

  clear(): this {
    this.count = 0;
    this.blobUsed = 0;
    return this;
  }

  /** Memory held by the columns and the byte-field blob, bytes (~138 per event of capacity with the 12 numeric columns). */
  get byteSize(): number {
    return this.capacity * ROW_BYTES + this.blob.byteLength;
  }

  grow(cap: number): void {
    if (cap <= this.capacity) return;
    // every column is a view on one ArrayBuffer (wider types first, so each view is aligned):
    // one allocation a list instead of 22 (decoding a block into a new list is the common case)
    const buf = new ArrayBuffer(cap * ROW_BYTES);
    let off = 0;
    const col = <T extends Uint8Array | Uint32Array | Float64Array>(old: T, C: new (b: ArrayBuffer, o: number, n: number) => T): T => {
      const a = new C(buf, off, cap);
      off += cap * a.BYTES_PER_ELEMENT;
      if (this.count > 0) a.set(old.subarray(0, this.count) as never);
      return a;
    };
    this.start = col(this.start, Float64Array);
    this.end = col(this.end, Float64Array);
    const f: Float64Array[] = [];
    for (let j = 0; j < NUM_FIELDS; j++) f.push(col(this.f[j] ?? EMPTY_F64, Float64Array));
    this.f = f;
    this.cpu = col(this.cpu, Uint32Array);
    this.pid = col(this.pid, Uint32Array);
    this.tid = col(this.tid, Uint32Array);
    this.blobOff = col(this.blobOff, Uint32Array);
    this.blobLen = col(this.blobLen, Uint32Array);
    this.kind = col(this.kind, Uint8Array);
    this.capacity = cap;
  }

  /** Overwrite row `to` with row `from` (compaction in place; byte fields stay where they are in the blob). */
  moveRow(from: number, to: number): void {
    this.kind[to] = this.kind[from];
    this.cpu[to] = this.cpu[from];
    this.pid[to] = this.pid[from];
    this.tid[to] = this.tid[from];
    this.start[to] = this.start[from];
    this.end[to] = this.end[from];
    this.blobOff[to] = this.blobOff[from];
    this.blobLen[to] = this.blobLen[from];
    for (const f of this.f) f[to] = f[from];
  }

  /** Append row i of another list (fields and byte fields) to this one. */
  appendFrom(src: EventList, i: number): void {
    if (this.count >= this.capacity) this.grow(this.capacity * 2);
    const j = this.count++;
    this.kind[j] = src.kind[i];
    this.cpu[j] = src.cpu[i];
    this.pid[j] = src.pid[i];
    this.tid[j] = src.tid[i];
    this.start[j] = src.start[i];
    this.end[j] = src.end[i];
    const sf = src.f;
    const df = this.f;
    for (let k = 0; k < sf.length; k++) df[k][j] = sf[k][i];
    const n = src.blobLen[i];
    this.blobOff[j] = this.blobUsed;
    this.blobLen[j] = n;
    if (n === 0) return; // most kinds have no byte fields: Buffer.copy's fixed cost is most of a row's
    this.ensureBlob(n);
    src.blob.copy(this.blob, this.blobUsed, src.blobOff[i], src.blobOff[i] + n);
    this.blobUsed += n;
  }

  ensureBlob(n: number): void {
    if (this.blobUsed + n <= this.blob.length) return;
    const nb = Buffer.alloc(Math.max(this.blob.length * 2, this.blobUsed + n, 4096));
    this.blob.copy(nb, 0, 0, this.blobUsed);
    this.blob = nb;
  }

  /** Bytes of a byte field of event i (comm/pcomm/saddr/daddr), by name. Allocates. */
  bytesField(i: number, name: string): Buffer {
    const s = KIND_SPECS[this.kind[i]];
    if (!s) throw new Error('no such kind');
    const c = s.cols.findIndex((x) => x.name === name);
    if (c < 0 || s.blobIdx[c] < 0) throw new Error(`no byte field ${name}`);
    const o = this.blobOff[i] + s.blobIdx[c];
    return this.blob.subarray(o, o + 16);
  }

  /** A comm-like field as a string. */
  str(i: number, name: string): string {
    const b = this.bytesField(i, name);
    const z = b.indexOf(0);
    return b.toString('utf8', 0, z < 0 ? 16 : z);
  }

  /** Stack frames of a stack event (numbers, exact below 2^53), as hex strings (exact). */
  stackHex(i: number): string[] {
    const s = KIND_SPECS[this.kind[i]];
    if (!s?.stack) return [];
    const o = this.blobOff[i] + s.blobSize;
    const n = (this.blobLen[i] - s.blobSize) >>> 3;
    const out: string[] = [];
    for (let k = 0; k < n; k++) out.push('0x' + this.blob.readBigUInt64LE(o + 8 * k).toString(16));
    return out;
  }

  /** One event as a plain object (tests, CLI; not for hot paths). */
  toObject(i: number): EventObject {
    const k = this.kind[i];
    const s = KIND_SPECS[k];
    const o: EventObject = {
      kind: s ? s.name : `kind${k}`, tid: this.tid[i], pid: this.pid[i], cpu: this.cpu[i],
      startNs: this.start[i], endNs: this.end[i],
    };
    if (s) {
      for (let c = 0; c < s.cols.length; c++) {
        const col = s.cols[c];
        if (s.numIdx[c] >= 0) o[col.name] = this.f[s.numIdx[c]][i];
        else if (col.type === Col.STR16) o[col.name] = this.str(i, col.name);
        else o[col.name] = Buffer.from(this.bytesField(i, col.name));
      }
      if (s.stack) o.frames = this.stackHex(i) as unknown as number[];
    }
    return o;
  }

  toObjects(): EventObject[] {
    const out: EventObject[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.toObject(i));
    return out;
  }

  /** Sort events by (start, end) in place (stable). */
  sortByStart(): void {
    const n = this.count;
    let sorted = true;
    for (let i = 1; i < n; i++) {
      if (this.start[i] < this.start[i - 1] || (this.start[i] === this.start[i - 1] && this.end[i] < this.end[i - 1])) {
        sorted = false;
        break;
      }
    }
    if (sorted) return;
    // scratch reused across calls: sorting a freshly decoded block allocates nothing per column
    if (sortIdx.length < n) {
      sortIdx = new Uint32Array(Math.max(n, 4096));
      sortBuf = new ArrayBuffer(sortIdx.length * 8);
    }
    const idx = sortIdx.subarray(0, n);
    const st = this.start;
    const en = this.end;
    // A block comes in end order, so it is nearly sorted by start (only intervals that overlap
    // others are out of place): insertion sort, stable, with a budget of moves; past it, a full sort.
    let moves = 0;
    const budget = 8 * n + 64;
    let i = 0;
    for (; i < n && moves <= budget; i++) {
      const s0 = st[i];
      const e0 = en[i];
      let j = i - 1;
      while (j >= 0 && (st[idx[j]] > s0 || (st[idx[j]] === s0 && en[idx[j]] > e0))) {
        idx[j + 1] = idx[j];
        j--;
      }
      moves += i - 1 - j;
      idx[j + 1] = i;
    }
    if (i < n) {
      for (let k = 0; k < n; k++) idx[k] = k;
      idx.sort((a, b) => st[a] - st[b] || en[a] - en[b] || a - b);
    }
    const f64 = new Float64Array(sortBuf, 0, n);
    const u32 = new Uint32Array(sortBuf, 0, n);
    const u8 = new Uint8Array(sortBuf, 0, n);
    const perm = <T extends Uint8Array | Uint32Array | Float64Array>(a: T, c: T): void => {
      c.set(a.subarray(0, n) as never);
      for (let i = 0; i < n; i++) a[i] = c[idx[i]];
    };
    perm(this.kind, u8); perm(this.cpu, u32); perm(this.pid, u32); perm(this.tid, u32); perm(this.start, f64); perm(this.end, f64);
    perm(this.blobOff, u32); perm(this.blobLen, u32);
    for (const f of this.f) perm(f, f64);
  }
}

/** Block header fields (read without decoding the events). */
export interface BlockHeader {
  /** 1 or 2 (REL columns: see the block layout) */
  version?: number;
  count: number;
  pid: number;
  extent: number;
  /** offset of the first event */
  body: number;
}

export function readBlockHeader(v: Uint8Array, r: ByteReader, out: BlockHeader): boolean {
  if (v.length < 4 || (v[0] !== BLOCK_VERSION && v[0] !== 1)) return false;
  out.version = v[0];
  r.reset(v, 1);
  out.count = r.varint();
  out.pid = r.varint();
  out.extent = r.varint();
  out.body = r.p;
  return true;
}

/**
 * Decode the events of one block (tid `tid`, key minStart `minStart`) into
 * `out`, keeping only those overlapping [a, b] (interval [start, end]
 * overlaps iff start <= b && end >= a) and, when kindMask != 0, whose kind
 * bit is set. Returns the number of events added. `zeroed`: `out`'s rows
 * from its count on are zero (a new list), so unused columns need no clearing.
 */
const decodePrev = new Float64Array(16 * 16);
const decodePrevBytes = new Uint8Array(16 * 2 * 16);

export function decodeBlock(v: Uint8Array, tid: number, a: number, b: number, kindMask: number, out: EventList, r: ByteReader, h: BlockHeader, zeroed = false): number {
  if (!readBlockHeader(v, r, h)) return 0;
  const count = h.count;
  const relV1 = h.version === 1;
  let prevEnd = 0;
  let prevCpu = 0;
  // previous values per (kind, column): reused, zeroed per block
  const prev = decodePrev.fill(0);
  const prevBytes = decodePrevBytes.fill(0);
  let added = 0;
  for (let e = 0; e < count; e++) {
    if (r.p >= r.end) throw new RangeError('truncated block');
    const head = v[r.p++];
    const kind = head & 0x0f;
    const sp = KIND_SPECS[kind];
    if (!sp) throw new RangeError(`bad kind ${kind} in block`);
    const end = prevEnd + unzz(r.varint());
    prevEnd = end;
    const start = sp.interval ? end - r.varint() : end;
    if ((head & 0x10) === 0) prevCpu = r.varint();
    const pid = head & 0x20 ? r.varint() : h.pid;
    const types = sp.types;
    const nc = types.length;
    const mask = r.varint();
    const keep = start <= b && end >= a && (kindMask === 0 || (kindMask & (1 << kind)) !== 0);
    const i = out.count;
    if (keep) {
      if (i >= out.capacity) out.grow(out.capacity * 2);
      out.kind[i] = kind;
      out.cpu[i] = prevCpu;
      out.pid[i] = pid;
      out.tid[i] = tid;
      out.start[i] = start;
      out.end[i] = end;
    }
    const pb = kind * 16;
    const fixedBlob = sp.blobSize;
    let blobAt = 0;
    if (keep) {
      if (fixedBlob > 0 || sp.stack) {
        out.ensureBlob(fixedBlob + 8 * 1024);
        blobAt = out.blobUsed;
        out.blobOff[i] = blobAt;
        out.blobLen[i] = fixedBlob;
      } else {
        out.blobOff[i] = 0;
        out.blobLen[i] = 0;
      }
    }
    const f = out.f;
    const relMask = sp.relMask;
    if (!sp.hasBytes && !sp.stack) {
      // numeric columns only (off-CPU, futex and CUDA records: nearly every event): no byte columns to look for
      const numIdx = sp.numIdx;
      for (let c = 0; c < nc; c++) {
        if (mask & (1 << c)) prev[pb + c] = readColumn(r, types[c], relV1);
        if (keep) {
          const val = prev[pb + c];
          f[numIdx[c]][i] = (relMask >> c) & 1 ? (val === val ? start + val : 0) : val;
        }
      }
      if (keep) {
        if (!zeroed) for (let j = sp.nNum; j < NUM_FIELDS; j++) f[j][i] = 0;
        out.count = i + 1;
        added++;
      }
      continue;
    }
    for (let c = 0; c < nc; c++) {
      const t = types[c];
      if (t === Col.STR16 || t === Col.B16) {
        const slot = (kind * 2 + (sp.blobIdx[c] >>> 4)) * 16;
        if (mask & (1 << c)) {
          prevBytes.fill(0, slot, slot + 16);
          if (t === Col.STR16) {
            const n = v[r.p++];
            for (let k = 0; k < n; k++) prevBytes[slot + k] = v[r.p++];
          } else {
            for (let k = 0; k < 16; k++) prevBytes[slot + k] = v[r.p++];
          }
        }
        if (keep) {
          // a copy by hand: a subarray per field was an allocation per event
          const blob = out.blob;
          const at = blobAt + sp.blobIdx[c];
          for (let k = 0; k < 16; k++) blob[at + k] = prevBytes[slot + k];
        }
        continue;
      }
      if (mask & (1 << c)) prev[pb + c] = readColumn(r, t, relV1);
      if (keep) {
        const val = prev[pb + c];
        f[sp.numIdx[c]][i] = (relMask >> c) & 1 ? (val === val ? start + val : 0) : val;
      }
    }
    if (sp.stack) {
      const n = r.varint();
      if (keep) {
        out.blob.set(v.subarray(r.p, r.p + 8 * n), blobAt + fixedBlob);
        out.blobLen[i] = fixedBlob + 8 * n;
      }
      r.p += 8 * n;
    }
    // byte columns and frames are read without a check per byte: a block cut short shows here
    if (r.p > r.end) throw new RangeError('truncated block');
    if (keep) {
      // zero unused numeric columns so stale values from another kind do not leak (a new list is zero already)
      if (!zeroed) for (let j = sp.nNum; j < NUM_FIELDS; j++) f[j][i] = 0;
      if (out.blobLen[i] > 0) out.blobUsed = blobAt + out.blobLen[i];
      out.count = i + 1;
      added++;
    }
  }
  return added;
}

/** A changed numeric column's value, read at r (REL: NaN when not seen, which decodes as 0). */
function readColumn(r: ByteReader, t: number, relV1: boolean): number {
  const u = r.varint();
  if (t === Col.I32) return unzz(u);
  if (t === Col.U64) return u * TWO32 + r.varint(); // hi, then lo
  if (t === Col.REL) return relV1 ? unzz(u) : u === 0 ? NaN : unzz(u - 1);
  return u;
}

// ---------------------------------------------------------------------------
// Futex index blocks: per (pid, uaddr), the waits and wakes on that lock word.
//   u8 version (2), varint count, varint 0, varint extent
//   event: u8 kind | TID_SAME 0x10, zz end - prevEnd, v dur, v tid (unless TID_SAME)

export const FX_VERSION = 2;

export class FutexBuilder {
  bytes = new Uint8Array(128);
  len = 0;
  count = 0;
  minStart = Infinity;
  maxEnd = -Infinity;
  minEnd = Infinity;
  prevEnd = 0;
  prevTid = -1;
  openedAt = 0;
  openedWall = 0;
  maxDur = 0;
  constructor(public pid: number, public uaddr: number, public partition: number) {}

  reset(partition: number): void {
    this.partition = partition;
    this.len = 0;
    this.count = 0;
    this.minStart = Infinity;
    this.maxEnd = -Infinity;
    this.minEnd = Infinity;
    this.prevEnd = 0;
    this.prevTid = -1;
    this.maxDur = 0;
  }

  append(kind: number, tid: number, start: number, end: number): void {
    if (this.len + 24 > this.bytes.length) {
      const nb = new Uint8Array(this.bytes.length * 2);
      nb.set(this.bytes.subarray(0, this.len));
      this.bytes = nb;
    }
    const b = this.bytes;
    let p = this.len;
    b[p++] = kind | (tid === this.prevTid ? 0x10 : 0);
    p = writeVarint(b, p, zz(end - this.prevEnd));
    this.prevEnd = end;
    p = writeVarint(b, p, end - start);
    if (tid !== this.prevTid) p = writeVarint(b, p, tid);
    this.prevTid = tid;
    this.len = p;
    this.count++;
    if (start < this.minStart) this.minStart = start;
    if (end > this.maxEnd) this.maxEnd = end;
    if (end < this.minEnd) this.minEnd = end;
    if (end - start > this.maxDur) this.maxDur = end - start;
  }

  sealInto(out: Uint8Array, p: number): number {
    out[p++] = FX_VERSION;
    p = writeVarint(out, p, this.count);
    p = writeVarint(out, p, 0);
    p = writeVarint(out, p, this.maxEnd - this.minStart);
    out.set(this.bytes.subarray(0, this.len), p);
    return p + this.len;
  }
}

/** Decode a futex index block into `out` (kind, tid, pid, start, end; f[0] = uaddr). */
export function decodeFutexBlock(v: Uint8Array, pid: number, uaddr: number, a: number, b: number, kindMask: number, out: EventList, r: ByteReader): number {
  if (v.length < 4 || v[0] !== FX_VERSION) return 0;
  r.reset(v, 1);
  const count = r.varint();
  r.varint();
  r.varint();
  let prevEnd = 0;
  let tid = 0;
  let added = 0;
  for (let e = 0; e < count; e++) {
    const head = v[r.p++];
    const kind = head & 0x0f;
    const end = prevEnd + unzz(r.varint());
    prevEnd = end;
    const start = end - r.varint();
    if ((head & 0x10) === 0) tid = r.varint();
    if (start <= b && end >= a && (kindMask === 0 || (kindMask & (1 << kind)) !== 0)) {
      const i = out.count;
      if (i >= out.capacity) out.grow(out.capacity * 2);
      out.kind[i] = kind;
      out.tid[i] = tid;
      out.pid[i] = pid;
      out.cpu[i] = 0;
      out.start[i] = start;
      out.end[i] = end;
      out.blobLen[i] = 0;
      out.blobOff[i] = 0;
      for (let j = 0; j < NUM_FIELDS; j++) out.f[j][i] = 0;
      out.f[0][i] = uaddr;
      out.count = i + 1;
      added++;
    }
  }
  return added;
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, RecordView, type RecordBatch } from '../../src/capture/decoder.js';
import { CudaApi, Kind, KIND_MAX, OffcpuFlag, TaskEvent, OFFCPU, FUTEX_WAIT, TASK } from '../../src/capture/records.js';
import { FrameWriter, ipv4Bytes } from '../helpers/frames.js';

interface Rec {
  kind: number;
  size: number;
  ts: number;
  pid: number;
  tid: number;
  hex: string;
}

/** Push `chunks` through a fresh decoder; collect every record (copied out, batches are reused). */
function decode(chunks: Buffer[]): { recs: Rec[]; d: FrameDecoder; truncated: number } {
  const d = new FrameDecoder();
  const v = new RecordView();
  const recs: Rec[] = [];
  const take = (b: RecordBatch): void => {
    for (let i = 0; i < b.count; i++) {
      v.set(b, i);
      recs.push({ kind: v.kind, size: v.size, ts: v.ts, pid: v.pid, tid: v.tid, hex: v.bytes().toString('hex') });
    }
  };
  for (const c of chunks) for (const b of d.push(c)) take(b);
  const { truncatedBytes } = d.finish();
  return { recs, d, truncated: truncatedBytes };
}

/** Copy into a buffer that starts `misalign` bytes into its ArrayBuffer. */
function unaligned(b: Buffer, misalign: number): Buffer {
  const big = Buffer.alloc(b.length + 8);
  b.copy(big, misalign);
  return big.subarray(misalign, misalign + b.length);
}

/** A little of everything, with u64 values above 2^32 and odd-sized stacks. */
function sampleStream(): { buf: Buffer; n: number } {
  const w = new FrameWriter();
  const T = 5_000_000_123; // > 2^32
  w.hello({ ts: T, monoNs: T, realtimeNs: 1_763_730_000_000_000_000n, ncpu: 2, probePid: 99 });
  w.clock({ ts: T + 1, realtimeNs: 1_763_730_000_000_000_001n, errorNs: 40 });
  for (let i = 0; i < 6; i++) {
    w.offcpu({ ts: T + 1000 * i, pid: 100, tid: 100 + i, cpu: i % 2, startNs: T - 5000, runnableNs: T - 100, flags: OffcpuFlag.WOKEN, wakerTid: 7 });
    w.futexWait({ ts: T + 2000 * i, pid: 100, tid: 101, startNs: T, uaddr: 0x7f00_dead_beefn, op: 0x89, ret: -110 });
    w.stack({ ts: T, pid: 100, tid: 100 + i, startNs: T - 5000, user: new Array(i).fill(0x401000), kernel: [0xffffffff81000000n] });
  }
  w.futexWake({ ts: T + 9, pid: 100, tid: 102, uaddr: 0x1000, ret: 1 });
  w.blockIo({ ts: T + 10, pid: 200, tid: 201, bytes: 4096, comm: 'kworker/0:1' });
  w.tcpRetrans({ ts: T + 11, saddr: ipv4Bytes('10.0.0.1'), daddr: ipv4Bytes('10.0.0.2'), sport: 5000, dport: 80 });
  w.cudaCall({ ts: T + 12, pid: 300, tid: 301, api: CudaApi.CUDA_STREAM_SYNC, startNs: T });
  w.task({ ts: T + 13, pid: 300, tid: 301, event: TaskEvent.NAME, comm: 'python3' });
  w.drops({ ts: T + 14, ring: 0, lost: 3 });
  w.status({ ts: T + 15, group: 2, nAttached: 2, detail: 'futex' });
  w.ack({ ts: T + 16, seq: 1, msg: 'pong' });
  return { buf: w.toBuffer(), n: w.count };
}

test('whole stream: every record, fields read in place', () => {
  const { buf, n } = sampleStream();
  const { recs, d, truncated } = decode([buf]);
  assert.equal(recs.length, n);
  assert.equal(d.records, n);
  assert.equal(d.bytes, buf.length);
  assert.equal(d.inputBytes, buf.length);
  assert.equal(d.corruptBytes, 0);
  assert.equal(d.resyncs, 0);
  assert.equal(d.unknownKinds, 0);
  assert.equal(truncated, 0);
  assert.deepEqual(recs.slice(0, 3).map((r) => r.kind), [Kind.HELLO, Kind.CLOCK, Kind.OFFCPU]);
  assert.equal(recs[0].ts, 5_000_000_123);
  assert.equal(recs[2].tid, 100);
  assert.equal(recs[2].pid, 100);
  // stack records are sized to their frames: 40 + 8 * (i + 1)
  assert.deepEqual(recs.filter((r) => r.kind === Kind.STACK).map((r) => r.size), [48, 56, 64, 72, 80, 88]);
  // the bytes come out unchanged and in order
  assert.equal(recs.map((r) => r.hex).join(''), buf.toString('hex'));
});

test('split at every byte boundary gives identical results', () => {
  const { buf } = sampleStream();
  const want = decode([buf]).recs;
  for (let k = 0; k <= buf.length; k++) {
    const got = decode([buf.subarray(0, k), buf.subarray(k)]);
    assert.deepEqual(got.recs, want, `split at ${k}`);
    assert.equal(got.d.corruptBytes, 0);
    assert.equal(got.truncated, 0);
  }
});

test('three-way splits, 1-byte chunks, random chunkings and unaligned buffers agree', () => {
  const { buf } = sampleStream();
  const want = decode([buf]).recs;
  // every (a, b) with a step: covers a record split across 3 chunks
  for (let a = 0; a < buf.length; a += 7) {
    for (let b = a; b < Math.min(buf.length, a + 200); b += 3) {
      assert.deepEqual(decode([buf.subarray(0, a), buf.subarray(a, b), buf.subarray(b)]).recs, want, `${a},${b}`);
    }
  }
  const ones: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) ones.push(buf.subarray(i, i + 1));
  assert.deepEqual(decode(ones).recs, want);
  let seed = 12345;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let trial = 0; trial < 300; trial++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < buf.length;) {
      const len = 1 + rnd(trial % 2 ? 64 : 900);
      chunks.push(unaligned(buf.subarray(i, i + len), rnd(4)));
      i += len;
    }
    assert.deepEqual(decode(chunks).recs, want, `trial ${trial}`);
  }
});

test('a large chunk (offsets array grows) and many chunks', () => {
  const w = new FrameWriter();
  for (let i = 0; i < 20000; i++) w.cudaCall({ ts: 1e9 + i, tid: i, api: 4, startNs: 1e9 });
  const buf = w.toBuffer();
  const { recs, d } = decode([buf]);
  assert.equal(recs.length, 20000);
  assert.equal(recs[19999].tid, 19999);
  assert.equal(d.bytes, 20000 * 48);
  const chunked: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 65516) chunked.push(buf.subarray(i, i + 65516));
  assert.deepEqual(decode(chunked).recs.map((r) => r.tid), recs.map((r) => r.tid));
});

test('corrupt header in the middle: skipped, counted, decoding resumes at the next record', () => {
  const w = new FrameWriter();
  for (let i = 0; i < 10; i++) w.offcpu({ ts: 1000 + i, tid: i, startNs: 900 });
  const buf = w.toBuffer();
  const bad = Buffer.from(buf);
  bad[4 * OFFCPU.SIZE + 3] = 0x00; // magic of record #4
  const whole = decode([bad]);
  assert.deepEqual(whole.recs.map((r) => r.tid), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
  assert.equal(whole.d.corruptBytes, OFFCPU.SIZE);
  assert.equal(whole.d.resyncs, 1);
  assert.equal(whole.d.records, 9);
  // same at every split point
  for (let k = 0; k <= bad.length; k++) {
    const s = decode([bad.subarray(0, k), bad.subarray(k)]);
    assert.deepEqual(s.recs, whole.recs, `split ${k}`);
    assert.equal(s.d.corruptBytes, OFFCPU.SIZE, `split ${k}`);
    assert.equal(s.d.resyncs, 1);
  }
});

test('garbage between records, bad sizes, too-small known kinds: each a resync', () => {
  const w = new FrameWriter();
  w.task({ ts: 1, tid: 1, event: 1, comm: 'a' });
  const garbage = Buffer.alloc(40, 0xff);
  const w2 = new FrameWriter();
  w2.task({ ts: 2, tid: 2, event: 1, comm: 'b' });
  w2.raw(Kind.OFFCPU, 88, { tid: 66 });
  w2.task({ ts: 3, tid: 3, event: 1, comm: 'c' });
  w2.raw(Kind.FUTEX_WAIT, 32, { tid: 77 }); // a known kind smaller than its struct: corrupt
  w2.task({ ts: 4, tid: 4, event: 1, comm: 'd' });
  const r2 = w2.toBuffer();
  r2.writeUInt16LE(92, TASK.SIZE); // the offcpu's size is not a multiple of 8
  const stream = Buffer.concat([w.toBuffer(), garbage, r2]);
  const want = decode([stream]);
  assert.deepEqual(want.recs.map((r) => r.tid), [1, 2, 3, 4]);
  assert.equal(want.d.resyncs, 3);
  assert.equal(want.d.corruptBytes, 40 + 88 + 32);
  for (let k = 0; k <= stream.length; k += 1) {
    const s = decode([stream.subarray(0, k), stream.subarray(k)]);
    assert.deepEqual(s.recs, want.recs, `split ${k}`);
    assert.equal(s.d.corruptBytes, 40 + 88 + 32, `split ${k}`);
    assert.equal(s.d.resyncs, 3);
  }
});

test('a resync that runs off the end of a chunk skips into the next one', () => {
  // 4 bytes of a bad header, then the split: the 8-byte step lands in the next chunk
  const w = new FrameWriter();
  w.task({ ts: 1, tid: 1, event: 1 });
  const junk = Buffer.alloc(8, 0xee);
  const w2 = new FrameWriter();
  w2.task({ ts: 2, tid: 2, event: 1 });
  const s = Buffer.concat([w.toBuffer(), junk, w2.toBuffer()]);
  for (let k = TASK.SIZE; k <= TASK.SIZE + 8; k++) {
    for (let j = k; j <= TASK.SIZE + 8; j++) {
      const r = decode([s.subarray(0, k), s.subarray(k, j), s.subarray(j)]);
      assert.deepEqual(r.recs.map((x) => x.tid), [1, 2], `${k},${j}`);
      assert.equal(r.d.corruptBytes, 8);
    }
  }
});

test('unknown kinds are skipped by size and counted, never a crash', () => {
  const w = new FrameWriter();
  w.task({ ts: 1, tid: 1, event: 1 });
  w.raw(200, 64, { tid: 9 });
  w.raw(0, 24, { tid: 9 });
  w.raw(KIND_MAX, 4096, { tid: 9 }); // a future kind, max size
  w.task({ ts: 2, tid: 2, event: 1 });
  const buf = w.toBuffer();
  const r = decode([buf]);
  assert.deepEqual(r.recs.map((x) => x.tid), [1, 2]);
  assert.equal(r.d.unknownKinds, 3);
  assert.equal(r.d.corruptBytes, 0);
  assert.equal(r.d.resyncs, 0);
  for (let k = 0; k <= buf.length; k += 5) assert.deepEqual(decode([buf.subarray(0, k), buf.subarray(k)]).recs, r.recs);
});

test('a record cut off at the end is reported as truncated by finish()', () => {
  const { buf, n } = sampleStream();
  const cut = buf.subarray(0, buf.length - 10);
  const r = decode([cut]);
  assert.equal(r.recs.length, n - 1);
  assert.equal(r.truncated, 152 - 10); // the last record is an ACK (152 bytes)
  assert.equal(r.d.truncatedBytes, 142);
  // a partial header (< 4 bytes) too
  const r2 = decode([buf, Buffer.from([0x18, 0x00])]);
  assert.equal(r2.recs.length, n);
  assert.equal(r2.truncated, 2);
  const d = new FrameDecoder();
  d.push(cut);
  assert.equal(d.pendingBytes, 142);
});

test('RecordView reads u64 above 2^32, negative i32, comm, hex', () => {
  const w = new FrameWriter();
  w.futexWait({ ts: 2 ** 52 + 1, pid: 4000000, tid: 4000001, startNs: 2 ** 40, uaddr: 0x7ffd_1234_5678n, op: 0x80, ret: -110, val: 0xffffffff });
  w.task({ ts: 5, tid: 7, event: TaskEvent.EXIT, exitCode: -9, comm: 'a-fifteen-chars', pcomm: 'exactly16bytes!!' });
  const d = new FrameDecoder();
  const [b] = d.push(w.toBuffer());
  const v = new RecordView().set(b, 0);
  assert.equal(v.kind, Kind.FUTEX_WAIT);
  assert.equal(v.ts, 2 ** 52 + 1);
  assert.equal(v.pid, 4000000);
  assert.equal(v.u64(FUTEX_WAIT.start_ns), 2 ** 40);
  assert.equal(v.u64(FUTEX_WAIT.uaddr), 0x7ffd_1234_5678);
  assert.equal(v.hex64(FUTEX_WAIT.uaddr), '0x7ffd12345678');
  assert.equal(v.u64n(FUTEX_WAIT.uaddr), 0x7ffd_1234_5678n);
  assert.equal(v.i32(FUTEX_WAIT.ret), -110);
  assert.equal(v.u32(FUTEX_WAIT.val), 0xffffffff);
  v.set(b, 1);
  assert.equal(v.i32(TASK.exit_code), -9);
  assert.equal(v.comm(TASK.comm), 'a-fifteen-chars');
  // the writer NUL-terminates at 15 bytes, like the kernel's comm
  assert.equal(v.comm(TASK.pcomm), 'exactly16bytes!');
});

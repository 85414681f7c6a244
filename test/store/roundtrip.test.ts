import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameWriter, ipv4Bytes } from '../helpers/frames.js';
import { CudaApi, Kind, KIND_MAX, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { openStoreWriter, openStoreReader, EventList, F } from '../../src/store/index.js';
import { ByteReader, decodeBlock, type BlockHeader } from '../../src/store/codec.js';
import { tempDir, feed } from './util.js';

const T = 5_000_000_123; // > 2^32

test('round trip of every record kind through FrameDecoder -> writer -> reader', async () => {
  const { dir, cleanup } = tempDir('rt');
  try {
    const fw = new FrameWriter();
    fw.hello({ ts: T, monoNs: T, realtimeNs: 1_763_730_000_000_000_000n, ncpu: 2, probePid: 99 });
    fw.clock({ ts: T + 1, realtimeNs: 1_763_730_000_000_000_001n, errorNs: 40 });
    fw.offcpu({ ts: T + 1000, pid: 100, tid: 101, cpu: 1, startNs: T - 5000, runnableNs: T - 100, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX,
      wakerPid: 100, wakerTid: 102, wakerUaddr: 0x7f00_dead_beefn, prevState: 1, preemptPid: 7, preemptTid: 8, lastPid: 9, lastTid: 10, outCpu: 0, wakerCpu: 1 });
    fw.futexWait({ ts: T + 2000, pid: 100, tid: 101, cpu: 1, startNs: T + 1500, uaddr: 0x7f00_dead_beefn, op: 0x89, ret: -110, val: 2, ownerTid: 102, ownerSrc: 2 });
    fw.futexWake({ ts: T + 2100, pid: 100, tid: 102, cpu: 0, startNs: T + 2050, uaddr: 0x7f00_dead_beefn, uaddr2: 0x1234, op: 0x81, ret: 1 });
    fw.blockIo({ ts: T + 3000, pid: 100, tid: 101, startNs: T + 2500, issueNs: T + 2600, sector: 123456789, dev: (8 << 20) | 1, bytes: 4096, flags: 3, error: -5, comm: 'kworker/0:1' });
    fw.tcpRetrans({ ts: T + 3100, pid: 100, tid: 101, saddr: ipv4Bytes('10.0.0.1'), daddr: ipv4Bytes('10.0.0.2'), sport: 5000, dport: 80, state: 1, inIrq: 1, err: -11, sockIno: 987654 });
    fw.cudaCall({ ts: T + 4000, pid: 100, tid: 101, api: CudaApi.CUDA_STREAM_SYNC, startNs: T + 3500, arg: 0x5555_0000, ret: 0 });
    fw.task({ ts: T + 4100, pid: 100, tid: 101, event: TaskEvent.RENAME, startTime: T - 1e9, comm: 'worker-1', pcomm: 'app' });
    fw.stack({ ts: T + 1000, pid: 100, tid: 101, startNs: T - 5000, user: [0x401000, 0x402000], kernel: [0xffffffff81000000n] });
    fw.drops({ ts: T + 5000, ring: 0, lost: 3, records: 100, bytes: 8000 });
    fw.status({ ts: T + 10, group: 2, nAttached: 2, detail: 'futex' });
    fw.ack({ ts: T + 16, seq: 1, msg: 'pong' });
    const w = openStoreWriter(dir);
    await feed(w, fw.toBuffer());
    await w.close();

    const r = openStoreReader(dir);
    const ev = r.eventsOnThread(101, 0, T + 1e9);
    const objs = ev.toObjects();
    const kinds = objs.map((o) => o.kind).sort();
    assert.deepEqual(kinds, ['block_io', 'cuda_call', 'futex_wait', 'offcpu', 'stack', 'task', 'tcp_retrans']);
    const by = (k: string) => objs.find((o) => o.kind === k)!;
    const off = by('offcpu');
    assert.equal(off.startNs, T - 5000);
    assert.equal(off.endNs, T + 1000);
    assert.equal(off.runnableNs, T - 100);
    assert.equal(off.flags, OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX);
    assert.equal(off.wakerTid, 102);
    assert.equal(off.wakerPid, 100);
    assert.equal(off.wakerUaddr, 0x7f00_dead_beef);
    assert.equal(off.preemptTid, 8);
    assert.equal(off.lastTid, 10);
    assert.equal(off.cpu, 1);
    assert.equal(off.pid, 100);
    assert.equal(off.wakerCpu, 1);
    const fwt = by('futex_wait');
    assert.deepEqual([fwt.startNs, fwt.endNs, fwt.uaddr, fwt.op, fwt.ret, fwt.val, fwt.ownerTid, fwt.ownerSrc], [T + 1500, T + 2000, 0x7f00_dead_beef, 0x89, -110, 2, 102, 2]);
    const bio = by('block_io');
    assert.deepEqual([bio.startNs, bio.issueNs, bio.sector, bio.dev, bio.bytes, bio.flags, bio.error, bio.comm], [T + 2500, T + 2600, 123456789, (8 << 20) | 1, 4096, 3, -5, 'kworker/0:1']);
    const tcp = by('tcp_retrans');
    assert.deepEqual([tcp.startNs, tcp.sport, tcp.dport, tcp.state, tcp.inIrq, tcp.err, tcp.sockIno, tcp.family], [T + 3100, 5000, 80, 1, 1, -11, 987654, 2]);
    assert.deepEqual([...(tcp.saddr as Buffer)], ipv4Bytes('10.0.0.1'));
    assert.deepEqual([...(tcp.daddr as Buffer)], ipv4Bytes('10.0.0.2'));
    const cu = by('cuda_call');
    assert.deepEqual([cu.startNs, cu.endNs, cu.api, cu.arg, cu.ret], [T + 3500, T + 4000, CudaApi.CUDA_STREAM_SYNC, 0x5555_0000, 0]);
    const tk = by('task');
    assert.deepEqual([tk.event, tk.startTime, tk.comm, tk.pcomm], [TaskEvent.RENAME, T - 1e9, 'worker-1', 'app']);
    const st = by('stack');
    assert.deepEqual([st.startNs, st.nUser, st.nKernel], [T - 5000, 2, 1]);
    assert.deepEqual(st.frames, ['0x401000', '0x402000', '0xffffffff81000000']);
    // the wake is on tid 102
    const wk = r.eventsOnThread(102, 0, T + 1e9).toObjects();
    assert.equal(wk.length, 1);
    assert.deepEqual([wk[0].kind, wk[0].uaddr, wk[0].uaddr2, wk[0].op, wk[0].ret], ['futex_wake', 0x7f00_dead_beef, 0x1234, 0x81, 1]);
    // futex index by lock word
    const fx = r.futexByUaddr(100, 0x7f00_dead_beef, 0, T + 1e9);
    assert.deepEqual(fx.toObjects().map((o) => [o.kind, o.tid, o.startNs, o.endNs]), [['futex_wait', 101, T + 1500, T + 2000], ['futex_wake', 102, T + 2050, T + 2100]]);
    assert.equal(r.futexWakesByUaddr(100, 0x7f00_dead_beef, 0, T + 1e9).count, 1);
    // clock history reproduces the conversion
    const c = r.clockHistory();
    assert.equal(c.size, 2);
    assert.equal(c.toEpochNs(T + 1001), 1_763_730_000_000_000_000n + 1001n);
    // drops, threads, coverage
    assert.deepEqual(r.dropSamples().map((d) => [d.ring, d.lost, d.records, d.bytes]), [[0, 3, 100, 8000]]);
    assert.equal(r.dropsIn(T, T + 10_000).total, 3);
    const th = r.threadAt(101, T);
    assert.equal(th?.comm, 'worker-1');
    assert.equal(th?.pcomm, 'app');
    const cov = r.coverage(T, T + 4000);
    assert.equal(cov.covered, true);
    assert.equal(r.coverage(T - 1e9, T).covered, false);
    assert.equal(r.coverage(T + 100, T + 200, 'futex').covered, true);
    assert.equal(r.coverage(T + 100, T + 200, 'cuda').fraction, 0);
    assert.equal(r.eventsOfProcess(100, 0, T + 1e9).count, 8);
    void r.root.close();
  } finally {
    cleanup();
  }
});

test('overlap queries at window edges, across block and partition boundaries', async () => {
  const { dir, cleanup } = tempDir('edges');
  try {
    const P = 1e9; // 1 s partitions
    const w = openStoreWriter(dir, { partitionNs: P, blockBytes: 200 }); // tiny blocks: many block boundaries
    const fw = new FrameWriter();
    const tid = 7;
    const a = 10 * P + 500_000_000;
    const b = a + 100_000;
    // filler events on the thread every 10 µs from 9.9 s to 10.7 s: short, many blocks
    const filler: [number, number][] = [];
    for (let t = 9.9 * P; t < 10.7 * P; t += 10_000) {
      fw.cudaCall({ ts: t + 1000, pid: 1, tid, startNs: t, api: 1 });
      filler.push([t, t + 1000]);
    }
    const special: Record<string, [number, number]> = {
      straddleA: [a - 5000, a + 5],
      straddleB: [b - 5, b + 5000],
      contains: [a - 3 * P, b + 2 * P], // starts 3 partitions earlier, ends 2 later
      endsAtA: [a - 700, a],
      endsBeforeA: [a - 700, a - 1],
      startsAfterB: [b + 1, b + 70],
      startsAtB: [b, b + 70],
    };
    for (const [s, e] of Object.values(special)) fw.offcpu({ ts: e, pid: 1, tid, startNs: s });
    fw.tcpRetrans({ ts: a, pid: 1, tid }); // point at a
    fw.tcpRetrans({ ts: b, pid: 1, tid }); // point at b
    fw.tcpRetrans({ ts: b + 1, pid: 1, tid }); // point after b
    // another thread interleaved, must not show up
    fw.offcpu({ ts: a + 10, pid: 1, tid: 8, startNs: a - 10 });
    await feed(w, fw.toBuffer());
    await w.flush();
    const r = w.reader;
    const got = r.eventsOnThread(tid, a, b);
    const offs = got.toObjects().filter((o) => o.kind === 'offcpu').map((o) => [o.startNs, o.endNs]);
    const want = ['contains', 'endsAtA', 'straddleA', 'straddleB', 'startsAtB'].map((k) => special[k]).sort((x, y) => x[0] - y[0]);
    assert.deepEqual(offs, want);
    const tcp = got.toObjects().filter((o) => o.kind === 'tcp_retrans').map((o) => o.endNs);
    assert.deepEqual(tcp, [a, b]);
    const fill = got.toObjects().filter((o) => o.kind === 'cuda_call').map((o) => [o.startNs, o.endNs]);
    assert.deepEqual(fill, filler.filter(([s, e]) => s <= b && e >= a));
    assert.ok(got.toObjects().every((o) => o.tid === tid));
    // brute force over many windows, incl. partition edges
    const all: [number, number][] = [...filler, ...Object.values(special)];
    for (const [qa, qb] of [[10 * P - 1, 10 * P], [10 * P, 10 * P], [9.95 * P, 10.05 * P], [7 * P, 8 * P], [12 * P, 12.1 * P], [a, a], [b, b], [0, 20 * P]]) {
      const n = r.eventsOnThread(tid, qa, qb, new EventList(), 1 << Kind.OFFCPU | 1 << Kind.CUDA_CALL).count;
      assert.equal(n, all.filter(([s, e]) => s <= qb && e >= qa).length, `window ${qa}..${qb}`);
    }
    assert.ok(w.counters.blocks > 20, 'many blocks');
    // one partition per time slot with events (9, 10 and 12 s), in time order
    assert.deepEqual(r.partitions().map((x) => x.fromNs! / P), [9, 10, 12]);
    assert.deepEqual(r.partitions().map((x) => x.idx), [0, 1, 2]);
    await w.close();
  } finally {
    cleanup();
  }
});

test('pid reuse: threadAt picks the incarnation alive at t', async () => {
  const { dir, cleanup } = tempDir('reuse');
  try {
    const w = openStoreWriter(dir);
    const fw = new FrameWriter();
    const s1 = 1e9;
    const s2 = 50e9;
    fw.task({ ts: s1, pid: 4242, tid: 4242, event: TaskEvent.FORK, startTime: s1, comm: 'old', pcomm: 'old', otherPid: 1, otherTid: 1 });
    fw.task({ ts: s1 + 5e9, pid: 4242, tid: 4242, event: TaskEvent.EXEC, startTime: s1, comm: 'old-exec', pcomm: 'old-exec' });
    fw.task({ ts: 20e9, pid: 4242, tid: 4242, event: TaskEvent.EXIT, startTime: s1, comm: 'old-exec', exitCode: 3 });
    fw.task({ ts: s2, pid: 4242, tid: 4242, event: TaskEvent.FORK, startTime: s2, comm: 'new', pcomm: 'new', otherPid: 1, otherTid: 1 });
    fw.offcpu({ ts: s1 + 2e9, pid: 4242, tid: 4242, startNs: s1 + 1e9 });
    fw.offcpu({ ts: s2 + 2e9, pid: 4242, tid: 4242, startNs: s2 + 1e9 });
    await feed(w, fw.toBuffer());
    await w.close();
    const r = openStoreReader(dir);
    assert.equal(r.threadAt(4242, s1 + 1e9)?.comm, 'old');
    assert.equal(r.threadAt(4242, s1 + 1e9)?.startTime, s1);
    assert.equal(r.threadAt(4242, 10e9)?.comm, 'old-exec');
    assert.equal(r.threadAt(4242, 10e9)?.exitCode, 3);
    assert.equal(r.threadAt(4242, 30e9), null); // exited, not yet reused
    assert.equal(r.threadAt(4242, s2 + 1)?.comm, 'new');
    assert.equal(r.threadAt(4242, s2 + 1)?.startTime, s2);
    assert.equal(r.threadAt(4242, s1 - 1), null);
    assert.equal(r.threadIncarnations(4242).length, 2);
    assert.deepEqual(r.threadAt(4242, 10e9)?.names.map((n) => n[1]), ['old', 'old-exec']);
    void r.root.close();
  } finally {
    cleanup();
  }
});

test('corrupt and unknown records are skipped and counted, never a crash', async () => {
  const { dir, cleanup } = tempDir('corrupt');
  try {
    const w = openStoreWriter(dir);
    const fw = new FrameWriter();
    fw.offcpu({ ts: 2e9, pid: 1, tid: 5, startNs: 1e9 });
    fw.offcpu({ ts: 1e9, pid: 1, tid: 5, startNs: 2e9 }); // end < start
    fw.futexWait({ ts: 3e9, pid: 1, tid: 5, startNs: 0 }); // start 0
    fw.cudaCall({ ts: 2n ** 60n, pid: 1, tid: 5, startNs: 1e9 }); // 2^53 ns past the store's origin (0)
    fw.raw(KIND_MAX, 48, { ts: 4e9, tid: 5 }); // unknown to the decoder
    fw.raw(Kind.OFFCPU, 32, { ts: 4e9, tid: 5 }); // too short for its kind (decoder drops)
    const good = fw.toBuffer();
    const junk = Buffer.alloc(64, 0xb5); // garbage bytes in the stream
    const tail = new FrameWriter().offcpu({ ts: 6e9, pid: 1, tid: 5, startNs: 5e9 }).toBuffer();
    const d = await feed(w, Buffer.concat([good, junk, tail]));
    await w.flush();
    const objs = w.reader.eventsOnThread(5, 0, 1e10).toObjects();
    assert.deepEqual(objs.map((o) => [o.startNs, o.endNs]), [[1e9, 2e9], [5e9, 6e9]]);
    assert.equal(w.counters.badValue, 2);
    assert.equal(w.counters.outOfRange, 1);
    assert.ok(d.unknownKinds + d.corruptBytes > 0);
    // an unknown kind that reaches the sink (a decoder newer than the store) is counted
    const fake = new FrameWriter().raw(KIND_MAX, 48, { ts: 7e9, tid: 5 }).toBuffer();
    const u32 = new Uint32Array(fake.buffer, fake.byteOffset, fake.length / 4);
    w.onBatch({ buf: fake, u32, offsets: new Uint32Array([0]), count: 1 } as never);
    assert.equal(w.counters.unknownKind, 1);
    await w.close();
    const r = openStoreReader(dir);
    assert.equal(r.skipCounters().badValue, 2);
    assert.equal(r.skipCounters().outOfRange, 1);
    void r.root.close();
  } finally {
    cleanup();
  }
});

test('a stored block cut short is refused (RangeError), never decoded from bytes past its end', async () => {
  const { dir, cleanup } = tempDir('rt-cut');
  try {
    const fw = new FrameWriter();
    fw.hello({ ts: T, monoNs: T, realtimeNs: 1_763_730_000_000_000_000n, ncpu: 2, probePid: 99 });
    for (let k = 0; k < 20; k++) {
      const t = T + k * 100_000;
      // multi-byte fields (u64 lock words, 2^32+ times, negative returns) next to one-byte ones
      fw.offcpu({ ts: t + 1000, pid: 100, tid: 101, cpu: k % 2, startNs: t - 5000 * k, runnableNs: k % 3 ? t - 100 : 0, flags: OffcpuFlag.WOKEN,
        wakerPid: 100, wakerTid: 102 + k, wakerUaddr: 0x7f00_dead_beefn + BigInt(k), prevState: 1, preemptPid: 7, preemptTid: 8, lastPid: 9, lastTid: 10 + k, outCpu: 0, wakerCpu: 1 });
      fw.futexWait({ ts: t + 2000, pid: 100, tid: 101, cpu: 1, startNs: t + 1500, uaddr: 0x7f00_dead_beefn, op: 0x89, ret: -110, val: k, ownerTid: 102, ownerSrc: 2 });
      fw.blockIo({ ts: t + 3000, pid: 100, tid: 101, startNs: t + 2500, issueNs: t + 2600, sector: 123456789 + k, dev: 8, bytes: 4096, flags: 3, error: 0, comm: `kworker/${k}` });
      fw.stack({ ts: t + 1000, pid: 100, tid: 101, startNs: t - 5000, user: [0x401000 + k], kernel: [0xffffffff81000000n] });
    }
    const w = openStoreWriter(dir);
    await feed(w, fw.toBuffer());
    await w.close();
    const r = openStoreReader(dir);
    const rd = new ByteReader();
    const h: BlockHeader = { count: 0, pid: 0, extent: 0, body: 0 };
    let blocks = 0;
    for (const pm of r.partitions()) {
      const db = r.partitionDb(pm.idx)!;
      for (const { key, value } of db.getRange({})) {
        const k = key as Buffer;
        // thread blocks: [u32 tid][u64 minStart][u32 seq] (futex index blocks start 0xFFFFFFFE)
        if (k.length !== 16 || k.readUInt32BE(0) !== 101) continue;
        const v = Uint8Array.from(value as Buffer);
        const whole = new EventList(16);
        assert.ok(decodeBlock(v, 101, -Infinity, Infinity, 0, whole, rd, h) > 40);
        blocks++;
        for (let cut = h.body; cut < v.length; cut++) {
          assert.throws(() => decodeBlock(v.subarray(0, cut), 101, -Infinity, Infinity, 0, new EventList(16), rd, h), RangeError, `block cut at ${cut} of ${v.length}`);
        }
      }
    }
    assert.ok(blocks >= 1, 'blocks of tid 101 read');
    await r.root.close();
  } finally {
    cleanup();
  }
});

// The store's head: the writer's own reader answers from what is ingested
// (open blocks, sealed blocks waiting for their commit), exactly as it will
// once committed; time after the ingest watermark is unknown, never on-CPU.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameWriter } from '../helpers/frames.js';
import { Kind, OffcpuFlag, OwnerSrc, TaskEvent } from '../../src/capture/records.js';
import { explainTrace } from '../../src/correlator/index.js';
import { openStoreReader, openStoreWriter, type StoreWriter } from '../../src/store/index.js';
import { EPOCH0, MS, T0, W0, span, sum, tr } from '../correlator/util.js';
import { feed, tempDir } from './util.js';

const PID = 100;
const A = 101;
const B = 102;
const HOG = 900;
const PROBE = 4242;
const M1 = 0x7f00_0000_1000;

/** A two-hop lock chain (A waits on M1 held by B, B preempted by a hog), 20 such requests 100 ms apart, then DRAINED. */
function frames(drainedAt: number, n = 20): FrameWriter {
  const fw = new FrameWriter();
  fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: B, event: TaskEvent.NAME, startTime: 2, comm: 'holder', pcomm: 'app' });
  fw.task({ ts: W0 - 100 * MS, pid: HOG, tid: HOG, event: TaskEvent.NAME, startTime: 3, comm: 'hog', pcomm: 'hog' });
  for (let k = 0; k < n; k++) {
    const W = W0 + k * 100 * MS;
    fw.futexWait({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: B, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 69.9 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
    fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: B, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG, outCpu: 0, cpu: 0 });
    fw.futexWake({ ts: W + 69.9 * MS, pid: PID, tid: B, startNs: W + 69.8 * MS, uaddr: M1, op: 0x81, ret: 1 });
    // the hog gets preempted by kspan's own probe now and then
    fw.offcpu({ ts: W + 90 * MS, pid: HOG, tid: HOG, startNs: W + 85 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: PROBE, preemptTid: PROBE });
  }
  fw.raw(Kind.DRAINED, 24, { ts: drainedAt });
  return fw;
}

const spans = (n = 20) => Array.from({ length: n }, (_, k) => span(k + 1, W0 + k * 100 * MS, W0 + k * 100 * MS + 80 * MS, {
  traceId: tr(k + 1), tid: A, pid: PID,
}));

/** A writer that keeps blocks open (no age flush) and never commits on its own timer. */
function headWriter(dir: string): StoreWriter {
  return openStoreWriter(dir, { maxAgeMs: 3_600_000, roundMs: 3_600_000, roundBytes: 1 << 30, retentionEveryMs: 0 });
}

test('head: explain on the writer reader is the same before the commit, while sealed blocks commit, after flush, and from another process view', async () => {
  const { dir, cleanup } = tempDir('head-same');
  const N = 20;
  const end = W0 + N * 100 * MS;
  let open: ReturnType<typeof explainTrace>[] = [];
  const w = headWriter(dir);
  try {
    await feed(w, frames(end + 1 * MS + 2 * MS, N).toBuffer());
    await w.reader.spans.putSpans(spans(N));
    assert.equal(w.counters.committedEvents, 0, 'nothing committed yet: every event is in open blocks');
    open = Array.from({ length: N }, (_, k) => explainTrace(w.reader, tr(k + 1)));
    // the answers are right from the head alone
    const e = open[7].spans[0];
    assert.equal(e.breakdown_ns.futex, 59.9 * MS);
    assert.equal(sum(e.breakdown_ns), 80 * MS);
    assert.equal(e.breakdown_ns.unknown, 0);
    assert.equal(e.data_quality!.settling, undefined);
    const lock = e.causes.find((c) => c.kind === 'lock_contention')!;
    assert.deepEqual(lock.culprit, { pid: PID, tid: B, comm: 'holder' });
    assert.ok(lock.chain.some((s) => s.step === 'preempted_by' && s.pid === HOG), JSON.stringify(lock.chain));

    // sealed and handed to LMDB, not committed yet: flush() seals synchronously, commits later
    const flushed = w.flush();
    const sealed = Array.from({ length: N }, (_, k) => explainTrace(w.reader, tr(k + 1)));
    assert.deepEqual(sealed, open);
    await flushed;
    assert.ok(w.counters.committedEvents > 0);
    const after = Array.from({ length: N }, (_, k) => explainTrace(w.reader, tr(k + 1)));
    assert.deepEqual(after, open);
  } finally {
    await w.close();
  }
  // a reader process's view (read-only environment) of the closed store: the same answers
  const r = openStoreReader(dir);
  try {
    const ro = Array.from({ length: N }, (_, k) => explainTrace(r, tr(k + 1)));
    assert.deepEqual(ro, open);
  } finally {
    await r.root.close();
    cleanup();
  }
});

/** The waiter A named, and off CPU [W0+10, W0+30] ms (blocked, woken by B at +29). */
function waiterOffCpu10to30(): FrameWriter {
  const fw = new FrameWriter();
  fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
  fw.offcpu({ ts: W0 + 30 * MS, pid: PID, tid: A, startNs: W0 + 10 * MS, runnableNs: W0 + 29 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: B });
  return fw;
}

test('head: time after the ingest watermark is unknown and settling, never on CPU; it fills in when ingested', async () => {
  const { dir, cleanup } = tempDir('head-wm');
  const w = headWriter(dir);
  try {
    const W = W0;
    // A is off CPU [W+10, W+30] (known), then the probe has drained up to W+51 ms (watermark W+50 after the 1 ms slop)
    const fw = waiterOffCpu10to30();
    fw.raw(Kind.DRAINED, 24, { ts: W + 51 * MS });
    await feed(w, fw.toBuffer());
    await w.reader.spans.putSpans([span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
    assert.equal(w.ingestWatermarkNs, W + 50 * MS);
    let s = explainTrace(w.reader, tr(1)).spans[0];
    assert.equal(s.data_quality!.settling, true);
    assert.equal(s.data_quality!.not_ingested_ns, 50 * MS);
    assert.deepEqual(s.breakdown_ns, { on_cpu: 30 * MS, runqueue: 1 * MS, futex: 0, io: 0, sleep: 19 * MS, cuda_sync: 0, unknown: 50 * MS });
    assert.match(s.data_quality!.notes.join('\n'), /last 50\.0ms of the window were not yet ingested/);

    // a wait in the second half, then the probe drains past the span: all of it is known
    const fw2 = new FrameWriter();
    fw2.offcpu({ ts: W + 90 * MS, pid: PID, tid: A, startNs: W + 60 * MS, runnableNs: W + 89 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: B });
    fw2.raw(Kind.DRAINED, 24, { ts: W + 120 * MS });
    await feed(w, fw2.toBuffer());
    s = explainTrace(w.reader, tr(1)).spans[0];
    assert.equal(s.data_quality!.settling, undefined);
    assert.deepEqual(s.breakdown_ns, { on_cpu: 50 * MS, runqueue: 2 * MS, futex: 0, io: 0, sleep: 48 * MS, cuda_sync: 0, unknown: 0 });
  } finally {
    await w.close();
    cleanup();
  }
});

test('head: records the kernel ring lost are known at the watermark (DRAINED carries the loss counters); the gap that may hide one is unknown, before and after the commit', async () => {
  const { dir, cleanup } = tempDir('head-loss');
  const w = headWriter(dir);
  try {
    const W = W0;
    const fw = waiterOffCpu10to30();
    fw.drained({ ts: W + 40 * MS, lostTs: W + 41 * MS, lost: [0, 0, 0] });
    // 5 sched records lost in (W+41, W+61]: one may be an interval of A that ended there
    fw.drained({ ts: W + 60 * MS, lostTs: W + 61 * MS, lost: [5, 0, 0] });
    fw.offcpu({ ts: W + 80 * MS, pid: PID, tid: A, startNs: W + 70 * MS, runnableNs: W + 79 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: B });
    fw.drained({ ts: W + 120 * MS, lostTs: W + 121 * MS, lost: [5, 0, 0] });
    await feed(w, fw.toBuffer());
    await w.reader.spans.putSpans([span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
    // A's seen intervals: [10, 30] and [70, 80]; the gap [30, 70] reaches into the loss window: [30, 61] unknown
    const want = { on_cpu: 39 * MS, runqueue: 2 * MS, futex: 0, io: 0, sleep: 28 * MS, cuda_sync: 0, unknown: 31 * MS };
    const check = (s: ReturnType<typeof explainTrace>['spans'][number], where: string): void => {
      assert.deepEqual(s.breakdown_ns, want, where);
      assert.equal(s.data_quality!.lost_events, 5, where);
      assert.equal(s.data_quality!.lost_known, true, where);
      assert.equal(s.data_quality!.lost_unknown_ns, 31 * MS, where);
      assert.equal(s.data_quality!.settling, undefined, where);
    };
    // the unchanged reading at W+121 is only in the head: the daemon's reader knows the losses through it
    assert.equal(w.reader.latestDropSample(0)?.ts, W + 121 * MS);
    check(explainTrace(w.reader, tr(1)).spans[0], 'head');
    await w.flush();
    const ro = openStoreReader(dir);
    try {
      // committed: the moved counter with the reading before it, and the latest reading (the commit's)
      assert.deepEqual(ro.dropSamples(0).map((x) => [x.ts - W, x.lost]), [[41 * MS, 0], [61 * MS, 5], [121 * MS, 5]]);
      check(explainTrace(ro, tr(1)).spans[0], 'committed');
    } finally {
      void ro.root.close();
    }
  } finally {
    await w.close();
    cleanup();
  }
});

test('head: the observer (kspan\'s probe) is named as such when it takes the CPU; a process-shared lock holder is named with its own pid', async () => {
  const { dir, cleanup } = tempDir('head-observer');
  const w = headWriter(dir);
  const OTHER = 300;
  const H = 301;
  try {
    const W = W0;
    const fw = new FrameWriter();
    fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
    fw.task({ ts: W - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
    fw.task({ ts: W - 100 * MS, pid: OTHER, tid: H, event: TaskEvent.NAME, startTime: 2, comm: 'holder', pcomm: 'other' });
    fw.task({ ts: W - 100 * MS, pid: PROBE, tid: PROBE, event: TaskEvent.NAME, startTime: 3, comm: 'kspan-probe', pcomm: 'kspan-probe' });
    // preempted 20 ms by the probe
    fw.offcpu({ ts: W + 30 * MS, pid: PID, tid: A, startNs: W + 10 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: PROBE, preemptTid: PROBE, outCpu: 0, cpu: 0 });
    // a process-shared mutex (not FUTEX_PRIVATE) held by H of another process: 40 ms, H on CPU all along (it exists: named)
    fw.futexWait({ ts: W + 80 * MS, pid: PID, tid: A, startNs: W + 40 * MS, uaddr: M1, op: 0x0, val: 2, ownerTid: H, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 80 * MS, pid: PID, tid: A, startNs: W + 40 * MS, runnableNs: W + 80 * MS, prevState: 1, flags: OffcpuFlag.IN_FUTEX });
    fw.offcpu({ ts: W + 200 * MS, pid: OTHER, tid: H, startNs: W + 150 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
    fw.raw(Kind.DRAINED, 24, { ts: W + 300 * MS });
    await feed(w, fw.toBuffer());
    await w.reader.spans.putSpans([span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
    const s = explainTrace(w.reader, tr(1)).spans[0];
    const cpu = s.causes.find((c) => c.kind === 'cpu_preemption')!;
    assert.deepEqual(cpu.culprit, { pid: PROBE, tid: PROBE, comm: 'kspan-probe', observer: true });
    assert.match(cpu.summary, /kspan itself/);
    assert.match(cpu.remediation, /kspan's own capture/);
    const lock = s.causes.find((c) => c.kind === 'lock_contention')!;
    assert.deepEqual(lock.culprit, { pid: OTHER, tid: H, comm: 'holder' });
    const tl = lock.chain.find((x) => x.step === 'timeline')!;
    assert.equal(tl.pid, OTHER);
    assert.equal(tl.on_cpu_ns, 40 * MS);
    assert.equal(tl.unknown_ns, 0);
  } finally {
    await w.close();
    cleanup();
  }
});

test('head: a lock holder capture never saw (no events, not in the thread directory) is unknown in the chain, not on CPU', async () => {
  const { dir, cleanup } = tempDir('head-unseen');
  const w = headWriter(dir);
  try {
    const W = W0;
    const fw = new FrameWriter();
    fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000 });
    fw.task({ ts: W - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
    fw.futexWait({ ts: W + 80 * MS, pid: PID, tid: A, startNs: W + 40 * MS, uaddr: M1, op: 0x0, val: 2, ownerTid: 777, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 80 * MS, pid: PID, tid: A, startNs: W + 40 * MS, runnableNs: W + 80 * MS, prevState: 1, flags: OffcpuFlag.IN_FUTEX });
    fw.raw(Kind.DRAINED, 24, { ts: W + 300 * MS });
    await feed(w, fw.toBuffer());
    await w.reader.spans.putSpans([span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
    const lock = explainTrace(w.reader, tr(1)).spans[0].causes.find((c) => c.kind === 'lock_contention')!;
    // a shared (non-private) word's owner tid with no directory entry: its process is not guessed
    assert.deepEqual(lock.culprit, { pid: 0, tid: 777, comm: '' });
    const tl = lock.chain.find((x) => x.step === 'timeline')!;
    assert.equal(tl.on_cpu_ns, 0);
    assert.equal(tl.unknown_ns, 40 * MS);
    assert.equal(tl.unseen, true);
  } finally {
    await w.close();
    cleanup();
  }
});

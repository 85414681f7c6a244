import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CudaApi, OffcpuFlag, OwnerSrc, TaskEvent } from '../../src/capture/records.js';
import { explainTrace, explainWindow, formatExplanation, parseServiceProcess, severityOf, type Cause, type Explanation } from '../../src/correlator/index.js';
import { ipv4Bytes } from '../helpers/frames.js';
import { MS, W0, buildStore, epoch, span, sp, sum, tr } from './util.js';

const PID = 100;
const A = 101;
const B = 102;
const HOG = 900;
const M1 = 0x7f00_0000_1000;
const M2 = 0x7f00_0000_2000;
const o = {};
const cause = (e: Explanation, kind: string, i = 0): Cause | undefined => e.spans[i].causes.find((c) => c.kind === kind);

test('breakdown: every part, intervals straddling both window edges, sums exactly to the duration', async () => {
  const W = W0;
  const st = await buildStore('breakdown', (fw) => {
    fw.task({ ts: W - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
    fw.task({ ts: W - 500 * MS, pid: HOG, tid: HOG + 1, event: TaskEvent.NAME, startTime: 2, comm: 'hog', pcomm: 'hog' });
    fw.task({ ts: W - 500 * MS, pid: 300, tid: 301, event: TaskEvent.NAME, startTime: 3, comm: 'other', pcomm: 'other' });
    // straddles the start: sleep [W-5, W+5] (timer), runqueue [W+5, W+8] (CPU held by 301)
    fw.offcpu({ ts: W + 8 * MS, pid: PID, tid: A, startNs: W - 5 * MS, runnableNs: W + 5 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ, lastPid: 300, lastTid: 301, cpu: 1 });
    // preempted [W+20, W+30] by the hog
    fw.offcpu({ ts: W + 30 * MS, pid: PID, tid: A, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1, cpu: 1 });
    // futex: wait [W+40, W+55], blocked [W+41, W+54], runqueue 1 ms
    fw.futexWait({ ts: W + 55 * MS, pid: PID, tid: A, startNs: W + 40 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: B, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 55 * MS, pid: PID, tid: A, startNs: W + 41 * MS, runnableNs: W + 54 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
    // D state [W+60, W+69] with own block I/O in flight, runqueue 1 ms
    fw.blockIo({ ts: W + 68.9 * MS, pid: PID, tid: A, startNs: W + 60.5 * MS, issueNs: W + 60.6 * MS, sector: 8, dev: (8 << 20) | 1, bytes: 4096, flags: 1, comm: 'req' });
    fw.offcpu({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 60 * MS, runnableNs: W + 69 * MS, prevState: 2, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
    // cudaStreamSynchronize [W+80, W+95]: off CPU [W+85, W+89.5] blocked + 0.5 ms runqueue, spinning the other 10 ms
    fw.cudaCall({ ts: W + 95 * MS, pid: PID, tid: A, startNs: W + 80 * MS, api: CudaApi.CUDA_STREAM_SYNC, arg: 0x10 });
    fw.offcpu({ ts: W + 90 * MS, pid: PID, tid: A, startNs: W + 85 * MS, runnableNs: W + 89.5 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
    for (let k = 0; k < 5; k++) fw.cudaCall({ ts: W + (71 + k) * MS + 10_000 * (k + 1), pid: PID, tid: A, startNs: W + (71 + k) * MS, api: CudaApi.CUDA_LAUNCH_KERNEL });
    // straddles the end: preempted [W+98, W+110] by the hog
    fw.offcpu({ ts: W + 110 * MS, pid: PID, tid: A, startNs: W + 98 * MS, flags: OffcpuFlag.RESCHED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1 });
  }, [span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    assert.equal(e.found, true);
    const s = e.spans[0];
    assert.equal(s.duration_ns, 100 * MS);
    assert.equal(s.start_unix_nano, epoch(W).toString());
    assert.deepEqual(s.correlation, { method: 'thread', pid: PID, tid: A, reason: 'span carries linux.tid and process.pid' });
    assert.deepEqual(s.breakdown_ns, {
      on_cpu: 41 * MS, runqueue: 17.5 * MS, futex: 13 * MS, io: 9 * MS, sleep: 5 * MS, cuda_sync: 14.5 * MS, unknown: 0,
    });
    assert.equal(sum(s.breakdown_ns), s.duration_ns);
    // causes ranked by time
    assert.deepEqual(s.causes.map((c) => [c.kind, c.duration_ns]), [
      ['cpu_preemption', 17.5 * MS], ['cuda_sync', 14.5 * MS], ['lock_contention', 13 * MS], ['io_wait', 9 * MS], ['sleep', 5 * MS],
    ]);
    const pre = cause(e, 'cpu_preemption')!;
    assert.deepEqual(pre.culprit, { pid: HOG, tid: HOG + 1, comm: 'hog' });
    assert.equal(pre.share, 0.175);
    assert.equal(pre.severity, 'medium');
    assert.deepEqual(pre.culprits!.map((c) => [c.tid, c.duration_ns]), [[HOG + 1, 12 * MS], [301, 3 * MS], [0, 2.5 * MS]]);
    assert.match(pre.remediation, /pid 900 \(hog, tid 901\) took the CPU for 12\.0ms of this request on CPU 1/);
    assert.equal(pre.evidence[0].duration_ns, 10 * MS);
    assert.equal(pre.evidence[0].start_unix_nano, epoch(W + 20 * MS).toString());
    const lock = cause(e, 'lock_contention')!;
    assert.deepEqual(lock.culprit, { pid: PID, tid: B, comm: '' });
    assert.equal(lock.chain[0].step, 'futex_wait');
    assert.equal(lock.chain[0].uaddr, '0x7f0000001000');
    assert.equal(lock.chain[1].step, 'held_by');
    assert.equal(lock.chain[1].source, 'glibc_mutex');
    const io = cause(e, 'io_wait')!;
    assert.equal(io.culprit, null);
    assert.equal(io.evidence[0].kind, 'block_io');
    assert.equal(io.evidence[0].dev, '8:1');
    assert.equal((io.details as { bytes: number }).bytes, 4096);
    const cu = cause(e, 'cuda_sync')!;
    assert.equal((cu.details as { on_cpu_spin_ns: number }).on_cpu_spin_ns, 10 * MS);
    assert.equal((cu.details as { launch_p50_ns: number }).launch_p50_ns, 30_000);
    assert.equal((cu.details as { launch_p99_ns: number }).launch_p99_ns, 50_000);
    assert.equal(cu.severity, 'medium');
    assert.equal(cause(e, 'sleep')!.severity, 'medium'); // 5 ms = 5%: medium is share >= 0.05 and >= 1 ms
    assert.equal(e.data_quality.covered, true);
    assert.equal(e.data_quality.offcpu_threshold_ns, 50_000);
    assert.match(formatExplanation(e), /cpu_preemption/);
  } finally {
    st.cleanup();
  }
});

test('severity rules', () => {
  assert.equal(severityOf(5 * MS, 0.2), 'high');
  assert.equal(severityOf(4.9 * MS, 0.9), 'medium');
  assert.equal(severityOf(0.9 * MS, 0.9), 'low');
  assert.equal(severityOf(100 * MS, 0.049), 'low');
  assert.equal(severityOf(1 * MS, 0.05), 'medium');
});

test('two-hop chain: A waits on M held by B, B preempted by a pinned hog', async () => {
  const W = W0;
  const st = await buildStore('twohop', (fw) => {
    fw.task({ ts: W - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
    fw.task({ ts: W - 100 * MS, pid: PID, tid: B, event: TaskEvent.NAME, startTime: 2, comm: 'holder', pcomm: 'app' });
    fw.task({ ts: W - 100 * MS, pid: HOG, tid: HOG, event: TaskEvent.NAME, startTime: 3, comm: 'hog', pcomm: 'hog' });
    fw.futexWait({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: B, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 69.9 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
    // B: preempted by the hog for 30 ms in the middle of the wait, on CPU the rest
    fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: B, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG, outCpu: 0, cpu: 0 });
    fw.futexWake({ ts: W + 69.9 * MS, pid: PID, tid: B, startNs: W + 69.8 * MS, uaddr: M1, op: 0x81, ret: 1 });
  }, [span(1, W, W + 80 * MS, { tid: A, pid: PID })]);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    const s = e.spans[0];
    assert.equal(sum(s.breakdown_ns), s.duration_ns);
    assert.equal(s.breakdown_ns.futex, 59.9 * MS);
    const top = s.causes[0];
    assert.equal(top.kind, 'lock_contention');
    assert.equal(top.duration_ns, 59.9 * MS);
    assert.equal(top.severity, 'high');
    assert.deepEqual(top.culprit, { pid: PID, tid: B, comm: 'holder' });
    const steps = top.chain.map((c) => [c.step, c.depth, c.tid]);
    assert.deepEqual(steps, [['futex_wait', 0, A], ['held_by', 0, B], ['timeline', 1, B], ['preempted_by', 1, HOG]]);
    const tl = top.chain[2];
    assert.equal(tl.window_ns, 59.9 * MS);
    assert.equal(tl.runqueue_ns, 30 * MS);
    assert.equal(tl.on_cpu_ns, 29.9 * MS);
    const pre = top.chain[3];
    assert.deepEqual([pre.pid, pre.comm, pre.duration_ns, pre.cpu], [HOG, 'hog', 30 * MS, '0']);
    assert.match(top.summary, /held by tid 102 \(holder, pid 100\), which was itself preempted for 30\.0ms by pid 900 \(hog\)/);
    assert.match(top.remediation, /pid 900 \(hog\)/);
    assert.match(e.summary, /lock_contention/);
    const text = formatExplanation(e);
    assert.match(text, /preempted by tid 900 \(hog, pid 900\) for 30\.0ms/);
    // depth bound
    const e0 = explainTrace(st.reader, tr(1), { ...o, maxDepth: 0 });
    assert.deepEqual(e0.spans[0].causes[0].chain.map((c) => c.step), ['futex_wait', 'held_by', 'depth_limit']);
  } finally {
    st.cleanup();
  }
});

test('wakeup cycle: A woken by B, B woken by A -> the chain stops with a cycle step', async () => {
  const W = W0;
  const st = await buildStore('cycle', (fw) => {
    fw.futexWait({ ts: W + 50 * MS, pid: PID, tid: A, startNs: W + 10 * MS, uaddr: M1, op: 0x80 });
    fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 50 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
    fw.futexWait({ ts: W + 45 * MS, pid: PID, tid: B, startNs: W + 15 * MS, uaddr: M2, op: 0x80 });
    fw.offcpu({ ts: W + 45 * MS, pid: PID, tid: B, startNs: W + 15 * MS, runnableNs: W + 45 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: A, wakerUaddr: M2 });
  }, [span(1, W, W + 60 * MS, { tid: A, pid: PID })]);
  try {
    const e = explainTrace(st.reader, tr(1), { ...o, maxDepth: 10 });
    const top = e.spans[0].causes[0];
    assert.equal(top.kind, 'lock_contention');
    assert.equal(top.duration_ns, 40 * MS);
    assert.deepEqual(top.culprit?.tid, B);
    assert.deepEqual(top.chain.map((c) => [c.step, c.depth, c.tid ?? null]), [
      ['futex_wait', 0, A], ['woken_by', 0, B], ['timeline', 1, B],
      ['futex_wait', 1, B], ['woken_by', 1, A], ['cycle', 2, A],
    ]);
    assert.equal(top.chain[1].source, 'futex_wake');
    assert.equal(top.chain[3].duration_ns, 30 * MS);
  } finally {
    st.cleanup();
  }
});

test('missing data: window partly after the end of capture is unknown; lost records reported', async () => {
  const W = W0;
  const st = await buildStore('missing', (fw) => {
    fw.drops({ ts: W - 10 * MS, ring: 0, lost: 0, records: 10 });
    fw.offcpu({ ts: W + 60 * MS, pid: PID, tid: A, startNs: W + 55 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
    fw.drops({ ts: W + 70 * MS, ring: 0, lost: 7, records: 100 });
    fw.drops({ ts: W + 120 * MS, ring: 0, lost: 7, records: 120 });
  }, [
    span(1, W + 50 * MS, W + 150 * MS, { tid: A, pid: PID }),
    span(2, W + 200 * MS, W + 210 * MS, { tid: A, pid: PID }),
  ], W + 100 * MS);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    const [s1, s2] = e.spans;
    // 7 records lost in (W-10, W+70]: the gaps of tid A's seen intervals that reach into it, [50, 55] and
    // [60, 70], may hide a lost interval (unknown, not on CPU); after W+70 nothing was lost (W+120 says so)
    assert.deepEqual(s1.breakdown_ns, { on_cpu: 30 * MS, runqueue: 5 * MS, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 65 * MS });
    assert.equal(s1.data_quality!.lost_unknown_ns, 15 * MS);
    assert.ok(s1.data_quality!.notes.some((n) => /15\.0ms with no off-CPU record counted as unknown.*lost 7 record/.test(n)), JSON.stringify(s1.data_quality!.notes));
    assert.equal(s1.data_quality!.covered, false);
    assert.equal(s1.data_quality!.coverage, 0.5);
    assert.equal(s1.data_quality!.lost_events, 7);
    assert.deepEqual(s2.breakdown_ns, { on_cpu: 0, runqueue: 0, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 10 * MS });
    assert.deepEqual(s2.causes, []);
    assert.equal(e.data_quality.covered, false);
    assert.equal(e.data_quality.lost_events, 7);
    assert.match(e.summary, /Capture covered 0\.0% of the least-covered span/);
  } finally {
    st.cleanup();
  }
});

test('lost records: a gap is cut where the thread is seen running (its futex wake, its CUDA calls); CUDA-ring losses count only for threads that make CUDA calls', async () => {
  const W = W0;
  const st = await buildStore('loss-cuts', (fw) => {
    // A: off CPU [10, 30] and [70, 80], a futex wake at 45 (it ran then); B: off CPU [10, 30] and [70, 80], no other record
    for (const tid of [A, B]) {
      fw.offcpu({ ts: W + 30 * MS, pid: PID, tid, startNs: W + 10 * MS, runnableNs: W + 30 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: HOG });
      fw.offcpu({ ts: W + 80 * MS, pid: PID, tid, startNs: W + 70 * MS, runnableNs: W + 80 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: HOG });
    }
    fw.futexWake({ ts: W + 75 * MS, pid: PID, tid: A, startNs: W + 45 * MS, uaddr: M1, op: 0x81, ret: 1 });
    // C makes a CUDA call at [20, 20.01]; C and D never leave the CPU as far as the sched ring says
    fw.cudaCall({ ts: W + 20.01 * MS, pid: PID + 1, tid: 301, startNs: W + 20 * MS, api: CudaApi.CUDA_LAUNCH_KERNEL, ret: 0 });
    // sched ring: 2 lost in (51, 61]; CUDA ring: 3 lost in (85, 90]; readings run past the spans
    fw.drops({ ts: W + 51 * MS, ring: 0, lost: 0 }).drops({ ts: W + 61 * MS, ring: 0, lost: 2 }).drops({ ts: W + 200 * MS, ring: 0, lost: 2 });
    fw.drops({ ts: W + 85 * MS, ring: 2, lost: 0 }).drops({ ts: W + 90 * MS, ring: 2, lost: 3 }).drops({ ts: W + 200 * MS, ring: 2, lost: 3 });
  }, [
    span(1, W, W + 100 * MS, { tid: A, pid: PID }),
    span(2, W, W + 100 * MS, { tid: B, pid: PID }),
    span(3, W, W + 100 * MS, { tid: 301, pid: PID + 1 }),
    span(4, W, W + 100 * MS, { tid: 302, pid: PID + 1 }),
  ]);
  try {
    const [a, b, c, d] = explainTrace(st.reader, tr(1), o).spans;
    // B: the gap [30, 70] reaches into (51, 61]: [30, 61] unknown
    assert.equal(b.data_quality!.lost_unknown_ns, 31 * MS);
    assert.equal(b.breakdown_ns.unknown, 31 * MS);
    // A ran at 45: a lost interval of A lies in [45, 70], so only [45, 61] is unknown
    assert.equal(a.data_quality!.lost_unknown_ns, 16 * MS);
    assert.equal(a.breakdown_ns.on_cpu, 100 * MS - 30 * MS - 16 * MS);
    // C (CUDA calls): its one gap after its call at 20.01 reaches (51, 61] and (85, 90]: [20.01, 90] unknown
    assert.equal(c.data_quality!.lost_unknown_ns, 100 * MS - 20.01 * MS - 10 * MS);
    // D (no CUDA call): only the sched ring's window: [0, 61]
    assert.equal(d.data_quality!.lost_unknown_ns, 61 * MS);
    for (const s of [a, b, c, d]) assert.equal(sum(s.breakdown_ns), s.duration_ns);
  } finally {
    st.cleanup();
  }
});

test('a preemptor that execs during the window is named as it was while it held the CPU longest', async () => {
  const W = W0;
  const st = await buildStore('exec-culprit', (fw) => {
    // the hog starts as a shell and execs its workload at W+12 ms
    fw.task({ ts: W + 1 * MS, pid: 700, tid: 700, event: TaskEvent.NAME, startTime: W, comm: 'sh', pcomm: 'sh' });
    fw.task({ ts: W + 12 * MS, pid: 700, tid: 700, event: TaskEvent.EXEC, startTime: W, comm: 'cpu_hog', pcomm: 'cpu_hog' });
    // A waits 2 ms for the CPU while the shell runs, then 40 ms while the workload does
    fw.offcpu({ ts: W + 10 * MS, pid: PID, tid: A, startNs: W + 8 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: 700, preemptTid: 700 });
    fw.offcpu({ ts: W + 60 * MS, pid: PID, tid: A, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: 700, preemptTid: 700 });
  }, [span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
  try {
    const [s] = explainTrace(st.reader, tr(1), o).spans;
    const pre = s.causes.find((c) => c.kind === 'cpu_preemption');
    assert.ok(pre, JSON.stringify(s.causes.map((c) => c.kind)));
    assert.deepEqual([pre.culprit?.pid, pre.culprit?.comm, pre.duration_ns], [700, 'cpu_hog', 42 * MS]);
  } finally {
    st.cleanup();
  }
});

test('pid reuse: a culprit tid is named after the incarnation alive at the time', async () => {
  const W = W0;
  const st = await buildStore('pidreuse', (fw) => {
    fw.task({ ts: W - 900 * MS, pid: 700, tid: 701, event: TaskEvent.NAME, startTime: W - 900 * MS, comm: 'oldhog', pcomm: 'oldhog' });
    fw.offcpu({ ts: W + 20 * MS, pid: PID, tid: A, startNs: W + 10 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: 700, preemptTid: 701 });
    fw.task({ ts: W + 100 * MS, pid: 700, tid: 701, event: TaskEvent.EXIT, startTime: W - 900 * MS, comm: 'oldhog', pcomm: 'oldhog' });
    fw.task({ ts: W + 200 * MS, pid: 701, tid: 701, event: TaskEvent.NAME, startTime: W + 150 * MS, comm: 'newhog', pcomm: 'newhog' });
    fw.offcpu({ ts: W + 320 * MS, pid: PID, tid: A, startNs: W + 310 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: 701, preemptTid: 701 });
  }, [
    span(1, W, W + 50 * MS, { tid: A, pid: PID }),
    span(2, W + 300 * MS, W + 350 * MS, { tid: A, pid: PID }),
  ]);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    assert.deepEqual(e.spans[0].causes[0].culprit, { pid: 700, tid: 701, comm: 'oldhog' });
    assert.deepEqual(e.spans[1].causes[0].culprit, { pid: 701, tid: 701, comm: 'newhog' });
    assert.equal(e.spans[0].causes[0].severity, 'high');
  } finally {
    st.cleanup();
  }
});

test('pid reuse: events of another incarnation of the tid (other pid) are not joined', async () => {
  const W = W0;
  const st = await buildStore('tidreuse', (fw) => {
    // A of process PID exists (capture named it) but has no events in the window: on CPU throughout
    fw.task({ ts: W - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
    fw.offcpu({ ts: W + 20 * MS, pid: 555, tid: A, startNs: W + 10 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
  }, [span(1, W, W + 50 * MS, { tid: A, pid: PID }), span(2, W, W + 50 * MS, { tid: B, pid: PID })]);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    const s = e.spans[0];
    assert.equal(s.breakdown_ns.runqueue, 0);
    assert.equal(s.breakdown_ns.on_cpu, 50 * MS);
    // B: no events and never seen by capture: its time is unknown, not on CPU
    assert.deepEqual(e.spans[1].breakdown_ns, { on_cpu: 0, runqueue: 0, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 50 * MS });
  } finally {
    st.cleanup();
  }
});

test('process join: pid only -> per-thread sums scaled to the span, shared causes with the concurrent span count', async () => {
  const W = W0;
  const st = await buildStore('process', (fw) => {
    for (const t of [101, 102, 103, 104]) fw.task({ ts: W - 100 * MS, pid: PID, tid: t, event: TaskEvent.NAME, startTime: t, comm: `w${t}`, pcomm: 'engine' });
    fw.task({ ts: W - 100 * MS, pid: HOG, tid: HOG, event: TaskEvent.NAME, startTime: 1, comm: 'hog', pcomm: 'hog' });
    // 101: preempted 40 ms; 102: 20 ms futex wait woken by 103; 103: on CPU; 104: idle the whole window
    fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: 101, startNs: W + 10 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
    fw.futexWait({ ts: W + 40 * MS, pid: PID, tid: 102, startNs: W + 20 * MS, uaddr: M1, op: 0x80 });
    fw.offcpu({ ts: W + 40 * MS, pid: PID, tid: 102, startNs: W + 20 * MS, runnableNs: W + 40 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: 103, wakerUaddr: M1 });
    fw.cudaCall({ ts: W + 5 * MS, pid: PID, tid: 103, startNs: W + 4.99 * MS, api: CudaApi.CUDA_LAUNCH_KERNEL });
    fw.offcpu({ ts: W + 500 * MS, pid: PID, tid: 104, startNs: W - 500 * MS, runnableNs: W + 499 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
  }, [
    span(1, W, W + 100 * MS, { pid: PID, service: 'engine' }),
    span(2, W + 50 * MS, W + 200 * MS, { pid: PID, service: 'engine' }), // overlaps
    span(3, W - 50 * MS, W + 1 * MS, { pid: PID, service: 'engine', traceId: tr(2) }), // overlaps, other trace
    span(4, W + 300 * MS, W + 400 * MS, { pid: PID, service: 'engine', traceId: tr(2) }), // after
    span(5, W, W + 100 * MS, { pid: 4242, service: 'engine', traceId: tr(2) }), // other replica
    span(6, W, W + 100 * MS, { service: 'engine', processId: String(PID), traceId: tr(3) }),
    span(7, W, W + 100 * MS, { service: 'mapped', traceId: tr(4) }),
    span(8, W, W + 100 * MS, { service: 'nothing', traceId: tr(5) }),
  ]);
  try {
    const e = explainTrace(st.reader, tr(1), o);
    const s = e.spans[0];
    assert.equal(s.correlation.method, 'process');
    assert.equal(s.correlation.pid, PID);
    assert.equal(s.correlation.tid, null);
    assert.equal(s.data_quality!.threads_joined, 4);
    assert.equal(s.data_quality!.threads_active, 3);
    assert.deepEqual(s.breakdown_thread_ns, { on_cpu: 240 * MS, runqueue: 40 * MS, futex: 20 * MS, io: 0, sleep: 0, cuda_sync: 0, unknown: 0 });
    assert.equal(sum(s.breakdown_ns), 100 * MS);
    assert.deepEqual(s.breakdown_ns, { on_cpu: 80 * MS, runqueue: 13333333, futex: 6666667, io: 0, sleep: 0, cuda_sync: 0, unknown: 0 });
    for (const c of s.causes) {
      assert.equal(c.shared, true);
      assert.equal(c.concurrent_spans, 4); // spans 1, 2, 3 and 6 (vllm.process_id = the same pid); not 4 (after) nor 5 (other pid)
    }
    const pre = s.causes.find((c) => c.kind === 'cpu_preemption')!;
    assert.equal(pre.thread_time_ns, 40 * MS);
    assert.equal(pre.duration_ns, 13333333);
    assert.equal(pre.culprit?.pid, HOG);
    const lock = s.causes.find((c) => c.kind === 'lock_contention')!;
    assert.equal(lock.culprit?.tid, 103);
    // vllm.process_id
    assert.equal(explainTrace(st.reader, tr(3), o).spans[0].correlation.method, 'process');
    assert.equal(explainTrace(st.reader, tr(3), o).spans[0].correlation.pid, PID);
    // service -> process name mapping
    const m = explainTrace(st.reader, tr(4), { ...o, serviceProcess: { mapped: 'engine' } }).spans[0];
    assert.deepEqual([m.correlation.method, m.correlation.pid], ['process', PID]);
    assert.equal(m.causes[0].concurrent_spans, 1);
    // nothing known
    const n = explainTrace(st.reader, tr(5), o);
    assert.deepEqual([n.spans[0].correlation.method, n.spans[0].correlation.pid, n.spans[0].correlation.tid], ['none', null, null]);
    assert.deepEqual(n.spans[0].breakdown_ns, { on_cpu: 0, runqueue: 0, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 100 * MS });
    assert.deepEqual(n.spans[0].causes, []);
    assert.match(n.summary, /could be joined/);
  } finally {
    st.cleanup();
  }
});

test('healthy baseline: pure CPU work with short blips gets nothing above low', async () => {
  const W = W0;
  const st = await buildStore('healthy', (fw) => {
    for (let k = 0; k < 5; k++) {
      fw.offcpu({ ts: W + (20 * k + 10.2) * MS, pid: PID, tid: A, startNs: W + (20 * k + 10) * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
    }
    fw.offcpu({ ts: W + 55.3 * MS, pid: PID, tid: A, startNs: W + 55 * MS, runnableNs: W + 55.25 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_SOFTIRQ });
  }, [span(1, W, W + 100 * MS, { attributes: { 'thread.id': A, 'process.pid': PID } })]);
  try {
    // thread.id is the OS tid only when declared so (the conventions define it as the runtime's id)
    assert.equal(explainTrace(st.reader, tr(1), o).spans[0].correlation.method, 'process');
    const e = explainTrace(st.reader, tr(1), { ...o, threadIdIsOsTid: true });
    const s = e.spans[0];
    assert.equal(s.correlation.method, 'thread');
    assert.equal(s.correlation.tid, A);
    assert.equal(sum(s.breakdown_ns), s.duration_ns);
    assert.equal(s.breakdown_ns.on_cpu, 98.7 * MS);
    assert.ok(s.causes.length > 0);
    for (const c of s.causes) assert.equal(c.severity, 'low', `${c.kind} ${c.severity}`);
    assert.match(e.summary, /No kernel-side cause above low severity/);
  } finally {
    st.cleanup();
  }
});

test('network retransmits on the span peer tuple (recorded on another task, softirq)', async () => {
  const W = W0;
  const st = await buildStore('retrans', (fw) => {
    fw.offcpu({ ts: W + 60 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 60 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_SOFTIRQ });
    fw.tcpRetrans({ ts: W + 30 * MS, pid: 555, tid: 556, saddr: ipv4Bytes('10.0.0.1'), daddr: ipv4Bytes('10.0.0.2'), sport: 40000, dport: 80, inIrq: 1 });
    fw.tcpRetrans({ ts: W + 31 * MS, pid: 555, tid: 556, saddr: ipv4Bytes('10.0.0.1'), daddr: ipv4Bytes('10.0.0.9'), sport: 40001, dport: 80, inIrq: 1 });
  }, [span(1, W, W + 80 * MS, { tid: A, pid: PID, attributes: { 'network.peer.address': '10.0.0.2', 'network.peer.port': 80 } })]);
  try {
    const s = explainTrace(st.reader, tr(1), o).spans[0];
    const c = s.causes[0];
    assert.equal(c.kind, 'network_retransmit');
    assert.equal(c.duration_ns, 50 * MS);
    assert.equal(c.evidence.length, 1);
    assert.equal(c.evidence[0].dport, 80);
    assert.equal(c.severity, 'high');
    assert.equal(s.breakdown_ns.sleep, 50 * MS); // the breakdown keeps it as sleep
    assert.equal(s.causes.find((x) => x.kind === 'sleep'), undefined);
  } finally {
    st.cleanup();
  }
});

test('explainWindow: a tid window and a pid window, same shape; unknown trace -> found:false', async () => {
  const W = W0;
  const st = await buildStore('window', (fw) => {
    fw.task({ ts: W - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
    fw.offcpu({ ts: W + 30 * MS, pid: PID, tid: A, startNs: W + 10 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG });
  }, []);
  try {
    const e = explainWindow(st.reader, { tid: A, fromUnixNano: epoch(W), toUnixNano: epoch(W + 50 * MS) }, o);
    assert.equal(e.found, true);
    assert.equal(e.spans.length, 1);
    const s = e.spans[0];
    assert.deepEqual([s.correlation.method, s.correlation.pid, s.correlation.tid], ['thread', PID, A]);
    assert.equal(s.span_id, sp(0));
    assert.deepEqual(s.breakdown_ns, { on_cpu: 30 * MS, runqueue: 20 * MS, futex: 0, io: 0, sleep: 0, cuda_sync: 0, unknown: 0 });
    assert.equal(s.causes[0].kind, 'cpu_preemption');
    const p = explainWindow(st.reader, { pid: PID, fromUnixNano: epoch(W), toUnixNano: epoch(W + 50 * MS) }, o);
    assert.equal(p.spans[0].correlation.method, 'process');
    assert.equal(p.spans[0].causes[0].shared, true);
    assert.equal(sum(p.spans[0].breakdown_ns), 50 * MS);
    const nf = explainTrace(st.reader, tr(99), o);
    assert.equal(nf.found, false);
    assert.deepEqual(nf.spans, []);
    assert.match(formatExplanation(nf), /not found/);
    // a finished capture (closed session) has nothing still arriving: never settling
    assert.equal(p.spans[0].data_quality!.settling, undefined);
  } finally {
    st.cleanup();
  }
});

test('cuda_sync remediation: a launch-latency tail only when it is long in absolute terms', async () => {
  for (const [tailUs, expectTail] of [[8, false], [500, true]] as const) {
    const W = W0;
    const st = await buildStore(`cuda-tail-${tailUs}`, (fw) => {
      fw.task({ ts: W - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
      // 20 launches: 18 of 1 µs, 2 of tailUs; then a 30 ms sync
      for (let k = 0; k < 20; k++) {
        const d = k < 18 ? 1_000 : tailUs * 1_000;
        fw.cudaCall({ ts: W + (1 + k) * MS + d, pid: PID, tid: A, startNs: W + (1 + k) * MS, api: CudaApi.CUDA_LAUNCH_KERNEL });
      }
      fw.cudaCall({ ts: W + 60 * MS, pid: PID, tid: A, startNs: W + 30 * MS, api: CudaApi.CUDA_STREAM_SYNC, arg: 0x10 });
    }, [span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
    try {
      const c = cause(explainTrace(st.reader, tr(1), o), 'cuda_sync');
      assert.ok(c, 'a cuda_sync cause');
      assert.equal(/long tail/.test(c.remediation), expectTail, `p99 ${tailUs} µs: ${c.remediation}`);
    } finally {
      st.cleanup();
    }
  }
});

test('parseServiceProcess: SERVICE=COMM arguments for the process join; malformed ones are refused', () => {
  assert.deepEqual(parseServiceProcess(['vllm=VLLM::EngineCore', 'api=python3']), { vllm: 'VLLM::EngineCore', api: 'python3' });
  assert.deepEqual(parseServiceProcess(undefined), {});
  for (const bad of ['vllm', '=x', 'vllm=']) assert.throws(() => parseServiceProcess([bad]), /SERVICE=COMM/);
});

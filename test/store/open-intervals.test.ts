// An off-CPU interval is recorded at its switch-in, so a thread still off CPU
// at the watermark has no record yet. The probe's blocked-task snapshots
// (KSPAN_BLOCKED) say which intervals are still open; the writer keeps them
// (head, then LMDB rows until the switch-in is committed), and explain counts
// that time off CPU by its kind, not on CPU. Here: a process join over a
// worker that ran, then blocked and was still blocked at the watermark.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameWriter } from '../helpers/frames.js';
import { Group, Kind, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { explainTrace, explainWindow } from '../../src/correlator/index.js';
import { F, openStoreReader, openStoreWriter, type StoreWriter } from '../../src/store/index.js';
import { scanEvents } from '../../src/store/queries.js';
import { perfettoTraceJson } from '../../src/perfetto/index.js';
import { EPOCH0, MS, T0, W0, epoch, span, tr } from '../correlator/util.js';
import { feed, tempDir } from './util.js';

const PID = 100;
const A = 101;
const WAKER = 102;
const PROBE = 4242;

/** A writer that keeps blocks open and commits only when told. */
function headWriter(dir: string): StoreWriter {
  return openStoreWriter(dir, { maxAgeMs: 3_600_000, roundMs: 3_600_000, roundBytes: 1 << 30, retentionEveryMs: 0 });
}

/**
 * Worker A of process PID: off CPU [W0-50, W0+10] ms (recorded), on CPU until
 * W0+40, then blocked (S state) and still blocked at the snapshot at W0+101
 * that precedes the watermark W0+102.
 */
function frames(): FrameWriter {
  const fw = new FrameWriter();
  fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'worker', pcomm: 'app' });
  fw.offcpu({ ts: W0 + 10 * MS, pid: PID, tid: A, startNs: W0 - 50 * MS, runnableNs: W0 + 10 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: WAKER });
  fw.blocked({ ts: W0 + 101 * MS, pid: PID, tid: A, cpu: 1, startNs: W0 + 40 * MS, prevState: 1 });
  fw.raw(Kind.DRAINED, 24, { ts: W0 + 103 * MS });
  return fw;
}

const SPAN = span(1, W0, W0 + 100 * MS, { traceId: tr(1), tid: null, pid: PID });
const RIGHT = { on_cpu: 30 * MS, runqueue: 0, futex: 0, io: 0, sleep: 70 * MS, cuda_sync: 0, unknown: 0 };

test('open intervals: a worker still blocked at the watermark reads as sleeping, not on CPU, from the head, from committed rows, and once its switch-in comes', async () => {
  const { dir, cleanup } = tempDir('open-iv');
  const w = headWriter(dir);
  try {
    await feed(w, frames().toBuffer());
    await w.reader.spans.putSpans([SPAN]);
    assert.equal(w.ingestWatermarkNs, W0 + 102 * MS);
    // the writer's own reader: the head's open interval
    let s = explainTrace(w.reader, tr(1)).spans[0];
    assert.equal(s.correlation.method, 'process');
    assert.deepEqual(s.breakdown_ns, RIGHT, 'blocked from +40 ms to the span\'s end (was on CPU before the snapshots)');
    const sleep = s.causes.find((c) => c.kind === 'sleep')!;
    assert.ok(sleep.evidence.some((e) => e.open === true), JSON.stringify(sleep.evidence));
    // the event scans behind the MCP tools (query_off_cpu) list it, flagged, up to the watermark
    const seen: [number, number, number][] = [];
    await scanEvents(w.reader, { a: W0, b: W0 + 200 * MS, kindMask: 1 << Kind.OFFCPU, pid: PID, open: true }, (l) => {
      for (let i = 0; i < l.count; i++) seen.push([l.start[i], l.end[i], l.f[F.offcpu.flags][i] & OffcpuFlag.OPEN]);
    });
    assert.deepEqual(seen, [[W0 - 50 * MS, W0 + 10 * MS, 0], [W0 + 40 * MS, W0 + 102 * MS, OffcpuFlag.OPEN]]);
    // and the Perfetto export draws it as a sleep to the window's end, not as running
    const pf = JSON.parse((await perfettoTraceJson(w.reader, { tid: A, fromUnixNano: epoch(W0), toUnixNano: epoch(W0 + 100 * MS) })).json) as
      { traceEvents: { name: string; tid?: number; dur?: number; args?: Record<string, unknown> }[] };
    const sl = pf.traceEvents.filter((e) => e.tid === A && e.name === 'sleep (S)');
    assert.deepEqual(sl.map((e) => [Math.round(e.dur!), String(e.args?.flags).split('|').includes('open')]), [[10_000, false], [60_000, true]], JSON.stringify(sl));

    // committed: another process's reader (no head) has the row, and the same answer
    await w.flush();
    const ro = openStoreReader(dir);
    try {
      assert.deepEqual(ro.openIntervals(A).map((o) => [o.start, o.runnable]), [[W0 + 40 * MS, 0]]);
      assert.deepEqual(explainTrace(ro, tr(1)).spans[0].breakdown_ns, RIGHT);
    } finally {
      await ro.root.close();
    }

    // woken at +150 ms and still waiting for a CPU at the next snapshot: the row learns the waking
    const fw2 = new FrameWriter();
    fw2.blocked({ ts: W0 + 160 * MS, pid: PID, tid: A, startNs: W0 + 40 * MS, runnableNs: W0 + 150 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: WAKER });
    fw2.raw(Kind.DRAINED, 24, { ts: W0 + 162 * MS });
    await feed(w, fw2.toBuffer());
    // thread A's window [+100, +160] (a span on A ended elsewhere, or explain_window): not on CPU at all
    const win = explainWindow(w.reader, { tid: A, fromUnixNano: epoch(W0 + 100 * MS), toUnixNano: epoch(W0 + 160 * MS) }).spans[0];
    assert.deepEqual(win.breakdown_ns, { on_cpu: 0, runqueue: 0, futex: 0, io: 0, sleep: 50 * MS, cuda_sync: 0, unknown: 10 * MS },
      'blocked until the waking, then waiting for a CPU held by whom no record says: unknown');
    // and the process join over it: A did not run there, so it is not an active thread
    await w.reader.spans.putSpans([span(2, W0 + 100 * MS, W0 + 160 * MS, { traceId: tr(2), tid: null, pid: PID })]);
    s = explainTrace(w.reader, tr(2)).spans[0];
    assert.equal(s.data_quality!.threads_active, 0, JSON.stringify(s.data_quality));

    // its switch-in at +170 ms: the record supersedes the row, the answer is unchanged, and the row goes once committed
    const fw3 = new FrameWriter();
    fw3.offcpu({ ts: W0 + 170 * MS, pid: PID, tid: A, startNs: W0 + 40 * MS, runnableNs: W0 + 150 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: WAKER, lastPid: 7, lastTid: 7 });
    fw3.raw(Kind.DRAINED, 24, { ts: W0 + 200 * MS });
    await feed(w, fw3.toBuffer());
    assert.deepEqual(w.reader.openIntervals(A), [], 'the head has no open interval of A');
    assert.deepEqual(explainTrace(w.reader, tr(1)).spans[0].breakdown_ns, RIGHT);
    await w.flush();
    const ro2 = openStoreReader(dir);
    try {
      assert.deepEqual(ro2.openIntervals(A), [], 'the row is deleted with the commit of the switch-in');
      assert.deepEqual(explainTrace(ro2, tr(1)).spans[0].breakdown_ns, RIGHT);
    } finally {
      await ro2.root.close();
    }
  } finally {
    await w.close();
    cleanup();
  }
});

test('open intervals: one still open when the capture ends stays stored and ends with its session', async () => {
  const { dir, cleanup } = tempDir('open-iv-end');
  const w = headWriter(dir);
  try {
    await feed(w, frames().toBuffer());
    await w.reader.spans.putSpans([SPAN]);
    await w.flush(); // committed through the watermark, as the daemon's rounds do
  } finally {
    await w.close(); // the session ends there
  }
  const r = openStoreReader(dir);
  try {
    const [sess] = r.sessions();
    assert.equal(sess.closed, true);
    assert.equal(r.openIntervals(A).length, 1);
    assert.deepEqual(explainTrace(r, tr(1)).spans[0].breakdown_ns, RIGHT);
  } finally {
    await r.root.close();
    cleanup();
  }
});

for (const reported of [false, true]) {
  test(`open intervals: after the ring lost records following its last report, the interval is ${reported ? 'trusted again once the probe reports it again (it does after a loss)' : 'not trusted past the loss (its switch-in may be what was lost)'}`, async () => {
    const { dir, cleanup } = tempDir('open-iv-loss');
    const w = headWriter(dir);
    try {
      const fw = new FrameWriter();
      fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
      fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'worker', pcomm: 'app' });
      fw.drained({ ts: W0 - 10 * MS, lostTs: W0 - 10 * MS, lost: [0, 0, 0] });
      fw.offcpu({ ts: W0 + 10 * MS, pid: PID, tid: A, startNs: W0 - 50 * MS, runnableNs: W0 + 10 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: WAKER });
      fw.blocked({ ts: W0 + 101 * MS, pid: PID, tid: A, startNs: W0 + 40 * MS, prevState: 1 });
      fw.drained({ ts: W0 + 103 * MS, lostTs: W0 + 103 * MS, lost: [0, 0, 0] });
      // 5 records lost in (+103, +150]; no report of A since
      fw.drained({ ts: W0 + 150 * MS, lostTs: W0 + 150 * MS, lost: [5, 0, 0] });
      if (reported) fw.blocked({ ts: W0 + 190 * MS, pid: PID, tid: A, startNs: W0 + 40 * MS, prevState: 1 });
      fw.drained({ ts: W0 + 201 * MS, lostTs: W0 + 201 * MS, lost: [5, 0, 0] });
      await feed(w, fw.toBuffer());
      await w.reader.spans.putSpans([span(3, W0, W0 + 190 * MS, { traceId: tr(3), tid: null, pid: PID })]);
      const s = explainTrace(w.reader, tr(3)).spans[0];
      if (reported) {
        // still open at +190: asleep from +40 to the end
        assert.deepEqual(s.breakdown_ns, { on_cpu: 30 * MS, runqueue: 0, futex: 0, io: 0, sleep: 160 * MS, cuda_sync: 0, unknown: 0 });
      } else {
        // asleep to the loss window's start, unknown through it, then (no record says otherwise) on CPU, as any thread after a loss
        assert.deepEqual(s.breakdown_ns, { on_cpu: 70 * MS, runqueue: 0, futex: 0, io: 0, sleep: 73 * MS, cuda_sync: 0, unknown: 47 * MS });
      }
    } finally {
      await w.close();
      cleanup();
    }
  });
}

// Without the probe's `blocked` group where the data ends (an older probe,
// `--groups` without it, the iterator refused or a walk failing), an interval
// still open there was never recorded: the explanation says so instead of
// letting an on-CPU reading pass for seen.
const NOTE = /threads still off CPU where this capture's data ends \(the watermark\) could not be seen \(blocked-task snapshots (.*)\): such a thread reads as on CPU/;
for (const [name, statuses, want] of [
  ['the group attached', [[Group.BLOCKED, 0, 'iter/task walk before each watermark']], null],
  ['no blocked group (a probe before ABI 5)', [], 'not captured: a probe before ABI 5, or --groups without blocked'],
  ['a walk failing at the watermark', [[Group.BLOCKED, 0, 'iter/task walk before each watermark'], [Group.BLOCKED, -5, 'walk failed: Input/output error']], 'failing (walk failed: Input/output error)'],
  ['walks working again', [[Group.BLOCKED, 0, 'x'], [Group.BLOCKED, -5, 'walk failed: Input/output error'], [Group.BLOCKED, 0, 'walks work again']], null],
  ['the group detached with sched (then sched back)', [[Group.BLOCKED, 0, 'x'], [Group.BLOCKED, 1, 'detached with the sched group'], [Group.SCHED, 1, 'detached on request'], [Group.SCHED, 0, '']], 'detached'],
] as [string, [number, number, string][], string | null][]) {
  test(`open intervals: the explanation says when still-open intervals could not be seen: ${name}`, async () => {
    const { dir, cleanup } = tempDir('open-iv-blind');
    const w = headWriter(dir);
    try {
      const fw = new FrameWriter();
      fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE, abiVersion: 5 });
      fw.status({ ts: T0 + 1, group: Group.TASK, err: 0, nAttached: 5 });
      fw.status({ ts: T0 + 2, group: Group.SCHED, err: 0, nAttached: 3 });
      statuses.forEach(([group, err, detail], i) => fw.status({ ts: W0 - 50 * MS + i * MS, group, err, nAttached: err === 0 ? 1 : 0, detail }));
      fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'worker', pcomm: 'app' });
      fw.offcpu({ ts: W0 + 10 * MS, pid: PID, tid: A, startNs: W0 - 50 * MS, runnableNs: W0 + 10 * MS, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: WAKER });
      fw.drained({ ts: W0 + 103 * MS, lostTs: W0 + 103 * MS, lost: [0, 0, 0] });
      await feed(w, fw.toBuffer());
      await w.reader.spans.putSpans([SPAN]);
      const notes = explainTrace(w.reader, tr(1)).spans[0].data_quality!.notes;
      const m = notes.map((n) => NOTE.exec(n)).find((x) => x);
      assert.equal(m?.[1] ?? null, want, notes.join(' | '));
      // a span with no join cannot read as on CPU: no such note
      await w.reader.spans.putSpans([span(9, W0, W0 + 100 * MS, { traceId: tr(9), tid: null, pid: null })]);
      assert.ok(!explainTrace(w.reader, tr(9)).spans[0].data_quality!.notes.some((n) => NOTE.test(n)));
    } finally {
      await w.close();
      cleanup();
    }
  });
}

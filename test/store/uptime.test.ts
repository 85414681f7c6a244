// Exact times at any uptime: the same capture stream written at 17 minutes,
// across 2^53 ns (104.25 days) and at 200 days of uptime must come out of the
// store and the correlator with every nanosecond. Times are odd on purpose:
// a double rounds odd integers above 2^53.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Kind, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { explainWindow } from '../../src/correlator/index.js';
import { openStoreReader, openStoreWriter, storeClock } from '../../src/store/index.js';
import { FrameWriter } from '../helpers/frames.js';
import { feed, tempDir } from './util.js';

const S = 1_000_000_000n;
const DAY = 86_400n * S;
const R0 = 1_790_000_000_123_456_789n; // epoch ns at the first sample
const TID = 101, PID = 100;
const STEP = 100_000_000n; // one off-CPU interval per 100 ms
const OFF = 30_000_015n; // each interval: 30 ms and a few ns off CPU ...
const RQ = 1_000_001n; // ... of which this much runnable
const N = 200; // 20 s of capture

interface Expect { start: bigint; end: bigint; runnable: bigint }

function stream(x: bigint): { buf: Buffer; events: Expect[]; taskStart: bigint } {
  const fw = new FrameWriter();
  fw.hello({ ts: x, monoNs: x, realtimeNs: R0, pid: 9, tid: 9, ncpu: 2, offcpuMinNs: 1000, probePid: 9 });
  // a process started 3 days before capture (or at boot, on a young host): before the store's origin
  const taskStart = x > 3n * DAY ? x - 3n * DAY + 7n : 7n;
  fw.task({ ts: x + 1n, pid: PID, tid: TID, startTime: taskStart, event: TaskEvent.NAME, comm: 'worker', pcomm: 'server' });
  const events: Expect[] = [];
  for (let k = 0; k < N; k++) {
    const start = x + BigInt(k) * STEP + 1_000_003n;
    const end = start + OFF;
    const runnable = end - RQ;
    fw.offcpu({ ts: end, pid: PID, tid: TID, cpu: 1, startNs: start, runnableNs: runnable, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: 5, wakerTid: 5 });
    events.push({ start, end, runnable });
    if (k % 10 === 0) {
      fw.clock({ ts: x + BigInt(k) * STEP, realtimeNs: R0 + BigInt(k) * STEP, errorNs: 3n });
      // block I/O of another thread: one dispatched (issue time), one not seen by the probe (0)
      fw.blockIo({ ts: end + 5n, pid: PID, tid: TID + 1, startNs: start + 3n, issueNs: k % 20 === 0 ? start + 1_001n : 0n, dev: 8, bytes: 4096 });
    }
  }
  fw.raw(Kind.DRAINED, 24, { ts: x + BigInt(N) * STEP + 50_000_001n });
  return { buf: fw.toBuffer(), events, taskStart };
}

const cases: [string, bigint][] = [
  ['17 minutes', 17n * 60n * S + 13n],
  ['2^53 ns - 10 s, running across 2^53', (1n << 53n) - 10n * S + 1n],
  ['2^53 ns + 10 s', (1n << 53n) + 10n * S + 3n],
  ['200 days', 200n * DAY + 12_345n],
];

for (const [name, x] of cases) {
  test(`store times are exact at ${name} of uptime: events, thread start, clock, explain`, async () => {
    const { dir, cleanup } = tempDir('uptime');
    try {
      const { buf, events, taskStart } = stream(x);
      const w = openStoreWriter(dir);
      await feed(w, buf);
      await w.close();
      assert.equal(w.counters.badValue, 0);
      assert.equal(w.counters.outOfRange, 0);
      assert.equal(w.counters.events, N + N / 10 + 1); // + the task record

      const r = openStoreReader(dir);
      const origin = r.originNs;
      if (x < 1n << 47n) assert.equal(origin, 0n, 'a young host keeps plain monotonic times');
      else assert.ok(origin > 0n && origin <= x && x - origin < 1n << 48n, `origin ${origin} for ${x}`);
      const rel = (t: bigint): number => Number(t - origin);
      const abs = (t: number): bigint => origin + BigInt(t);

      const l = r.eventsOnThread(TID, rel(x), rel(x + BigInt(N) * STEP + S), undefined, 1 << Kind.OFFCPU);
      assert.equal(l.count, N);
      const runnable = l.f[0]; // offcpu runnableNs (F.offcpu.runnableNs is column 0)
      for (let i = 0; i < N; i++) {
        assert.equal(abs(l.start[i]), events[i].start, `start of interval ${i}`);
        assert.equal(abs(l.end[i]), events[i].end, `end of interval ${i}`);
        assert.equal(abs(runnable[i]), events[i].runnable, `runnable of interval ${i}`);
      }
      // REL columns: a dispatched request keeps its issue time, an unseen one reads 0
      const io = r.eventsOnThread(TID + 1, rel(x), rel(x + BigInt(N) * STEP + S));
      assert.equal(io.count, N / 10);
      const issue = io.f[0];
      for (let i = 0; i < io.count; i++) {
        if (i % 2 === 0) assert.equal(abs(issue[i]), events[i * 10].start + 3n + 998n);
        else assert.equal(issue[i], 0);
      }
      // the thread incarnation started before the store's origin (negative relative time), exactly
      const t = r.threadAt(TID, rel(x + 5n * S));
      assert.ok(t, 'thread found');
      assert.equal(abs(t.startTime), taskStart);
      assert.equal(t.comm, 'worker');
      assert.equal(r.threadIncarnations(TID).length, 1);

      // epoch <-> store time: the sample pairs convert back exactly
      const clock = storeClock(r);
      assert.equal(clock.toEpochNs(rel(x + 150n * STEP)), R0 + 150n * STEP);
      assert.equal(abs(clock.toMonoNs(R0 + 150n * STEP + 17n)), x + 150n * STEP + 17n);

      // explain one second (intervals 95..104: across 2^53 in the second case), from epoch times
      const from = R0 + 95n * STEP, to = from + S;
      const e = explainWindow(r, { tid: TID, fromUnixNano: from, toUnixNano: to });
      const b = e.spans[0].breakdown_ns;
      const sum = Object.values(b).reduce((p, v) => p + v, 0);
      assert.equal(sum, 1e9);
      assert.equal(b.unknown, 0, JSON.stringify(b));
      assert.equal(b.runqueue, Number(10n * RQ), JSON.stringify(b));
      assert.equal(b.on_cpu, Number(S - 10n * OFF), JSON.stringify(b));
      void r.root.close();
    } finally {
      cleanup();
    }
  });
}

test('a store holds 2^53 ns of monotonic time from its origin: later times are counted, not stored wrong', async () => {
  const { dir, cleanup } = tempDir('uptime-range');
  try {
    const x = 200n * DAY + 1n;
    const fw = new FrameWriter();
    fw.hello({ ts: x, monoNs: x, realtimeNs: R0 });
    fw.offcpu({ ts: x + 2n * S, pid: PID, tid: TID, startNs: x + S });
    // 150 days later (the same store, a daemon that never restarted): past origin + 2^53
    const late = x + 150n * DAY;
    fw.offcpu({ ts: late + 2n * S, pid: PID, tid: TID, startNs: late + S });
    fw.clock({ ts: late, realtimeNs: R0 + 150n * DAY });
    const w = openStoreWriter(dir);
    await feed(w, fw.toBuffer());
    await w.close();
    assert.equal(w.counters.events, 1);
    assert.equal(w.counters.outOfRange, 2);
    const r = openStoreReader(dir);
    assert.equal(r.skipCounters().outOfRange, 2);
    assert.equal(r.clockSamples().length, 1);
    void r.root.close();
  } finally {
    cleanup();
  }
});

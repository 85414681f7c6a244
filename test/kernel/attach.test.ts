// A thread that is already off CPU when the probe attaches has no switch-out
// under it: its first switch-in used to emit nothing, so its wait read as "on
// CPU" from the capture's start. Now that switch-in writes an interval from
// the probe's start flagged START_UNKNOWN, and explain counts it as unknown.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { OffcpuFlag, Kind } from '../../src/capture/index.js';
import { explainTrace } from '../../src/correlator/index.js';
import { openStoreReader, F } from '../../src/store/index.js';
import { putTrace, ms, recordPid, requireLiveProbe } from './harness.js';

before(requireLiveProbe);
const dirs: string[] = [];

/** A span of thread `pid` over [startMono, endMono] (inside its wait) explains as unknown (≥ 99%), not on CPU (≤ 1%). */
async function assertWaitUnknown(dir: string, pid: number, startMono: number, endMono: number): Promise<void> {
  const traceId = await putTrace(dir, [{ name: 'wait', startMono, endMono, tid: pid, pid }]);
  const r = openStoreReader(dir);
  try {
    const [s] = explainTrace(r, traceId).spans;
    assert.ok(s.breakdown_ns.unknown >= 0.99 * s.duration_ns, `unknown ${ms(s.breakdown_ns.unknown).toFixed(1)} of ${ms(s.duration_ns).toFixed(1)} ms: ${JSON.stringify(s.breakdown_ns)}`);
    assert.ok(s.breakdown_ns.on_cpu <= 0.01 * s.duration_ns, JSON.stringify(s.breakdown_ns));
  } finally {
    void r.root.close();
  }
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('a thread blocked since before the probe attached: its first interval starts at the probe\'s start, flagged, and explains as unknown, not on CPU', async (t) => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-attach-'));
  dirs.push(dir);
  // blocked from now for 3 s: the probe attaches meanwhile
  const sleeper = spawn('sleep', ['3'], { stdio: 'ignore' });
  const pid = sleeper.pid!;
  const done = new Promise((r) => sleeper.on('exit', r));
  await recordPid(dir, pid, 5);
  await done;
  let start = 0;
  let wake = 0;
  let origin = 0;
  const r = openStoreReader(dir);
  try {
    const [session] = r.sessions();
    const list = r.eventsOnThread(pid, session.startNs, session.endNs);
    const iv = [...Array(list.count).keys()].filter((i) => list.kind[i] === Kind.OFFCPU && list.f[F.offcpu.flags][i] & OffcpuFlag.START_UNKNOWN);
    assert.equal(iv.length, 1, `one interval from the probe's start: ${list.count} events`);
    [start, wake] = [list.start[iv[0]], list.end[iv[0]]];
    origin = Number(r.originNs);
    t.diagnostic(`session ${session.startNs}..${session.endNs}, interval ${start}..${wake} (${ms(wake - start).toFixed(0)} ms)`);
    assert.ok(start >= session.startNs && start - session.startNs < 1e9, 'it starts at the probe\'s start');
    assert.ok(wake - start > 500e6, 'it lasts until the sleeper woke (seconds after the probe attached)');
  } finally {
    await r.root.close();
  }
  // a span over [start + 50 ms, the wake]: all of it unknown, none on CPU
  await assertWaitUnknown(dir, pid, origin + start + 50e6, origin + wake);
});

test('a thread blocked since before the probe attached and still blocked when the capture ends: the snapshot reports it (named), its time is unknown, not on CPU', async (t) => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-attach-'));
  dirs.push(dir);
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  const pid = sleeper.pid!;
  try {
    await recordPid(dir, pid, 3);
  } finally {
    sleeper.kill('SIGKILL');
  }
  let origin = 0;
  let from = 0;
  let to = 0;
  const r = openStoreReader(dir);
  try {
    const [session] = r.sessions();
    origin = Number(r.originNs);
    const open = r.openIntervals(pid);
    t.diagnostic(`session ${session.startNs}..${session.endNs}, open ${JSON.stringify(open)}`);
    assert.equal(open.length, 1, 'reported once, still open at the end');
    assert.ok(open[0].flags & OffcpuFlag.START_UNKNOWN, 'off CPU since before the probe');
    assert.ok(open[0].start >= session.startNs && open[0].start - session.startNs < 1e9, 'from the probe\'s start');
    assert.equal(r.threadAt(pid, open[0].start + 1)?.comm, 'sleep', 'named by the snapshot (it never ran under the probe)');
    from = open[0].start + 50e6;
    to = session.endNs - 10e6;
  } finally {
    await r.root.close();
  }
  await assertWaitUnknown(dir, pid, origin + from, origin + to);
});

// A thread still off CPU at the watermark has no record yet (an interval is
// recorded at its switch-in): it used to read as on CPU up to there. The
// probe's blocked-task snapshot before each watermark reports it; explain
// counts it off CPU by its kind. Real capture: a thread that spins 300 ms,
// then sleeps past the capture's end, explained through a process join.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { explainTrace, explainWindow } from '../../src/correlator/index.js';
import { whoWoke } from '../../src/mcp/analysis.js';
import { openStoreReader } from '../../src/store/index.js';
import { FIXTURE_BIN, ms, putTrace, recordPid, requireLiveProbe } from './harness.js';

before(requireLiveProbe);
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('a thread still blocked when the capture ends: its time after it blocked is sleep, not on CPU (process join, real capture)', async (t) => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-open-'));
  dirs.push(dir);
  // 4 s for the probe to attach, 300 ms on CPU, then asleep well past the capture's end
  const fx = spawn(join(FIXTURE_BIN, 'busy_then_block'), ['4000', '300', '30000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  fx.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const pid = fx.pid!;
  let line: { tid: number; busy_start_ns: number; busy_end_ns: number; cpu_ns: number };
  try {
    await recordPid(dir, pid, 7);
    line = JSON.parse(out.trim());
  } finally {
    fx.kill('SIGKILL');
  }
  const tid = line.tid;
  let origin = 0;
  let end = 0;
  const r = openStoreReader(dir);
  try {
    const [session] = r.sessions();
    origin = Number(r.originNs);
    end = session.endNs;
    const open = r.openIntervals(tid);
    t.diagnostic(`busy ${line.busy_start_ns}..${line.busy_end_ns} (cpu ${ms(line.cpu_ns).toFixed(1)} ms), session end ${origin + end}, open ${JSON.stringify(open)}`);
    assert.equal(open.length, 1, 'one interval still open when the capture ended');
    const blockedAt = origin + open[0].start;
    assert.ok(blockedAt >= line.busy_end_ns && blockedAt - line.busy_end_ns < 20e6, `it began when the spin ended: ${(blockedAt - line.busy_end_ns) / 1e6} ms after`);
    assert.equal(open[0].runnable, 0, 'not woken');
    assert.ok(origin + end - blockedAt > 1e9, 'the capture went on for seconds after it');
  } finally {
    await r.root.close();
  }
  // a span of the process (pid only: a process join) from the spin's start to just before the capture's end
  const spanEnd = origin + end - 10e6;
  const traceId = await putTrace(dir, [{ name: 'work', startMono: line.busy_start_ns, endMono: spanEnd, pid }]);
  const r2 = openStoreReader(dir);
  try {
    const [s] = explainTrace(r2, traceId).spans;
    const b = s.breakdown_ns;
    t.diagnostic(JSON.stringify(b));
    assert.equal(s.correlation.method, 'process');
    const spin = line.busy_end_ns - line.busy_start_ns;
    // on CPU: the spin's own CPU time (±15%); the rest of the spin waited for a CPU
    assert.ok(Math.abs(b.on_cpu - line.cpu_ns) <= 0.15 * line.cpu_ns, `on_cpu ${ms(b.on_cpu).toFixed(1)} ms vs the spin's CPU time ${ms(line.cpu_ns).toFixed(1)} ms: ${JSON.stringify(b)}`);
    assert.ok(b.on_cpu + b.runqueue <= spin * 1.05 + 5e6, JSON.stringify(b));
    // after it: asleep to the span's end
    const asleep = spanEnd - line.busy_end_ns;
    assert.ok(b.sleep >= 0.97 * asleep && b.sleep <= asleep + 20e6, `sleep ${ms(b.sleep).toFixed(0)} ms vs ${ms(asleep).toFixed(0)} ms after the spin: ${JSON.stringify(b)}`);
    const cause = s.causes.find((c) => c.kind === 'sleep');
    assert.ok(cause?.evidence.some((e) => e.open === true), `the sleep's evidence says the interval was still open: ${JSON.stringify(cause?.evidence)}`);
    // the walks ran to the end (probe group "blocked"): no note that such threads could not be seen
    assert.ok(r2.statusRecords().some((st) => st.name === 'blocked' && st.err === 0), 'STATUS blocked attached');
    assert.ok(!s.data_quality!.notes.some((n) => /blocked-task snapshots/.test(n)), s.data_quality!.notes.join(' | '));
  } finally {
    void r2.root.close();
  }
});

test('a waiter still stuck on a lock when the capture ends: the open wait names the lock word and its holder (who_woke, explain_window)', async (t) => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-open-'));
  dirs.push(dir);
  // three rounds of a 2.5 s hold: the capture attaches during the first and ends during the third
  const fx = spawn(join(FIXTURE_BIN, 'mutex_hold'), ['2500', '3'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  fx.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const done = new Promise((r) => fx.on('exit', r));
  await recordPid(dir, fx.pid!, 4);
  await done;
  const line = JSON.parse(out.trim()) as { tid_a: number; tid_b: number; uaddr_dec: string; rounds: { a_lock_start_ns: number; a_lock_end_ns: number }[] };
  const r = openStoreReader(dir);
  try {
    const [session] = r.sessions();
    const origin = Number(r.originNs);
    const end = session.endNs;
    // the round the capture ended in
    const k = line.rounds.findIndex((x) => x.a_lock_start_ns < origin + end && x.a_lock_end_ns > origin + end);
    assert.ok(k > 0, `the capture (end ${origin + end}) ended during a later round: ${JSON.stringify(line.rounds)}`);
    const open = r.openIntervals(line.tid_a);
    t.diagnostic(`round ${k}: ${JSON.stringify(line.rounds[k])}; open ${JSON.stringify(open)}`);
    assert.equal(open.length, 1);
    const o = open[0];
    assert.ok(Math.abs(origin + o.start - line.rounds[k].a_lock_start_ns) < 20e6, 'it began when the waiter called lock');
    assert.equal(String(o.uaddr), line.uaddr_dec, 'the lock word');
    assert.equal(o.ownerTid, line.tid_b, 'its holder (glibc owner field)');
    // who_woke at the capture's end: still blocked, on that word, held by the holder
    const at = end - 5e6;
    const w = whoWoke(r, r.clockHistory(), line.tid_a, at, r.clockHistory().toEpochNs(at));
    t.diagnostic(w.summary);
    assert.equal(w.off_cpu_at, true);
    assert.equal(w.interval?.open, true);
    assert.equal(w.futex_waits[0]?.owner?.tid, line.tid_b, JSON.stringify(w.futex_waits));
    assert.match(w.summary, new RegExp(`still off CPU .* held by .*tid ${line.tid_b}`));
    // the waiter's window up to the end: a lock wait on the holder, not time on CPU
    const from = r.clockHistory().toEpochNs(o.start + 10e6);
    const e = explainWindow(r, { tid: line.tid_a, fromUnixNano: from, toUnixNano: r.clockHistory().toEpochNs(end - 10e6) }).spans[0];
    t.diagnostic(JSON.stringify(e.breakdown_ns));
    assert.ok(e.breakdown_ns.futex >= 0.99 * e.duration_ns, JSON.stringify(e.breakdown_ns));
    const lock = e.causes.find((c) => c.kind === 'lock_contention');
    assert.equal(lock?.culprit?.tid, line.tid_b, JSON.stringify(lock));
  } finally {
    await r.root.close();
  }
});

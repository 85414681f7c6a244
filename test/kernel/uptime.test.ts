// Exact times at any uptime, end to end: the real probe's records shifted as
// if the host had been up 2^53 ns less 1 s when the probe started (the capture runs across 2^53)
// and 200 days (test/helpers/shift-probe.ts), through `kspan record` into the
// store and out of `explain`: the same causes, culprits and durations as the
// unshifted scenario (test/kernel/explain.test.ts, first test).

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { explainTrace } from '../../src/correlator/index.js';
import { openStoreReader } from '../../src/store/index.js';
import { shiftProbePath } from '../helpers/shift-probe.js';
import { ms, putTrace, recordScenario, requireLiveProbe, within } from './harness.js';

before(requireLiveProbe);
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const S = 1_000_000_000n;

for (const [name, target] of [['2^53 ns - 1 s', (1n << 53n) - 1n * S], ['200 days', 200n * 86_400n * S + 12_345n]] as const) {
  test(`uptime ${name}: the two-hop lock chain comes out exact through capture, store and explain`, async () => {
    const shiftFile = join(mkdtempSync(join(tmpdir(), 'kspan-shift-')), 'shift');
    const env = { ...process.env, KSPAN_PROBE: shiftProbePath(), SHIFT_PROBE_AT_NS: target.toString(), SHIFT_PROBE_FILE: shiftFile };
    const { dir, fx } = await recordScenario('./cpu_hog 0 3 & sleep 0.1; ./lock_chain 30 3 0 1; wait', ['cpu_hog', 'lock_chain'], [], env);
    dirs.push(dir);
    const shift = BigInt(readFileSync(shiftFile, 'utf8'));
    rmSync(dirname(shiftFile), { recursive: true, force: true });
    const lc = fx.lock_chain, hog = fx.cpu_hog;
    const r0 = openStoreReader(dir);
    const origin = r0.originNs, skipped = r0.skipCounters();
    const session = r0.sessions().at(-1)!;
    const eventsAfter = (t: bigint): number => r0.threadsInWindow(Number(t - origin), Number(t - origin) + 10e9).length;
    const spans53 = origin + BigInt(session.startNs) < 1n << 53n && origin + BigInt(session.endNs) > 1n << 53n;
    const after53 = eventsAfter(1n << 53n);
    void r0.root.close();
    assert.ok(origin > 0n && origin < target, `the store's origin ${origin} lies before the first time`);
    assert.equal(skipped.outOfRange ?? 0, 0, 'nothing out of range');
    assert.equal(skipped.badValue ?? 0, 0, 'no bad values');
    if (name.startsWith('2^53')) {
      // the capture (the hog runs 3 s) began before 2^53 ns and went on past it, with events on both sides
      assert.ok(spans53, `the capture session spans 2^53 ns: ${JSON.stringify(session)}`);
      assert.ok(after53 > 0, 'threads with events after 2^53 ns');
    }
    const traceId = await putTrace(dir, lc.rounds.map((rd: any, i: number) => ({
      name: `request ${i}`, startMono: rd.req_start_ns, endMono: rd.req_end_ns, tid: lc.tid_a, pid: lc.pid,
    })), shift);
    const r = openStoreReader(dir);
    try {
      const e = explainTrace(r, traceId);
      assert.equal(e.found, true);
      assert.equal(e.spans.length, 3);
      for (const [i, s] of e.spans.entries()) {
        const round = lc.rounds[i];
        const wait = round.lock_end_ns - round.lock_start_ns;
        assert.equal(s.correlation.tid, lc.tid_a);
        assert.equal(Object.values(s.breakdown_ns).reduce((a, x) => a + x, 0), s.duration_ns);
        const top = s.causes[0];
        assert.equal(top.kind, 'lock_contention', `span ${i}: ${JSON.stringify(s.causes.map((c) => c.kind))}`);
        assert.equal(top.culprit?.tid, lc.tid_b, 'culprit = the holder');
        // the waiter's measured wait also holds its wait for a CPU after the wake (runqueue)
        assert.ok(within(top.duration_ns + s.breakdown_ns.runqueue, wait, 0.15),
          `lock wait ${ms(top.duration_ns).toFixed(1)} ms + runqueue ${ms(s.breakdown_ns.runqueue).toFixed(1)} ms vs injected ${ms(wait).toFixed(1)} ms: ${JSON.stringify(s.breakdown_ns)}`);
        assert.ok(JSON.stringify(top.chain).includes(String(hog.pid)), 'the chain names the hog');
        assert.equal(s.breakdown_ns.unknown, 0, 'every nanosecond of the span was seen');
        // evidence times are epoch ns strings: exact, and inside the span
        for (const ev of top.evidence ?? []) {
          assert.ok(BigInt(ev.end_unix_nano) >= BigInt(ev.start_unix_nano));
        }
      }
    } finally {
      void r.root.close();
    }
  });
}

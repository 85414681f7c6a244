// The store clock (store/clock.ts): one ClockHistory per reader, brought up to
// date in one read (storeClock) or in slices under a ScanControl
// (loadStoreClock: the MCP tools' budget), with progress kept between loads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameWriter } from '../helpers/frames.js';
import { loadStoreClock, openStoreReader, openStoreWriter, storeClock } from '../../src/store/index.js';
import type { ScanControl } from '../../src/store/queries.js';
import { feed, tempDir } from './util.js';

const T = 5_000_000_123;
const RT = 1_763_730_000_000_000_000n;
const N = 10_000; // samples: several slices of the sliced read

/** A store with N clock samples, 1 ms apart; the offset steps by 1 µs at each. */
async function clockStore(dir: string): Promise<void> {
  const fw = new FrameWriter();
  fw.hello({ ts: T, monoNs: T, realtimeNs: RT, ncpu: 1, probePid: 1 });
  for (let i = 1; i < N; i++) fw.clock({ ts: T + i * 1e6, realtimeNs: RT + BigInt(i) * 1_001_000n, errorNs: 10 });
  const w = openStoreWriter(dir);
  await feed(w, fw.toBuffer());
  await w.close();
}

/** A control that lets `slices` slices through, then stops; counts the rows it is told of. */
function slices(n: number): ScanControl & { rowsSeen: number } {
  let left = n;
  return { rowsSeen: 0, tick: () => --left > 0, rows(k: number) { this.rowsSeen += k; } };
}

test('loadStoreClock: in slices, progress kept when stopped, then the same clock storeClock returns', async () => {
  const { dir, cleanup } = tempDir('clock');
  try {
    await clockStore(dir);
    const r = openStoreReader(dir);
    const one = slices(1);
    const first = await loadStoreClock(r, one);
    assert.equal(first.complete, false);
    assert.ok(first.clock.size > 0 && first.clock.size < N, `a prefix: ${first.clock.size}`);
    assert.equal(one.rowsSeen, 0, 'clock samples are not events: no rows counted');
    const rest = await loadStoreClock(r, { tick: () => true });
    assert.equal(rest.complete, true);
    assert.equal(rest.clock, first.clock, 'one clock per reader');
    assert.equal(rest.clock.size, N);
    assert.equal(storeClock(r), rest.clock);
    assert.equal(storeClock(r).size, N);
    const mono = T + 1234 * 1e6 + 5;
    assert.equal(rest.clock.toEpochNs(mono), BigInt(mono) + (RT - BigInt(T)) + 1234n * 1000n);
    assert.equal(rest.clock.toMonoNs(rest.clock.toEpochNs(mono)), mono);
    void r.root.close();
  } finally {
    cleanup();
  }
});

test('loadStoreClock: concurrent loads take turns; a storeClock() between slices leaves one sample per instant, in order', async () => {
  const { dir, cleanup } = tempDir('clock-conc');
  try {
    await clockStore(dir);
    const r = openStoreReader(dir);
    let synced = false;
    const yielding: ScanControl = {
      tick: async () => {
        await new Promise((res) => setImmediate(res));
        if (!synced) {
          synced = true;
          assert.equal(storeClock(r).size, N, 'a one-read sync in the middle of a sliced load');
        }
        return true;
      },
    };
    const [a, b] = await Promise.all([loadStoreClock(r, yielding), loadStoreClock(r, yielding)]);
    assert.ok(synced);
    assert.equal(a.complete && b.complete, true);
    assert.equal(a.clock, b.clock);
    assert.equal(a.clock.size, N);
    assert.deepEqual(a.clock.samples().map((s) => s.monoNs), Array.from({ length: N }, (_, i) => T + i * 1e6));
    void r.root.close();
  } finally {
    cleanup();
  }
});

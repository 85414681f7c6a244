// A reader in another process sees the writer's commits while the writer runs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openStoreWriter } from '../../src/store/index.js';
import { SynthGen } from './synth.js';
import { feed, sleep, spawnTsx, tempDir } from './util.js';

test('reader process sees a writer process\'s commits while it runs (counts grow, final = committed)', async (t) => {
  const { dir, cleanup } = tempDir('mp');
  // 100 threads, 0.2 s partitions of capture time (~200k records each): new sub-databases appear while the reader runs
  const gen = new SynthGen({ threads: 100, seed: 7, t0: 4_000_000_000_000 });
  const w = openStoreWriter(dir, { partitionNs: 200_000_000 });
  const ti = 17;
  const tid = gen.tidOf(ti);
  let reader: ReturnType<typeof spawnTsx> | null = null;
  try {
    await feed(w, gen.next(5_000));
    await w.flush();
    reader = spawnTsx('./reader-proc.ts', [dir, String(tid)]);
    await reader.waitLine(/^READY$/, 60_000);
    const committed: number[] = [];
    for (let step = 0; step < 40; step++) {
      await feed(w, gen.next(20_000));
      await w.flush();
      committed.push(gen.tally.count[ti]);
      await sleep(40); // let the reader poll in between
    }
    await sleep(100);
    const mark = reader.lines.length;
    reader.send('final');
    const fin = (await reader.waitLine(/^FINAL /, 30_000, mark)).split(' ').map(Number);
    const { code } = await reader.exited;
    assert.equal(code, 0, reader.stderr());
    assert.ok(!reader.lines.some((l) => l.startsWith('ERROR')), reader.lines.find((l) => l.startsWith('ERROR')));
    const polls = reader.lines.filter((l) => l.startsWith('POLL ')).map((l) => l.split(' ').map(Number));
    const seen = polls.map((p) => p[1]);
    const distinct = [...new Set(seen)];
    // while the writer ran, the reader saw the thread's event count grow, never shrink, never beyond the final count
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], `poll ${i}: ${seen[i]} < ${seen[i - 1]}`);
    assert.ok(distinct.length >= 10, `reader saw only ${distinct.length} distinct counts: ${distinct.join(',')}`);
    assert.ok(seen[0] < committed[committed.length - 1] / 2, `first poll ${seen[0]} already near the end`);
    // partitions created after the reader opened are seen too
    const partsSeen = new Set(polls.map((p) => p[3]));
    assert.ok(partsSeen.size >= 3, `partitions seen: ${[...partsSeen].join(',')}`);
    // final: exactly what the writer committed
    assert.equal(fin[1], gen.tally.count[ti]);
    assert.equal(fin[2], gen.events);
    assert.equal(fin[3], w.reader.partitions().length);
    assert.equal(w.counters.committedEvents, gen.events);
    t.diagnostic(`${polls.length} polls, ${distinct.length} distinct counts for tid ${tid} (${seen[0]} .. ${seen[seen.length - 1]}), final ${fin[1]}/${fin[2]} events, ${fin[3]} partitions`);
  } finally {
    if (reader && reader.proc.exitCode === null) reader.proc.kill('SIGKILL');
    await w.close();
    cleanup();
  }
});

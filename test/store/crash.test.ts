// Crash safety: SIGKILL a writer process during heavy ingest, repeatedly, on
// the same store; everything it reported committed must be there and queryable.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openStoreReader, openStoreWriter, statsOf, EventList } from '../../src/store/index.js';
import { SynthGen } from './synth.js';
import { sleep, spawnTsx, tempDir } from './util.js';

const ROUNDS = 4;
const T0 = 5_000_000_000_000;
const ROUND_NS = 100e9; // each round's capture time starts 100 s after the previous one (same 10 min partition)

test(`crash safety: SIGKILL the writer mid-ingest ${ROUNDS} times, committed events intact`, async (t) => {
  const { dir, cleanup } = tempDir('crash');
  try {
    const rounds: { seed: number; t0: number; records: number; lastEnd: number; events: number; delay: number }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const seed = 1000 + r;
      const t0 = T0 + r * ROUND_NS;
      const child = spawnTsx('./writer-proc.ts', [dir, String(seed), String(t0)]);
      await child.waitLine(/^COMMITTED /, 60_000);
      const delay = 200 + Math.floor(Math.random() * 1800);
      await sleep(delay);
      child.proc.kill('SIGKILL');
      const { signal } = await child.exited;
      assert.equal(signal, 'SIGKILL', `round ${r}: writer exited on its own: ${child.stderr()}`);
      const last = child.lines.filter((l) => l.startsWith('COMMITTED ')).pop()!;
      const [, records, lastEnd, events] = last.split(' ').map(Number);
      rounds.push({ seed, t0, records, lastEnd, events, delay });
    }
    t.diagnostic(`rounds: ${rounds.map((x) => `killed ${x.delay} ms after first commit, ${x.records} records / ${x.events} events reported committed`).join('; ')}`);

    // the store opens (read-only, then for writing) and every reported event is there
    const r = openStoreReader(dir);
    const out = new EventList();
    let total = 0;
    for (const rd of rounds) {
      const gen = new SynthGen({ seed: rd.seed, t0: rd.t0 });
      gen.skip(rd.records);
      assert.equal(gen.events, rd.events);
      for (let ti = 0; ti < gen.threads; ti++) {
        const want = gen.tally.count[ti];
        if (!want) continue;
        const lastEnd = gen.tally.lastEnd[ti];
        r.eventsOnThread(gen.tidOf(ti), rd.t0, rd.t0 + ROUND_NS - 1, out);
        let n = 0;
        let sum = 0;
        for (let i = 0; i < out.count; i++) {
          if (out.end[i] > lastEnd || out.end[i] < rd.t0) continue;
          n++;
          sum += out.end[i] - rd.t0;
        }
        assert.equal(n, want, `round seed ${rd.seed} tid ${gen.tidOf(ti)}: ${n} events found, ${want} committed`);
        assert.equal(sum, gen.tally.sumEnd[ti], `round seed ${rd.seed} tid ${gen.tidOf(ti)}: end-time checksum`);
        // nothing beyond what the generator could have produced
        assert.ok(out.count >= want);
      }
      total += rd.events;
    }
    const st = statsOf(r, dir);
    assert.ok(st.events >= total, `stats: ${st.events} events < ${total} reported committed`);
    assert.deepEqual(Object.values(st.skipped).filter((v) => v !== 0), []);
    await r.root.close();
    // reopens for writing, appends, closes cleanly
    const w = openStoreWriter(dir);
    const g = new SynthGen({ seed: 9, t0: T0 + ROUNDS * ROUND_NS, threads: 10 });
    const { feed } = await import('./util.js');
    await feed(w, g.next(10_000));
    await w.close();
    const r2 = openStoreReader(dir);
    assert.equal(r2.eventsOnThread(g.tidOf(3), g.t0, g.lastEnd, out).count, g.tally.count[3]);
    await r2.root.close();
  } finally {
    cleanup();
  }
});

test('a writer reopened on an existing partition keeps the stored block extents (intervals that began before a)', async () => {
  const { FrameWriter } = await import('../helpers/frames.js');
  const { feed } = await import('./util.js');
  const { dir, cleanup } = tempDir('reopen-extent');
  try {
    const T = 7_000_000_000_000;
    const w1 = openStoreWriter(dir);
    const f1 = new FrameWriter();
    f1.offcpu({ ts: T + 500e6, pid: 50, tid: 500, startNs: T, flags: 1 });
    f1.futexWait({ ts: T + 500e6, pid: 50, tid: 501, startNs: T, uaddr: 0x1000, op: 0x80 });
    await feed(w1, f1.toBuffer());
    await w1.close();
    const w2 = openStoreWriter(dir);
    const f2 = new FrameWriter();
    f2.offcpu({ ts: T + 601e6, pid: 50, tid: 500, startNs: T + 600e6, flags: 1 });
    f2.futexWait({ ts: T + 601e6, pid: 50, tid: 501, startNs: T + 600e6, uaddr: 0x1000, op: 0x80 });
    await feed(w2, f2.toBuffer());
    await w2.close();
    const r = openStoreReader(dir);
    assert.deepEqual(r.eventsOnThread(500, T + 400e6, T + 450e6).toObjects().map((o) => [o.startNs, o.endNs]), [[T, T + 500e6]]);
    assert.equal(r.eventsOnThread(500, T + 400e6, T + 700e6).count, 2);
    assert.deepEqual(r.futexByUaddr(50, 0x1000, T + 400e6, T + 450e6).toObjects().map((o) => [o.tid, o.startNs]), [[501, T]]);
    await r.root.close();
  } finally {
    cleanup();
  }
});

test('kill -9 of `kspan record --data` 10 times during ingest: the store reopens each time, the committed event count never goes down', async (t) => {
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const { REPO_ROOT } = await import('../../src/capture/probe.js');
  const { fakeProbePath } = await import('../helpers/fake-probe.js');
  const { dir, cleanup } = tempDir('crash-record');
  const probe = fakeProbePath();
  const THREADS = 50;
  const TID0 = 710_000;
  try {
    const counts: number[] = [];
    const delays: number[] = [];
    let prev = 0;
    for (let round = 0; round < 10; round++) {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'kspan.js'), 'record', '--data', dir, '--quiet'], {
        cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, KSPAN_PROBE: probe, FAKE_PROBE_RATE: '200000', FAKE_PROBE_THREADS: String(THREADS), FAKE_PROBE_PID_BASE: String(TID0) },
      });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
      const delay = 1500 + Math.floor(Math.random() * 1500); // record takes ~1 s to start (node, the stand-in probe)
      delays.push(delay);
      await sleep(delay);
      child.kill('SIGKILL');
      const { signal } = await exited;
      assert.equal(signal, 'SIGKILL', `round ${round}: record exited on its own: ${err}`);
      // the store opens (read-only) and every event its metadata counts is there to read
      const r = openStoreReader(dir);
      const st = statsOf(r, dir);
      const out = new EventList();
      let readable = 0;
      for (let tid = TID0; tid < TID0 + THREADS; tid++) readable += r.eventsOnThread(tid, 0, 2 ** 52, out).count;
      await r.root.close();
      assert.equal(readable, st.events, `round ${round}: ${readable} events readable, ${st.events} counted`);
      assert.ok(st.events >= prev, `round ${round}: committed events went down: ${st.events} < ${prev}`);
      counts.push(st.events);
      prev = st.events;
    }
    assert.ok(counts[counts.length - 1] > counts[0], `the count grows over the rounds: ${counts.join(', ')}`);
    // and it opens for writing afterwards, and closes cleanly
    const w = openStoreWriter(dir);
    await w.close();
    t.diagnostic(`killed after ${delays.join(', ')} ms; committed events after each kill: ${counts.join(', ')}`);
  } finally {
    cleanup();
  }
});

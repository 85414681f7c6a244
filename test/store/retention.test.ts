// Retention under continuous ingest: by age and by size, with 1 s partitions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openStoreWriter, usedBytes, EventList, type SpanInput, type StoreReader, type StoreWriter } from '../../src/store/index.js';
import { SynthGen } from './synth.js';
import { feed, sleep, spawnTsx, tempDir } from './util.js';

const P = 1e9; // 1 s partitions of capture time
const KEEP = [3, 41, 77];

/** 100 threads, ~100k records per second of capture time (one partition per 100k records). */
function gen(seed: number, t0: number): SynthGen {
  return new SynthGen({ threads: 100, seed, t0, gapNs: 10_000, keep: KEEP });
}

/** eventsOnThread for kept threads on [a, b] must return exactly the generated events overlapping it. */
function checkWindow(r: StoreReader, g: SynthGen, a: number, b: number): number {
  const out = new EventList();
  let n = 0;
  for (const ti of KEEP) {
    r.eventsOnThread(g.tidOf(ti), a, b, out);
    const got = [...Array(out.count).keys()].map((i) => [out.start[i], out.end[i]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const want = g.kept.get(ti)!.filter(([s, e]) => s <= b && e >= a).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    assert.deepEqual(got, want, `tid ${g.tidOf(ti)} window [${a}, ${b}]`);
    n += got.length;
  }
  return n;
}

function partBytes(w: StoreWriter, idx: number): number {
  const db = w.reader.partitionDb(idx);
  if (!db) return 0;
  const s = db.getStats() as { treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; pageSize: number };
  return (s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages) * (s.pageSize || 4096);
}

test('retention by age: old partitions dropped during ingest, live windows exact, a reader opened before the drop keeps working', async (t) => {
  const { dir, cleanup } = tempDir('ret-age');
  const T0 = 6_000_000_000_000; // a multiple of P
  const g = gen(11, T0);
  const MAX_AGE = 3e9;
  const w = openStoreWriter(dir, { partitionNs: P, maxAgeNs: MAX_AGE, retentionEveryMs: 20 });
  let reader: ReturnType<typeof spawnTsx> | null = null;
  try {
    // 2 s of capture time, then a reader process watching a window in the first partition
    await feed(w, g.next(200_000));
    await w.flush();
    const tid = g.tidOf(KEEP[0]);
    const wa = T0 + 200e6;
    const wb = T0 + 700e6;
    reader = spawnTsx('./reader-proc.ts', [dir, String(tid), String(wa), String(wb)]);
    await reader.waitLine(/^READY$/, 60_000);
    const before = Number((await reader.waitLine(/^POLL /, 10_000)).split(' ')[1]);
    const wantOld = g.kept.get(KEEP[0])!.filter(([s, e]) => s <= wb && e >= wa).length;
    assert.equal(before, wantOld);
    assert.ok(before > 0);
    // ingest 10 more seconds of capture time; the timer-driven retention drops as it goes
    let maxParts = 0;
    for (let step = 0; step < 20; step++) {
      await feed(w, g.next(50_000));
      await w.flush();
      await sleep(25);
      maxParts = Math.max(maxParts, w.reader.partitions().length);
    }
    await w.enforceRetention();
    const maxTs = w.maxTimeNs;
    const parts = w.reader.partitions();
    const live = parts.map((p) => p.fromNs! / P);
    // one partition per 1 s slot (no size limit), consecutive up to the newest; the oldest one kept has events younger than the limit
    const expected: number[] = [];
    for (let slot = live[0]; slot <= Math.floor(maxTs / P); slot++) expected.push(slot);
    assert.deepEqual(live, expected, `live partitions at maxTs ${maxTs}`);
    assert.ok(parts[0].maxEnd > maxTs - MAX_AGE, `the oldest live partition ends at ${parts[0].maxEnd}, older than the limit`);
    assert.ok(live.length <= MAX_AGE / P + 2, `${live.length} live partitions`);
    assert.ok(w.counters.droppedPartitions >= 8, `dropped ${w.counters.droppedPartitions}`);
    // the automatic checks kept the count bounded while ingesting (age limit + the partition being written + one check period)
    assert.ok(maxParts <= MAX_AGE / P + 3, `up to ${maxParts} partitions while ingesting`);
    // live windows: exact; nothing younger than the limit was dropped
    const oldest = parts[0].fromNs!;
    let n = checkWindow(w.reader, g, oldest + 5e6, maxTs);
    n += checkWindow(w.reader, g, maxTs - MAX_AGE, maxTs);
    n += checkWindow(w.reader, g, maxTs - 1e9, maxTs - 0.5e9);
    assert.ok(n > 100, `${n} events checked`);
    // a dropped window: nothing, no error; one straddling the horizon: only the live part
    assert.equal(w.reader.eventsOnThread(tid, wa, wb).count, 0);
    const straddle = w.reader.eventsOnThread(tid, oldest - 0.5e9, oldest + 0.5e9);
    assert.deepEqual([...straddle.end.subarray(0, straddle.count)].filter((e) => e < oldest), []);
    assert.equal(straddle.count, g.kept.get(KEEP[0])!.filter(([s, e]) => s <= oldest + 0.5e9 && e >= oldest).length);
    // the reader process opened before the drops: its window is gone (0), no crash; live queries exact
    await sleep(100);
    const polls = reader.lines.filter((l) => l.startsWith('POLL ')).map((l) => Number(l.split(' ')[1]));
    assert.equal(polls[polls.length - 1], 0, `last polls: ${polls.slice(-5).join(',')}`);
    for (const c of polls) assert.ok(c === before || c === 0, `poll saw ${c}`);
    const qa = maxTs - 2e9;
    const mark = reader.lines.length;
    reader.send(`query ${qa} ${maxTs}`);
    const q = (await reader.waitLine(/^(QUERY|ERROR) /, 10_000, mark)).split(' ');
    const want = g.kept.get(KEEP[0])!.filter(([s, e]) => s <= maxTs && e >= qa);
    assert.equal(q[0], 'QUERY', q.join(' '));
    assert.equal(Number(q[1]), want.length);
    assert.equal(Number(q[2]), want.reduce((acc, [, e]) => acc + (e - qa), 0));
    reader.send('final');
    const { code } = await reader.exited;
    assert.equal(code, 0, reader.stderr() + reader.lines.filter((l) => l.startsWith('ERROR')).join('\n'));
    // coverage: the dropped range is no longer reported as captured
    const cov = w.reader.coverage(T0, oldest - 1);
    assert.equal(cov.covered, false, JSON.stringify(cov));
    t.diagnostic(`live partitions ${live.join(',')}, dropped ${w.counters.droppedPartitions}, max ${maxParts} while ingesting, reader polls ${polls.length}`);
  } finally {
    if (reader && reader.proc.exitCode === null) reader.proc.kill('SIGKILL');
    await w.close();
    cleanup();
  }
});

test('retention by size: pages in use stay under maxBytes under continuous ingest (size-triggered partitions); live windows exact', async (t) => {
  const { dir, cleanup } = tempDir('ret-size');
  const T0 = 6_100_000_000_000;
  const g = gen(12, T0);
  const MAX_BYTES = 8 << 20;
  // 10 min time slots: every partition change is the size trigger (maxBytes / 16)
  const w = openStoreWriter(dir, { partitionNs: 600e9, maxBytes: MAX_BYTES });
  try {
    let maxPart = 0;
    let maxUsed = 0;
    let minAfterDrop = Infinity;
    let samples = 0;
    let lastDropped = 0;
    for (let step = 0; step < 150; step++) {
      await feed(w, g.next(20_000));
      await w.flush();
      await sleep(2);
      for (const idx of w.partitionIndexes()) maxPart = Math.max(maxPart, partBytes(w, idx));
      const used = usedBytes(w);
      maxUsed = Math.max(maxUsed, used);
      samples++;
      if (w.counters.droppedPartitions > lastDropped && step > 100) minAfterDrop = Math.min(minAfterDrop, used);
      lastDropped = w.counters.droppedPartitions;
    }
    const live = w.reader.partitions();
    const used = usedBytes(w);
    assert.ok(maxPart > 0);
    assert.ok(w.counters.droppedPartitions >= 20, `dropped ${w.counters.droppedPartitions}`);
    // the guarantee: pages in use never above the limit (the current partition is at most maxBytes / 16,
    // and retention keeps the rest under maxBytes less that)
    assert.ok(maxUsed <= MAX_BYTES, `used up to ${maxUsed} > ${MAX_BYTES} (partition ${maxPart})`);
    assert.ok(maxPart <= MAX_BYTES / 16 + (64 << 10), `partition up to ${maxPart}`);
    // not over-dropping: the store stays above the limit less a few partitions
    assert.ok(minAfterDrop > MAX_BYTES - 4 * (MAX_BYTES / 16), `used ${minAfterDrop} right after a drop: dropped too much`);
    assert.ok(live.length >= 8, `${live.length} partitions left`);
    // consecutive, newest kept, all in the one 10 min slot
    const idxs = live.map((p) => p.idx);
    assert.deepEqual(idxs, idxs.map((_, i) => idxs[0] + i));
    assert.equal(idxs[idxs.length - 1], w.currentPartition);
    for (let i = 1; i < live.length; i++) assert.ok(live[i].fromNs! > live[i - 1].maxEnd - live[i].maxDur, 'partitions follow in time');
    // one view of the store: a size-triggered drop still committing on lmdb-js's write thread could
    // otherwise land between reading the partitions and reading their events
    w.reader.snapshot(() => {
      const now = w.reader.partitions();
      const oldest = now[0].fromNs!;
      assert.equal(w.reader.retainedFromNs(), oldest);
      assert.ok(checkWindow(w.reader, g, oldest, w.maxTimeNs) > 100);
      assert.ok(checkWindow(w.reader, g, oldest + 1e6, oldest + 20e6) > 0);
    });
    const file = statSync(join(dir, 'data.mdb')).size;
    t.diagnostic(`partition up to ${(maxPart / 1e6).toFixed(2)} MB, used ${(used / 1e6).toFixed(2)} MB (max ${(maxUsed / 1e6).toFixed(2)} over ${samples} samples, min after a drop ${(minAfterDrop / 1e6).toFixed(2)}) of ${(MAX_BYTES / 1e6).toFixed(2)} MB, ${live.length} live partitions, dropped ${w.counters.droppedPartitions}, data.mdb ${(file / 1e6).toFixed(1)} MB`);
  } finally {
    await w.close();
    cleanup();
  }
});

test('retention horizon persists: a reopened writer skips expired events; old clock samples pruned (last one kept)', async () => {
  const { FrameWriter } = await import('../helpers/frames.js');
  const { dir, cleanup } = tempDir('ret-reopen');
  const T0 = 6_200_000_000_000;
  const g = gen(13, T0);
  try {
    const w = openStoreWriter(dir, { partitionNs: P, maxAgeNs: 2e9, retentionEveryMs: 0 });
    await feed(w, g.next(600_000)); // 6 s of capture time, clock samples all along
    await w.flush();
    const res = await w.enforceRetention();
    assert.ok(res.dropped.length >= 3, JSON.stringify(res));
    const horizon = w.reader.partitions()[0].fromNs!;
    assert.equal(horizon % P, 0, 'a slot boundary (no size limit)');
    assert.equal(w.reader.retainedFromNs(), horizon);
    const clocks = w.reader.clockSamples().map((c) => c.monoNs);
    assert.equal(clocks.filter((m) => m < horizon).length, 1);
    assert.ok(clocks.filter((m) => m >= horizon).length > 100);
    await w.close();
    const w2 = openStoreWriter(dir, { partitionNs: P });
    const f = new FrameWriter();
    f.offcpu({ ts: T0 + 0.5e9, pid: 1, tid: 2, startNs: T0 + 0.4e9, flags: 1 });
    f.offcpu({ ts: horizon + 0.5e9, pid: 1, tid: 2, startNs: horizon + 0.4e9, flags: 1 });
    await feed(w2, f.toBuffer());
    await w2.flush();
    assert.equal(w2.counters.expired, 1);
    assert.ok(w2.reader.partitions().every((p) => p.fromNs! >= horizon && p.minEnd >= horizon));
    assert.equal(w2.reader.eventsOnThread(2, 0, 2 ** 52).count, 1);
    assert.equal(w2.reader.coverage(T0, horizon - 1).fraction, 0);
    await w2.close();
  } finally {
    cleanup();
  }
});

test('retention expires the span index too: spans started before the kernel horizon, or (no capture) older than maxAgeNs by the wall clock', async () => {
  const { dir, cleanup } = tempDir('ret-spans');
  const T0 = 7_300_000_000_000;
  const g = gen(17, T0);
  const tr = (n: number) => n.toString(16).padStart(32, '0');
  const sp = (n: number) => n.toString(16).padStart(16, '0');
  try {
    const w = openStoreWriter(dir, { partitionNs: P, maxAgeNs: 2e9, retentionEveryMs: 0 });
    await feed(w, g.next(600_000)); // 6 s of capture time
    await w.flush();
    // a span every 50 ms of the capture, in epoch time as the app's SDK stamps it
    const spans: SpanInput[] = [];
    for (let i = 0; i < 120; i++) {
      const start = w.toUnixNano(T0 + i * 50e6)!;
      spans.push({ traceId: tr(1 + (i % 12)), spanId: sp(1 + i), service: i % 3 ? 'api' : 'db', name: 'op', startUnixNano: start, endUnixNano: start + 20_000_000n });
    }
    await w.reader.spans.putSpans(spans);
    const res = await w.enforceRetention();
    assert.ok(res.dropped.length >= 3, JSON.stringify(res));
    // gone: what started before the kernel horizon, and before the latest capture time less maxAgeNs (the
    // horizon is a partition's start, so that is a little later; the latest capture time is the stream's
    // last event, give or take the one span of 50 ms around it)
    const horizon = w.toUnixNano(w.reader.retainedFromNs())!;
    const byAge = w.toUnixNano(g.lastEnd - 2e9)!;
    const n = (t: bigint) => spans.filter((s) => s.startUnixNano < t).length;
    assert.ok(n(horizon) > 20 && n(horizon) < 100, `${n(horizon)} of 120 spans before the horizon`);
    const want = Math.max(n(horizon), n(byAge));
    assert.ok(Math.abs(res.expiredSpans! - want) <= 1, `${res.expiredSpans} expired, ~${want} expected`);
    assert.equal(w.counters.expiredSpans, res.expiredSpans);
    const left = Array.from({ length: 12 }, (_, k) => w.reader.spans.getTrace(tr(k + 1))).flat();
    assert.equal(left.length, 120 - res.expiredSpans!);
    const firstLeft = left.reduce((m, s) => (BigInt(s.startUnixNano) < m ? BigInt(s.startUnixNano) : m), 1n << 64n);
    assert.ok(firstLeft >= horizon, 'none before the horizon is left');
    assert.equal(left.length, spans.filter((s) => s.startUnixNano >= firstLeft).length, 'the newest ones are left, every one of them');
    await w.close();
  } finally {
    cleanup();
  }
  // a store of spans only (kspan run --no-capture) has no horizon: maxAgeNs counts by the wall clock
  const only = tempDir('ret-spans-only');
  try {
    const w = openStoreWriter(only.dir, { maxAgeNs: 60e9, retentionEveryMs: 0 });
    const now = BigInt(Date.now()) * 1_000_000n;
    const ages = [600, 120, 61, 30, 1]; // seconds ago
    await w.reader.spans.putSpans(ages.map((a, i) => ({ traceId: tr(99), spanId: sp(100 + i), service: 'api', name: `${a}s`, startUnixNano: now - BigInt(a) * 1_000_000_000n, endUnixNano: now - BigInt(a) * 1_000_000_000n + 1_000_000n })));
    const res = await w.enforceRetention();
    assert.equal(res.expiredSpans, 3);
    assert.deepEqual(w.reader.spans.getTrace(tr(99)).map((s) => s.name), ['30s', '1s']);
    await w.close();
  } finally {
    only.cleanup();
  }
});

test('retention deletes the rows of threads that exited before the horizon (and their process keys); live and late-exiting ones stay', async () => {
  const { FrameWriter } = await import('../helpers/frames.js');
  const { TaskEvent } = await import('../../src/capture/records.js');
  const { dir, cleanup } = tempDir('ret-threads');
  const T0 = 8_400_000_000_000;
  const g = gen(19, T0);
  try {
    const w = openStoreWriter(dir, { partitionNs: P, maxAgeNs: 2e9, retentionEveryMs: 0 });
    // pid 900: 4,500 short-lived threads that exit in the first second (more than one check sweeps), one
    // that lives on (never exits), one that exits at the end; all named at the start
    const f = new FrameWriter();
    const PID = 900;
    const N = 4500;
    for (let i = 0; i < N + 2; i++) f.task({ ts: T0 + 1e6 + i, pid: PID, tid: 901 + i, event: TaskEvent.NAME, startTime: T0 - 1e9 + i, comm: `t${i}`, pcomm: 'app' });
    for (let i = 0; i < N; i++) f.task({ ts: T0 + 0.5e9 + i, pid: PID, tid: 901 + i, event: TaskEvent.EXIT, startTime: T0 - 1e9 + i, comm: `t${i}`, pcomm: 'app', exitCode: 0 });
    await feed(w, f.toBuffer());
    await feed(w, g.next(600_000)); // 6 s of capture time
    const lateTs = Math.floor(g.lastEnd);
    const late = new FrameWriter().task({ ts: lateTs, pid: PID, tid: 901 + N + 1, event: TaskEvent.EXIT, startTime: T0 - 1e9 + N + 1, comm: 'late', pcomm: 'app', exitCode: 0 });
    await feed(w, late.toBuffer());
    await w.flush();
    assert.equal(w.reader.threadsOf(PID).length, N + 2);
    const res = await w.enforceRetention();
    assert.ok(res.dropped.length >= 3 && w.reader.retainedFromNs() > T0 + 0.5e9, JSON.stringify(res));
    const first = w.counters.prunedThreads;
    assert.ok(first > 0 && first < N, `one check sweeps part of the rows: ${first}`);
    // the same horizon: each check goes on where the last one stopped
    let checks = 1;
    for (; checks < 20 && w.counters.prunedThreads < N; checks++) await w.enforceRetention();
    assert.equal(w.counters.prunedThreads, N);
    assert.ok(checks >= 3, `${checks} checks`);
    assert.deepEqual(w.reader.threadsOf(PID).map((t) => t.tid).sort(), [901 + N, 901 + N + 1]);
    assert.equal(w.reader.threadIncarnations(901).length, 0);
    assert.equal(w.reader.threadIncarnations(901 + N)[0].comm, `t${N}`, 'alive (no exit seen): kept');
    assert.equal(w.reader.threadIncarnations(901 + N + 1)[0].exitTs, lateTs, 'exited after the horizon: kept');
    // the synthetic stream's own threads never exit: all kept
    assert.equal(w.reader.threadIncarnations(g.tidOf(3)).length, 1);
    // a later check with the same horizon does not sweep again
    await w.enforceRetention();
    assert.equal(w.counters.prunedThreads, N);
    await w.close();
    const r = (await import('../../src/store/index.js')).openStoreReader(dir);
    assert.deepEqual(r.threadsOf(PID).map((t) => t.tid).sort(), [901 + N, 901 + N + 1], 'as committed');
    void r.root.close();
  } finally {
    cleanup();
  }
});

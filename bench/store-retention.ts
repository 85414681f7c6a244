// Retention cost: expire (drop) one time partition while ingesting.
// Ingests a realistic synthetic mix (1,000 threads, ~1 M events/s of capture
// time) into a store with small partitions, then keeps ingesting in slices of
// 50k records (each timed until its commits are done) while enforceRetention()
// drops the oldest partition. Reports the drop time (enforceRetention's own
// time: waiting for the in-flight commit, the sub-database drop, metadata
// pruning) and the ingest rate of the slices that overlap the drop relative to
// the slices before it.
//
//   npm run bench:retention [-- --quick] [-- --runs N]

import { rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FrameDecoder } from '../src/capture/decoder.js';
import { ClockHistory } from '../src/capture/clock.js';
import { openStoreWriter, type StoreWriter } from '../src/store/index.js';
import { SynthGen } from '../test/store/synth.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, runs: { type: 'string' } } });
const RUNS = values.runs ? Number(values.runs) : values.quick ? 3 : 5;
// partition width in capture time (the generator emits ~1 record per us)
const PART_NS = values.quick ? 250e6 : 1e9;
const WARM_PARTS = 3;
const SLICE = 50_000;
const BEFORE_SLICES = values.quick ? 6 : 10;
const AFTER_SLICES = values.quick ? 6 : 10;
const DIR = join(process.cwd(), 'build', 'bench-store', 'retention');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

class Feeder {
  private readonly d = new FrameDecoder();
  private readonly clock = new ClockHistory();
  constructor(private readonly w: StoreWriter) {}
  async feed(buf: Buffer): Promise<void> {
    for (let i = 0; i < buf.length; i += 65536) {
      for (const b of this.d.push(buf.subarray(i, i + 65536))) {
        const r = this.w.onBatch(b, this.clock);
        if (r) await r;
      }
    }
  }
}

interface Run { dropMs: number; beforeRate: number; duringRate: number; partEvents: number; slicesDuring: number }

async function runOnce(seed: number): Promise<Run> {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const w = openStoreWriter(DIR, { partitionNs: PART_NS, retentionEveryMs: 0 });
  const gen = new SynthGen({ seed, t0: 3_600_000_000_000 });
  const f = new Feeder(w);
  // warm up: WARM_PARTS partitions of capture time
  const warm = Math.round((WARM_PARTS * PART_NS) / 1000);
  for (let done = 0; done < warm; done += 250_000) await f.feed(gen.next(Math.min(250_000, warm - done)));
  // the writer's rounds are lmdb transactions whose puts run on this thread: let them commit
  await w.flush();
  // measured phase: frames prepared beforehand, so generation is not timed
  const slices: Buffer[] = [];
  for (let i = 0; i < BEFORE_SLICES + AFTER_SLICES; i++) slices.push(gen.next(SLICE));
  const parts = w.reader.partitions();
  const oldest = parts[0];
  const times: [number, number][] = [];
  let drop: Promise<{ ms: number; dropped: number[] }> | null = null;
  let dropStart = 0;
  let dropEnd = Infinity;
  let res: { ms: number; dropped: number[] } | null = null;
  for (let i = 0; i < slices.length; i++) {
    if (i === BEFORE_SLICES) {
      // exactly the oldest partition is older than this age (all its events ended by then)
      const maxAge = w.maxTimeNs - oldest.maxEnd;
      dropStart = performance.now();
      drop = w.enforceRetention({ maxAgeNs: maxAge });
      void drop.then((r) => {
        dropEnd = performance.now();
        res = r;
      });
    }
    const t0 = performance.now();
    await f.feed(slices[i]);
    // sustained rate: each slice ends when what it sealed is committed (open blocks stay open)
    w.tick();
    await w.root.committed;
    times.push([t0, performance.now()]);
  }
  await drop;
  await w.flush();
  await w.close();
  const r = res as unknown as { ms: number; dropped: number[] };
  if (r.dropped.length !== 1 || r.dropped[0] !== oldest.idx) throw new Error(`expected to drop partition ${oldest.idx}, dropped ${r.dropped.join(',')}`);
  const rate = (ts: [number, number][]): number => (ts.length * SLICE) / (ts.reduce((a, [x, y]) => a + (y - x), 0) / 1000);
  const before = times.slice(0, BEFORE_SLICES);
  // slices that overlap the drop (at least the one during which it started)
  const during = times.slice(BEFORE_SLICES).filter(([x, y]) => y >= dropStart && x <= dropEnd);
  if (!during.length) during.push(times[BEFORE_SLICES]);
  return { dropMs: r.ms, beforeRate: rate(before), duringRate: rate(during), partEvents: oldest.events, slicesDuring: during.length };
}

async function main(): Promise<void> {
  console.log(`partitions of ${PART_NS / 1e6} ms capture time (~${Math.round(PART_NS / 1000).toLocaleString('en-US')} records), ${WARM_PARTS} before the drop; slices of ${SLICE.toLocaleString('en-US')} records`);
  const xs: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const x = await runOnce(100 + i);
    xs.push(x);
    console.log(`run ${i + 1}: dropped a partition of ${x.partEvents.toLocaleString('en-US')} events in ${x.dropMs.toFixed(2)} ms; ingest ${Math.round(x.beforeRate).toLocaleString('en-US')} events/s before, ${Math.round(x.duringRate).toLocaleString('en-US')} events/s during (${x.slicesDuring} slice(s)), ${((100 * x.duringRate) / x.beforeRate).toFixed(1)}%`);
  }
  rmSync(DIR, { recursive: true, force: true });
  console.log(`RESULT retention_partition_events ${Math.round(median(xs.map((x) => x.partEvents)))} events`);
  console.log(`RESULT retention_drop_ms ${median(xs.map((x) => x.dropMs)).toFixed(2)} ms`);
  console.log(`RESULT retention_ingest_before_events_per_s ${Math.round(median(xs.map((x) => x.beforeRate)))} events/s`);
  console.log(`RESULT retention_ingest_during_pct ${median(xs.map((x) => (100 * x.duringRate) / x.beforeRate)).toFixed(1)} %`);
}

await main();

// Store ingest: realistic synthetic mix (~60% offcpu, 20% futex wait/wake,
// 10% cuda, 5% block io, rest task/clock) across 1,000 threads, built as real
// record frames (FrameWriter), decoded by FrameDecoder and fed to the store
// writer on one core. Reports events/s and bytes/event (pages in use).
//
//   npm run bench:ingest [-- --quick] [-- --events N] [-- --runs N]

import { rmSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { FrameDecoder } from '../src/capture/decoder.js';
import { ClockHistory } from '../src/capture/clock.js';
import { openStoreWriter, usedBytes } from '../src/store/index.js';
import { synthStream } from '../test/store/synth.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, events: { type: 'string' }, runs: { type: 'string' }, threads: { type: 'string' } } });
const N = values.events ? Number(values.events) : values.quick ? 1_000_000 : 5_000_000;
const RUNS = values.runs ? Number(values.runs) : values.quick ? 3 : 5;
const THREADS = values.threads ? Number(values.threads) : 1000;
const ROOT = join(process.cwd(), 'build', 'bench-store');

// The generator lives in test/store/synth.ts (shared with the store tests and the query/retention benches).
export { synthStream };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function runOnce(chunks: Buffer[], dir: string): Promise<{ rate: number; bpe: number; fileBpe: number; events: number }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const w = openStoreWriter(dir);
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  const t0 = performance.now();
  for (const c of chunks) {
    for (let i = 0; i < c.length; i += 65536) {
      for (const b of d.push(c.subarray(i, i + 65536))) {
        const r = w.onBatch(b, clock);
        if (r) await r;
      }
    }
  }
  await w.flush();
  const ms = performance.now() - t0;
  const events = w.counters.events;
  const used = usedBytes(w);
  await w.close();
  const file = statSync(join(dir, 'data.mdb')).size;
  return { rate: events / (ms / 1000), bpe: used / events, fileBpe: file / events, events };
}

async function baseline(n: number, dir: string): Promise<number> {
  rmSync(dir, { recursive: true, force: true });
  const db = open({ path: dir, keyEncoding: 'binary', encoding: 'binary' });
  const slab = Buffer.alloc(32 * 10_000);
  const t0 = performance.now();
  let p: Promise<boolean> = Promise.resolve(true);
  let s = 1;
  for (let i = 0; i < n; i += 10_000) {
    const sl = Buffer.from(slab);
    for (let j = 0; j < 10_000; j++) {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      const k = Buffer.allocUnsafe(16);
      k.writeUInt32BE(s % 1000, 0);
      k.writeUInt32BE(0, 4);
      k.writeUInt32BE(i + j, 8);
      k.writeUInt32BE(j, 12);
      p = db.put(k, sl.subarray(j * 32, j * 32 + 32));
    }
    await p;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await db.close();
  return rate;
}

async function main(): Promise<void> {
  const tg = performance.now();
  const chunks = synthStream(N, THREADS);
  const bytes = chunks.reduce((a, c) => a + c.length, 0);
  console.log(`generated ${N.toLocaleString('en-US')} records (${(bytes / 1e6).toFixed(0)} MB of frames) across ${THREADS} threads in ${((performance.now() - tg) / 1000).toFixed(1)} s`);
  const rates: number[] = [];
  const bpes: number[] = [];
  const fbpes: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const x = await runOnce(chunks, join(ROOT, 'ingest'));
    rates.push(x.rate);
    bpes.push(x.bpe);
    fbpes.push(x.fileBpe);
    console.log(`run ${r + 1}: ${Math.round(x.rate).toLocaleString('en-US')} events/s, ${x.bpe.toFixed(2)} B/event in use, ${x.fileBpe.toFixed(2)} B/event data.mdb (${x.events.toLocaleString('en-US')} events)`);
  }
  const bn = values.quick ? 200_000 : 1_000_000;
  const base = await baseline(bn, join(ROOT, 'baseline'));
  console.log(`baseline: plain lmdb put per event (16-byte key, 32-byte value), ${bn.toLocaleString('en-US')} events: ${Math.round(base).toLocaleString('en-US')} events/s`);
  // only this bench's own stores (bench:query keeps its built store under ROOT for reuse)
  for (const d of ['ingest', 'baseline']) rmSync(join(ROOT, d), { recursive: true, force: true });
  console.log(`RESULT ingest_events_per_s ${Math.round(median(rates))} events/s`);
  console.log(`RESULT ingest_bytes_per_event ${median(bpes).toFixed(2)} B/event`);
  console.log(`RESULT ingest_file_bytes_per_event ${median(fbpes).toFixed(2)} B/event`);
  console.log(`RESULT baseline_plain_put_events_per_s ${Math.round(base)} events/s`);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) await main();

// Store query latency: "everything on thread T in a 1 s window" in a store of
// >= 20 M events (realistic synthetic mix across 1,000 threads, ~1 M events/s
// of capture time, so a 1 s window holds ~1,000 events of one thread).
// The store is built once per parameter set under build/bench-store/ and
// reused by later runs. Queries run in this process on a read-only reader
// (as the MCP server would), touching every returned event.
//
//   npm run bench:query [-- --quick] [-- --events N] [-- --queries N] [-- --runs N] [-- --rebuild]

import { parseArgs } from 'node:util';
import { EventList, openStoreReader } from '../src/store/index.js';
import { ensureSynthStore } from './lib/synth-store.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' }, events: { type: 'string' }, queries: { type: 'string' }, runs: { type: 'string' },
    threads: { type: 'string' }, rebuild: { type: 'boolean' },
  },
});
const N = values.events ? Number(values.events) : values.quick ? 2_000_000 : 20_000_000;
const RUNS = values.runs ? Number(values.runs) : values.quick ? 3 : 5;
const QUERIES = values.queries ? Number(values.queries) : 1000;
const THREADS = values.threads ? Number(values.threads) : 1000;
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))];
}
const median = (xs: number[]): number => pct(xs, 0.5);

async function main(): Promise<void> {
  const built = await ensureSynthStore(N, THREADS, values.rebuild);
  if (built.reused) {
    console.log(`reusing store ${built.dir}: ${built.events.toLocaleString('en-US')} events (built earlier in ${built.buildS.toFixed(1)} s)`);
  } else {
    console.log(`built: ${built.events.toLocaleString('en-US')} events in ${built.buildS.toFixed(1)} s (${Math.round(built.events / built.buildS).toLocaleString('en-US')} events/s), ${(built.usedBytes / 1e6).toFixed(0)} MB in use (${(built.usedBytes / built.events).toFixed(1)} B/event)`);
  }
  const r = openStoreReader(built.dir);
  const out = new EventList(4096);
  let s = 12345;
  const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  const span = built.maxNs - built.minNs - 1e9;
  const p50s: number[] = [];
  const p99s: number[] = [];
  const means: number[] = [];
  let sink = 0;
  for (let run = 0; run < RUNS; run++) {
    const lat: number[] = [];
    let evs = 0;
    for (let q = 0; q < QUERIES; q++) {
      const tid = 10_000 + Math.floor(rnd() * THREADS);
      const a = built.minNs + Math.floor(rnd() * span);
      const t0 = performance.now();
      r.eventsOnThread(tid, a, a + 1e9, out);
      // touch every result: times, kind, first numeric field
      const f0 = out.f[0];
      for (let i = 0; i < out.count; i++) sink += out.end[i] - out.start[i] + out.kind[i] + (f0 ? f0[i] : 0);
      lat.push(performance.now() - t0);
      evs += out.count;
    }
    const p50 = pct(lat, 0.5);
    const p99 = pct(lat, 0.99);
    p50s.push(p50);
    p99s.push(p99);
    means.push(lat.reduce((x, y) => x + y, 0) / lat.length);
    console.log(`run ${run + 1}: ${QUERIES} queries, ${Math.round(evs / QUERIES)} events/query, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, max ${Math.max(...lat).toFixed(3)} ms`);
  }
  void sink;
  await r.root.close();
  console.log(`RESULT query_store_events ${built.events} events`);
  console.log(`RESULT query_p50_ms ${median(p50s).toFixed(3)} ms`);
  console.log(`RESULT query_p99_ms ${median(p99s).toFixed(3)} ms`);
  console.log(`RESULT query_mean_ms ${median(means).toFixed(3)} ms`);
}

await main();

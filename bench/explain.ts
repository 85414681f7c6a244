// Explain latency: explainTrace() of a 20-span trace on a store of >= 20 M
// events (the realistic synthetic mix of bench/store-query.ts: 1,000 threads
// in 50 processes, ~1 M events/s of capture time). Reuses that bench's store
// under build/bench-store/ (builds it if missing) and adds the trace's spans
// to its span index (idempotent). 18 spans are joined by thread (linux.tid),
// 2 by process (process.pid only); durations 5-200 ms at random times.
// Runs in this process on a read-only reader, as the MCP server / CLI would.
//
//   npm run bench:explain [-- --quick] [-- --runs N] [-- --events N]

import { parseArgs } from 'node:util';
import { explainTrace } from '../src/correlator/index.js';
import { openStoreReader, openStoreWriter, type SpanInput } from '../src/store/index.js';
import { SYNTH_T0 as T0, ensureSynthStore } from './lib/synth-store.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, runs: { type: 'string' }, events: { type: 'string' } } });
const N = values.events ? Number(values.events) : values.quick ? 2_000_000 : 20_000_000;
const RUNS = values.runs ? Number(values.runs) : values.quick ? 200 : 500;
const THREADS = 1000;
const EPOCH0 = 1_763_730_000_000_000_000n; // realtime at SYNTH_T0 in the synthetic stream
const TRACE = 'e1' + '0'.repeat(29) + '1';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

async function main(): Promise<void> {
  const built = await ensureSynthStore(N, THREADS);
  console.log(`${built.reused ? 'reusing' : 'built'} store ${built.dir}: ${built.events.toLocaleString('en-US')} events`);
  // the trace: 20 spans at random times and threads
  let s = 777;
  const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  const spans: SpanInput[] = [];
  const range = built.maxNs - built.minNs - 2e9;
  for (let k = 0; k < 20; k++) {
    const ti = Math.floor(rnd() * THREADS);
    const tid = 10_000 + ti;
    const pid = 10_000 + (ti - (ti % 20));
    const start = built.minNs + 1e9 + Math.floor(rnd() * range);
    const dur = Math.floor((5 + rnd() * 195) * 1e6);
    spans.push({
      traceId: TRACE, spanId: (0x1000 + k).toString(16).padStart(16, '0'), parentSpanId: k ? (0x1000).toString(16).padStart(16, '0') : null,
      service: k < 18 ? 'api' : 'engine', name: `op${k}`,
      startUnixNano: EPOCH0 + BigInt(start - T0), endUnixNano: EPOCH0 + BigInt(start - T0 + dur),
      pid, tid: k < 18 ? tid : null,
    });
  }
  const w = openStoreWriter(built.dir);
  await w.reader.spans.putSpans(spans);
  await w.close();

  const r = openStoreReader(built.dir);
  let t = performance.now();
  let e = explainTrace(r, TRACE);
  const first = performance.now() - t;
  const causes = e.spans.reduce((a, x) => a + x.causes.length, 0);
  const evs = e.spans.reduce((a, x) => a + x.causes.reduce((b, c) => b + c.evidence.length, 0), 0);
  console.log(`first call (loads the clock/drops caches: ${r.clockSamples().length.toLocaleString('en-US')} clock samples): ${first.toFixed(1)} ms`);
  console.log(`trace: ${e.spans.length} spans (${JSON.stringify(e.data_quality.correlation)}), ${causes} causes, ${evs} evidence entries; ${e.summary.slice(0, 160)}`);
  for (let i = 0; i < 20; i++) explainTrace(r, TRACE);
  const lat: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    t = performance.now();
    e = explainTrace(r, TRACE);
    lat.push(performance.now() - t);
  }
  if (e.spans.length !== 20) throw new Error('trace not found');
  console.log(`${RUNS} runs: p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms, max ${Math.max(...lat).toFixed(2)} ms`);
  await r.root.close();
  console.log(`RESULT explain_store_events ${built.events} events`);
  console.log(`RESULT explain_p50_ms ${pct(lat, 0.5).toFixed(3)} ms`);
  console.log(`RESULT explain_p99_ms ${pct(lat, 0.99).toFixed(3)} ms`);
  console.log(`RESULT explain_first_call_ms ${first.toFixed(1)} ms`);
}

await main();

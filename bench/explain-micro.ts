// The explain half of bench:pipeline in one process, no HTTP: the same span
// mix through EnrichPipeline (span index off, no upstream), timing only the
// explain + enrich ticks. A steadier figure than the pipeline bench on a
// shared machine, for iterating on the explain hot path.
//
//   npx tsx bench/explain-micro.ts [--spans N] [--random] [--rounds R]

import { parseArgs } from 'node:util';
import { openStoreWriter } from '../src/store/index.js';
import { EnrichPipeline } from '../src/otel/index.js';
import { EPOCH0, SpanMix, SPANS_PER_REQ } from './lib/span-mix.js';
import { ensureSynthStore } from './lib/synth-store.js';

const { values } = parseArgs({ options: { spans: { type: 'string' }, random: { type: 'boolean' }, rounds: { type: 'string' }, events: { type: 'string' } } });
const total = Number(values.spans ?? 40_960);
const built = await ensureSynthStore(Number(values.events ?? 2_000_000), 1000);
const w = openStoreWriter(built.dir);
const cache = w.reader.enableBlockCache();
const mix = new SpanMix(built.minNs, built.maxNs, !!values.random);
const rounds = Number(values.rounds ?? 4);
const rates: number[] = [];
const cpuRates: number[] = [];
let enriched = 0;
for (let round = 0; round < rounds; round++) {
  const p = new EnrichPipeline({ kernel: { reader: w.reader, watermarkUnixNano: () => EPOCH0 + 10n ** 15n }, spanSink: null, upstream: null, maxBufferedSpans: 10_000_000, log: () => {} });
  const nReq = total / SPANS_PER_REQ;
  const reqs = [];
  for (let i = 0; i < nReq; i++) reqs.push(mix.request(null, i / nReq));
  for (const r of reqs) await p.consume(r, { transport: 'http' } as never);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  p.tick(true);
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  await p.close();
  enriched = p.counters.enriched;
  rates.push(total / (ms / 1000));
  cpuRates.push(total / ((c.user + c.system) / 1e6));
  console.log(`round ${round}: ${total} spans explained in ${ms.toFixed(0)} ms = ${Math.round(total / (ms / 1000))} spans/s (cpu ${((c.user + c.system) / 1000).toFixed(0)} ms); enriched ${p.counters.enriched}, passed ${JSON.stringify(p.counters.passed)}`);
}
console.log(`cache hits ${cache.hits} misses ${cache.misses} size ${cache.size}`);
const med = (xs: number[]): number => { const s = xs.slice(1).sort((a, b) => a - b); return Math.round(s[Math.floor(s.length / 2)]); };
console.log(`RESULT explain_micro_spans_per_s ${med(rates)} (median of rounds 1..; enriched ${enriched})`);
console.log(`RESULT explain_micro_spans_per_cpu_s ${med(cpuRates)} (process CPU, GC threads included)`);
await w.close();

// Span index writes as the OTel pipeline makes them: SpanIndex.putSpans of
// 256 spans a call, up to 4 calls in flight (the pipeline does not wait for a
// commit before taking the next request), into a fresh store. What matters
// for the bridge is the receiving thread: its event-loop active time per span
// (lmdb-js applies batches on its own write thread), next to the process's
// CPU per span (every thread).
//
//   npm run bench:span-index [-- --quick] [-- --spans N] [-- --runs R]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openStoreWriter, type SpanInput } from '../src/store/index.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, spans: { type: 'string' }, runs: { type: 'string' } } });
const PER_CALL = 256;
const total = Number(values.spans ?? (values.quick ? 51_200 : 204_800));
const runs = Number(values.runs ?? (values.quick ? 3 : 5));
const EPOCH0 = 1_763_730_000_000_000_000n;

let n = 0;
function call(): SpanInput[] {
  const out: SpanInput[] = [];
  for (let i = 0; i < PER_CALL; i++) {
    n++;
    const tid = (n * 7919) % 1000;
    const start = EPOCH0 + BigInt(n) * 50_000n;
    out.push({
      // trace ids in no order (as from many clients), span ids increasing
      traceId: BigInt.asUintN(128, BigInt(n) * 0x9e3779b97f4a7c15n + 1n).toString(16).padStart(32, '0'),
      spanId: (0x5000000000000000n + BigInt(n)).toString(16).padStart(16, '0'),
      parentSpanId: null, service: 'bench-api', name: 'GET /api/v1/items', startUnixNano: start, endUnixNano: start + 5_000_000n,
      kind: 2, statusCode: 0, pid: 10_000 + tid - (tid % 20), tid: 10_000 + tid, processId: null, requestId: null, attributes: {},
    });
  }
  return out;
}

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const activeUs: number[] = [];
const cpuUs: number[] = [];
const rates: number[] = [];
const expireRates: number[] = [];
const expireActiveUs: number[] = [];
const expireCpuUs: number[] = [];
for (let r = 0; r < runs; r++) {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-bench-spans-'));
  const w = openStoreWriter(dir);
  const calls = Array.from({ length: total / PER_CALL }, call);
  const elu0 = performance.eventLoopUtilization();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (const c of calls) {
    inflight.push(w.reader.spans.putSpans(c));
    if (inflight.length >= 4) await inflight.shift();
    await new Promise((res) => setImmediate(res));
  }
  await Promise.all(inflight);
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  const c = process.cpuUsage(c0);
  const batches = w.reader.spans.batches;
  // retention: the older half expired, a default batch (SPAN_EXPIRE_BATCH) per call, as the writer's checks do
  const cut = EPOCH0 + BigInt(n - total / 2 + 1) * 50_000n; // this run's first total / 2 spans started before it
  const xElu0 = performance.eventLoopUtilization();
  const xc0 = process.cpuUsage();
  const xt0 = performance.now();
  let expired = 0;
  for (;;) {
    const x = await w.reader.spans.expireBefore(cut);
    expired += x.deleted;
    if (!x.more) break;
  }
  const xms = performance.now() - xt0;
  const xElu = performance.eventLoopUtilization(xElu0);
  const xc = process.cpuUsage(xc0);
  await w.close();
  rmSync(dir, { recursive: true, force: true });
  if (expired !== total / 2) throw new Error(`expired ${expired} spans, expected ${total / 2}`);
  activeUs.push((elu.active * 1000) / total);
  cpuUs.push((c.user + c.system) / total);
  rates.push(total / (ms / 1000));
  expireRates.push(expired / (xms / 1000));
  expireActiveUs.push((xElu.active * 1000) / expired);
  expireCpuUs.push((xc.user + xc.system) / expired);
  console.log(`run ${r}: ${total} spans in ${ms.toFixed(0)} ms = ${Math.round(total / (ms / 1000))} spans/s; receiving thread ${activeUs[r].toFixed(2)} µs/span; process CPU ${cpuUs[r].toFixed(2)} µs/span; ${batches} commits; ` +
    `expired ${expired} in ${xms.toFixed(0)} ms (thread ${expireActiveUs[r].toFixed(2)} µs/span, process CPU ${expireCpuUs[r].toFixed(2)} µs/span)`);
}
console.log(`RESULT span_index_spans_per_s ${Math.round(med(rates))} spans/s`);
console.log(`RESULT span_index_thread_us_per_span ${med(activeUs).toFixed(2)} µs (event-loop active time per span)`);
console.log(`RESULT span_index_cpu_us_per_span ${med(cpuUs).toFixed(2)} µs (process CPU per span, all threads)`);
console.log(`RESULT span_index_expire_spans_per_s ${Math.round(med(expireRates))} spans/s (retention: expireBefore, a batch per call)`);
console.log(`RESULT span_index_expire_thread_us_per_span ${med(expireActiveUs).toFixed(2)} µs (event-loop active time per span expired)`);

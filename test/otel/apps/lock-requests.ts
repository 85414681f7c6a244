// A Node app instrumented with the OTel JS SDK and kspan's
// LinuxThreadIdSpanProcessor, exporting OTLP/gRPC to KSPAN_OTLP. It serves
// REQUESTS (default 20) consecutive lock-bound requests: for each, a sibling
// thread (a worker_threads Worker, its own OS thread) takes a mutex and holds
// it HOLD_MS (default 120); the request's span `checkout`, on the main thread,
// blocks acquiring it until the holder releases it.
//
// The mutex is a futex-style lock on a SharedArrayBuffer: compareExchange to
// take it, Atomics.wait to block (a futex wait in the kernel, through V8's
// condition variable), Atomics.notify from the holder to wake the waiter.
// Known answer per request: the wait the app measured, and the holder's tid.
// Each span is exported as soon as its request ends (forceFlush).
// Prints {pid, tid, holder_tid, requests: [{trace_id, span_id, wait_ns}]}.

import { Worker } from 'node:worker_threads';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { LinuxThreadIdSpanProcessor, linuxTid } from '../../../src/otel/index.js';

const url = process.env.KSPAN_OTLP;
if (!url) throw new Error('set KSPAN_OTLP');
const N = Number(process.env.REQUESTS ?? 20);
const holdMs = Number(process.env.HOLD_MS ?? 120);

const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'lock-node' }),
  spanProcessors: [new LinuxThreadIdSpanProcessor(), new BatchSpanProcessor(new OTLPTraceExporter({ url }))],
});
const tracer = provider.getTracer('kspan-test-app', '1.0.0');

// [0] the mutex (0 free, 1 held)  [1] requests released to the holder  [2] requests whose lock the holder took  [3] a cell to sleep on
const cells = new Int32Array(new SharedArrayBuffer(16));
const LOCK = 0, GO = 1, TAKEN = 2, NAP = 3;

const holderSrc = `
const { workerData, parentPort } = require('node:worker_threads');
const { readlinkSync } = require('node:fs');
const c = new Int32Array(workerData.sab);
parentPort.postMessage(Number(readlinkSync('/proc/thread-self').split('/').pop()));
for (let i = 0; i < workerData.n; i++) {
  while (Atomics.load(c, ${GO}) <= i) Atomics.wait(c, ${GO}, i);
  while (Atomics.compareExchange(c, ${LOCK}, 0, 1) !== 0) Atomics.wait(c, ${LOCK}, 1);
  Atomics.store(c, ${TAKEN}, i + 1);
  Atomics.notify(c, ${TAKEN});
  Atomics.wait(c, ${NAP}, 0, workerData.holdMs);   // hold the lock HOLD_MS (asleep)
  Atomics.store(c, ${LOCK}, 0);
  Atomics.notify(c, ${LOCK}, 1);                   // wake the waiter
}
`;
const worker = new Worker(holderSrc, { eval: true, workerData: { sab: cells.buffer, n: N, holdMs } });
const holderTid = await new Promise<number>((resolve, reject) => {
  worker.once('message', resolve);
  worker.once('error', reject);
});

const requests: { trace_id: string; span_id: string; wait_ns: number }[] = [];
for (let i = 0; i < N; i++) {
  Atomics.store(cells, GO, i + 1);
  Atomics.notify(cells, GO);
  while (Atomics.load(cells, TAKEN) <= i) Atomics.wait(cells, TAKEN, i); // the holder has the lock
  const span = tracer.startSpan('checkout', { attributes: { 'app.request': i } });
  const t0 = process.hrtime.bigint();
  while (Atomics.compareExchange(cells, LOCK, 0, 1) !== 0) Atomics.wait(cells, LOCK, 1);
  const t1 = process.hrtime.bigint();
  Atomics.store(cells, LOCK, 0);
  span.end();
  const ctx = span.spanContext();
  requests.push({ trace_id: ctx.traceId, span_id: ctx.spanId, wait_ns: Number(t1 - t0) });
  // each span leaves as its request ends, so it reaches kspan milliseconds after
  // its end: the case kspan's bounded wait has to cover
  await provider.forceFlush();
}
await worker.terminate();
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(JSON.stringify({ pid: process.pid, tid: linuxTid(), holder_tid: holderTid, requests }) + '\n');

// LinuxThreadIdSpanProcessor end to end: real BasicTracerProvider + the real
// OTLP/HTTP protobuf exporter → the real OtlpReceiver on an ephemeral loopback
// port; the decoded spans carry the OS tid of the thread that started them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OtlpReceiver } from '../../src/otel/receiver.js';
import { findAttr, type ConsumeResult, type DecodedTraceRequest, type Span, type SpanConsumer } from '../../src/otel/types.js';
import { LinuxThreadIdSpanProcessor, linuxTid, parseThreadSelf } from '../../src/otel/thread-id-processor.js';

class Collect implements SpanConsumer {
  spans: Span[] = [];
  async consume(req: DecodedTraceRequest): Promise<ConsumeResult> {
    for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) this.spans.push(...ss.spans);
    return { rejectedSpans: 0 };
  }
  take(): Span[] { const s = this.spans; this.spans = []; return s; }
}

const sink = new Collect();
let rx: OtlpReceiver;
let url: string;

before(async () => {
  rx = await OtlpReceiver.start({ consumer: sink, httpAddr: '127.0.0.1:0', grpcAddr: null });
  url = `http://127.0.0.1:${rx.httpPort}/v1/traces`;
});
after(async () => { await rx.close(); });

const tasks = (): Set<number> => new Set(readdirSync('/proc/self/task').map(Number));

function intAttr(span: Span, key: string): number | undefined {
  const v = findAttr(span.attributes, key);
  if (v === undefined) return undefined;
  assert.equal(v.type, 'int', `${key} is an int attribute`);
  return Number((v as { type: 'int'; value: bigint }).value);
}

test('parseThreadSelf', () => {
  assert.equal(parseThreadSelf('123/task/456'), 456);
  assert.equal(parseThreadSelf('123'), null);
  assert.equal(parseThreadSelf('self'), null);
  assert.equal(parseThreadSelf('1/task/0'), null);
});

test('main thread: spans carry linux.tid == pid (the main thread tid) and process.pid', async () => {
  // independent: the main thread is the thread group leader, tid == pid, listed in /proc/self/task
  assert.ok(tasks().has(process.pid));
  assert.equal(readlinkSync('/proc/thread-self'), `${process.pid}/task/${process.pid}`);
  assert.equal(linuxTid(), process.pid);

  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'tid-main' }),
    spanProcessors: [new LinuxThreadIdSpanProcessor(), new SimpleSpanProcessor(new OTLPTraceExporter({ url }))],
  });
  const tracer = provider.getTracer('tid-test');
  tracer.startSpan('main-span').end();
  tracer.startSpan('preset', { attributes: { 'linux.tid': 7, 'process.pid': 8 } }).end();
  await provider.forceFlush();
  await provider.shutdown();

  const spans = sink.take();
  assert.equal(spans.length, 2);
  const main = spans.find((s) => s.name === 'main-span')!;
  assert.equal(intAttr(main, 'linux.tid'), process.pid);
  assert.equal(intAttr(main, 'process.pid'), process.pid);
  assert.equal(findAttr(main.attributes, 'thread.id'), undefined, 'thread.id (a runtime id) is not set');
  const preset = spans.find((s) => s.name === 'preset')!;
  assert.equal(intAttr(preset, 'linux.tid'), 7, 'caller-set value kept');
  assert.equal(intAttr(preset, 'process.pid'), 8);
});

test('worker_threads: spans carry the worker\'s own OS tid', async () => {
  const before = tasks();
  // Node 20 workers do not inherit the tsx loader hooks: register them inside the worker, then load the TS body.
  const body = new URL('./thread-id-worker.ts', import.meta.url).href;
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(body)}); });`;
  const worker = new Worker(boot, { eval: true, workerData: { url } });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  const msg = await new Promise<{ link: string; threadId: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  try {
    const spans = sink.take();
    assert.deepEqual(spans.map((s) => s.name).sort(), ['worker-span', 'worker-span-2']);
    const tids = spans.map((s) => intAttr(s, 'linux.tid'));
    const tid = tids[0]!;
    assert.equal(tids[1], tid, 'same thread, same tid (cached per isolate)');
    assert.notEqual(tid, process.pid, 'differs from the main thread tid');
    assert.ok(tasks().has(tid), `tid ${tid} is a live thread under /proc/self/task`);
    assert.ok(!before.has(tid), 'the thread did not exist before the worker started');
    assert.equal(msg.link, `${process.pid}/task/${tid}`, 'matches the worker\'s own /proc/thread-self');
    assert.notEqual(msg.threadId, tid, 'worker_threads.threadId is a runtime id, not the tid');
    for (const s of spans) {
      assert.equal(intAttr(s, 'process.pid'), process.pid);
      assert.equal(findAttr(s.attributes, 'thread.id'), undefined);
    }
    worker.postMessage('exit');
    assert.equal(await exited, 0);
    // the OS thread goes away with the worker
    for (let i = 0; i < 100 && tasks().has(tid); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(!tasks().has(tid), 'tid gone from /proc/self/task after the worker exited');
  } finally {
    await worker.terminate();
  }
});

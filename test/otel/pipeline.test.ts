// EnrichPipeline + UpstreamExporter on a synthetic store (known kernel
// events) with a real OTLP backend (@elastic/mockotlpserver): what goes out
// in each mode, and what happens when the kernel side or the upstream is down.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { Kind, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { openStoreWriter } from '../../src/store/index.js';
import { FrameWriter } from '../helpers/frames.js';
import { feed, tempDir } from '../store/util.js';
import {
  EnrichPipeline, OtlpReceiver, ResourceRef, UpstreamExporter, decodeRpcStatus, decodeTraceRequestProtobuf, encodeTraceRequest, scanTraceRequestProtobuf, type DecodedTraceRequest,
  type KernelSide, type OutgoingSpan, type Span,
} from '../../src/otel/index.js';
import { EPOCH0, MS, NOW, T0, W0, buildStore, epoch, sp, tr, type Built } from '../correlator/util.js';
import { UpstreamSink } from './upstream-sink.js';
import { scenarioSpans } from './sdk-fixture.js';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';

const PID = 100;
const A = 101;
const HOG = 900;
const META = { transport: 'http', encoding: 'protobuf', wireBytes: 0, bodyBytes: 0, spanCount: 1, receivedUnixNano: 0n } as const;

let st: Built;
let sink: UpstreamSink;

before(async () => {
  // thread A is preempted by the hog for 40 ms of [W0, W0 + 100 ms]
  st = await buildStore('pipeline', (fw) => {
    fw.task({ ts: W0 - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
    fw.task({ ts: W0 - 500 * MS, pid: HOG, tid: HOG + 1, event: TaskEvent.NAME, startTime: 2, comm: 'hog', pcomm: 'hog' });
    fw.offcpu({ ts: W0 + 60 * MS, pid: PID, tid: A, startNs: W0 + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1, cpu: 1 });
  }, []);
  sink = await UpstreamSink.start({ http: true });
});

after(async () => {
  await sink?.close();
  st?.cleanup();
});

const str = (key: string, value: string) => ({ key, value: { type: 'string' as const, value } });
const int = (key: string, value: number) => ({ key, value: { type: 'int' as const, value: BigInt(value) } });

function span(n: number, o: Partial<Span> = {}): Span {
  return {
    traceId: tr(n), spanId: sp(n), traceState: '', parentSpanId: '', flags: 1, name: `op${n}`, kind: 2,
    startTimeUnixNano: epoch(W0), endTimeUnixNano: epoch(W0 + 100 * MS),
    attributes: [int('linux.tid', A), int('process.pid', PID), str('app.attr', 'kept')], droppedAttributesCount: 0,
    events: [{ timeUnixNano: epoch(W0 + 1 * MS), name: 'app.event', attributes: [str('x', 'y')], droppedAttributesCount: 0 }],
    droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' }, ...o,
  };
}

function request1(spans: Span[], service = 'svc'): DecodedTraceRequest {
  return {
    resourceSpans: [{
      resource: { attributes: [str('service.name', service)], droppedAttributesCount: 0 },
      scopeSpans: [{ scope: { name: 'test-scope', version: '2.0', attributes: [], droppedAttributesCount: 0 }, spans, schemaUrl: '' }],
      schemaUrl: '',
    }],
  };
}

const kernelAt = (w: bigint | null): KernelSide => ({ reader: st.reader, watermarkUnixNano: () => w });
const upstream = (url = sink.grpcUrl, o: Partial<ConstructorParameters<typeof UpstreamExporter>[0]> = {}) =>
  new UpstreamExporter({ url, timeoutMs: 1000, backoffMs: 100, maxBackoffMs: 400, log: () => {}, ...o });
const opts = { tickMs: 10, log: () => {} };

test('span-events mode: the span goes out with its own ids, attributes and events plus kspan attributes and a kspan.cause event', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, ...opts });
  await p.consume(request1([span(1), span(2, { attributes: [str('app.attr', 'no tid')] })]), META);
  await p.close();
  await up.close();
  const a = await sink.span(sp(1));
  assert.equal(a.span.traceId, tr(1));
  assert.equal(a.span.name, 'op1');
  assert.equal(a.span.kind, 'SPAN_KIND_SERVER');
  assert.equal(a.span.startTimeUnixNano, epoch(W0).toString());
  assert.equal(a.resource['service.name'], 'svc');
  assert.deepEqual(a.scope.name, 'test-scope');
  assert.equal(a.span.attributes['app.attr'], 'kept');
  assert.equal(a.span.attributes['kspan.correlation.method'], 'thread');
  assert.equal(Number(a.span.attributes['kspan.runqueue_ns']), 40 * MS);
  assert.equal(Number(a.span.attributes['kspan.on_cpu_ns']), 60 * MS);
  assert.equal(a.span.attributes['kspan.top_cause'], 'cpu_preemption');
  const names = a.span.events!.map((e) => e.name);
  assert.deepEqual(names.slice(0, 2), ['app.event', 'kspan.cause'], 'app events kept, kspan events appended');
  const c = a.span.events!.find((e) => e.name === 'kspan.cause')!.attributes;
  assert.equal(c['kspan.cause.kind'], 'cpu_preemption');
  assert.equal(Number(c['kspan.duration_ns']), 40 * MS);
  assert.equal(c['kspan.share'], 0.4);
  assert.equal(Number(c['kspan.culprit.pid']), HOG);
  assert.equal(c['kspan.culprit.comm'], 'hog');
  assert.equal(c['kspan.severity'], 'high');
  assert.ok(a.span.events!.some((e) => e.name === 'kspan.chain' && e.attributes['kspan.chain.step'] === 'preempted_by'));
  // no kernel data: forwarded exactly as received
  const b = await sink.span(sp(2));
  assert.deepEqual(Object.keys(b.span.attributes), ['app.attr']);
  assert.deepEqual(b.span.events!.map((e) => e.name), ['app.event']);
  assert.equal(p.counters.enriched, 1);
  assert.equal(p.counters.passed.noKernelData, 1);
  assert.equal(up.counters.exported, 2);
});

test('child-spans mode: only a `kspan` child span under the original goes out, carrying the same events', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, emit: 'child-spans', ...opts });
  await p.consume(request1([span(3), span(4, { attributes: [] })]), META);
  await p.close();
  await up.close();
  await sink.waitFor((r) => r.some((x) => x.span.parentSpanId === sp(3)), 10_000, 'the child span');
  const child = sink.received.find((x) => x.span.parentSpanId === sp(3))!;
  assert.equal(child.span.name, 'kspan');
  assert.equal(child.span.traceId, tr(3));
  assert.notEqual(child.span.spanId, sp(3));
  assert.equal(child.span.startTimeUnixNano, epoch(W0).toString());
  assert.equal(child.span.endTimeUnixNano, epoch(W0 + 100 * MS).toString());
  assert.equal(child.resource['service.name'], 'svc', 'under the original resource');
  assert.equal(child.span.events!.find((e) => e.name === 'kspan.cause')!.attributes['kspan.cause.kind'], 'cpu_preemption');
  assert.ok(!sink.received.some((x) => x.span.spanId === sp(3) || x.span.spanId === sp(4)), 'originals are never re-sent');
  assert.equal(p.counters.childSpans, 1);
  assert.equal(p.counters.passed.noKernelData, 1);
});

test('kernel side down: spans are forwarded at once, unchanged, and counted', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(null), upstream: up, ...opts });
  await p.consume(request1([span(5)]), META);
  assert.equal(p.bufferedSpans, 0, 'nothing waits for a kernel side that is not there');
  const got = await sink.span(sp(5));
  assert.ok(!Object.keys(got.span.attributes).some((k) => k.startsWith('kspan.')));
  assert.equal(p.counters.passed.kernelDown, 1);
  await p.close();
  await up.close();
});

test('the bounded wait: a span whose window the watermark has not reached is enriched after --wait, not before', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(epoch(W0)), upstream: up, waitMs: 400, ...opts });
  const t0 = Date.now();
  await p.consume(request1([span(6)]), META);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(p.bufferedSpans, 1, 'still waiting for the kernel data');
  const got = await sink.span(sp(6));
  assert.ok(Date.now() - t0 >= 400, 'held for the wait');
  assert.equal(got.span.attributes['kspan.top_cause'], 'cpu_preemption', 'enriched with what the store has');
  // and with the watermark past the span's end it goes at once
  const p2 = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, waitMs: 60_000, ...opts });
  const t1 = Date.now();
  await p2.consume(request1([span(7)]), META);
  await sink.span(sp(7));
  assert.ok(Date.now() - t1 < 5000);
  await p.close();
  await p2.close();
  await up.close();
});

test('wait expired before the window was ingested: the missing part goes out as unknown (settling), never on CPU; counted as partial', async () => {
  // a live writer (its head is read): A preempted [W0+20, W0+60] ms, the probe has drained up to W0+51 ms (watermark W0+50)
  const { dir, cleanup } = tempDir('pipeline-partial');
  const w = openStoreWriter(dir, { maxAgeMs: 3_600_000, roundMs: 3_600_000, retentionEveryMs: 0 });
  const up = upstream();
  try {
    const fw = new FrameWriter();
    fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000 });
    fw.task({ ts: W0 - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'req', pcomm: 'app' });
    fw.offcpu({ ts: W0 + 40 * MS, pid: PID, tid: A, startNs: W0 + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1, cpu: 1 });
    fw.raw(Kind.DRAINED, 24, { ts: W0 + 51 * MS });
    await feed(w, fw.toBuffer());
    const p = new EnrichPipeline({ kernel: { reader: w.reader, watermarkUnixNano: () => epoch(w.ingestWatermarkNs) }, upstream: up, waitMs: 200, ...opts });
    await p.consume(request1([span(30)]), META);
    const got = await sink.span(sp(30));
    const a = got.span.attributes;
    assert.equal(a['kspan.data.settling'], true);
    assert.equal(Number(a['kspan.data.not_ingested_ns']), 50 * MS);
    assert.equal(Number(a['kspan.unknown_ns']), 50 * MS, 'the part after the watermark is unknown');
    assert.equal(Number(a['kspan.runqueue_ns']), 20 * MS);
    assert.equal(Number(a['kspan.on_cpu_ns']), 30 * MS, 'on CPU only where capture saw it');
    assert.equal(p.counters.enriched, 1);
    assert.equal(p.counters.enrichedPartial, 1);
    await p.close();
  } finally {
    await up.close();
    await w.close();
    cleanup();
  }
});

test('buffer bound: past --buffer-spans the oldest traces are forwarded unchanged, counted', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(epoch(W0)), upstream: up, waitMs: 60_000, maxBufferedSpans: 2, ...opts });
  await p.consume(request1([span(11), span(12), span(13), span(14), span(15)]), META);
  assert.equal(p.counters.passed.bufferFull, 3);
  assert.equal(p.bufferedSpans, 2);
  await sink.span(sp(11));
  await p.close(); // graceful: the rest are explained and sent
  await up.close();
  const last = await sink.span(sp(15));
  assert.equal(last.span.attributes['kspan.top_cause'], 'cpu_preemption');
  assert.equal(p.counters.enriched, 2);
});

test('held spans are kept encoded: the bytes that go upstream are the ones an unheld span gives; kspan behind kspan keeps one copy of each key', async () => {
  const sent: OutgoingSpan[] = [];
  const up = { send: (xs: OutgoingSpan[]) => { sent.push(...xs); }, saturated: () => null } as unknown as UpstreamExporter;
  const wire = (o: OutgoingSpan): Span => decodeTraceRequestProtobuf(encodeTraceRequest({
    resourceSpans: [{ resource: { attributes: [], droppedAttributesCount: 0 }, scopeSpans: [{ scope: o.scope, spans: [o.span], schemaUrl: '' }], schemaUrl: '' }],
  })).resourceSpans[0].scopeSpans[0].spans[0];
  // 161: a plain span; 162: enriched by a kspan before this one (its attributes and events must not stay twice)
  const stale = span(162, {
    attributes: [int('linux.tid', A), int('process.pid', PID), str('kspan.top_cause', 'stale'), str('app.attr', 'kept')],
    events: [{ timeUnixNano: epoch(W0), name: 'kspan.cause', attributes: [str('kspan.cause.kind', 'stale')], droppedAttributesCount: 0 }],
    links: [{ traceId: tr(9), spanId: sp(9), traceState: 'k=v', attributes: [str('l', 'm')], droppedAttributesCount: 1, flags: 257 }],
    status: { code: 2, message: 'boom' }, droppedEventsCount: 3,
  });
  const plain = span(161, { links: stale.links, status: stale.status, droppedEventsCount: 3, droppedAttributesCount: 2 });
  // what the unheld spans encode to (the test's own copies: the pipeline replaces the ones it holds)
  const before = [span(161, { links: stale.links, status: stale.status, droppedEventsCount: 3, droppedAttributesCount: 2 })];
  const p = new EnrichPipeline({ kernel: kernelAt(epoch(W0)), upstream: up, waitMs: 60_000, ...opts });
  await p.consume(request1([plain, stale]), META);
  const heldBytes = p.bufferedSpanBytes;
  // nothing explainable yet (the watermark is at the window's start): the spans are held, then forced out unchanged at close
  assert.equal(p.bufferedSpans, 2);
  assert.ok(heldBytes > 0);
  await p.close();
  assert.equal(sent.length, 2);
  const out161 = sent.find((o) => o.span.spanId === sp(161))!;
  assert.ok(out161.span.encodedFields, 'held encoded');
  assert.ok(Object.isFrozen(out161.span.attributes), 'its decoded lists are not kept (frozen empty)');
  const a = wire(out161);
  // the span's own fields as they came, then kspan's
  const own = wire({ ...out161, span: before[0] });
  assert.deepEqual(a.attributes.slice(0, own.attributes.length), own.attributes);
  assert.deepEqual(a.links, own.links);
  assert.deepEqual(a.status, own.status);
  assert.equal(a.droppedEventsCount, 3);
  assert.equal(a.droppedAttributesCount, 2);
  assert.deepEqual(a.events.slice(0, own.events.length), own.events);
  assert.ok(a.attributes.some((x) => x.key === 'kspan.correlation.method'), 'enriched');
  const b = wire(sent.find((o) => o.span.spanId === sp(162))!);
  assert.equal(b.attributes.filter((x) => x.key === 'kspan.top_cause').length <= 1, true);
  assert.ok(!b.attributes.some((x) => x.key === 'kspan.top_cause' && x.value.type === 'string' && x.value.value === 'stale'), 'the stale kspan attribute is replaced');
  assert.ok(!b.events.some((e) => e.attributes.some((x) => x.value.type === 'string' && x.value.value === 'stale')), 'the stale kspan event is replaced');
  assert.ok(b.attributes.some((x) => x.key === 'app.attr'));
  assert.deepEqual(b.links, own.links);
  assert.equal(p.bufferedSpanBytes, 0);
});

test('buffer bound by bytes: a flood of large spans sheds its oldest traces by estimated memory, counted; the account returns to zero', async () => {
  const up = upstream();
  const big = (n: number) => span(n, { attributes: [int('linux.tid', A), int('process.pid', PID), str('app.payload', 'x'.repeat(100_000))] });
  // each span ~100 KB of string + the decoded objects + the buffer's records: two fit in 250,000 bytes, three do not
  const p = new EnrichPipeline({ kernel: kernelAt(epoch(W0)), upstream: up, waitMs: 60_000, maxBufferedBytes: 250_000, ...opts });
  await p.consume(request1([big(141), big(142), big(143), big(144), big(145)]), META);
  assert.equal(p.counters.passed.bufferFull, 3);
  assert.equal(p.bufferedSpans, 2);
  assert.ok(p.bufferedSpanBytes > 200_000 && p.bufferedSpanBytes <= 250_000, `accounted ${p.bufferedSpanBytes}`);
  const first = await sink.span(sp(141));
  assert.equal(first.span.attributes['kspan.top_cause'], undefined, 'shed: forwarded unchanged');
  assert.equal(first.span.attributes['app.payload'], 'x'.repeat(100_000));
  // a small span still fits beside them
  await p.consume(request1([span(146)]), META);
  assert.equal(p.counters.passed.bufferFull, 3);
  assert.equal(p.bufferedSpans, 3);
  // another big one does not: the oldest trace makes room
  await p.consume(request1([big(147)]), META);
  assert.equal(p.counters.passed.bufferFull, 4);
  assert.equal((await sink.span(sp(144))).span.attributes['kspan.top_cause'], undefined, 'the oldest (144) went out unchanged');
  assert.equal(p.bufferedSpans, 3);
  await p.close();
  await up.close();
  assert.equal(p.bufferedSpanBytes, 0);
  for (const n of [145, 146, 147]) assert.equal((await sink.span(sp(n))).span.attributes['kspan.top_cause'], 'cpu_preemption');
});

test('buffer bound by bytes through the receiver: held spans are kept encoded and counted at their bytes plus their records', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(epoch(W0)), upstream: up, waitMs: 60_000, maxBufferedBytes: 1_000_000, ...opts });
  const rx = await OtlpReceiver.start({ consumer: p, httpAddr: '127.0.0.1:0', grpcAddr: null });
  const post = (body: Buffer) => new Promise<number>((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: rx.httpPort, path: '/v1/traces', method: 'POST', headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.on('error', reject);
    r.end(body);
  });
  const bigRequest = (from: number) => encodeTraceRequest(request1([from, from + 1, from + 2, from + 3].map((n) => span(n, {
    attributes: [int('linux.tid', A), int('process.pid', PID), str('app.payload', 'y'.repeat(150_000))],
  }))));
  try {
    const body1 = bigRequest(151);
    // a span's protobuf bytes: the request less its resource and scope framing, per span
    const share = Math.ceil(scanTraceRequestProtobuf(body1).estimatedBytes / 4);
    const spanBytes = Math.floor(body1.length / 4);
    assert.ok(spanBytes > 150_000 && spanBytes < share, `a span's bytes ${spanBytes}, its share of the decoded estimate ${share}`);
    assert.equal(await post(body1), 200);
    assert.equal(p.bufferedSpans, 4);
    const own = p.bufferedSpanBytes / 4 - spanBytes; // the buffer's records per span (and its share of resource and scope)
    assert.ok(own > 0 && own < 1500, `per-span records ${own}`);
    // four more: ~1.2 MB, over the 1 MB bound; the two oldest traces (one span each) go out unchanged
    assert.equal(await post(bigRequest(155)), 200);
    assert.equal(p.counters.passed.bufferFull, 2);
    assert.equal(p.bufferedSpans, 6);
    assert.equal(p.bufferedSpanBytes, 6 * (spanBytes + own));
    assert.equal((await sink.span(sp(151))).span.attributes['kspan.top_cause'], undefined);
  } finally {
    await rx.close();
    await p.close();
    await up.close();
  }
  assert.equal(p.bufferedSpanBytes, 0);
  assert.equal((await sink.span(sp(158))).span.attributes['kspan.top_cause'], 'cpu_preemption');
});

test('protobuf and JSON requests through the receiver give identical spans upstream', async () => {
  const up = upstream();
  const p = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, ...opts });
  const rx = await OtlpReceiver.start({ consumer: p, httpAddr: '127.0.0.1:0', grpcAddr: null });
  const pb = encodeTraceRequest(request1([span(21)]));
  const jsonReq = {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }] },
      scopeSpans: [{
        scope: { name: 'test-scope', version: '2.0' },
        spans: [{
          traceId: tr(22), spanId: sp(22), name: 'op21', kind: 2, flags: 1,
          startTimeUnixNano: epoch(W0).toString(), endTimeUnixNano: epoch(W0 + 100 * MS).toString(),
          attributes: [{ key: 'linux.tid', value: { intValue: String(A) } }, { key: 'process.pid', value: { intValue: String(PID) } }, { key: 'app.attr', value: { stringValue: 'kept' } }],
          events: [{ timeUnixNano: epoch(W0 + 1 * MS).toString(), name: 'app.event', attributes: [{ key: 'x', value: { stringValue: 'y' } }] }],
          status: {},
        }],
      }],
    }],
  };
  const post = (body: Buffer | string, type: string) => new Promise<number>((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: rx.httpPort, path: '/v1/traces', method: 'POST', headers: { 'content-type': type } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.on('error', reject);
    r.end(body);
  });
  assert.equal(await post(pb, 'application/x-protobuf'), 200);
  assert.equal(await post(JSON.stringify(jsonReq), 'application/json'), 200);
  assert.deepEqual(decodeTraceRequestProtobuf(pb).resourceSpans[0].scopeSpans[0].spans[0].name, 'op21');
  const a = await sink.span(sp(21));
  const b = await sink.span(sp(22));
  const strip = (x: typeof a) => ({ ...x.span, traceId: '', spanId: '' });
  assert.deepEqual(strip(b), strip(a));
  assert.deepEqual(b.resource, a.resource);
  await rx.close();
  await p.close();
  await up.close();
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('upstream down, then back: nothing lost up to the queue bound; past it the drop count is exact', async () => {
  const port = await freePort();
  const up = upstream(`http://127.0.0.1:${port}`, { maxQueueSpans: 50, maxBatchSpans: 10 });
  const p = new EnrichPipeline({ kernel: kernelAt(null), upstream: up, ...opts });
  const spans = (from: number, n: number) => Array.from({ length: n }, (_, i) => span(from + i, { attributes: [] }));
  await p.consume(request1(spans(1000, 30)), META);
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(up.counters.failedAttempts >= 1, 'the exports failed');
  assert.equal(up.down, true);
  assert.equal(up.counters.exported, 0);
  await p.consume(request1(spans(2000, 50)), META); // 80 > 50: the 30 oldest go
  assert.equal(up.counters.dropped.queueFull, 30);
  assert.equal(up.pending, 50);
  const back = await UpstreamSink.start({ grpcPort: port });
  try {
    await back.waitFor((r) => r.length >= 50, 30_000, 'the queued spans');
    await up.close(5000);
    const ids = new Set(back.received.map((r) => r.span.spanId));
    assert.equal(ids.size, 50);
    // The 30 oldest queued spans were dropped: 1000-1029, or, when the first
    // batch (1000-1009) was in flight at that moment, 1010-1029 and 2000-2009.
    assert.equal(up.counters.exported, 50);
    assert.equal(up.counters.exported + up.counters.dropped.queueFull, 80);
    for (let i = 0; i < 50; i++) assert.ok(ids.has(sp(2000 + i)) || i < 10, `span ${2000 + i} delivered`);
  } finally {
    await back.close();
    await p.close();
  }
});

test('upstream behind: from 90% of its queue the receivers refuse new requests (retryable) instead of taking spans the queue would drop; retrying senders (kspan, the OTel JS SDK) lose nothing', async () => {
  const port = await freePort();
  const up = upstream(`http://127.0.0.1:${port}`, { maxQueueSpans: 50, maxBatchSpans: 10, backoffMs: 50, maxBackoffMs: 500 });
  // the kernel side down: spans go straight to the (down) upstream's queue
  const p = new EnrichPipeline({ kernel: kernelAt(null), upstream: up, ...opts });
  const rx = await OtlpReceiver.start({ consumer: p, httpAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0' });
  const spans = (from: number, n: number) => Array.from({ length: n }, (_, i) => span(from + i, { attributes: [] }));
  const post = (body: Buffer) => new Promise<{ status: number; retryAfter: unknown; body: Buffer }>((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: rx.httpPort, path: '/v1/traces', method: 'POST', headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      const c: Buffer[] = [];
      res.on('data', (x: Buffer) => c.push(x));
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], body: Buffer.concat(c) }));
    });
    r.on('error', reject);
    r.end(body);
  });
  let back: UpstreamSink | null = null;
  const logs: string[] = [];
  const sender = new UpstreamExporter({ url: `http://127.0.0.1:${rx.grpcPort}`, backoffMs: 50, maxBackoffMs: 500, log: (m) => logs.push(m) });
  try {
    assert.equal((await post(encodeTraceRequest(request1(spans(3000, 44))))).status, 200);
    assert.equal(p.saturated(), null, '44 of 50 queued: room left');
    assert.equal((await post(encodeTraceRequest(request1(spans(3044, 1))))).status, 200);
    assert.match(p.saturated() ?? '', /behind: 45 span/);
    const refused = await post(encodeTraceRequest(request1(spans(3045, 10))));
    assert.equal(refused.status, 503);
    assert.equal(refused.retryAfter, '1');
    const st = decodeRpcStatus(refused.body);
    assert.equal(st.code, 8, 'RESOURCE_EXHAUSTED');
    assert.equal(st.retryDelayMs, 1000, 'with RetryInfo: retryable');
    assert.match(st.message, /cannot take more spans now: upstream .* is behind/);
    assert.equal(rx.counters.consumerBusy, 1);
    assert.equal(p.counters.received, 45, 'the refused request was not taken');
    // senders that retry: kspan's exporter over gRPC (RESOURCE_EXHAUSTED + RetryInfo), the OTel JS SDK's over HTTP (503 + Retry-After)
    sender.send(spans(3045, 10).map((s) => ({ span: s, resource: new ResourceRef([], ''), scope: { name: 's', version: '', attributes: [], droppedAttributesCount: 0 }, scopeSchemaUrl: '' })));
    const sdkSpans = await scenarioSpans();
    const sdkExported = new Promise<number>((resolve) => new ProtoExporter({ url: `http://127.0.0.1:${rx.httpPort}/v1/traces` }).export(sdkSpans, (r) => resolve(r.code)));
    while (sender.counters.failedAttempts === 0 || rx.counters.consumerBusy < 3) await new Promise((r) => setTimeout(r, 10));
    // the upstream comes back: the queue drains, the receivers take the senders' retries
    back = await UpstreamSink.start({ grpcPort: port });
    await back.waitFor((r) => r.length >= 57, 30_000, 'all 57 spans');
    assert.equal(await sdkExported, 0, 'the SDK exporter succeeded after retrying');
    await sender.close(5000);
    await up.close(5000);
    const ids = new Set(back.received.map((r) => r.span.spanId));
    for (let i = 0; i < 55; i++) assert.ok(ids.has(sp(3000 + i)), `span ${3000 + i} delivered`);
    for (const s of sdkSpans) assert.ok(ids.has(s.spanContext().spanId), `SDK span ${s.name} delivered`);
    assert.equal(up.counters.dropped.queueFull, 0);
    assert.equal(sender.counters.splits + sender.counters.dropped.rejected + sender.counters.dropped.queueFull, 0, logs.join('\n'));
    assert.equal(p.saturated(), null);
  } finally {
    await rx.close();
    await back?.close();
    await p.close();
  }
});

test('OTLP/HTTP upstream works the same', async () => {
  const up = upstream(sink.httpTracesUrl);
  assert.equal(up.protocol, 'http/protobuf');
  const p = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, ...opts });
  await p.consume(request1([span(31)]), META);
  await p.close();
  await up.close();
  const got = await sink.span(sp(31));
  assert.equal(got.span.attributes['kspan.top_cause'], 'cpu_preemption');
});

test('upstream options: gzip and headers over gRPC (mockotlpserver) and gzip over OTLP/HTTP (kspan\'s receiver)', async () => {
  // gRPC, gzip + metadata
  const up = upstream(sink.grpcUrl, { compression: true, headers: { authorization: 'Bearer t0ken' } });
  const p = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up, ...opts });
  await p.consume(request1([span(41)]), META);
  await p.close();
  await up.close();
  assert.equal((await sink.span(sp(41))).span.attributes['kspan.top_cause'], 'cpu_preemption');
  // OTLP/HTTP, gzip (mockotlpserver's HTTP side does not take gzip bodies; kspan's receiver does)
  const got: Span[] = [];
  const rx = await OtlpReceiver.start({
    httpAddr: '127.0.0.1:0', grpcAddr: null,
    consumer: { async consume(req) { for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) got.push(...ss.spans); return { rejectedSpans: 0 }; } },
  });
  try {
    const up2 = upstream(`http://127.0.0.1:${rx.httpPort}/v1/traces`, { compression: true });
    const p2 = new EnrichPipeline({ kernel: kernelAt(NOW), upstream: up2, ...opts });
    await p2.consume(request1([span(42)]), META);
    await p2.close();
    await up2.close();
    assert.equal(up2.counters.exported, 1, up2.lastError);
    assert.equal(rx.counters.requests, 1);
    assert.equal(got.length, 1);
    assert.equal(got[0].spanId, sp(42));
    assert.ok(got[0].events.some((e) => e.name === 'kspan.cause'));
  } finally {
    await rx.close();
  }
});

// The receiver under hostile or oversized OTLP: spans with empty / all-zero
// ids (partial success, not forwarded), per-request object limits checked
// before decoding (amplification bodies: a 15 MiB body of millions of empty
// events, spans or attributes), the in-flight memory budget (busy: retryable
// 503 / RESOURCE_EXHAUSTED with RetryInfo), with RSS and event-loop checks.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { fork } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { EXPORT_METHOD_PATH, OtlpReceiver, type ReceiverOptions } from '../../src/otel/receiver.js';
import { decodeRpcStatus, decodeTraceResponse, scanTraceRequestProtobuf, OtlpDecodeError, OtlpLimitError } from '../../src/otel/otlp-decode.js';
import { PbWriter, encodeTraceRequest } from '../../src/otel/otlp-encode.js';
import { UpstreamExporter, ResourceRef } from '../../src/otel/upstream.js';
import type { ConsumeResult, DecodedTraceRequest, Span, SpanConsumer } from '../../src/otel/types.js';

const tr = (n: number): string => n.toString(16).padStart(32, '0');
const sp = (n: number): string => n.toString(16).padStart(16, '0');

function span(n: number, o: Partial<Span> = {}): Span {
  return {
    traceId: tr(n), spanId: sp(n), traceState: '', parentSpanId: '', flags: 1, name: `op${n}`, kind: 2,
    startTimeUnixNano: 1_763_730_000_000_000_000n, endTimeUnixNano: 1_763_730_000_001_000_000n,
    attributes: [{ key: 'k', value: { type: 'string', value: 'v' } }], droppedAttributesCount: 0,
    events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' }, ...o,
  };
}

const req = (spans: Span[]): DecodedTraceRequest => ({
  resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { type: 'string', value: 'svc' } }], droppedAttributesCount: 0 },
    scopeSpans: [{ scope: { name: 's', version: '', attributes: [], droppedAttributesCount: 0 }, spans, schemaUrl: '' }], schemaUrl: '',
  }],
});

class Collect implements SpanConsumer {
  spans: Span[] = [];
  gate: Promise<void> | null = null;
  async consume(r: DecodedTraceRequest): Promise<ConsumeResult> {
    if (this.gate) await this.gate;
    for (const rs of r.resourceSpans) for (const ss of rs.scopeSpans) this.spans.push(...ss.spans);
    return { rejectedSpans: 0 };
  }
}

interface HttpAnswer { status: number; headers: Record<string, unknown>; body: Buffer; ms: number }

function post(port: number, body: Buffer | string, type = 'application/x-protobuf'): Promise<HttpAnswer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', headers: { 'content-type': type } }, (res) => {
      const c: Buffer[] = [];
      res.on('data', (x: Buffer) => c.push(x));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(c), ms: performance.now() - t0 }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

interface GrpcAnswer { err: grpc.ServiceError | null; resp?: Buffer; ms: number }

function grpcExport(port: number, body: Buffer): Promise<GrpcAnswer> {
  const t0 = performance.now();
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  return new Promise((resolve) => {
    client.makeUnaryRequest(EXPORT_METHOD_PATH, (b: Buffer) => b, (b: Buffer) => b, body, (err, resp) => {
      client.close();
      resolve({ err: err ?? null, resp, ms: performance.now() - t0 });
    });
  });
}

async function withReceiver<T>(o: Partial<ReceiverOptions>, f: (rx: OtlpReceiver, c: Collect) => Promise<T>): Promise<T> {
  const c = new Collect();
  const rx = await OtlpReceiver.start({ consumer: c, httpAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0', ...o });
  try {
    return await f(rx, c);
  } finally {
    await rx.close();
  }
}

test('spans with empty or all-zero trace/span ids are refused with partial success (gRPC, HTTP protobuf, HTTP JSON); valid ones go on', async () => {
  await withReceiver({}, async (rx, c) => {
    const spans = [span(1), span(2, { traceId: '' }), span(3, { spanId: '0'.repeat(16) }), span(4, { traceId: '0'.repeat(32) }), span(5, { spanId: '' }), span(6)];
    const body = encodeTraceRequest(req(spans));
    const g = await grpcExport(rx.grpcPort, body);
    assert.equal(g.err, null);
    const gr = decodeTraceResponse(g.resp!);
    assert.equal(gr.rejectedSpans, 4);
    assert.match(gr.errorMessage, /4 span\(s\) rejected: invalid trace id or span id \(empty or all zeros\)/);
    assert.deepEqual(c.spans.map((s) => s.spanId), [sp(1), sp(6)]);

    const h = await post(rx.httpPort, body);
    assert.equal(h.status, 200);
    assert.equal(decodeTraceResponse(h.body).rejectedSpans, 4);
    assert.equal(c.spans.length, 4);

    const json = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [
      { traceId: tr(7), spanId: sp(7), name: 'ok' },
      { traceId: '', spanId: sp(8), name: 'no trace id' },
      { traceId: tr(9), spanId: '0000000000000000', name: 'zero span id' },
    ] }] }] });
    const j = await post(rx.httpPort, json, 'application/json');
    assert.equal(j.status, 200);
    const pj = JSON.parse(j.body.toString()) as { partialSuccess: { rejectedSpans: string; errorMessage: string } };
    assert.equal(pj.partialSuccess.rejectedSpans, '2');
    assert.match(pj.partialSuccess.errorMessage, /invalid trace id or span id/);
    assert.deepEqual(c.spans.map((s) => s.spanId), [sp(1), sp(6), sp(1), sp(6), sp(7)]);
    assert.equal(rx.counters.invalidIds, 10);
    assert.equal(rx.counters.spansRejected, 10);

    // only invalid spans: the consumer is not called at all
    const none = await post(rx.httpPort, encodeTraceRequest(req([span(10, { traceId: '' })])));
    assert.equal(decodeTraceResponse(none.body).rejectedSpans, 1);
    assert.equal(c.spans.length, 5);
  });
});

test('per-request limits: at the limit accepted, past it 413 (HTTP) / INVALID_ARGUMENT (gRPC), before anything is decoded', async () => {
  const limits = { maxSpans: 10, maxEvents: 20, maxLinks: 5, maxAttributes: 30 };
  await withReceiver({ limits }, async (rx, c) => {
    const ev = { timeUnixNano: 1n, name: 'e', attributes: [], droppedAttributesCount: 0 };
    const link = { traceId: tr(1), spanId: sp(1), traceState: '', attributes: [], droppedAttributesCount: 0, flags: 0 };
    const kv = { key: 'a', value: { type: 'array' as const, value: [{ type: 'int' as const, value: 1n }, { type: 'int' as const, value: 2n }] } };
    const cases: [string, Span[], boolean][] = [
      ['10 spans', Array.from({ length: 10 }, (_, i) => span(i + 1)), true],
      ['11 spans', Array.from({ length: 11 }, (_, i) => span(i + 1)), false],
      ['20 events', [span(1, { events: Array(20).fill(ev) })], true],
      ['21 events', [span(1, { events: Array(21).fill(ev) })], false],
      ['6 links', [span(1, { links: Array(6).fill(link) })], false],
      // 1 resource attribute + 1 span attribute + 9 × (key/value + 2 array elements) = 29, then 32
      ['29 attribute values', [span(1, { attributes: [span(1).attributes[0], ...Array(9).fill(kv)] })], true],
      ['32 attribute values', [span(1, { attributes: [span(1).attributes[0], ...Array(10).fill(kv)] })], false],
    ];
    for (const [what, spans, ok] of cases) {
      const body = encodeTraceRequest(req(spans));
      const h = await post(rx.httpPort, body);
      const g = await grpcExport(rx.grpcPort, body);
      if (ok) {
        assert.equal(h.status, 200, what);
        assert.equal(g.err, null, what);
      } else {
        assert.equal(h.status, 413, what);
        assert.match(decodeRpcStatus(h.body).message, /request over the max\w+ limit/, what);
        assert.equal(g.err?.code, grpc.status.INVALID_ARGUMENT, what);
        assert.match(g.err!.details, /request over the max\w+ limit/, what);
      }
    }
    assert.equal(rx.counters.overLimits, 8);
    assert.equal(c.spans.length, 2 * (10 + 1 + 1));
  });
});

// ---------------------------------------------------------------- amplification bodies

const MiB = 1024 * 1024;

let rssPeak = 0;
let rssTimer: NodeJS.Timeout | null = null;
before(() => {
  rssTimer = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage.rss()); }, 20);
});
after(() => { if (rssTimer) clearInterval(rssTimer); });

interface FloodResult { http: { what: string; status: number; ms: number }[]; grpc: { what: string; code: number; details: string; ms: number }[] }

/** The hostile client runs in its own process (flood-client.ts), so what is measured here is the receiver. */
function flood(httpPort: number, grpcPort: number): Promise<FloodResult> {
  return new Promise((resolve, reject) => {
    const cp = fork(fileURLToPath(new URL('./flood-client.ts', import.meta.url)), [String(httpPort), String(grpcPort)], {
      execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    cp.once('message', (m) => resolve(m as FloodResult));
    cp.once('exit', (code) => reject(new Error(`flood client exited ${code}`)));
  });
}

test('amplification bodies (15 MiB of millions of empty events / spans / attributes, protobuf and JSON; 3 at once each, both transports) are refused up front; receiver RSS < 1 GB; the event loop keeps turning; normal requests still served', async () => {
  const body = (unit: number[], inSpan: boolean): Buffer => {
    const w = new PbWriter();
    w.fork(); w.fork();
    if (inSpan) w.fork();
    w.raw(Buffer.alloc(15 * MiB, Buffer.from(unit)));
    if (inSpan) w.join(2);
    w.join(2); w.join(1);
    return Buffer.from(w.finish());
  };
  const t0 = performance.now();
  assert.throws(() => scanTraceRequestProtobuf(body([0x5a, 0x00], true)), (e: unknown) => e instanceof OtlpLimitError && e.limit === 'maxEvents');
  assert.throws(() => scanTraceRequestProtobuf(body([0x12, 0x00], false)), (e: unknown) => e instanceof OtlpLimitError && e.limit === 'maxSpans');
  assert.throws(() => scanTraceRequestProtobuf(body([0x4a, 0x00], true)), (e: unknown) => e instanceof OtlpLimitError && e.limit === 'maxAttributes');
  assert.throws(() => scanTraceRequestProtobuf(body([0x5a, 0x00], true).subarray(0, 1000)), (e: unknown) => e instanceof OtlpDecodeError, 'truncated');
  console.log(`# scans of three 15 MiB bodies (building them included): ${(performance.now() - t0).toFixed(0)} ms`);
  await withReceiver({}, async (rx, c) => {
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    rssPeak = process.memoryUsage.rss();
    const r = await flood(rx.httpPort, rx.grpcPort);
    loop.disable();
    for (const h of r.http) {
      // 413 over a limit; 503 (retryable) when the in-flight budget was full as it came
      assert.ok(h.status === 413 || h.status === 503, `${h.what}: HTTP ${h.status}`);
    }
    for (const g of r.grpc) {
      assert.ok(g.code === grpc.status.INVALID_ARGUMENT || g.code === grpc.status.RESOURCE_EXHAUSTED, `${g.what}: gRPC ${g.code} ${g.details}`);
    }
    assert.equal(r.http.length, 11);
    assert.equal(r.grpc.length, 9);
    assert.ok(rx.counters.overLimits >= 9, `over limits: ${rx.counters.overLimits}`);
    assert.equal(c.spans.length, 0);
    const maxLoopMs = loop.max / 1e6;
    const rssMb = rssPeak / MiB;
    const slowest = Math.max(...r.http.map((h) => h.ms), ...r.grpc.map((g) => g.ms));
    console.log(`# amplification: receiver peak RSS ${rssMb.toFixed(0)} MB, longest event-loop stall ${maxLoopMs.toFixed(0)} ms, slowest answer ${slowest.toFixed(0)} ms; over limits ${rx.counters.overLimits}, busy ${rx.counters.busy}`);
    assert.ok(rssMb < 1024, `peak RSS ${rssMb.toFixed(0)} MB`);
    assert.ok(maxLoopMs < 1000, `the event loop stalled ${maxLoopMs.toFixed(0)} ms`);
    // still serving
    const ok = await post(rx.httpPort, encodeTraceRequest(req([span(1)])));
    assert.equal(ok.status, 200);
    const okg = await grpcExport(rx.grpcPort, encodeTraceRequest(req([span(2)])));
    assert.equal(okg.err, null);
    assert.deepEqual(c.spans.map((s) => s.spanId), [sp(1), sp(2)]);
    assert.equal(rx.inflight, 0, 'every reservation released');
  });
});

test('in-flight budget: while it is used up new requests get a retryable 503 + Retry-After / RESOURCE_EXHAUSTED + RetryInfo; kspan\'s exporter retries them', async () => {
  await withReceiver({ maxInflightBytes: 64 * 1024 }, async (rx, c) => {
    let open!: () => void;
    c.gate = new Promise<void>((r) => { open = r; });
    const big = encodeTraceRequest(req(Array.from({ length: 200 }, (_, i) => span(100 + i))));
    const first = post(rx.httpPort, big); // alone: admitted whatever its size, then held by the consumer
    while (rx.inflight === 0) await new Promise((r) => setTimeout(r, 5));
    const h = await post(rx.httpPort, encodeTraceRequest(req([span(1)])));
    assert.equal(h.status, 503);
    assert.equal(h.headers['retry-after'], '1');
    const st = decodeRpcStatus(h.body);
    assert.equal(st.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(st.retryDelayMs, 1000);
    assert.match(st.message, /busy/);
    const g = await grpcExport(rx.grpcPort, encodeTraceRequest(req([span(2)])));
    assert.equal(g.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    const bin = g.err!.metadata.get('grpc-status-details-bin')[0] as Buffer;
    assert.equal(decodeRpcStatus(bin).retryDelayMs, 1000, 'RetryInfo: retryable for OTLP clients');
    // kspan's own exporter (a kspan in front of this one) waits and retries
    const logs: string[] = [];
    const up = new UpstreamExporter({ url: `http://127.0.0.1:${rx.grpcPort}`, backoffMs: 50, maxBackoffMs: 2000, log: (m) => logs.push(m) });
    up.send([{ span: span(3), resource: new ResourceRef([], ''), scope: { name: '', version: '', attributes: [], droppedAttributesCount: 0 }, scopeSchemaUrl: '' }]);
    while (up.counters.failedAttempts === 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(up.counters.splits, 0);
    c.gate = null;
    open();
    assert.equal((await first).status, 200);
    await up.close(5000);
    assert.equal(up.counters.exported, 1, logs.join('\n'));
    assert.ok(rx.counters.busy >= 3);
    assert.ok(c.spans.some((s) => s.spanId === sp(3)));
    assert.equal(rx.inflight, 0);
  });
});

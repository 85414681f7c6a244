// OTLP receiver end to end with the real OTel JS exporters (gRPC, HTTP protobuf,
// HTTP JSON) and raw http / grpc-js clients for the bad cases. No mocks.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { EXPORT_METHOD_PATH, OtlpReceiver } from '../../src/otel/receiver.js';
import { decodeTraceRequestProtobuf } from '../../src/otel/otlp-decode.js';
import { encodeTraceRequest } from '../../src/otel/otlp-encode.js';
import { StoreSpanConsumer } from '../../src/otel/store-consumer.js';
import type { ConsumeMeta, ConsumeResult, DecodedTraceRequest, SpanConsumer } from '../../src/otel/types.js';
import { openStoreWriter } from '../../src/store/index.js';
import { checkScenario, exportScenario, scenarioSpans, TRACE_ID } from './sdk-fixture.js';

class Collect implements SpanConsumer {
  reqs: { req: DecodedTraceRequest; meta: ConsumeMeta }[] = [];
  async consume(req: DecodedTraceRequest, meta: ConsumeMeta): Promise<ConsumeResult> {
    this.reqs.push({ req, meta });
    return { rejectedSpans: 0 };
  }
  /** all received spans merged into one request (one resource/scope), ordered by span id */
  merged(): DecodedTraceRequest {
    const [first] = this.reqs;
    const spans = this.reqs.flatMap((r) => r.req.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
    spans.sort((a, b) => a.spanId.localeCompare(b.spanId));
    const rs = first.req.resourceSpans[0];
    return { resourceSpans: [{ ...rs, scopeSpans: [{ ...rs.scopeSpans[0], spans }] }] };
  }
  take(): DecodedTraceRequest { const m = this.merged(); this.reqs = []; return m; }
}

const MAX = 256 * 1024;
const sink = new Collect();
let rx: OtlpReceiver;
let base: string;

before(async () => {
  rx = await OtlpReceiver.start({ consumer: sink, httpAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0', maxBodyBytes: MAX });
  base = `http://127.0.0.1:${rx.httpPort}`;
});
after(async () => { await rx.close(); });

function post(path: string, body: Buffer | string, headers: Record<string, string>, method = 'POST'): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const r = request(`${base}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

function grpcExport(body: Buffer, opts: grpc.ClientOptions = {}): Promise<{ err: grpc.ServiceError | null; resp?: Buffer }> {
  const client = new grpc.Client(`127.0.0.1:${rx.grpcPort}`, grpc.credentials.createInsecure(), opts);
  return new Promise((resolve) => {
    client.makeUnaryRequest(EXPORT_METHOD_PATH, (b: Buffer) => b, (b: Buffer) => b, body, (err, resp) => { client.close(); resolve({ err: err ?? null, resp }); });
  });
}

let viaGrpc: DecodedTraceRequest;

test('gRPC: the real OTLP gRPC exporter delivers the original ids, resource and attributes', async () => {
  await exportScenario(new GrpcExporter({ url: `http://127.0.0.1:${rx.grpcPort}` }));
  assert.ok(sink.reqs.every((r) => r.meta.transport === 'grpc' && r.meta.encoding === 'protobuf'));
  viaGrpc = sink.take();
  checkScenario(viaGrpc);
  await exportScenario(new GrpcExporter({ url: `http://127.0.0.1:${rx.grpcPort}`, compression: CompressionAlgorithm.GZIP }));
  assert.deepStrictEqual(sink.take(), viaGrpc, 'gzip over gRPC');
});

test('HTTP protobuf, HTTP protobuf+gzip and HTTP JSON decode identically to gRPC', async () => {
  await exportScenario(new ProtoExporter({ url: `${base}/v1/traces` }));
  assert.ok(sink.reqs.every((r) => r.meta.transport === 'http' && r.meta.encoding === 'protobuf'));
  assert.deepStrictEqual(sink.take(), viaGrpc, 'http/protobuf');
  await exportScenario(new ProtoExporter({ url: `${base}/v1/traces`, compression: CompressionAlgorithm.GZIP }));
  assert.ok(sink.reqs.every((r) => r.meta.wireBytes < r.meta.bodyBytes), 'gzip body was compressed');
  assert.deepStrictEqual(sink.take(), viaGrpc, 'http/protobuf gzip');
  await exportScenario(new JsonExporter({ url: `${base}/v1/traces` }));
  assert.ok(sink.reqs.every((r) => r.meta.encoding === 'json'));
  assert.deepStrictEqual(sink.take(), viaGrpc, 'http/json');
  await exportScenario(new JsonExporter({ url: `${base}/v1/traces`, compression: CompressionAlgorithm.GZIP }));
  assert.deepStrictEqual(sink.take(), viaGrpc, 'http/json gzip');
});

test('HTTP bad requests get the right status and message; the receiver keeps serving', async () => {
  const good = Buffer.from(ProtobufTraceSerializer.serializeRequest(await scenarioSpans())!);
  const PB = { 'Content-Type': 'application/x-protobuf' };
  const JS = { 'Content-Type': 'application/json' };
  let r = await post('/v1/logs', good, PB);
  assert.equal(r.status, 404);
  r = await post('/v1/traces', '', PB, 'GET');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'POST');
  r = await post('/v1/traces', good, { 'Content-Type': 'text/plain' });
  assert.equal(r.status, 415);
  assert.match(r.body.toString(), /unsupported Content-Type "text\/plain"/);
  r = await post('/v1/traces', good, { ...PB, 'Content-Encoding': 'br' });
  assert.equal(r.status, 415);
  assert.match(r.body.toString(), /Content-Encoding "br"/);

  // malformed / truncated protobuf: 400 with a google.rpc.Status body {code 3, message}
  r = await post('/v1/traces', good.subarray(0, good.length - 7), PB);
  assert.equal(r.status, 400);
  assert.equal(r.headers['content-type'], 'application/x-protobuf');
  assert.equal(r.body[0], 0x08); assert.equal(r.body[1], 3); // code = INVALID_ARGUMENT
  assert.match(r.body.toString('latin1'), /truncated protobuf: .* at byte \d+/);
  r = await post('/v1/traces', Buffer.from([0x0a, 0x05, 0xff, 0xff]), PB);
  assert.equal(r.status, 400);
  r = await post('/v1/traces', '{"resourceSpans": [', JS);
  assert.equal(r.status, 400);
  const j = JSON.parse(r.body.toString());
  assert.equal(j.code, 3);
  assert.match(j.message, /malformed OTLP\/JSON/);
  r = await post('/v1/traces', Buffer.from('not gzip'), { ...PB, 'Content-Encoding': 'gzip' });
  assert.equal(r.status, 400);
  assert.match(r.body.toString('latin1'), /invalid gzip body/);

  // oversized: declared length, streamed (chunked) body, and a gzip bomb (small on the wire, large decompressed)
  r = await post('/v1/traces', Buffer.alloc(MAX + 1), PB);
  assert.equal(r.status, 413);
  assert.match(r.body.toString('latin1'), /exceeds the limit of 262144 bytes/);
  r = await post('/v1/traces', Buffer.alloc(MAX + 1), { ...PB, 'Transfer-Encoding': 'chunked' });
  assert.equal(r.status, 413);
  const bomb = gzipSync(Buffer.alloc(MAX * 4));
  assert.ok(bomb.length < MAX);
  r = await post('/v1/traces', bomb, { ...JS, 'Content-Encoding': 'gzip' });
  assert.equal(r.status, 413);
  assert.match(JSON.parse(r.body.toString()).message, /decompressed request body exceeds/);
  assert.equal(sink.reqs.length, 0, 'nothing reached the consumer');

  // still serving
  r = await post('/v1/traces', gzipSync(good), { ...PB, 'Content-Encoding': 'gzip' });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0, 'full success: empty ExportTraceServiceResponse');
  checkScenario(sink.take());
  r = await post('/v1/traces', '{}', JS);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), '{}');
  assert.ok(rx.counters.malformed >= 4 && rx.counters.tooLarge >= 3 && rx.counters.unsupported >= 4);
});

test('gRPC bad requests: INVALID_ARGUMENT with a message, RESOURCE_EXHAUSTED when too large; keeps serving', async () => {
  const good = Buffer.from(ProtobufTraceSerializer.serializeRequest(await scenarioSpans())!);
  let r = await grpcExport(good.subarray(0, 20));
  assert.equal(r.err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.err!.details, /truncated protobuf/);
  r = await grpcExport(Buffer.from([0x0f, 0x00]));
  assert.equal(r.err?.code, grpc.status.INVALID_ARGUMENT);
  r = await grpcExport(Buffer.alloc(MAX + 100));
  assert.equal(r.err?.code, grpc.status.RESOURCE_EXHAUSTED);
  r = await grpcExport(good, { 'grpc.default_compression_algorithm': 2 /* gzip */ });
  assert.equal(r.err, null);
  assert.equal(r.resp!.length, 0);
  checkScenario(sink.take());
});

test('StoreSpanConsumer: spans land in the store with pid/tid mapped; bad ids are a partial success (refused by the receiver)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-otel-'));
  const w = openStoreWriter(dir);
  const consumer = new StoreSpanConsumer(w.reader.spans);
  const srx = await OtlpReceiver.start({ consumer, httpAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0' });
  try {
    await exportScenario(new GrpcExporter({ url: `http://127.0.0.1:${srx.grpcPort}` }));
    const spans = w.reader.spans.getTrace(TRACE_ID);
    assert.equal(spans.length, 2);
    const [server, client] = spans;
    assert.equal(server.name, 'GET /checkout');
    assert.equal(server.service, 'checkout');
    assert.equal(server.spanId, '1000000000000001');
    assert.equal(server.parentSpanId, '00f067aa0ba902b7');
    assert.equal(server.tid, 4243, 'linux.tid from the span');
    assert.equal(server.pid, 4242, 'process.pid from the resource');
    assert.equal(server.kind, 2);
    assert.equal(server.durationNs, 9_000_000);
    assert.equal(client.tid, null, 'thread.id is not the OS tid by default');
    assert.equal(client.statusCode, 2);
    assert.equal(client.requestId, 'req-1');
    assert.equal(client.processId, 'engine-0');
    assert.deepEqual(client.attributes, {
      'network.peer.address': '10.0.0.7', 'network.peer.port': 5432, 'server.address': 'db.local', 'server.port': 5432,
      'thread.id': 7, 'host.name': 'box1', 'gen_ai.request.id': 'req-1', // every request-id attribute is kept
    });

    // one good span + one with a zero trace id: HTTP JSON answers partialSuccess
    const req = decodeTraceRequestProtobuf(ProtobufTraceSerializer.serializeRequest(await scenarioSpans())!);
    const ss = req.resourceSpans[0].scopeSpans[0];
    ss.spans[0] = { ...ss.spans[0], traceId: '0'.repeat(32) };
    ss.spans[1] = { ...ss.spans[1], traceId: 'ab'.repeat(16) };
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = request(`http://127.0.0.1:${srx.httpPort}/v1/traces`, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' } }, (m) => {
        const c: Buffer[] = []; m.on('data', (x: Buffer) => c.push(x)); m.on('end', () => resolve({ status: m.statusCode!, body: Buffer.concat(c).toString('latin1') }));
      });
      r.on('error', reject);
      r.end(encodeTraceRequest(req));
    });
    assert.equal(res.status, 200);
    // ExportTraceServiceResponse { partial_success { rejected_spans: 1, error_message: ... } }
    assert.equal(res.body.charCodeAt(0), 0x0a);
    assert.equal(res.body.charCodeAt(2), 0x08); assert.equal(res.body.charCodeAt(3), 1);
    assert.match(res.body, /invalid trace id/);
    assert.equal(w.reader.spans.getTrace('ab'.repeat(16)).length, 1);
    assert.equal(consumer.rejected, 0, 'the receiver refuses it before the consumer sees it');
    assert.equal(srx.counters.spansRejected, 1);
    assert.equal(srx.counters.invalidIds, 1);
  } finally {
    await srx.close();
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

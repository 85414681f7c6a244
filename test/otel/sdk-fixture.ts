// Builds real OTel SDK spans (sdk-trace-base 2.12.0) with known ids,
// attributes, events and links, for the decoder and receiver tests.

import { context, trace, SpanKind, SpanStatusCode, TraceFlags, type Tracer } from '@opentelemetry/api';
import {
  BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type IdGenerator, type ReadableSpan, type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import assert from 'node:assert/strict';
import { findAttr, type DecodedTraceRequest } from '../../src/otel/types.js';

export const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
export const REMOTE_PARENT = '00f067aa0ba902b7';
export const LINK_TRACE = '0af7651916cd43dd8448eb211c80319c';
export const LINK_SPAN = 'b7ad6b7169203331';
export const T0 = 1_763_728_000_123_456_789n;

export const nsToHr = (ns: bigint): [number, number] => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];

/** Deterministic ids: trace TRACE_ID, span ids 1000000000000001, ...02, ... */
export class FixedIds implements IdGenerator {
  private n = 0;
  generateTraceId(): string { return TRACE_ID; }
  generateSpanId(): string { return (0x1000000000000000n + BigInt(++this.n)).toString(16).padStart(16, '0'); }
}

export const RESOURCE_ATTRS = { 'service.name': 'checkout', 'process.pid': 4242, 'host.name': 'box1' };

export function makeProvider(processors: SpanProcessor[]): BasicTracerProvider {
  return new BasicTracerProvider({
    resource: resourceFromAttributes(RESOURCE_ATTRS),
    idGenerator: new FixedIds(),
    spanProcessors: processors,
  });
}

/** Emits the scenario: a SERVER span under a remote parent and a CLIENT child with events, a link and an error status. */
export function emitScenario(tracer: Tracer): void {
  const parentCtx = trace.setSpanContext(context.active(), {
    traceId: TRACE_ID, spanId: REMOTE_PARENT, traceFlags: TraceFlags.SAMPLED, isRemote: true,
  });
  const server = tracer.startSpan('GET /checkout', {
    kind: SpanKind.SERVER, startTime: nsToHr(T0),
    attributes: { 'http.route': '/checkout', 'linux.tid': 4243, 'http.response.status_code': 200 },
  }, parentCtx);
  const childCtx = trace.setSpan(parentCtx, server);
  const client = tracer.startSpan('SELECT orders', {
    kind: SpanKind.CLIENT, startTime: nsToHr(T0 + 1_000n),
    attributes: {
      'db.system.name': 'postgresql', 'network.peer.address': '10.0.0.7', 'network.peer.port': 5432,
      'server.address': 'db.local', 'server.port': 5432, ratio: 0.25, cached: false,
      'tags': ['a', 'b'], 'nums': [1, 2, 3], 'thread.id': 7, 'gen_ai.request.id': 'req-1', 'vllm.process_id': 'engine-0',
    },
    links: [{ context: { traceId: LINK_TRACE, spanId: LINK_SPAN, traceFlags: TraceFlags.SAMPLED }, attributes: { 'link.kind': 'follows' } }],
  }, childCtx);
  client.addEvent('query.sent', { 'db.bytes': 128 }, nsToHr(T0 + 2_000n));
  client.addEvent('query.rows', { rows: 3, first: 'x' }, nsToHr(T0 + 4_000_001n));
  client.setStatus({ code: SpanStatusCode.ERROR, message: 'timeout' });
  client.end(nsToHr(T0 + 5_000_003n));
  server.end(nsToHr(T0 + 9_000_000n));
}

/** The scenario as finished ReadableSpans (in-memory exporter). */
export async function scenarioSpans(): Promise<ReadableSpan[]> {
  const mem = new InMemorySpanExporter();
  const p = makeProvider([new SimpleSpanProcessor(mem)]);
  emitScenario(p.getTracer('kspan.test', '1.2.3'));
  await p.forceFlush();
  const spans = mem.getFinishedSpans();
  await p.shutdown();
  return spans;
}

/** Export the scenario through `exporter` (SimpleSpanProcessor, flushed). */
export async function exportScenario(exporter: SpanExporter): Promise<void> {
  const p = makeProvider([new SimpleSpanProcessor(exporter)]);
  emitScenario(p.getTracer('kspan.test', '1.2.3'));
  await p.forceFlush();
  await p.shutdown();
}

/** Asserts that a decoded request is the scenario, with its original ids, times, resource and attributes. */
export function checkScenario(req: DecodedTraceRequest): void {
  assert.equal(req.resourceSpans.length, 1);
  const rs = req.resourceSpans[0];
  assert.deepEqual(findAttr(rs.resource.attributes, 'service.name'), { type: 'string', value: 'checkout' });
  assert.deepEqual(findAttr(rs.resource.attributes, 'process.pid'), { type: 'int', value: 4242n });
  assert.equal(rs.scopeSpans.length, 1);
  assert.equal(rs.scopeSpans[0].scope.name, 'kspan.test');
  assert.equal(rs.scopeSpans[0].scope.version, '1.2.3');
  const spans = rs.scopeSpans[0].spans;
  assert.equal(spans.length, 2);
  const client = spans.find((s) => s.name === 'SELECT orders')!;
  const server = spans.find((s) => s.name === 'GET /checkout')!;
  assert.equal(server.traceId, TRACE_ID);
  assert.equal(server.spanId, '1000000000000001');
  assert.equal(server.parentSpanId, REMOTE_PARENT);
  assert.equal(server.kind, 2);
  assert.equal(server.startTimeUnixNano, T0);
  assert.equal(server.endTimeUnixNano, T0 + 9_000_000n);
  assert.deepEqual(findAttr(server.attributes, 'linux.tid'), { type: 'int', value: 4243n });
  assert.equal(client.traceId, TRACE_ID);
  assert.equal(client.spanId, '1000000000000002');
  assert.equal(client.parentSpanId, '1000000000000001');
  assert.equal(client.kind, 3);
  assert.equal(client.startTimeUnixNano, T0 + 1_000n);
  assert.equal(client.endTimeUnixNano, T0 + 5_000_003n);
  assert.equal(client.flags & 0xff, 1);
  assert.deepEqual(findAttr(client.attributes, 'ratio'), { type: 'double', value: 0.25 });
  assert.deepEqual(findAttr(client.attributes, 'cached'), { type: 'bool', value: false });
  assert.deepEqual(findAttr(client.attributes, 'tags'), { type: 'array', value: [{ type: 'string', value: 'a' }, { type: 'string', value: 'b' }] });
  assert.deepEqual(findAttr(client.attributes, 'network.peer.address'), { type: 'string', value: '10.0.0.7' });
  assert.deepEqual(client.events.map((e) => [e.name, e.timeUnixNano]), [['query.sent', T0 + 2_000n], ['query.rows', T0 + 4_000_001n]]);
  assert.deepEqual(findAttr(client.events[1].attributes, 'rows'), { type: 'int', value: 3n });
  assert.equal(client.links.length, 1);
  assert.equal(client.links[0].traceId, LINK_TRACE);
  assert.equal(client.links[0].spanId, LINK_SPAN);
  assert.deepEqual(findAttr(client.links[0].attributes, 'link.kind'), { type: 'string', value: 'follows' });
  assert.deepEqual(client.status, { code: 2, message: 'timeout' });
}


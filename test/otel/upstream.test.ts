// UpstreamExporter on its own: kspan's encoder checked byte-for-byte by a
// third-party decoder (@elastic/mockotlpserver: protobufjs over HTTP,
// @grpc/proto-loader over gRPC), and the queue's behaviour against upstreams
// that fail in every way the OTLP spec names: retryable statuses with and
// without RetryInfo / Retry-After, refused data (split, then drop the one bad
// span), permanent refusals, partial success, a stalled upstream, a full queue.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MockOtlpServer } from '@elastic/mockotlpserver';
import * as grpc from '@grpc/grpc-js';
import { UpstreamExporter, ResourceRef, type OutgoingSpan, type UpstreamOptions } from '../../src/otel/upstream.js';
import { classifyGrpc, classifyHttp, parseRetryAfter } from '../../src/otel/upstream-transport.js';
import { decodeTraceRequestProtobuf } from '../../src/otel/otlp-decode.js';
import { encodeTraceRequest } from '../../src/otel/otlp-encode.js';
import type { DecodedTraceRequest, InstrumentationScope, KeyValue, Span } from '../../src/otel/types.js';
import { BlackHole, FakeGrpcUpstream, FakeHttpUpstream, RawH2Upstream, rawToDecoded, rawValueKinds, spansOf, type Answer } from './upstream-fakes.js';

const tr = (n: number): string => n.toString(16).padStart(32, '0');
const sp = (n: number): string => n.toString(16).padStart(16, '0');
const T = 1_763_730_000_000_000_000n;

const RESOURCE = new ResourceRef([{ key: 'service.name', value: { type: 'string', value: 'svc' } }], 'https://opentelemetry.io/schemas/1.30.0', 3);
const SCOPE: InstrumentationScope = { name: 'sc', version: '1.2', attributes: [{ key: 'scope.k', value: { type: 'bool', value: false } }], droppedAttributesCount: 4 };

function span(n: number, o: Partial<Span> = {}): Span {
  return {
    traceId: tr(n), spanId: sp(n), traceState: '', parentSpanId: '', flags: 1, name: `op${n}`, kind: 2,
    startTimeUnixNano: T + BigInt(n), endTimeUnixNano: T + BigInt(n) + 1000n,
    attributes: [{ key: 'n', value: { type: 'int', value: BigInt(n) } }], droppedAttributesCount: 0,
    events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' }, ...o,
  };
}

const out = (spans: Span[], resource = RESOURCE, scope = SCOPE, scopeSchemaUrl = 'scope-schema'): OutgoingSpan[] =>
  spans.map((s) => ({ span: s, resource, scope, scopeSchemaUrl }));

const range = (from: number, n: number, o: Partial<Span> = {}): Span[] => Array.from({ length: n }, (_, i) => span(from + i, o));

function exporter(url: string, o: Partial<UpstreamOptions> = {}): { up: UpstreamExporter; logs: string[] } {
  const logs: string[] = [];
  const up = new UpstreamExporter({ url, timeoutMs: 2000, backoffMs: 50, maxBackoffMs: 200, log: (m) => logs.push(m), ...o });
  return { up, logs };
}

// every field the decoder reads, every AnyValue type, the values JS numbers cannot carry
const kv = (key: string, value: KeyValue['value']): KeyValue => ({ key, value });
const EXACT: Span = {
  traceId: '0123456789abcdef0123456789abcdef', spanId: 'fedcba9876543210', traceState: 'vendor=a,other=b:c', parentSpanId: '00f067aa0ba902b7',
  flags: 0x301, name: 'exact ✓', kind: 5, startTimeUnixNano: 0xffff_ffff_ffff_fff0n, endTimeUnixNano: 0xffff_ffff_ffff_ffffn,
  attributes: [
    kv('double.one', { type: 'double', value: 1.0 }),
    kv('double.zero', { type: 'double', value: 0 }),
    kv('double.negzero', { type: 'double', value: -0 }),
    kv('double.big', { type: 'double', value: 2 ** 60 }),
    kv('double.frac', { type: 'double', value: -1.5e-300 }),
    kv('double.inf', { type: 'double', value: Infinity }),
    kv('int.zero', { type: 'int', value: 0n }),
    kv('int.2^53+1', { type: 'int', value: 9_007_199_254_740_993n }),
    kv('int.max', { type: 'int', value: 9_223_372_036_854_775_807n }),
    kv('int.min', { type: 'int', value: -9_223_372_036_854_775_808n }),
    kv('int.neg', { type: 'int', value: -5n }),
    kv('str', { type: 'string', value: 'héllo \u0000 world' }),
    kv('str.empty', { type: 'string', value: '' }),
    kv('bool.true', { type: 'bool', value: true }),
    kv('bool.false', { type: 'bool', value: false }),
    kv('bytes', { type: 'bytes', value: Buffer.from([0, 1, 2, 254, 255]) }),
    kv('bytes.empty', { type: 'bytes', value: Buffer.alloc(0) }),
    kv('array', { type: 'array', value: [{ type: 'double', value: 2.0 }, { type: 'int', value: 2n }, { type: 'string', value: 's' }, { type: 'array', value: [] }] }),
    kv('kvlist', { type: 'kvlist', value: [kv('inner', { type: 'kvlist', value: [kv('deep', { type: 'double', value: 3.0 })] }), kv('e', { type: 'empty' })] }),
    kv('empty', { type: 'empty' }),
    kv('', { type: 'string', value: 'empty key' }),
  ],
  droppedAttributesCount: 7,
  events: [
    { timeUnixNano: T, name: 'ev', attributes: [kv('ev.d', { type: 'double', value: 5.0 })], droppedAttributesCount: 1 },
    { timeUnixNano: 0n, name: '', attributes: [], droppedAttributesCount: 0 },
  ],
  droppedEventsCount: 8,
  links: [{ traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), traceState: 'x=y', attributes: [kv('l', { type: 'int', value: -1n })], droppedAttributesCount: 2, flags: 0x101 }],
  droppedLinksCount: 9,
  status: { code: 2, message: 'it failed' },
};

function expectedRequest(spans: Span[]): DecodedTraceRequest {
  return {
    resourceSpans: [{
      resource: { attributes: RESOURCE.attributes, droppedAttributesCount: 3 },
      scopeSpans: [{ scope: SCOPE, spans, schemaUrl: 'scope-schema' }],
      schemaUrl: RESOURCE.schemaUrl,
    }],
  };
}

let mock: MockOtlpServer;
const rawRequests: unknown[] = [];

before(async () => {
  mock = new MockOtlpServer({
    logLevel: 'warn', services: ['grpc', 'http'], grpcHostname: '127.0.0.1', grpcPort: 0, httpHostname: '127.0.0.1', httpPort: 0,
    onTrace: (raw: unknown) => rawRequests.push(raw),
  });
  await mock.start();
});
after(async () => { await mock.close(); });

const mockGrpcUrl = (): string => String(mock.grpcUrl).replace(/\/$/, '');
const mockHttpUrl = (): string => `${String(mock.httpUrl).replace(/\/$/, '')}/v1/traces`;

async function roundTrip(url: string): Promise<void> {
  rawRequests.length = 0;
  const { up } = exporter(url);
  up.send(out([EXACT, span(2)]));
  await up.close(5000);
  assert.equal(up.counters.exported, 2, up.lastError);
  assert.equal(rawRequests.length, 1);
  // what the third-party decoder read equals what was sent, field for field
  assert.deepStrictEqual(rawToDecoded(rawRequests[0]), expectedRequest([EXACT, span(2)]));
  // and the value types are the ones sent: 1.0 is a double, not an int
  const kinds = rawValueKinds(rawRequests[0]);
  assert.equal(kinds['double.one'], 'doubleValue');
  assert.equal(kinds['double.zero'], 'doubleValue');
  assert.equal(kinds['int.zero'], 'intValue');
  assert.equal(kinds['int.2^53+1'], 'intValue');
  assert.equal(kinds['bytes.empty'], 'bytesValue');
  assert.equal(kinds['str.empty'], 'stringValue');
  assert.equal(kinds.empty, 'empty');
}

test('OTLP/gRPC: every field and value type arrives exactly as received (checked by proto-loader in mockotlpserver)', async () => {
  await roundTrip(mockGrpcUrl());
});

test('OTLP/HTTP protobuf: the same, checked by protobufjs in mockotlpserver', async () => {
  await roundTrip(mockHttpUrl());
});

test('the bytes sent are encodeTraceRequest of the spans, grouped by resource and scope', async () => {
  const u = await FakeGrpcUpstream.start(() => ({ ok: true }));
  try {
    const other = new ResourceRef([{ key: 'service.name', value: { type: 'string', value: 'other' } }], '');
    const scope2: InstrumentationScope = { name: 'sc2', version: '', attributes: [], droppedAttributesCount: 0 };
    const { up } = exporter(u.url);
    up.send([...out([span(1)]), ...out([span(2)], other), ...out([span(3)]), ...out([span(4)], RESOURCE, scope2, '')]);
    await up.close(5000);
    assert.equal(u.calls.length, 1);
    const want: DecodedTraceRequest = {
      resourceSpans: [
        { resource: { attributes: RESOURCE.attributes, droppedAttributesCount: 3 }, schemaUrl: RESOURCE.schemaUrl, scopeSpans: [
          { scope: SCOPE, spans: [span(1), span(3)], schemaUrl: 'scope-schema' },
          { scope: scope2, spans: [span(4)], schemaUrl: '' },
        ] },
        { resource: { attributes: other.attributes, droppedAttributesCount: 0 }, schemaUrl: '', scopeSpans: [{ scope: SCOPE, spans: [span(2)], schemaUrl: 'scope-schema' }] },
      ],
    };
    assert.deepStrictEqual(u.calls[0].req, want);
    assert.equal(u.calls[0].bytes, encodeTraceRequest(want).length, 'byte-identical to the reference encoder');
  } finally {
    await u.close();
  }
});

test('gzip and headers: grpc-encoding gzip + metadata on the wire (raw HTTP/2), Content-Encoding gzip + headers over HTTP', async () => {
  const h2 = await RawH2Upstream.start();
  try {
    const { up } = exporter(`http://127.0.0.1:${h2.port}`, { compression: true, headers: { Authorization: 'Bearer t0ken', 'x-tenant': 'a' } });
    up.send(out([EXACT]));
    await up.close(5000);
    assert.equal(up.counters.exported, 1, up.lastError);
    const [r] = h2.requests;
    assert.equal(r.headers[':path'], '/opentelemetry.proto.collector.trace.v1.TraceService/Export');
    assert.equal(r.headers['content-type'], 'application/grpc');
    assert.equal(r.headers['grpc-encoding'], 'gzip');
    assert.equal(r.compressed, true, 'the message went compressed');
    assert.equal(r.headers.authorization, 'Bearer t0ken');
    assert.equal(r.headers['x-tenant'], 'a');
    assert.match(r.headers['grpc-timeout'] ?? '', /^\d+[mSMu]$/, 'a deadline is sent');
    assert.deepStrictEqual(decodeTraceRequestProtobuf(r.message), expectedRequest([EXACT]));
  } finally {
    await h2.close();
  }
  const hu = await FakeHttpUpstream.start(() => ({ ok: true }));
  try {
    const { up } = exporter(hu.url, { compression: true, headers: { Authorization: 'Bearer t0ken' } });
    up.send(out([EXACT]));
    await up.close(5000);
    const [c] = hu.calls;
    assert.equal(c.headers['content-encoding'], 'gzip');
    assert.equal(c.headers['content-type'], 'application/x-protobuf');
    assert.equal(c.headers.authorization, 'Bearer t0ken');
    assert.deepStrictEqual(c.req, expectedRequest([EXACT]));
  } finally {
    await hu.close();
  }
});

for (const transport of ['grpc', 'http'] as const) {
  const start = (answer: (c: { req: DecodedTraceRequest }, n: number) => Answer) => (transport === 'grpc' ? FakeGrpcUpstream.start(answer) : FakeHttpUpstream.start(answer));

  test(`${transport}: retryable failures keep the batch and retry with backoff until it goes through`, async () => {
    const u = await start((_c, n) => (n <= 3 ? { grpc: grpc.status.UNAVAILABLE, message: 'not now' } : { ok: true }));
    try {
      const { up, logs } = exporter(u.url);
      const t0 = Date.now();
      up.send(out(range(1, 10)));
      await u.waitFor(() => u.accepted.length === 10, 10_000, 'the batch');
      const el = Date.now() - t0;
      assert.equal(up.counters.failedAttempts, 3);
      assert.ok(el >= (50 + 100 + 200) * 0.75, `backoff 50, 100, 200 ms (jittered): took ${el} ms`);
      await up.close();
      assert.equal(up.counters.exported, 10);
      assert.equal(up.down, false);
      assert.equal(logs.filter((l) => /export failed/.test(l)).length, 1, 'one line when it goes down');
      assert.ok(logs.some((l) => /reachable again/.test(l)));
    } finally {
      await u.close();
    }
  });

  test(`${transport}: the server's retry delay (RetryInfo / Retry-After) is honoured`, async () => {
    const u = await start((_c, n) => (n === 1 ? { grpc: grpc.status.RESOURCE_EXHAUSTED, message: 'slow down', retryMs: 1000 } : { ok: true }));
    try {
      const { up } = exporter(u.url, { backoffMs: 10, maxBackoffMs: 5000 });
      const t0 = Date.now();
      up.send(out(range(1, 5)));
      await u.waitFor(() => u.accepted.length === 5, 10_000, 'the batch');
      assert.ok(Date.now() - t0 >= 950, `waited ${Date.now() - t0} ms for the server's 1 s`);
      assert.equal(up.counters.splits, 0, 'RESOURCE_EXHAUSTED with a retry delay is not a refusal of the data');
      await up.close();
    } finally {
      await u.close();
    }
  });

  test(`${transport}: refused data is split in halves; the one bad span is dropped, logged with its ids; the rest arrive`, async () => {
    const u = await start((c) => (spansOf(c.req).some((s) => s.name === 'poison')
      ? { grpc: grpc.status.INVALID_ARGUMENT, message: 'bad span' } : { ok: true }));
    try {
      const { up, logs } = exporter(u.url);
      up.send(out([...range(1, 40), span(41, { name: 'poison' }), ...range(42, 59)]));
      await up.close(10_000);
      assert.equal(u.accepted.length, 99);
      assert.deepEqual(new Set(u.accepted.map((s) => s.spanId)).size, 99, 'each once');
      assert.ok(!u.accepted.some((s) => s.name === 'poison'));
      assert.equal(up.counters.exported, 99);
      assert.equal(up.counters.dropped.rejected, 1);
      assert.equal(up.counters.failedAttempts, 0, 'not treated as the upstream being down');
      assert.ok(up.counters.splits >= 6 && up.counters.splits <= 7, `one split per level down to the bad span (log2 100): ${up.counters.splits}`);
      assert.ok(logs.some((l) => l.includes(`trace_id=${tr(41)} span_id=${sp(41)}`) && /dropped/.test(l)), logs.join('\n'));
    } finally {
      await u.close();
    }
  });

  test(`${transport}: a permanent refusal (UNAUTHENTICATED / 401) drops the batch, counted, without retrying`, async () => {
    const u = await start(() => ({ grpc: grpc.status.UNAUTHENTICATED, message: 'who are you' }));
    try {
      const { up, logs } = exporter(u.url);
      up.send(out(range(1, 10)));
      await up.close(5000);
      assert.equal(u.calls.length, 1);
      assert.equal(up.counters.dropped.rejected, 10);
      assert.equal(up.counters.exported, 0);
      assert.ok(logs.some((l) => /rejected 10 span\(s\), not retried/.test(l)));
    } finally {
      await u.close();
    }
  });

  test(`${transport}: partial success: rejected spans are counted and the message logged`, async () => {
    const u = await start(() => ({ ok: true, rejectedSpans: 3, message: 'three were odd' }));
    try {
      const { up, logs } = exporter(u.url);
      up.send(out(range(1, 10)));
      await up.close(5000);
      assert.equal(up.counters.exported, 7);
      assert.equal(up.counters.dropped.rejected, 3);
      assert.ok(logs.some((l) => /partial success: 3 of 10 span\(s\) rejected: three were odd/.test(l)));
    } finally {
      await u.close();
    }
  });

  test(`${transport}: a stalled upstream (answers nothing) hits the timeout and is retried: at-least-once delivery`, async () => {
    const u = await start((_c, n) => (n <= 2 ? 'stall' : { ok: true }));
    try {
      const { up } = exporter(u.url, { timeoutMs: 300 });
      up.send(out(range(1, 20)));
      await u.waitFor(() => u.accepted.length >= 20, 10_000, 'the batch after two timeouts');
      assert.equal(up.counters.failedAttempts, 2);
      assert.match(up.lastError, transport === 'grpc' ? /DEADLINE_EXCEEDED/ : /timeout/);
      // the upstream saw the batch three times: what it did with the first two is unknown to kspan
      assert.equal(u.spans.length, 60);
      await up.close();
      assert.equal(up.counters.exported, 20);
    } finally {
      await u.close();
    }
  });
}

test('a span over the upstream\'s max message size (mockotlpserver: 4 MiB) is dropped; the 200 after it all arrive (gRPC)', async () => {
  rawRequests.length = 0;
  const huge = span(1, { attributes: [kv('blob', { type: 'string', value: 'x'.repeat(5 * 1024 * 1024) })] });
  // the big span shares its batch with good ones (maxBatchBytes raised): the split path, then the drop
  const { up, logs } = exporter(mockGrpcUrl(), { maxBatchBytes: 64 * 1024 * 1024, timeoutMs: 5000 });
  up.send(out([huge, ...range(2, 50)]));
  up.send(out(range(52, 150)));
  await up.close(20_000);
  const got = rawRequests.flatMap((r) => spansOf(rawToDecoded(r)));
  assert.equal(got.length, 200);
  assert.ok(!got.some((s) => s.spanId === sp(1)));
  assert.equal(up.counters.exported, 200);
  assert.equal(up.counters.dropped.rejected, 1);
  assert.ok(logs.some((l) => l.includes(`span_id=${sp(1)}`) && /RESOURCE_EXHAUSTED/.test(l)), logs.join('\n'));
  // and with the default batch bound the big span simply goes (and fails) alone
  rawRequests.length = 0;
  const { up: up2 } = exporter(mockGrpcUrl(), { timeoutMs: 5000 });
  up2.send(out([huge, ...range(2, 200)]));
  await up2.close(20_000);
  assert.equal(rawRequests.flatMap((r) => spansOf(rawToDecoded(r))).length, 200);
  assert.equal(up2.counters.dropped.rejected, 1);
  assert.equal(up2.counters.splits, 0);
});

test('HTTP 413 from the upstream (kspan\'s own receiver with a small body limit): split, the big span dropped, the rest arrive', async () => {
  const { OtlpReceiver } = await import('../../src/otel/receiver.js');
  const got: Span[] = [];
  const rx = await OtlpReceiver.start({
    httpAddr: '127.0.0.1:0', grpcAddr: null, maxBodyBytes: 64 * 1024,
    consumer: { async consume(req) { got.push(...spansOf(req)); return { rejectedSpans: 0 }; } },
  });
  try {
    const big = span(1, { attributes: [kv('blob', { type: 'bytes', value: Buffer.alloc(100 * 1024, 7) })] });
    const { up } = exporter(`http://127.0.0.1:${rx.httpPort}/v1/traces`, { maxBatchBytes: 1024 * 1024 });
    up.send(out([...range(2, 30), big, ...range(40, 170)]));
    await up.close(10_000);
    assert.equal(got.length, 200);
    assert.equal(up.counters.dropped.rejected, 1);
    assert.ok(up.counters.splits >= 1);
    assert.ok(rx.counters.tooLarge >= 1);
  } finally {
    await rx.close();
  }
});

test('a black hole (accepts connections, never answers): gRPC and HTTP both time out, retry, and report down', async () => {
  const bh = await BlackHole.start();
  try {
    for (const url of [`http://127.0.0.1:${bh.port}`, `http://127.0.0.1:${bh.port}/v1/traces`]) {
      const { up, logs } = exporter(url, { timeoutMs: 200 });
      up.send(out(range(1, 5)));
      const t0 = Date.now();
      while (up.counters.failedAttempts < 2 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(up.counters.failedAttempts >= 2, `${url}: ${up.counters.failedAttempts} attempts`);
      assert.equal(up.down, true);
      assert.equal(up.pending, 5);
      await up.close(300);
      assert.equal(up.counters.dropped.shutdown, 5);
      assert.ok(logs.some((l) => /not delivered at shutdown/.test(l)));
    }
    assert.ok(bh.connections >= 2);
  } finally {
    await bh.close();
  }
});

test('queue bounded by bytes: past maxQueueBytes the oldest waiting spans are dropped, counted, one log line per burst', async () => {
  const bh = await BlackHole.start(); // nothing gets through: everything waits
  try {
    const blob = (n: number) => span(n, { attributes: [kv('blob', { type: 'string', value: 'y'.repeat(10_000) })] });
    const { up, logs } = exporter(`http://127.0.0.1:${bh.port}`, { maxQueueBytes: 200_000, maxBatchSpans: 1, timeoutMs: 60_000 });
    up.send(out([blob(1)])); // goes in flight at once and stays there
    for (let i = 0; i < 10; i++) up.send(out(Array.from({ length: 10 }, (_, j) => blob(100 + i * 10 + j))));
    assert.ok(up.pendingBytes <= 200_000, `held ${up.pendingBytes} bytes`);
    const per = up.pendingBytes / up.pending;
    assert.ok(per > 10_000 && per < 10_300, `~10 KB per span: ${per}`);
    assert.equal(up.pending + up.counters.dropped.queueFull, 101);
    assert.equal(up.pending, 19);
    assert.equal(logs.filter((l) => /queue full/.test(l)).length, 1, logs.join('\n'));
    // small spans cost their size plus bookkeeping: 500 of them evict only as many big ones as their bytes
    const bigBefore = up.pending;
    const bytesBefore = up.pendingBytes;
    up.send(out(range(10_000, 500)));
    const smallBytes = up.pendingBytes - bytesBefore + (bigBefore - (up.pending - 500)) * per;
    assert.ok(smallBytes > 500 * 96 && smallBytes < 500 * 200, `500 small spans hold ${smallBytes} bytes`);
    const bigLeft = up.pending - 500;
    assert.ok(bigLeft >= bigBefore - Math.ceil(smallBytes / per) - 1, `${bigLeft} big ones left of ${bigBefore}`);
    assert.ok(up.pendingBytes <= 200_000);
    await up.close(100);
  } finally {
    await bh.close();
  }
});

test('saturated(): at 90% of either bound, counting the spans still coming at the queue\'s mean size a span', async () => {
  const bh = await BlackHole.start(); // nothing gets through: everything waits
  try {
    const blob = (n: number) => span(n, { attributes: [kv('blob', { type: 'string', value: 'y'.repeat(10_000) })] });
    const { up } = exporter(`http://127.0.0.1:${bh.port}`, { maxQueueSpans: 100, maxQueueBytes: 200_000, maxBatchSpans: 1, timeoutMs: 60_000 });
    assert.equal(up.saturated(), null);
    assert.equal(up.saturated(89), null, 'nothing queued: 89 coming spans of unknown size are below 90 spans');
    assert.match(up.saturated(90) ?? '', /behind: 0 span\(s\) \/ 0 MiB queued and 90 more waiting/);
    up.send(out(Array.from({ length: 10 }, (_, j) => blob(j)))); // ~101 KB held
    assert.equal(up.saturated(), null);
    assert.equal(up.saturated(6), null, '16 x ~10.1 KB < 180,000 bytes');
    assert.match(up.saturated(8) ?? '', /behind: 10 span\(s\)/, '18 x ~10.1 KB >= 180,000 bytes');
    up.send(out(Array.from({ length: 8 }, (_, j) => blob(100 + j)))); // 18 held: over 90% of the bytes on its own
    assert.match(up.saturated() ?? '', /behind: 18 span\(s\)/);
    assert.equal(up.counters.dropped.queueFull, 0);
    await up.close(100);
  } finally {
    await bh.close();
  }
});

test('retry and split classification follow the OTLP spec', () => {
  const k = (o: { kind: string }) => o.kind;
  for (const c of [grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED, grpc.status.ABORTED, grpc.status.OUT_OF_RANGE, grpc.status.UNAVAILABLE, grpc.status.DATA_LOSS]) {
    assert.equal(k(classifyGrpc(c, '')), 'retry', grpc.status[c]);
  }
  assert.equal(k(classifyGrpc(grpc.status.RESOURCE_EXHAUSTED, '', 1000)), 'retry');
  assert.equal(k(classifyGrpc(grpc.status.RESOURCE_EXHAUSTED, 'Received message larger than max')), 'split');
  assert.equal(k(classifyGrpc(grpc.status.INVALID_ARGUMENT, '')), 'split');
  for (const c of [grpc.status.UNKNOWN, grpc.status.NOT_FOUND, grpc.status.PERMISSION_DENIED, grpc.status.UNIMPLEMENTED, grpc.status.INTERNAL, grpc.status.UNAUTHENTICATED]) {
    assert.equal(k(classifyGrpc(c, '')), 'drop', grpc.status[c]);
  }
  for (const s of [429, 502, 503, 504]) assert.equal(k(classifyHttp(s, '')), 'retry');
  for (const s of [400, 413]) assert.equal(k(classifyHttp(s, '')), 'split');
  for (const s of [401, 403, 404, 405, 415, 500, 501]) assert.equal(k(classifyHttp(s, '')), 'drop');
  assert.equal(parseRetryAfter('7'), 7000);
  assert.equal(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10_000);
  assert.equal(parseRetryAfter('soon'), undefined);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtobufTraceSerializer, JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import {
  checkDecodedLimits, decodeRpcStatus, decodeTraceRequestJson, decodeTraceRequestProtobuf, decodeTraceResponse, DEFAULT_DECODE_LIMITS, OtlpDecodeError,
  OtlpLimitError, scanTraceRequestProtobuf,
} from '../../src/otel/otlp-decode.js';
import { encodeRpcStatus, encodeTraceRequest, encodeTraceResponse } from '../../src/otel/otlp-encode.js';
import { type DecodedTraceRequest } from '../../src/otel/types.js';
import { checkScenario, scenarioSpans } from './sdk-fixture.js';

test('SDK protobuf and JSON serializations decode to the same structure with the original ids', async () => {
  const spans = await scenarioSpans();
  const pb = decodeTraceRequestProtobuf(ProtobufTraceSerializer.serializeRequest(spans)!);
  const js = decodeTraceRequestJson(JsonTraceSerializer.serializeRequest(spans)!);
  checkScenario(pb);
  assert.deepStrictEqual(js, pb);
});

test('re-encoding a decoded request round-trips exactly (forwardable with original ids)', async () => {
  const spans = await scenarioSpans();
  const pb = decodeTraceRequestProtobuf(ProtobufTraceSerializer.serializeRequest(spans)!);
  assert.deepStrictEqual(decodeTraceRequestProtobuf(encodeTraceRequest(pb)), pb);
});

const ALL_KINDS: DecodedTraceRequest = {
  resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { type: 'string', value: 'svc' } }], droppedAttributesCount: 2 },
    schemaUrl: 'https://opentelemetry.io/schemas/1.30.0',
    scopeSpans: [{
      scope: { name: 'sc', version: 'v', attributes: [{ key: 'k', value: { type: 'bool', value: true } }], droppedAttributesCount: 1 },
      schemaUrl: 's',
      spans: [{
        traceId: 'ff'.repeat(16), spanId: '01'.repeat(8), traceState: 'a=b', parentSpanId: '', flags: 0x301, name: 'n', kind: 5,
        startTimeUnixNano: 0xffff_ffff_ffff_fff0n, endTimeUnixNano: 0xffff_ffff_ffff_ffffn,
        attributes: [
          { key: 'neg', value: { type: 'int', value: -5n } },
          { key: 'big', value: { type: 'int', value: 9_223_372_036_854_775_807n } },
          { key: 'min', value: { type: 'int', value: -9_223_372_036_854_775_808n } },
          { key: 'dbl', value: { type: 'double', value: -1.5e300 } },
          { key: 'bytes', value: { type: 'bytes', value: Buffer.from([0, 1, 2, 255]) } },
          { key: 'empty', value: { type: 'empty' } },
          { key: 'kv', value: { type: 'kvlist', value: [{ key: 'x', value: { type: 'array', value: [{ type: 'int', value: 1n }, { type: 'kvlist', value: [] }] } }] } },
        ],
        droppedAttributesCount: 3, events: [{ timeUnixNano: 1n, name: 'e', attributes: [], droppedAttributesCount: 4 }], droppedEventsCount: 5,
        links: [{ traceId: '12'.repeat(16), spanId: '34'.repeat(8), traceState: 'x=y', attributes: [], droppedAttributesCount: 6, flags: 0x101 }],
        droppedLinksCount: 7, status: { code: 1, message: '' },
      }],
    }],
  }],
};

/** OTLP/JSON of ALL_KINDS written by hand (int64 as strings and as numbers, enums as ints, hex ids, base64 bytes). */
const ALL_KINDS_JSON = JSON.stringify({
  resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }], droppedAttributesCount: 2 },
    schemaUrl: 'https://opentelemetry.io/schemas/1.30.0',
    scopeSpans: [{
      scope: { name: 'sc', version: 'v', attributes: [{ key: 'k', value: { boolValue: true } }], droppedAttributesCount: 1 },
      schemaUrl: 's',
      spans: [{
        traceId: 'FF'.repeat(16), spanId: '01'.repeat(8), traceState: 'a=b', parentSpanId: '', flags: 0x301, name: 'n', kind: 5,
        startTimeUnixNano: '18446744073709551600', endTimeUnixNano: '18446744073709551615',
        attributes: [
          { key: 'neg', value: { intValue: -5 } },
          { key: 'big', value: { intValue: '9223372036854775807' } },
          { key: 'min', value: { intValue: '-9223372036854775808' } },
          { key: 'dbl', value: { doubleValue: -1.5e300 } },
          { key: 'bytes', value: { bytesValue: Buffer.from([0, 1, 2, 255]).toString('base64') } },
          { key: 'empty', value: {} },
          { key: 'kv', value: { kvlistValue: { values: [{ key: 'x', value: { arrayValue: { values: [{ intValue: '1' }, { kvlistValue: {} }] } } }] } } },
        ],
        droppedAttributesCount: 3, events: [{ timeUnixNano: 1, name: 'e', droppedAttributesCount: 4 }], droppedEventsCount: 5,
        links: [{ trace_id: '12'.repeat(16), spanId: '34'.repeat(8), traceState: 'x=y', droppedAttributesCount: 6, flags: 0x101 }],
        droppedLinksCount: 7, status: { code: 1 }, unknownField: { ignored: true },
      }],
    }],
  }],
});

test('all AnyValue kinds, u64 extremes, dropped counts: protobuf round trip and hand-written JSON agree', () => {
  const bytes = encodeTraceRequest(ALL_KINDS);
  assert.deepStrictEqual(decodeTraceRequestProtobuf(bytes), ALL_KINDS);
  assert.deepStrictEqual(decodeTraceRequestJson(ALL_KINDS_JSON), ALL_KINDS);
});

test('every truncation of a request is a typed error, never a partial result', async () => {
  const bytes = Buffer.from(ProtobufTraceSerializer.serializeRequest(await scenarioSpans())!);
  for (let n = 1; n < bytes.length; n++) {
    assert.throws(() => decodeTraceRequestProtobuf(bytes.subarray(0, n)), (e: unknown) => e instanceof OtlpDecodeError && e.kind === 'truncated' && /truncated protobuf/.test(e.message), `prefix ${n}`);
  }
  assert.deepEqual(decodeTraceRequestProtobuf(Buffer.alloc(0)), { resourceSpans: [] });
});

test('malformed protobuf and JSON give clear typed errors', () => {
  const bad: [Buffer, RegExp][] = [
    [Buffer.from([0x08, 0x01]), /resource_spans has wire type varint/],
    [Buffer.from([0x0a, 0x03, 0x12, 0x01, 0x00, 0x00]), /truncated|malformed/],
    [Buffer.from([0x0f]), /unsupported wire type 7|wire type/],
    [Buffer.from([0x00]), /field number 0/],
    [Buffer.from('ffffffffffffffffffff01', 'hex'), /varint longer than 10 bytes/],
  ];
  for (const [b, re] of bad) {
    assert.throws(() => decodeTraceRequestProtobuf(b), (e: unknown) => e instanceof OtlpDecodeError && re.test(e.message), b.toString('hex'));
  }
  const shortId = Buffer.from('0a0b' + '1209' + '1207' + '0a03aabbcc' + '2a00', 'hex'); // rs{ ss{ span{ trace_id: 3 bytes, name:'' } } }
  assert.throws(() => decodeTraceRequestProtobuf(shortId), /Span.trace_id must be 16 bytes, got 3/);
  const jbad: [string, RegExp][] = [
    ['{', /malformed OTLP\/JSON/],
    ['[]', /\$: expected an object/],
    ['{"resourceSpans":{}}', /\$\.resourceSpans: expected an array/],
    ['{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}', /spans\[0\]\.traceId: expected 32 hex digits/],
    ['{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"1.5"}]}]}]}', /startTimeUnixNano: expected an integer/],
    ['{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-1"}]}]}]}', /out of range/],
    ['{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"intValue":1.5}}]}]}]}]}', /intValue: expected an integer/],
  ];
  for (const [s, re] of jbad) {
    assert.throws(() => decodeTraceRequestJson(s), (e: unknown) => e instanceof OtlpDecodeError && re.test(e.message), s);
  }
});

test('deeply nested AnyValue is rejected, not a stack overflow', () => {
  let v: any = { type: 'int', value: 1n };
  for (let i = 0; i < 100; i++) v = { type: 'array', value: [v] };
  const req: DecodedTraceRequest = { resourceSpans: [{ resource: { attributes: [{ key: 'deep', value: v }], droppedAttributesCount: 0 }, scopeSpans: [], schemaUrl: '' }] };
  assert.throws(() => decodeTraceRequestProtobuf(encodeTraceRequest(req)), /nested deeper than 32/);
});

test('enums outside the known range (negative kind / status code: 10-byte varints) round-trip', () => {
  const req = decodeTraceRequestProtobuf(encodeTraceRequest(ALL_KINDS)); // a deep copy
  const s = req.resourceSpans[0].scopeSpans[0].spans[0];
  s.kind = -1;
  s.status = { code: -2147483648, message: 'm' };
  assert.deepStrictEqual(decodeTraceRequestProtobuf(encodeTraceRequest(req)), req);
  s.kind = 2147483647;
  s.status = { code: 7, message: '' };
  assert.deepStrictEqual(decodeTraceRequestProtobuf(encodeTraceRequest(req)), req);
});

test('responses kspan reads as a client: ExportTraceServiceResponse and google.rpc.Status with RetryInfo', () => {
  assert.deepEqual(decodeTraceResponse(encodeTraceResponse(0)), { rejectedSpans: 0, errorMessage: '' });
  assert.deepEqual(decodeTraceResponse(encodeTraceResponse(12, 'twelve bad')), { rejectedSpans: 12, errorMessage: 'twelve bad' });
  assert.deepEqual(decodeRpcStatus(encodeRpcStatus(3, 'bad')), { code: 3, message: 'bad' });
  assert.deepEqual(decodeRpcStatus(encodeRpcStatus(8, 'later', 2500)), { code: 8, message: 'later', retryDelayMs: 2500 });
  assert.deepEqual(decodeRpcStatus(encodeRpcStatus(14, '', 0)), { code: 14, message: '', retryDelayMs: 0 });
});

test('the pre-decode scan counts what the decoder would build, and stops at the first limit', () => {
  const bytes = encodeTraceRequest(ALL_KINDS);
  const sc = scanTraceRequestProtobuf(bytes);
  // resource 1 + scope 1 + span 7 (+ kvlist entry 1, its array's 2 elements) + event 0 + link 0
  assert.deepEqual({ spans: sc.spans, events: sc.events, links: sc.links, attributes: sc.attributes }, { spans: 1, events: 1, links: 1, attributes: 12 });
  assert.ok(sc.estimatedBytes > bytes.length);
  const lim = { ...DEFAULT_DECODE_LIMITS, maxAttributes: 11 };
  assert.throws(() => scanTraceRequestProtobuf(bytes, lim), (e: unknown) => e instanceof OtlpLimitError && e.limit === 'maxAttributes');
  assert.throws(() => scanTraceRequestProtobuf(bytes, { ...DEFAULT_DECODE_LIMITS, maxDecodedBytes: 100 }), (e: unknown) => e instanceof OtlpLimitError && e.limit === 'maxDecodedBytes');
  // the decoder's counts agree (checkDecodedLimits walks the decoded request)
  const d = checkDecodedLimits(decodeTraceRequestProtobuf(bytes));
  assert.deepEqual({ spans: d.spans, events: d.events, links: d.links, attributes: d.attributes }, { spans: 1, events: 1, links: 1, attributes: 12 });
  // deep nesting is refused by the scan too
  let v: any = { type: 'int', value: 1n };
  for (let i = 0; i < 40; i++) v = { type: 'kvlist', value: [{ key: 'k', value: v }] };
  const deep: DecodedTraceRequest = { resourceSpans: [{ resource: { attributes: [{ key: 'deep', value: v }], droppedAttributesCount: 0 }, scopeSpans: [], schemaUrl: '' }] };
  assert.throws(() => scanTraceRequestProtobuf(encodeTraceRequest(deep)), /nested deeper than 32/);
});

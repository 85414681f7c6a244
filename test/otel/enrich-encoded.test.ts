// Explain workers write kspan's attributes and events straight into protobuf
// (writeKspanEnrichment) instead of building KeyValue/SpanEvent objects and
// encoding those (kspanEnrichment + writeSpanExtra). Both must give the same
// bytes, key mask and settling flag for any explanation: 2,000 random ones
// (negative and > 2^48 ints, non-integers, long and non-ASCII strings, null
// and absent values, event and cause bounds that cut), decoded back too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cause, ChainStep, SpanExplanation } from '../../src/correlator/index.js';
import {
  PbWriter, decodeTraceRequestProtobuf, encodeTraceRequest, keyMaskOf, kspanEnrichment, writeKspanEnrichment, writeSpanExtra,
  type DecodedTraceRequest, type Span,
} from '../../src/otel/index.js';

let seed = 12345;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const int = (): number => pick([0, 1, 7, 127, 128, 300, 65_535, 2 ** 31, 2 ** 48 - 1, 2 ** 48, 2 ** 52 + 3, -1, -300, -(2 ** 40)]);
const num = (): number => (rnd() < 0.7 ? int() : pick([0.5, 1e-9, 0.1234, -2.5, 1e300]));
const str = (): string => pick(['', 'a', 'vllm', 'ünïcødé → 東京', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(5000)]);
const val = (): string | number | boolean | null | undefined => pick([str, num, () => rnd() < 0.5, () => null, () => undefined])();

function cause(): Cause {
  const chain: ChainStep[] = [];
  const nSteps = Math.floor(rnd() * (rnd() < 0.1 ? 40 : 4));
  for (let i = 0; i < nSteps; i++) {
    const step: ChainStep = { step: pick(['waits_on_lock', 'holder_off_cpu', 'preempted_by']), depth: i };
    for (let k = 0; k < 4; k++) if (rnd() < 0.6) step[pick(['pid', 'tid', 'comm', 'duration_ns', 'cpu', 'observer', 'unseen', 'uaddr'])] = val();
    chain.push(step);
  }
  const evidence = [];
  for (let i = 0; i < Math.floor(rnd() * 3); i++) {
    evidence.push({ kind: 'offcpu', tid: 1, start_unix_nano: pick(['1763730000000000123', '17637300000000001', 'n/a', '0']), end_unix_nano: '1763730000000000999' });
  }
  const c: Cause = {
    kind: pick(['cpu_preemption', 'lock_contention', 'io_wait', 'sleep', 'cuda_sync'] as const), severity: pick(['low', 'medium', 'high'] as const),
    duration_ns: int(), share: rnd(), culprit: rnd() < 0.7 ? { pid: int(), tid: int(), comm: str(), ...(rnd() < 0.2 ? { observer: true } : {}) } : null,
    chain, evidence, summary: str(), remediation: str(),
  };
  if (rnd() < 0.3) c.shared = true;
  if (rnd() < 0.3) c.concurrent_spans = int();
  return c;
}

function explanation(): SpanExplanation {
  const causes: Cause[] = [];
  for (let i = 0; i < Math.floor(rnd() * (rnd() < 0.1 ? 12 : 4)); i++) causes.push(cause());
  return {
    span_id: '0123456789abcdef', name: 'op', service: 'svc', start_unix_nano: '1763730000000000000', duration_ns: 1_000_000,
    correlation: { method: pick(['thread', 'process', 'none'] as const), pid: rnd() < 0.8 ? int() : null, tid: rnd() < 0.7 ? int() : null, reason: 'r' },
    breakdown_ns: { on_cpu: num(), runqueue: int(), futex: int(), io: int(), sleep: int(), cuda_sync: int(), unknown: int() },
    causes,
    data_quality: rnd() < 0.9 ? {
      lost_events: int(), covered: true, coverage: pick([0, 1, 0.25, 1 / 3]), lost_known: true, offcpu_threshold_ns: 50_000, threads_joined: 1, notes: [],
      ...(rnd() < 0.2 ? { settling: true, ...(rnd() < 0.7 ? { not_ingested_ns: int() } : {}) } : {}),
    } : undefined,
    host: rnd() < 0.5 ? { name: pick(['gpu-7', '', null]), boot_id: null } : undefined,
  };
}

test('writeKspanEnrichment: the bytes, key mask and settling flag of kspanEnrichment + writeSpanExtra, for any explanation', () => {
  const start = 1_763_730_000_000_000_000n;
  let cut = 0;
  for (let n = 0; n < 2000; n++) {
    const e = explanation();
    const o = pick([{}, { maxEvents: 3 }, { maxCauses: 1 }, { maxCauses: 2, maxEvents: 5 }, { maxEvents: 0 }]);
    const ref = kspanEnrichment(e, start, o);
    const wRef = new PbWriter(16);
    writeSpanExtra(wRef, ref.attributes, ref.events);
    const w = new PbWriter(16);
    w.raw(Buffer.from([0xaa])); // not at offset 0, as in a worker's batch buffer
    const got = writeKspanEnrichment(w, e, start, o);
    assert.deepEqual(Buffer.from(w.finish().subarray(1)), Buffer.from(wRef.finish()), `explanation ${n}: ${JSON.stringify(e).slice(0, 300)}`);
    assert.equal(got.keyMask, keyMaskOf(ref.attributes));
    assert.equal(got.settling, ref.settling);
    if (ref.attributes.some((a) => a.key === 'kspan.events_omitted')) cut++;
  }
  assert.ok(cut > 100, `bounds cut events in ${cut} of 2000`);
});

test('writeKspanEnrichment: spliced into a span, a third-party-shaped decode gives the enrichment back', () => {
  const e = explanation();
  e.causes = [cause(), cause()];
  e.causes[0].chain = [{ step: 'waits_on_lock', depth: 0, tid: 42, comm: 'holder', observer: true, uaddr: 2 ** 50 }];
  const start = 1_763_730_000_000_000_000n;
  const w = new PbWriter();
  writeKspanEnrichment(w, e, start);
  const span: Span = {
    traceId: '0'.repeat(31) + '1', spanId: '0'.repeat(15) + '2', traceState: '', parentSpanId: '', flags: 1, name: 'op', kind: 2,
    startTimeUnixNano: start, endTimeUnixNano: start + 1_000_000n, attributes: [{ key: 'http.route', value: { type: 'string', value: '/x' } }],
    droppedAttributesCount: 0, events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
    encodedExtra: Buffer.from(w.finish()),
  };
  const req: DecodedTraceRequest = { resourceSpans: [{ resource: { attributes: [], droppedAttributesCount: 0 }, scopeSpans: [{ scope: { name: 's', version: '', attributes: [], droppedAttributesCount: 0 }, spans: [span], schemaUrl: '' }], schemaUrl: '' }] };
  const back = decodeTraceRequestProtobuf(encodeTraceRequest(req)).resourceSpans[0].scopeSpans[0].spans[0];
  const ref = kspanEnrichment(e, start);
  assert.deepEqual(back.attributes, [span.attributes[0], ...ref.attributes]);
  assert.deepEqual(back.events, ref.events);
});

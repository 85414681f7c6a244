// StoreSpanConsumer.toSpanInput reads ~40 attribute keys of a span and its
// resource in one pass. It must give what reading each key directly gives
// (the span's first attribute of a key, else the resource's first): checked
// on 3,000 random spans with repeated keys, keys on both sides, every value
// type and both thread.id settings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEPT_ATTRIBUTES, PROCESS_ID_ATTRIBUTES, REQUEST_ID_ATTRIBUTES } from '../../src/store/index.js';
import { StoreSpanConsumer, findAttr, type AnyValue, type KeyValue, type Span } from '../../src/otel/index.js';

let seed = 777;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const KEYS = ['linux.tid', 'thread.id', 'process.pid', 'service.name', 'http.route', ...KEPT_ATTRIBUTES, ...PROCESS_ID_ATTRIBUTES, ...REQUEST_ID_ATTRIBUTES];
const value = (): AnyValue => pick<() => AnyValue>([
  () => ({ type: 'string', value: pick(['', '4242', 'abc', '12345678901234567', 'vllm-0']) }),
  () => ({ type: 'int', value: pick([0n, 7n, 4242n, -3n, 2n ** 60n]) }),
  () => ({ type: 'double', value: pick([1.5, 4242, -0.25]) }),
  () => ({ type: 'bool', value: rnd() < 0.5 }),
  () => ({ type: 'array', value: rnd() < 0.5 ? [] : [{ type: 'string', value: 'req-1' }, { type: 'string', value: 'req-2' }] }),
  () => ({ type: 'bytes', value: Buffer.from([1]) }),
])();
const attrs = (): KeyValue[] => Array.from({ length: Math.floor(rnd() * 12) }, () => ({ key: pick(KEYS), value: value() }));

/** The mapping's rules read key by key (the specification the one-pass reading must match). */
function reference(s: Span, res: KeyValue[], threadIdIsOsTid: boolean): Record<string, unknown> {
  const attr = (k: string): AnyValue | undefined => findAttr(s.attributes, k) ?? findAttr(res, k);
  const scalar = (v: AnyValue | undefined): string | number | boolean | undefined => {
    if (!v) return undefined;
    if (v.type === 'string' || v.type === 'bool' || v.type === 'double') return v.value;
    if (v.type === 'int') return Number(v.value);
    if (v.type === 'array') return v.value.length && v.value[0].type === 'string' ? v.value[0].value : undefined;
    return undefined;
  };
  const intOf = (v: AnyValue | undefined): number | null => {
    const x = scalar(v);
    if (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) return x;
    if (typeof x === 'string' && /^[0-9]{1,15}$/.test(x)) return Number(x);
    return null;
  };
  const strOf = (v: AnyValue | undefined): string | null => { const x = scalar(v); return x === undefined ? null : String(x); };
  const firstOf = (keys: readonly string[]): string | null => { for (const k of keys) { const x = strOf(attr(k)); if (x !== null) return x; } return null; };
  let tid = intOf(attr('linux.tid'));
  if (tid === null && threadIdIsOsTid) tid = intOf(attr('thread.id'));
  const attributes: Record<string, unknown> = {};
  for (const k of KEPT_ATTRIBUTES) { const x = scalar(attr(k)); if (x !== undefined) attributes[k] = x; }
  return { tid, pid: intOf(attr('process.pid')), processId: firstOf(PROCESS_ID_ATTRIBUTES), requestId: firstOf(REQUEST_ID_ATTRIBUTES), attributes };
}

test('toSpanInput: one pass over the attributes reads what key-by-key lookups read', () => {
  for (const threadIdIsOsTid of [false, true]) {
    const c = new StoreSpanConsumer({ putSpans: async () => {} }, { threadIdIsOsTid });
    for (let n = 0; n < 1500; n++) {
      const res = attrs();
      const s: Span = {
        traceId: '0'.repeat(31) + '1', spanId: '0'.repeat(15) + '2', traceState: '', parentSpanId: '', flags: 1, name: 'op', kind: 2,
        startTimeUnixNano: 1n, endTimeUnixNano: 2n, attributes: attrs(), droppedAttributesCount: 0, events: [], droppedEventsCount: 0,
        links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
      };
      const got = c.toSpanInput(s, res, [])!;
      const want = reference(s, res, threadIdIsOsTid);
      assert.deepEqual({ tid: got.tid, pid: got.pid, processId: got.processId, requestId: got.requestId, attributes: got.attributes }, want,
        JSON.stringify({ span: s.attributes, res }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
      // key order of the kept attributes is KEPT_ATTRIBUTES order, as before
      assert.deepEqual(Object.keys(got.attributes ?? {}), Object.keys(want.attributes as object));
    }
  }
});

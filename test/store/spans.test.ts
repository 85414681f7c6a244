import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openStoreWriter, openStoreReader, type SpanInput } from '../../src/store/index.js';
import { tempDir } from './util.js';

const E = 1_763_730_000_000_000_000n;
const tr = (n: number) => n.toString(16).padStart(32, '0');
const sp = (n: number) => n.toString(16).padStart(16, '0');

test('spans: putSpans / getTrace / findSlowSpans by service, window and duration', async () => {
  const { dir, cleanup } = tempDir('spans');
  try {
    const w = openStoreWriter(dir);
    const spans = [];
    for (let i = 0; i < 50; i++) {
      spans.push({ traceId: tr(1 + (i % 10)), spanId: sp(100 + i), service: i % 2 ? 'api' : 'engine', name: `op${i}`,
        startUnixNano: E + BigInt(i) * 1_000_000_000n, endUnixNano: E + BigInt(i) * 1_000_000_000n + BigInt((i * 7919) % 97 + 1) * 1_000_000n,
        pid: 1000 + i, tid: 2000 + i, requestId: `req-${i}`, processId: i % 2 ? null : 'engine-0' });
    }
    await w.reader.spans.putSpans(spans);
    // re-put one span with a new duration: indexes follow
    await w.reader.spans.putSpans([{ ...spans[1], endUnixNano: spans[1].startUnixNano + 500_000_000n }]);
    await w.close();
    const r = openStoreReader(dir);
    const t = r.spans.getTrace(tr(2));
    assert.deepEqual(t.map((s) => s.spanId), [sp(101), sp(111), sp(121), sp(131), sp(141)]);
    assert.equal(t[0].durationNs, 500_000_000);
    assert.equal(t[0].pid, 1001);
    assert.equal(t[0].tid, 2001);
    assert.equal(t[0].requestId, 'req-1');
    assert.equal(t[0].startUnixNano, (E + 1_000_000_000n).toString());
    // slowest api spans overall
    const api = spans.filter((_, i) => i % 2).map((s, k) => ({ id: s.spanId, d: k === 0 ? 500_000_000 : Number(s.endUnixNano - s.startUnixNano) }));
    const want = [...api].sort((a, b) => b.d - a.d).slice(0, 5).map((x) => x.id);
    assert.deepEqual(r.spans.findSlowSpans({ service: 'api', limit: 5 }).map((s) => s.spanId), want);
    // in a window [10 s, 20 s] of start times, min duration 50 ms
    const from = E + 10_000_000_000n;
    const to = E + 20_000_000_000n;
    const inWin = spans.filter((s) => s.service === 'engine' && s.startUnixNano >= from && s.startUnixNano <= to)
      .map((s) => ({ id: s.spanId, d: Number(s.endUnixNano - s.startUnixNano) })).filter((x) => x.d >= 50_000_000).sort((a, b) => b.d - a.d);
    const got = r.spans.findSlowSpans({ service: 'engine', fromUnixNano: from, toUnixNano: to, minDurationNs: 50_000_000 });
    assert.deepEqual(got.map((s) => s.spanId), inWin.map((x) => x.id));
    assert.ok(got.length >= 2);
    assert.deepEqual(r.spans.findSlowSpans({ service: 'nope' }), []);
    assert.equal(r.spans.getSpan(tr(3), sp(102))?.name, 'op2');
    void r.root.close();
  } finally {
    cleanup();
  }
});

test('spans: a re-put while the first put is still committing replaces it (no stale index entries)', async () => {
  const { dir, cleanup } = tempDir('spans-inflight');
  try {
    const w = openStoreWriter(dir);
    const base = { traceId: tr(7), spanId: sp(1), service: 'api', name: 'op', startUnixNano: E, endUnixNano: E + 10_000_000n };
    // three versions of one span, none awaited before the next (the OTel pipeline does not wait for commits),
    // the third twice in one call
    const a = w.reader.spans.putSpans([base]);
    const b = w.reader.spans.putSpans([{ ...base, startUnixNano: E + 5_000_000_000n, endUnixNano: E + 5_020_000_000n }]);
    const c = w.reader.spans.putSpans([
      { ...base, endUnixNano: E + 30_000_000n, name: 'op-c1' },
      { ...base, endUnixNano: E + 40_000_000n, name: 'op-c2' },
    ]);
    // readable in this process before the commits
    assert.equal(w.reader.spans.getTrace(tr(7)).length, 1);
    assert.equal(w.reader.spans.getTrace(tr(7))[0].name, 'op-c2');
    await Promise.all([a, b, c]);
    const got = w.reader.spans.getTrace(tr(7));
    assert.deepEqual(got.map((s) => [s.name, s.durationNs]), [['op-c2', 40_000_000]]);
    // one entry in each secondary index, the last version's
    const all = w.reader.spans.findSlowSpans({ service: 'api', limit: 10 });
    assert.deepEqual(all.map((s) => s.durationNs), [40_000_000]);
    const inWindow = w.reader.spans.findSlowSpans({ service: 'api', fromUnixNano: E - 1n, toUnixNano: E + 10_000_000_000n, limit: 10 });
    assert.deepEqual(inWindow.map((s) => s.durationNs), [40_000_000]);
    assert.equal(w.reader.spans.countOverlapping('api', E, E + 6_000_000_000n, () => true), 1);
    await w.close();
  } finally {
    cleanup();
  }
});

test('spans: a call with a bad span is rejected whole and leaves nothing readable', async () => {
  const { dir, cleanup } = tempDir('spans-bad');
  try {
    const w = openStoreWriter(dir);
    const good = { traceId: tr(9), spanId: sp(1), service: 'api', name: 'op', startUnixNano: E, endUnixNano: E + 1_000_000n };
    await assert.rejects(w.reader.spans.putSpans([good, { ...good, spanId: 'not-hex' }]), /bad span id/);
    await assert.rejects(w.reader.spans.putSpans([good, { ...good, spanId: sp(2), service: 'a\0b' }]), /NUL/);
    assert.deepEqual(w.reader.spans.getTrace(tr(9)), []);
    await w.reader.spans.putSpans([good]);
    assert.equal(w.reader.spans.getTrace(tr(9)).length, 1);
    await w.close();
  } finally {
    cleanup();
  }
});

// span-record.ts writes the index's values by hand in the bytes lmdb-js's
// msgpack encoder writes: checked byte for byte against that encoder on
// random spans (numbers of every width and sign, floats, NaN, non-ASCII and
// long strings, attributes of each type), and read back as the same object.
test('spans: the hand-written value encoding is byte-identical to lmdb-js msgpack, and spans it does not take go through lmdb-js', async () => {
  const { dir, cleanup } = tempDir('spans-codec');
  const w = openStoreWriter(dir);
  try {
    const ref = w.reader.root.openDB('span-codec-ref', { keyEncoding: 'binary', encoding: 'msgpack' });
    const refRaw = w.reader.root.openDB('span-codec-ref', { keyEncoding: 'binary', encoding: 'binary' });
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const nums = [0, -0, 1, 63, 64, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, 1.5, 0.1, -2.25, NaN, Infinity, -Infinity, 1e300];
    const strs = ['', 'a', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(255), 'y'.repeat(256), 'z'.repeat(70_000), 'é'.repeat(16), 'é'.repeat(20), '日本語', '😀 emoji', 'GET /api/v1/items'];
    const spans: SpanInput[] = [];
    for (let i = 0; i < 400; i++) {
      const attributes: Record<string, string | number | boolean> = {};
      const na = i % 7 === 0 ? 16 + (i % 5) : Math.floor(rnd() * 6);
      for (let a = 0; a < na; a++) attributes[pick(['k', 'http.route', 'ключ', 'x'.repeat(40)]) + a] = pick<string | number | boolean>([...nums, ...strs, true, false]);
      const start = 1_763_730_000_000_000_000n + BigInt(i) * 1_000_000n;
      spans.push({
        traceId: i.toString(16).padStart(32, '0'), spanId: (i + 1).toString(16).padStart(16, '0'), parentSpanId: i % 3 ? null : 'ab'.repeat(8),
        service: pick(strs.filter((s) => s.length < 1000 && s.length > 0)), name: pick(strs), startUnixNano: start, endUnixNano: start + BigInt(Math.floor(rnd() * 2 ** 36)),
        kind: i % 6, statusCode: i % 3, pid: i % 4 ? Math.floor(rnd() * 4e6) : null, tid: i % 5 ? Math.floor(rnd() * 4e6) : null,
        processId: i % 2 ? pick(strs) : null, requestId: i % 3 ? null : pick(strs), attributes,
      });
    }
    await w.reader.spans.putSpans(spans);
    // the same objects through lmdb-js's own encoder
    let fallbacks = 0;
    for (const s of spans) {
      const st = w.reader.spans.getSpan(s.traceId, s.spanId)!;
      assert.ok(st, s.spanId);
      await ref.put(Buffer.from(s.traceId + s.spanId, 'hex'), st);
      const mine = w.reader.spans.byId.getBinary(Buffer.from(s.traceId + s.spanId, 'hex'))!;
      const theirs = refRaw.getBinary(Buffer.from(s.traceId + s.spanId, 'hex'))!;
      assert.deepEqual(Buffer.from(mine), Buffer.from(theirs), `span ${s.spanId}: ${JSON.stringify(st).slice(0, 200)}`);
      // and it reads back as what was put
      assert.equal(st.startUnixNano, s.startUnixNano.toString());
      assert.equal(st.durationNs, Number(s.endUnixNano - s.startUnixNano));
      // (msgpack has no -0: both encoders write 0)
      assert.deepEqual(Object.entries(st.attributes), Object.entries(s.attributes!).map(([k, v]) => [k, Object.is(v, -0) ? 0 : v]));
      if (Object.keys(s.attributes!).length > 15 || [s.name, s.processId ?? '', s.requestId ?? '', ...Object.values(s.attributes!).map(String)].some((x) => x.length > 0xffff)) fallbacks++;
    }
    assert.ok(fallbacks > 10 && fallbacks < spans.length / 2, `spans written through lmdb-js's encoder: ${fallbacks}`);
  } finally {
    await w.close();
    cleanup();
  }
});

test('spans: expireBefore deletes the spans started before a time from every index, a batch at a time, and keeps a span being put again', async () => {
  const { dir, cleanup } = tempDir('spans-expire');
  try {
    const w = openStoreWriter(dir);
    const services = ['api', 'engine', 'api-gateway', 'ä-svc'];
    const spans: SpanInput[] = [];
    for (let i = 0; i < 400; i++) {
      const start = E + BigInt(i) * 100_000_000n; // every 100 ms for 40 s
      spans.push({ traceId: tr(1 + (i % 40)), spanId: sp(1000 + i), service: services[i % 4], name: `op${i}`,
        startUnixNano: start, endUnixNano: start + BigInt(1 + (i % 13)) * 3_000_000n, pid: 7, tid: 8 });
    }
    await w.reader.spans.putSpans(spans);
    const cut = E + 20_000_000_000n; // spans 0..199 started before it
    const first = await w.reader.spans.expireBefore(cut, 150);
    assert.deepEqual(first, { deleted: 150, more: true }, 'a batch at most');
    // a span being put again (not committed) when an expiry's batch is built is kept, in its new form: with a
    // batch in flight, the re-put and the expiry wait together for the next one
    const inFlight = w.reader.spans.putSpans([{ ...spans[399], spanId: sp(5000), name: 'other' }]);
    const putAgain = w.reader.spans.putSpans([{ ...spans[199], name: 'put again' }]);
    const second = await w.reader.spans.expireBefore(cut, 150);
    await Promise.all([inFlight, putAgain]);
    assert.deepEqual(second, { deleted: 49, more: false }, 'every span before the time but the one put again');
    assert.equal(w.reader.spans.getSpan(tr(40), sp(1199))?.name, 'put again');
    assert.deepEqual(await w.reader.spans.expireBefore(cut), { deleted: 1, more: false }, 'committed now: it started before the time too');
    assert.deepEqual(await w.reader.spans.expireBefore(cut), { deleted: 0, more: false });
    await w.close();

    const r = openStoreReader(dir);
    const left = spans.filter((s) => s.startUnixNano >= cut).map((s) => s.spanId).concat(sp(5000));
    const all = Array.from({ length: 40 }, (_, k) => r.spans.getTrace(tr(k + 1))).flat().map((s) => s.spanId).sort();
    assert.deepEqual(all, [...left].sort(), 'by id');
    assert.equal(r.spans.getSpan(tr(40), sp(1199)), null);
    assert.equal(r.spans.getSpan(tr(1), sp(1000)), null);
    for (const svc of services) {
      const mine = (ss: SpanInput[]) => ss.filter((s) => s.service === svc && s.startUnixNano >= cut).concat(svc === spans[399].service ? [{ ...spans[399], spanId: sp(5000) }] : []);
      // by duration (whole service) and by time (a window reaching back past the cut)
      const byDur = r.spans.findSlowSpans({ service: svc, limit: 1000 });
      assert.deepEqual(byDur.map((s) => s.spanId).sort(), mine(spans).map((s) => s.spanId).sort(), `${svc}: by duration`);
      const byTime = r.spans.findSlowSpans({ service: svc, fromUnixNano: E, toUnixNano: E + 60_000_000_000n, limit: 1000 });
      assert.deepEqual(byTime.map((s) => s.spanId).sort(), mine(spans).map((s) => s.spanId).sort(), `${svc}: by time`);
      assert.equal(r.spans.countOverlapping(svc, E, E + 60_000_000_000n, () => true), mine(spans).length, `${svc}: overlapping`);
    }
    // no index entry left behind: the two indexes hold one entry per span left
    assert.equal(r.spans.byTime.getKeysCount(), left.length);
    assert.equal(r.spans.byDur.getKeysCount(), left.length);
    void r.root.close();
  } finally {
    cleanup();
  }
});

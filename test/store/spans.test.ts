import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openStoreWriter, openStoreReader } from '../../src/store/index.js';
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

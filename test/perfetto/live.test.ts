// Perfetto export of a real capture: a waiter blocked on a mutex held by a
// sibling thread (test/fixtures/mutex_hold), recorded with the real probe
// (`kspan record --data`), one span per round on the waiter stored in the span
// index, then `export perfetto --trace-id`.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT } from '../../src/capture/index.js';
import { perfettoTraceJson } from '../../src/perfetto/index.js';
import { openStoreReader, openStoreWriter, type SpanInput } from '../../src/store/index.js';
import { FIXTURE_BIN, requireLiveProbe, run } from '../kernel/harness.js';
import { trackName, validateTrace, type TraceEvent } from './util.js';

before(requireLiveProbe);

const dirs: string[] = [];
after(() => {
  if (!process.env.KEEP) for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const HOLD_MS = 60;
const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), ...args], { timeoutMs: 60000 });

test('mutex_hold: waiter and holder tracks, the futex wait slice, the wakeup flow, the span on top', async () => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-perfetto-'));
  dirs.push(dir);
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir,
    '--', 'bash', '-c', `cd ${FIXTURE_BIN} && ./mutex_hold ${HOLD_MS} 3`], { timeoutMs: 120000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"fixture"'));
  assert.ok(line, `mutex_hold printed its result: ${r.stdout}`);
  const fx = JSON.parse(line) as { pid: number; tid_a: number; tid_b: number; uaddr: string; rounds: { a_lock_start_ns: number; a_lock_end_ns: number; b_unlock_ns: number }[] };

  // one span per round on the waiter: 2 ms before it asks for the lock to 2 ms after it got it
  const traceId = randomBytes(16).toString('hex');
  const w = openStoreWriter(dir);
  let spans: SpanInput[];
  try {
    const clock = w.reader.clockHistory();
    spans = fx.rounds.map((rd, i) => ({
      traceId, spanId: randomBytes(8).toString('hex'), service: 'scenario', name: `request ${i}`,
      startUnixNano: clock.toEpochNs(rd.a_lock_start_ns - 2e6), endUnixNano: clock.toEpochNs(rd.a_lock_end_ns + 2e6),
      tid: fx.tid_a, pid: fx.pid, attributes: { round: i },
    }));
    await w.reader.spans.putSpans(spans);
  } finally {
    await w.close();
  }

  const reader = openStoreReader(dir);
  let json: string;
  let clockUs: (mono: number) => number;
  let base: bigint;
  try {
    const clock = reader.clockHistory();
    const out = await perfettoTraceJson(reader, { traceId });
    base = BigInt(out.result.tsBaseUnixNano);
    clockUs = (mono) => Number(clock.toEpochNs(mono) - base) / 1000;
    assert.equal(out.result.found, true);
    assert.equal(out.result.truncated, false);
    assert.equal(out.result.spans, 3);
    json = out.json;
  } finally {
    void reader.root.close();
  }
  const doc = validateTrace(json);
  const ev = doc.traceEvents;
  assert.equal(doc.displayTimeUnit, 'ns');
  assert.equal(doc.metadata?.kspan?.ts_base_unix_nano, base.toString());
  assert.equal(base % 86_400_000_000_000n, 0n, 'ts are µs since midnight UTC');

  // tracks: the waiter, the holder, the requests process with its span track
  assert.ok(trackName(doc, fx.pid, fx.tid_a), `waiter track ${fx.tid_a}`);
  assert.ok(trackName(doc, fx.pid, fx.tid_b), `holder track ${fx.tid_b}`);
  const reqProc = ev.find((e) => e.ph === 'M' && e.name === 'process_name' && e.args?.name === 'requests (scenario)');
  assert.ok(reqProc, 'a "requests (scenario)" process');
  assert.ok(ev.some((e) => e.ph === 'M' && e.name === 'process_name' && e.pid === fx.pid), 'the fixture process is named');

  // the span slices cover the spans' times exactly (µs)
  const spanSlices = ev.filter((e) => e.ph === 'X' && e.cat === 'span');
  assert.equal(spanSlices.length, 3);
  for (const s of spans) {
    const sl = spanSlices.find((e) => e.args?.span_id === s.spanId);
    assert.ok(sl, `slice of span ${s.spanId}`);
    assert.equal(sl.pid, reqProc.pid);
    assert.equal(sl.args?.trace_id, traceId);
    assert.equal(sl.args?.['attr.round'], s.attributes!.round);
    assert.ok(Math.abs(sl.ts! - Number(BigInt(s.startUnixNano) - base) / 1000) < 0.001, `span start ${sl.ts}`);
    assert.ok(Math.abs(sl.dur! - Number(s.endUnixNano - s.startUnixNano) / 1000) < 0.01, `span dur ${sl.dur}`);
    assert.match(String(sl.args?.cause1), /^lock_contention/, 'the top cause is carried on the span');
  }

  const onTrack = (tid: number) => ev.filter((e) => e.pid === fx.pid && e.tid === tid);
  const waiter = onTrack(fx.tid_a);
  for (const [i, rd] of fx.rounds.entries()) {
    const wait = rd.a_lock_end_ns - rd.a_lock_start_ns;
    const a = clockUs(rd.a_lock_start_ns);
    const b = clockUs(rd.a_lock_end_ns);
    // the waiter's off-CPU futex slice over the wait, ~the injected duration
    const fs = waiter.filter((e) => e.ph === 'X' && e.name === 'futex wait' && e.ts! < b && e.ts! + e.dur! > a);
    assert.equal(fs.length, 1, `round ${i}: one futex wait slice on the waiter, got ${JSON.stringify(fs)}`);
    const f = fs[0];
    assert.ok(Math.abs(f.dur! * 1000 - wait) <= 0.2 * wait, `round ${i}: futex slice ${(f.dur! / 1000).toFixed(1)} ms vs wait ${(wait / 1e6).toFixed(1)} ms`);
    assert.ok(Math.abs(f.dur! * 1000 - HOLD_MS * 1e6) <= 0.2 * HOLD_MS * 1e6, `round ${i}: futex slice ~${HOLD_MS} ms`);
    assert.equal(f.args?.uaddr, fx.uaddr, 'the slice names the lock word');
    assert.equal(f.args?.waker_tid, fx.tid_b, 'woken by the holder');
    // the wakeup flow: from the holder's track to the waiter's, at the wake (after the unlock)
    const lo = clockUs(rd.b_unlock_ns) - 1000;
    const hi = b + 1000;
    const starts = ev.filter((e) => e.ph === 's' && e.pid === fx.pid && e.tid === fx.tid_b && e.ts! >= lo && e.ts! <= hi);
    const flow = starts.map((s) => [s, ev.find((e) => e.ph === 'f' && e.id === s.id)] as [TraceEvent, TraceEvent | undefined])
      .find(([, fin]) => fin && fin.pid === fx.pid && fin.tid === fx.tid_a);
    assert.ok(flow, `round ${i}: a wakeup flow holder -> waiter in [${lo}, ${hi}]`);
    assert.equal(flow[0].ts, flow[1]!.ts, 'flow at the wake time');
    assert.ok(Math.abs(flow[1]!.ts! - (f.ts! + f.dur!)) < 1, 'the flow ends where the blocked slice ends');
    // the kernel futex_wait call on the waiter's calls track
    assert.ok(ev.some((e) => e.ph === 'X' && e.name === 'futex_wait' && e.pid === fx.pid && e.tid !== fx.tid_a && e.args?.uaddr === fx.uaddr && e.ts! < b && e.ts! + e.dur! > a),
      `round ${i}: futex_wait call slice`);
  }
  // the holder's track has its own running / sleep slices
  const holder = onTrack(fx.tid_b);
  assert.ok(holder.some((e) => e.ph === 'X' && e.name === 'running'), 'holder running slices');
  assert.ok(holder.some((e) => e.ph === 'X' && e.name === 'sleep (S)'), 'holder sleeps while holding');

  // the same through the CLI, to a file
  const file = join(dir, 'trace.json');
  const c = await cli(['export', 'perfetto', '--trace-id', traceId, '--data', dir, '--out', file]);
  assert.equal(c.code, 0, c.stderr);
  const doc2 = validateTrace(readFileSync(file, 'utf8'));
  assert.equal(doc2.traceEvents.length, ev.length);
  // process window mode over the same time
  const fromNs = BigInt(spans[0].startUnixNano), toNs = BigInt(spans[2].endUnixNano);
  const p = await cli(['export', 'perfetto', '--pid', String(fx.pid), '--from', String(fromNs), '--to', String(toNs), '--data', dir]);
  assert.equal(p.code, 0, p.stderr);
  const doc3 = validateTrace(p.stdout);
  assert.ok(trackName(doc3, fx.pid, fx.tid_a) && trackName(doc3, fx.pid, fx.tid_b), 'both threads in the pid window');
  assert.ok(doc3.traceEvents.filter((e) => e.name === 'futex wait' && e.tid === fx.tid_a).length >= 3);
});

test('lock_chain + pinned hog: the holder is preempted by the hog while the waiter waits; the hog has its own track', async () => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-perfetto-'));
  dirs.push(dir);
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir,
    '--', 'bash', '-c', `cd ${FIXTURE_BIN} && (./cpu_hog 0 1.2 & sleep 0.1; ./lock_chain 30 3 0 1; wait)`], { timeoutMs: 120000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  const fx: Record<string, any> = {};
  for (const l of r.stdout.split('\n')) if (l.startsWith('{"fixture"')) fx[JSON.parse(l).fixture] = JSON.parse(l);
  const lc = fx.lock_chain, hog = fx.cpu_hog;
  assert.ok(lc && hog, r.stdout);
  const traceId = randomBytes(16).toString('hex');
  const w = openStoreWriter(dir);
  try {
    const clock = w.reader.clockHistory();
    await w.reader.spans.putSpans(lc.rounds.map((rd: any, i: number) => ({
      traceId, spanId: randomBytes(8).toString('hex'), service: 'scenario', name: `request ${i}`,
      startUnixNano: clock.toEpochNs(rd.req_start_ns), endUnixNano: clock.toEpochNs(rd.req_end_ns), tid: lc.tid_a, pid: lc.pid,
    })));
  } finally {
    await w.close();
  }
  const c = await cli(['export', 'perfetto', '--trace-id', traceId, '--data', dir]);
  assert.equal(c.code, 0, c.stderr);
  const doc = validateTrace(c.stdout);
  const ev = doc.traceEvents;
  assert.match(trackName(doc, lc.pid, lc.tid_a) ?? '', /waiter|lock_chain/);
  assert.match(trackName(doc, lc.pid, lc.tid_b) ?? '', /^holder /);
  assert.ok(trackName(doc, hog.pid, hog.tid), 'the hog has a track');
  let preempted = 0;
  for (const e of ev) {
    if (e.ph === 'X' && e.pid === lc.pid && e.tid === lc.tid_b && e.name.startsWith('runqueue') && (e.args?.preempted_by_pid === hog.pid || e.args?.last_on_cpu_pid === hog.pid)) preempted += e.dur!;
  }
  assert.ok(preempted > 5000, `the holder spent ${(preempted / 1000).toFixed(1)} ms preempted by the hog`);
  assert.ok(ev.some((e) => e.ph === 'X' && e.pid === hog.pid && e.tid === hog.tid && e.name === 'running'), 'the hog runs on its track');
  assert.ok(ev.filter((e) => e.ph === 'X' && e.tid === lc.tid_a && e.name === 'futex wait').length >= 3, 'the waiter waits on the lock each round');
});

test('cuda_app with the stand-in libcudart: CUDA calls on the calls track, blocked time labelled CUDA sync', async () => {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-perfetto-'));
  dirs.push(dir);
  const libs = ['libcudart.so.12', 'libcuda.so.1'].flatMap((l) => ['--cuda-lib', join(FIXTURE_BIN, l)]);
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir, ...libs,
    '--', 'bash', '-c', `cd ${FIXTURE_BIN} && ./cuda_app 200 10 5000`], { timeoutMs: 120000, env: { ...process.env, KSPAN_STUB_SYNC_US: '5000' } });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"fixture"'));
  assert.ok(line, r.stdout);
  const ca = JSON.parse(line) as { pid: number; tid: number; stream: string; sync_start_ns: number; sync_end_ns: number; sync_ns: number[] };
  const traceId = randomBytes(16).toString('hex');
  const w = openStoreWriter(dir);
  try {
    const clock = w.reader.clockHistory();
    await w.reader.spans.putSpans([{ traceId, spanId: randomBytes(8).toString('hex'), service: 'gpu', name: 'step',
      startUnixNano: clock.toEpochNs(ca.sync_start_ns), endUnixNano: clock.toEpochNs(ca.sync_end_ns), tid: ca.tid, pid: ca.pid }]);
  } finally {
    await w.close();
  }
  const reader = openStoreReader(dir);
  let doc;
  try {
    doc = validateTrace((await perfettoTraceJson(reader, { traceId }, { marginNs: 0 })).json);
  } finally {
    void reader.root.close();
  }
  const syncs = doc.traceEvents.filter((e) => e.ph === 'X' && e.pid === ca.pid && e.name === 'cudaStreamSynchronize');
  assert.ok(syncs.length >= ca.sync_ns.length, `${syncs.length} cudaStreamSynchronize slices`);
  for (const s of syncs) {
    assert.notEqual(s.tid, ca.tid, 'calls go on the calls track');
    assert.equal(s.tid % 0x400000, ca.tid);
    assert.equal(s.args?.stream, ca.stream);
    assert.equal(s.args?.ret, 0);
    assert.equal(s.args?.blocking, true);
  }
  const injected = ca.sync_ns.reduce((a, x) => a + x, 0);
  const blocked = doc.traceEvents.filter((e) => e.ph === 'X' && e.pid === ca.pid && e.tid === ca.tid && e.name === 'CUDA sync');
  assert.ok(blocked.every((e) => e.args?.cuda_api === 'cudaStreamSynchronize'));
  const sum = blocked.reduce((a, e) => a + e.dur! * 1000, 0);
  assert.ok(Math.abs(sum - injected) <= 0.2 * injected, `CUDA sync slices ${(sum / 1e6).toFixed(1)} ms vs ${(injected / 1e6).toFixed(1)} ms injected`);
});

// Perfetto export on small synthetic stores (frames -> store, as the
// correlator tests build them): tracks, slice kinds and args, flows, clipping
// at the window edges, truncation, the pid/tid window mode, the CLI.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { CudaApi, OffcpuFlag, OwnerSrc, REPO_ROOT, TaskEvent } from '../../src/capture/index.js';
import { ExportClock, dayBaseNs, epochNsToUs, perfettoTraceJson, usText, writePerfettoTrace } from '../../src/perfetto/index.js';
import type { FrameWriter } from '../helpers/frames.js';
import { run } from '../kernel/harness.js';
import { MS, W0, buildStore, epoch, span, tr } from '../correlator/util.js';
import { trackName, validateTrace, type TraceDoc, type TraceEvent } from './util.js';

const PID = 100;
const A = 101;
const B = 102;
const HOG = 900;
const M1 = 0x7f00_0000_1000;
const W = W0;

/** µs of a monotonic time in the export (its base is midnight UTC of the window's day) */
const us = (doc: TraceDoc, mono: number): number => Number(epoch(mono) - BigInt(doc.metadata!.kspan!.ts_base_unix_nano)) / 1000;
const near = (a: number, b: number, eps = 0.0015): boolean => Math.abs(a - b) <= eps;

function scenario(fw: FrameWriter): void {
  fw.task({ ts: W - 500 * MS, pid: PID, tid: PID, event: TaskEvent.NAME, startTime: 1, comm: 'app', pcomm: 'app' });
  fw.task({ ts: W - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 2, comm: 'req', pcomm: 'app' });
  fw.task({ ts: W - 500 * MS, pid: PID, tid: B, event: TaskEvent.NAME, startTime: 3, comm: 'holder', pcomm: 'app' });
  fw.task({ ts: W - 500 * MS, pid: HOG, tid: HOG + 1, event: TaskEvent.NAME, startTime: 4, comm: 'hog', pcomm: 'hog' });
  // A: straddles the window start (trace window = span ± 5 ms): sleep [W-20, W+5], runqueue to W+8
  fw.offcpu({ ts: W + 8 * MS, pid: PID, tid: A, startNs: W - 20 * MS, runnableNs: W + 5 * MS, prevState: 1,
    flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ, wakerTid: 55, wakerPid: 55, cpu: 1 });
  // preempted [W+20, W+30] by the hog
  fw.offcpu({ ts: W + 30 * MS, pid: PID, tid: A, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1, cpu: 1 });
  // futex: call [W+40, W+55], off CPU [W+41, W+54] blocked + 1 ms runqueue, woken by B
  fw.futexWait({ ts: W + 55 * MS, pid: PID, tid: A, startNs: W + 40 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: B, ownerSrc: OwnerSrc.GLIBC_MUTEX });
  fw.offcpu({ ts: W + 55 * MS, pid: PID, tid: A, startNs: W + 41 * MS, runnableNs: W + 54 * MS, prevState: 1,
    flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
  // D [W+60, W+69] with its own block I/O in flight
  fw.blockIo({ ts: W + 68.9 * MS, pid: PID, tid: A, startNs: W + 60.5 * MS, issueNs: W + 60.6 * MS, sector: 8, dev: (8 << 20) | 1, bytes: 4096, flags: 1, comm: 'req' });
  fw.offcpu({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 60 * MS, runnableNs: W + 69 * MS, prevState: 2, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
  // launches, then cudaStreamSynchronize [W+80, W+95] blocking [W+85, W+89.5]
  for (let k = 0; k < 5; k++) fw.cudaCall({ ts: W + (71 + k) * MS + 10_000 * (k + 1), pid: PID, tid: A, startNs: W + (71 + k) * MS, api: CudaApi.CUDA_LAUNCH_KERNEL, arg: 0x10 });
  fw.cudaCall({ ts: W + 95 * MS, pid: PID, tid: A, startNs: W + 80 * MS, api: CudaApi.CUDA_STREAM_SYNC, arg: 0x10, ret: 0 });
  fw.offcpu({ ts: W + 90 * MS, pid: PID, tid: A, startNs: W + 85 * MS, runnableNs: W + 89.5 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
  // straddles the end: yielded [W+98, W+120]
  fw.offcpu({ ts: W + 120 * MS, pid: PID, tid: A, startNs: W + 98 * MS, flags: OffcpuFlag.RESCHED, preemptPid: HOG, preemptTid: HOG + 1, outCpu: 1 });
  // the hog gives the CPU back to A at W+30 (runnable until W+31)
  fw.offcpu({ ts: W + 31 * MS, pid: HOG, tid: HOG + 1, startNs: W + 30 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: PID, preemptTid: A, cpu: 1, outCpu: 1 });
  // B: sleeps [W+10, W+50] holding the lock, unlocks at W+54 (wake)
  fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: B, startNs: W + 10 * MS, runnableNs: W + 49.9 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
  fw.futexWake({ ts: W + 54.01 * MS, pid: PID, tid: B, startNs: W + 53.99 * MS, uaddr: M1, op: 0x81, ret: 1 });
  fw.offcpu({ ts: W + 90 * MS, pid: PID, tid: B, startNs: W + 60 * MS, runnableNs: W + 90 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
}

const find = (doc: TraceDoc, f: (e: TraceEvent) => boolean): TraceEvent[] => doc.traceEvents.filter(f);

test('trace mode: span track, state slices with args, calls track, wakeup flow, culprit tracks, clipping', async () => {
  const st = await buildStore('perfetto-trace', scenario, [
    span(1, W, W + 100 * MS, { tid: A, pid: PID, service: 'api', attributes: { 'http.route': '/x' } }),
    span(2, W + 10 * MS, W + 60 * MS, { tid: A, pid: PID, service: 'api', parentSpanId: '0000000000000001' }),
  ]);
  try {
    const { json, result } = await perfettoTraceJson(st.reader, { traceId: tr(1) });
    assert.equal(result.found, true);
    assert.equal(result.truncated, false);
    assert.equal(result.spans, 2);
    const doc = validateTrace(json);
    assert.equal(BigInt(result.tsBaseUnixNano), dayBaseNs(epoch(W - 5 * MS)));
    assert.equal(result.fromUnixNano, epoch(W - 5 * MS).toString(), 'window = spans ± 5%');
    assert.equal(result.toUnixNano, epoch(W + 105 * MS).toString());

    // requests process: nested spans on one track
    const spans = find(doc, (e) => e.cat === 'span');
    assert.equal(spans.length, 2);
    assert.equal(spans[0].tid, spans[1].tid, 'the child nests under its parent on the same track');
    assert.equal(trackName(doc, spans[0].pid, spans[0].tid), 'spans');
    const root = spans.find((e) => e.args?.span_id === '0000000000000001')!;
    assert.ok(near(root.ts!, us(doc, W)) && near(root.dur!, 100_000));
    assert.equal(root.args?.['attr.http.route'], '/x');
    assert.equal(root.args?.correlation, `thread pid ${PID} tid ${A}`);
    assert.equal(root.args?.['breakdown.futex_ns'], 13 * MS);

    // tracks: A (joined), B (holder, culprit), the hog (preemptor)
    assert.equal(trackName(doc, PID, A), `req ${A}`);
    assert.match(trackName(doc, PID, B) ?? '', /^holder 102 \(/);
    assert.match(trackName(doc, HOG, HOG + 1) ?? '', /^hog 901/);
    assert.match(trackName(doc, PID, A + 0x400000) ?? '', /req 101 calls/);
    assert.ok(find(doc, (e) => e.ph === 'M' && e.name === 'process_name' && e.pid === PID && e.args?.name === `app ${PID}`).length === 1);

    const onA = (name: string) => find(doc, (e) => e.pid === PID && e.tid === A && e.ph === 'X' && e.name === name);
    // clipped at the window start: sleep from W-5 (window start) to W+5
    const sl = onA('sleep (S)');
    assert.ok(sl.length >= 1);
    assert.ok(near(sl[0].ts!, us(doc, W - 5 * MS)) && near(sl[0].dur!, 10_000), JSON.stringify(sl[0]));
    assert.equal(sl[0].args?.clipped, true);
    assert.equal(sl[0].args?.waker_irq, 'hardirq');
    // preempted by the hog
    const pre = onA('runqueue (preempted)');
    assert.equal(pre.length, 2, 'PREEMPTED and RESCHED');
    assert.ok(near(pre[0].ts!, us(doc, W + 20 * MS)) && near(pre[0].dur!, 10_000));
    assert.equal(pre[0].args?.preempted_by_pid, HOG);
    assert.equal(pre[0].args?.preempted_by_comm, 'hog');
    // the futex wait: blocked part with lock word and owner, then 1 ms runqueue
    const fw = onA('futex wait');
    assert.equal(fw.length, 1);
    assert.ok(near(fw[0].ts!, us(doc, W + 41 * MS)) && near(fw[0].dur!, 13_000));
    assert.equal(fw[0].args?.uaddr, '0x' + M1.toString(16));
    assert.equal(fw[0].args?.owner_tid, B);
    assert.equal(fw[0].args?.owner_src, 'glibc_mutex');
    assert.equal(fw[0].args?.waker_tid, B);
    assert.ok(onA('runqueue (woken)').some((e) => near(e.ts!, us(doc, W + 54 * MS)) && near(e.dur!, 1000)));
    // I/O wait with the device; CUDA sync with the API
    const io = onA('I/O wait (D)');
    assert.equal(io.length, 1);
    assert.equal(io[0].args?.io_device, '8:1');
    const cs = onA('CUDA sync');
    assert.equal(cs.length, 1);
    assert.equal(cs[0].args?.cuda_api, 'cudaStreamSynchronize');
    assert.ok(near(cs[0].dur!, 4500));
    // running between the intervals, e.g. [W+30, W+41]
    assert.ok(onA('running').some((e) => near(e.ts!, us(doc, W + 30 * MS)) && near(e.dur!, 11_000)));
    // clipped at the end: runnable (RESCHED) from W+98 to the window end W+105
    const y = pre[1];
    assert.ok(near(y.ts!, us(doc, W + 98 * MS)) && near(y.dur!, 7000) && y.args?.clipped === true && y.args?.flags === 'resched', JSON.stringify(y));

    // calls track: futex_wait, CUDA calls (API, stream, return code), block I/O
    const calls = find(doc, (e) => e.pid === PID && e.tid > 0x400000 && (e.tid & 0x3fffff) === A && e.ph === 'X');
    const sync = calls.find((e) => e.name === 'cudaStreamSynchronize');
    assert.ok(sync && near(sync.dur!, 15_000));
    assert.deepEqual([sync.args?.api, sync.args?.stream, sync.args?.ret, sync.args?.blocking], ['cudaStreamSynchronize', '0x10', 0, true]);
    assert.equal(calls.filter((e) => e.name === 'cudaLaunchKernel').length, 5);
    const fwc = calls.find((e) => e.name === 'futex_wait');
    assert.equal(fwc?.args?.op, 'FUTEX_WAIT_PRIVATE');
    const bio = calls.find((e) => e.name === 'block I/O write');
    assert.ok(bio, 'block I/O slice');
    assert.deepEqual([bio.args?.device, bio.args?.bytes, bio.args?.latency_ns], ['8:1', 4096, 8.4 * MS]);
    // B's futex_wake on its calls track
    assert.ok(find(doc, (e) => e.pid === PID && e.tid === B + 0x400000 && e.name === 'futex_wake' && e.args?.woken === 1).length === 1);

    // wakeup flow B -> A at W+54 (the irq wakeups get none)
    const fl = find(doc, (e) => e.ph === 's');
    assert.equal(fl.length, 1, JSON.stringify(fl));
    const f = find(doc, (e) => e.ph === 'f' && e.id === fl[0].id)[0];
    assert.deepEqual([fl[0].pid, fl[0].tid, f.pid, f.tid], [PID, B, PID, A]);
    assert.ok(near(fl[0].ts!, us(doc, W + 54 * MS)) && fl[0].ts === f.ts);
    // the waker's track has a slice at the wake for the flow to leave from
    assert.ok(find(doc, (e) => e.ph === 'X' && e.pid === PID && e.tid === B && e.ts === fl[0].ts && e.name === 'wakeup').length === 1);
  } finally {
    st.cleanup();
  }
});

test('span tracks: nested spans share a track, a partial overlap opens a second one; one process per service', async () => {
  const st = await buildStore('perfetto-spans', () => {}, [
    span(1, W, W + 100 * MS, { service: 'api' }),
    span(2, W + 10 * MS, W + 60 * MS, { service: 'api', parentSpanId: '0000000000000001' }),
    span(3, W + 50 * MS, W + 90 * MS, { service: 'api', parentSpanId: '0000000000000001' }),
    span(4, W + 20 * MS, W + 30 * MS, { service: 'db', parentSpanId: '0000000000000002' }),
  ]);
  try {
    const { json, result } = await perfettoTraceJson(st.reader, { traceId: tr(1) });
    assert.equal(result.spans, 4);
    assert.equal(result.threads, 0, 'no correlation, no kernel tracks');
    const doc = validateTrace(json);
    const byId = new Map(find(doc, (e) => e.cat === 'span').map((e) => [e.args!.span_id as string, e]));
    const [s1, s2, s3, s4] = ['1', '2', '3', '4'].map((n) => byId.get(n.padStart(16, '0'))!);
    assert.equal(s1.pid, s2.pid);
    assert.equal(s1.tid, s1.pid, 'the first span track is the main thread of the requests process');
    assert.equal(s2.tid, s1.tid);
    assert.notEqual(s3.tid, s1.tid, 'partial overlap with span 2: another track');
    assert.equal(trackName(doc, s3.pid, s3.tid), 'spans 2');
    assert.notEqual(s4.pid, s1.pid, 'another service, another process');
    const names = find(doc, (e) => e.ph === 'M' && e.name === 'process_name').map((e) => e.args!.name).sort();
    assert.deepEqual(names, ['requests (api)', 'requests (db)']);
  } finally {
    st.cleanup();
  }
});

test('window modes, unknown trace, truncation, streaming to a Writable', async () => {
  const st = await buildStore('perfetto-window', (fw) => {
    scenario(fw);
    // many short intervals on a busy thread of the same process
    for (let k = 0; k < 2000; k++) {
      fw.offcpu({ ts: W + k * 100_000 + 60_000, pid: PID, tid: 150, startNs: W + k * 100_000, runnableNs: W + k * 100_000 + 50_000, prevState: 1,
        flags: OffcpuFlag.WOKEN, wakerPid: PID, wakerTid: B });
    }
  }, [span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
  try {
    // unknown trace: nothing written
    const sink = new PassThrough();
    let wrote = 0;
    sink.on('data', (d: Buffer) => { wrote += d.length; });
    const nf = await writePerfettoTrace(st.reader, { traceId: tr(77) }, sink);
    assert.equal(nf.found, false);
    assert.equal(wrote, 0);

    // tid window [W+35, W+60]: only A and its culprits; intervals clipped to the window
    const from = epoch(W + 35 * MS), to = epoch(W + 60 * MS);
    const t = await perfettoTraceJson(st.reader, { tid: A, fromUnixNano: from, toUnixNano: to });
    const td = validateTrace(t.json);
    assert.equal(find(td, (e) => e.cat === 'span').length, 0, 'no spans in window mode');
    assert.ok(trackName(td, PID, A) && trackName(td, PID, B), 'A and its waker B');
    assert.equal(trackName(td, PID, 150), undefined, 'not the other threads of the process');
    const lo = us(td, W + 35 * MS), hi = us(td, W + 60 * MS);
    for (const e of td.traceEvents) {
      if (e.ph === 'M' || e.ph === 'i') continue;
      assert.ok(e.ts! >= lo - 0.001 && e.ts! + (e.dur ?? 0) <= hi + 0.001, `inside the window: ${JSON.stringify(e)}`);
    }
    assert.equal(find(td, (e) => e.name === 'futex wait').length, 1);

    // pid window: every thread of the process with events
    const p = await perfettoTraceJson(st.reader, { pid: PID, fromUnixNano: epoch(W), toUnixNano: epoch(W + 300 * MS) });
    const pd = validateTrace(p.json);
    for (const tid of [A, B, 150]) assert.ok(trackName(pd, PID, tid), `thread ${tid} in the pid window`);
    assert.equal(p.result.truncated, false);
    const full = p.result.events;
    assert.ok(full > 6000, `${full} events`);

    // truncated: at most maxEvents kernel events + names + the truncation marker; said in metadata and warn
    const warnings: string[] = [];
    const tr1 = await perfettoTraceJson(st.reader, { pid: PID, fromUnixNano: epoch(W), toUnixNano: epoch(W + 300 * MS) }, { maxEvents: 500, warn: (m) => warnings.push(m) });
    const trd = validateTrace(tr1.json);
    assert.equal(tr1.result.truncated, true);
    assert.ok(tr1.result.dropped > 5000, `dropped ${tr1.result.dropped}`);
    const nonMeta = trd.traceEvents.filter((e) => e.ph !== 'M');
    assert.ok(nonMeta.length <= 501, `${nonMeta.length} events`);
    assert.equal(trd.metadata?.kspan?.truncated, true);
    assert.equal(trd.metadata?.kspan?.dropped_events, tr1.result.dropped);
    assert.equal(find(trd, (e) => e.name === 'kspan export truncated' && e.ph === 'i' && e.s === 'g').length, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /truncated: \d+ events left out \(max 500 events\)/);
    // joined threads come first
    assert.ok(find(trd, (e) => e.tid === A && e.ph === 'X').length > 0);

    // streamed: a slow Writable with a small buffer still gets the whole document
    const slow = new PassThrough({ highWaterMark: 1024 });
    const chunks: Buffer[] = [];
    const done = writePerfettoTrace(st.reader, { pid: PID, fromUnixNano: epoch(W), toUnixNano: epoch(W + 300 * MS) }, slow);
    slow.on('data', (d: Buffer) => { chunks.push(d); slow.pause(); setImmediate(() => slow.resume()); });
    const r = await done;
    await new Promise((res) => setImmediate(res));
    const sd = validateTrace(Buffer.concat(chunks).toString('utf8'));
    assert.equal(sd.traceEvents.length, r.events);
    assert.ok(chunks.length > 1, 'written in several chunks');
  } finally {
    st.cleanup();
  }
});

test('clock: exact µs text, the store clock history rule, the day base', () => {
  assert.equal(usText(0), '0');
  // sub-µs values carry +0.5 ns so that Perfetto's (int64)(µs * 1000) lands on the exact ns
  assert.equal(usText(1), '0.0015');
  assert.equal(usText(1_234_567), '1234.5675');
  assert.equal(usText(5000), '5');
  assert.equal(epochNsToUs('1795274382598624512'), '1795274382598624.5125');
  assert.equal(epochNsToUs(1_000_000_001_000n, 1_000_000_000_000n), '1');
  assert.equal(epochNsToUs(5n, 1000n), '-0.9955');
  // the truncating conversion gives back the exact ns for times up to days in µs
  for (const ns of [55_443_856_721_763, 86_399_999_999_999, 1, 999, 123_456_789_012]) {
    const txt = usText(ns);
    assert.equal(Math.trunc(Number(txt) * 1000), ns, `${ns} -> ${txt}`);
  }
  assert.equal(dayBaseNs(86_400_000_000_000n * 3n + 5n), 86_400_000_000_000n * 3n);
  // a reader stub with two samples and a clock step between them
  const samples = [
    { monoNs: 1_000, realtimeNs: (86_400_000_000_000n + 1_000n).toString(), errorNs: 0, stepped: false },
    { monoNs: 10_000, realtimeNs: (86_400_000_000_000n + 1_010_000n).toString(), errorNs: 0, stepped: true },
  ];
  const c = new ExportClock({ eachClockSample: (_after: unknown, visit: (s: (typeof samples)[number]) => void) => samples.forEach((s) => visit(s)) } as never);
  c.setBase(86_400_000_000_000n);
  assert.equal(c.us(500), '0.5005', 'before the first sample: the first one');
  assert.equal(c.us(5_000), '5');
  assert.equal(c.us(10_000), '1010', 'the step applies from its sample on');
  assert.equal(c.toEpoch(10_001), 86_400_000_000_000n + 1_010_001n);
  assert.equal(c.toMono(86_400_000_000_000n + 1_010_001n), 10_001);
});

test('a clock sample with a slightly different offset inside an off-CPU interval: its slices still meet exactly', async () => {
  // the probe samples the clock every second; each pair has a few ns of jitter. Slices are placed in
  // epoch time by the sample in force at their start: a blocked part and its runqueue part on either
  // side of such a sample overlapped by the jitter (Perfetto: misnested slices). Seen as a rare flake.
  const st = await buildStore('perfetto-clock-jitter', (fw) => {
    fw.task({ ts: W - 500 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 2, comm: 'req', pcomm: 'app' });
    fw.offcpu({ ts: W + 31 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 30 * MS, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
    fw.offcpu({ ts: W + 52 * MS, pid: PID, tid: A, startNs: W + 40 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG + 1 });
    // +7 ns of offset from W+20 ms on, -5 ns from W+45 ms on
    fw.clock({ ts: W + 20 * MS, realtimeNs: epoch(W + 20 * MS) + 7n, errorNs: 10 });
    fw.clock({ ts: W + 45 * MS, realtimeNs: epoch(W + 45 * MS) - 5n, errorNs: 10 });
  }, [span(1, W, W + 60 * MS, { tid: A, pid: PID })]);
  try {
    const doc = validateTrace((await perfettoTraceJson(st.reader, { traceId: tr(1) }, { marginNs: 0 })).json);
    const mine = find(doc, (e) => e.ph === 'X' && e.tid === A && e.pid === PID).map((e) => ({ name: e.name, ts: Math.trunc(e.ts! * 1000), end: Math.trunc(e.ts! * 1000) + Math.trunc(e.dur! * 1000) }));
    mine.sort((x, y) => x.ts - y.ts);
    // the state track tiles: each slice ends where the next begins, to the ns
    for (let i = 1; i < mine.length; i++) assert.equal(mine[i].ts, mine[i - 1].end, `${mine[i - 1].name} -> ${mine[i].name}`);
    assert.ok(mine.some((e) => e.name === 'runqueue (woken)') && mine.some((e) => e.name === 'runqueue (preempted)'), JSON.stringify(mine));
  } finally {
    st.cleanup();
  }
});

const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), ...args], { timeoutMs: 60000 });

test('CLI: kspan export perfetto — stdout, --out, exit codes', async () => {
  const st = await buildStore('perfetto-cli', scenario, [span(1, W, W + 100 * MS, { tid: A, pid: PID })]);
  try {
    const ok = await cli(['export', 'perfetto', '--trace-id', tr(1), '--data', st.dir]);
    assert.equal(ok.code, 0, ok.stderr);
    const d = validateTrace(ok.stdout);
    assert.ok(trackName(d, PID, A) && trackName(d, PID, B));
    const nc = await cli(['export', 'perfetto', '--trace-id', tr(1), '--data', st.dir, '--no-culprits']);
    assert.equal(nc.code, 0, nc.stderr);
    const ncd = validateTrace(nc.stdout);
    assert.ok(trackName(ncd, PID, A) && !trackName(ncd, HOG, HOG + 1), '--no-culprits: only the joined thread gets events');
    const big = await cli(['export', 'perfetto', '--trace-id', tr(1), '--data', st.dir, '--max-events', '10']);
    assert.equal(big.code, 0, big.stderr);
    assert.match(big.stderr, /truncated/);
    assert.equal(validateTrace(big.stdout).metadata?.kspan?.truncated, true);
    const file = join(st.dir, 'out.json');
    const f = await cli(['export', 'perfetto', '--tid', String(A), '--from', epoch(W).toString(), '--to', epoch(W + 50 * MS).toString(), '--data', st.dir, '--out', file]);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(f.stdout, '');
    assert.match(f.stderr, /wrote .*out\.json \(\d+ events/);
    assert.ok(trackName(validateTrace(readFileSync(file, 'utf8')), PID, A));
    // RFC 3339 times work too
    const iso = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
    const r3 = await cli(['export', 'perfetto', '--pid', String(PID), '--from', iso(epoch(W)), '--to', iso(epoch(W + 50 * MS)), '--data', st.dir]);
    assert.equal(r3.code, 0, r3.stderr);
    validateTrace(r3.stdout);
    // unknown trace: 3, no file
    const nf = await cli(['export', 'perfetto', '--trace-id', tr(99), '--data', st.dir, '--out', join(st.dir, 'nf.json')]);
    assert.equal(nf.code, 3);
    assert.match(nf.stderr, /not found/);
    assert.equal(existsSync(join(st.dir, 'nf.json')), false);
    // usage errors: 2
    for (const args of [
      ['export'], ['export', 'chrome', '--trace-id', tr(1)], ['export', 'perfetto', '--data', st.dir],
      ['export', 'perfetto', '--trace-id', 'xyz', '--data', st.dir],
      ['export', 'perfetto', '--pid', '1', '--tid', '2', '--from', '1', '--to', '2', '--data', st.dir],
      ['export', 'perfetto', '--pid', '1', '--data', st.dir],
      ['export', 'perfetto', '--pid', '1', '--from', '5', '--to', '4', '--data', st.dir],
      ['export', 'perfetto', '--pid', 'x', '--from', '1', '--to', '4', '--data', st.dir],
      ['export', 'perfetto', '--trace-id', tr(1), '--bogus', '--data', st.dir],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /kspan export: /);
    }
    const noStore = await cli(['export', 'perfetto', '--trace-id', tr(1), '--data', join(st.dir, 'nope')]);
    assert.equal(noStore.code, 1);
    assert.match(noStore.stderr, /no kspan store/);
    const help = await cli(['help']);
    assert.match(help.stdout, /export perfetto/);
  } finally {
    st.cleanup();
  }
});

// Explain workers (worker_threads) on a real store written by the real
// writer: a worker's explanations equal the receiving thread's on the same
// store; a window the worker cannot see all of (in the writer's head, not
// committed) is answered `unseen` and explained on the receiving thread with
// the head, never counted on CPU; a worker that dies loses no span without a
// count and is started again; the pipeline's output with workers equals its
// output without.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameWriter } from '../helpers/frames.js';
import { Kind, OffcpuFlag, OwnerSrc, TaskEvent } from '../../src/capture/records.js';
import { openStoreReader, openStoreWriter, type SpanInput, type StoreWriter } from '../../src/store/index.js';
import { partitionDbName } from '../../src/store/schema.js';
import {
  EnrichPipeline, ExplainPool, decodeTraceRequestProtobuf, encodeTraceRequest, explainBatch, type DecodedTraceRequest, type ExplainGroup, type GroupResult, type KernelSide, type OutgoingSpan, type Span,
  type UpstreamExporter,
} from '../../src/otel/index.js';
import { EPOCH0, MS, T0, W0, epoch, sp, tr } from '../correlator/util.js';
import { feed, tempDir } from '../store/util.js';

const PID = 100;
const A = 101;
const B = 102;
const HOG = 900;
const PROBE = 4242;
const M1 = 0x7f00_0000_1000;
const N = 12;
const META = { transport: 'http', encoding: 'protobuf', wireBytes: 0, bodyBytes: 0, spanCount: 1, receivedUnixNano: 0n } as const;

/** Lock chains (A waits on M1 held by B, B preempted by a hog, the hog by kspan's probe), N requests 100 ms apart, drained through `drainedAt`. */
function frames(drainedAt: number, n = N): FrameWriter {
  const fw = new FrameWriter();
  fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000, probePid: PROBE });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: A, event: TaskEvent.NAME, startTime: 1, comm: 'waiter', pcomm: 'app' });
  fw.task({ ts: W0 - 100 * MS, pid: PID, tid: B, event: TaskEvent.NAME, startTime: 2, comm: 'holder', pcomm: 'app' });
  fw.task({ ts: W0 - 100 * MS, pid: HOG, tid: HOG, event: TaskEvent.NAME, startTime: 3, comm: 'hog', pcomm: 'hog' });
  for (let k = 0; k < n; k++) {
    const W = W0 + k * 100 * MS;
    fw.futexWait({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: B, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 70 * MS, pid: PID, tid: A, startNs: W + 10 * MS, runnableNs: W + 69.9 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: PID, wakerTid: B, wakerUaddr: M1 });
    fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: B, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG, outCpu: 0, cpu: 0 });
    fw.futexWake({ ts: W + 69.9 * MS, pid: PID, tid: B, startNs: W + 69.8 * MS, uaddr: M1, op: 0x81, ret: 1 });
    fw.offcpu({ ts: W + 90 * MS, pid: HOG, tid: HOG, startNs: W + 85 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: PROBE, preemptTid: PROBE });
    fw.offcpu({ ts: W + 95 * MS, pid: PID, tid: B, startNs: W + 80 * MS, runnableNs: W + 94 * MS, prevState: 2, cpu: 1 });
  }
  fw.raw(Kind.DRAINED, 24, { ts: drainedAt });
  return fw;
}

/** Per request k: a thread-joined span (A), a process-joined one (pid only), one on B, one with nothing to join. */
function inputs(n = N): ExplainGroup[] {
  const out: ExplainGroup[] = [];
  for (let k = 0; k < n; k++) {
    const W = W0 + k * 100 * MS;
    const base = { traceId: tr(k + 1), service: 'svc', name: 'op' };
    const spans: SpanInput[] = [
      { ...base, spanId: sp(4 * k + 1), startUnixNano: epoch(W), endUnixNano: epoch(W + 80 * MS), tid: A, pid: PID },
      { ...base, spanId: sp(4 * k + 2), parentSpanId: sp(4 * k + 1), startUnixNano: epoch(W + 5 * MS), endUnixNano: epoch(W + 75 * MS), pid: PID },
      { ...base, spanId: sp(4 * k + 3), parentSpanId: sp(4 * k + 1), startUnixNano: epoch(W + 15 * MS), endUnixNano: epoch(W + 98 * MS), tid: B, pid: PID },
      { ...base, spanId: sp(4 * k + 4), startUnixNano: epoch(W), endUnixNano: epoch(W + 50 * MS) },
    ];
    out.push({ traceId: tr(k + 1), spans });
  }
  return out;
}

/** A writer that keeps blocks open (no age flush) and never commits on its own timer. */
function headWriter(dir: string): StoreWriter {
  return openStoreWriter(dir, { maxAgeMs: 3_600_000, roundMs: 3_600_000, roundBytes: 1 << 30, retentionEveryMs: 0 });
}

const EXPLAIN = { maxEvidence: 2 };

test('explain workers: a worker explains exactly what the receiving thread does on the same store (explanations and kspan attributes/events)', async () => {
  const { dir, cleanup } = tempDir('xw-same');
  const end = W0 + N * 100 * MS;
  const w = headWriter(dir);
  const pool = new ExplainPool({ workers: 2, dir, explain: EXPLAIN, log: () => {} });
  try {
    await feed(w, frames(end + 50 * MS).toBuffer());
    await w.flush(); // committed: what a worker can see
    const groups = inputs();
    const here = explainBatch(w.reader, groups, 'explain', false, EXPLAIN);
    assert.ok(here.every((r) => r.kind === 'explained'));
    const x0 = here[3].kind === 'explained' ? here[3].explanation : null;
    assert.ok(x0 && x0.spans[0].causes.some((c) => c.kind === 'lock_contention'), 'the store explains something');
    assert.ok(x0.spans[1].correlation.method === 'process' && x0.spans[3].correlation.method === 'none');
    // several batches on both workers at once
    const there = await Promise.all([0, 4, 8].map((k) => pool.submit(groups.slice(k, k + 4), 'explain', true)));
    assert.deepEqual(there.flatMap((r) => r!), here);
    const enrichHere = explainBatch(w.reader, groups, 'enrich', false, EXPLAIN);
    const enrichThere = await pool.submit(groups, 'enrich', true);
    assert.deepEqual(enrichThere, enrichHere);
    assert.ok(enrichHere.every((r) => r.kind === 'enriched' && r.spans[0] !== null && r.spans[3] === null));
    // encoded (what the pipeline asks for in span-events mode): the same bytes
    const encHere = explainBatch(w.reader, groups, 'encoded', false, EXPLAIN);
    const encThere = (await pool.submit(groups, 'encoded', true))!;
    assert.deepEqual(encThere.map((r) => ({ ...r, bytes: Buffer.from(r.kind === 'encoded' ? r.bytes! : []) })), encHere.map((r) => ({ ...r, bytes: Buffer.from(r.kind === 'encoded' ? r.bytes! : []) })));
    assert.equal(pool.counters.crashes, 0);
  } finally {
    await pool.close();
    await w.close();
    cleanup();
  }
});

/** Each span's encoded kspan fields and flags, per group (an encoded batch's rows). */
function encodedRows(res: GroupResult[]): ({ bytes: string; mask: number; flags: number }[] | string)[] {
  return res.map((r) => {
    if (r.kind !== 'encoded') return r.kind;
    const rows = [];
    for (let i = r.at; i < r.at + r.n; i++) {
      const [off, len, mask, flags] = r.meta!.subarray(4 * i, 4 * i + 4);
      rows.push({ bytes: Buffer.from(r.bytes!.subarray(off, off + len)).toString('hex'), mask, flags });
    }
    return rows;
  });
}

test('explain batch, encoded: a group that fails after others were encoded costs them nothing and leaves no row behind', async () => {
  const { dir, cleanup } = tempDir('xw-fail');
  const w = headWriter(dir);
  try {
    await feed(w, frames(W0 + N * 100 * MS + 50 * MS).toBuffer());
    await w.flush();
    const good = inputs(4);
    // the third group cannot be explained (a start that is not a number): the batch is run again one group at a time
    const bad: ExplainGroup = { traceId: tr(99), spans: [{ ...good[0].spans[0], traceId: tr(99), startUnixNano: 'not a time' as never }] };
    const mixed = explainBatch(w.reader, [good[0], good[1], bad, good[2], good[3]], 'encoded', false, EXPLAIN);
    const alone = explainBatch(w.reader, good, 'encoded', false, EXPLAIN);
    assert.equal(mixed[2].kind, 'error');
    const rows = encodedRows(mixed);
    assert.deepEqual([rows[0], rows[1], rows[3], rows[4]], encodedRows(alone), 'the good groups\' rows, byte for byte');
    assert.ok((rows[0] as { flags: number }[])[0].flags & 1, 'with kernel data');
    const last = mixed[4];
    assert.ok(last.kind === 'encoded' && last.meta!.length === 4 * 16, `16 rows in all (4 groups x 4 spans), none left by the failed run: ${last.kind === 'encoded' ? last.meta!.length / 4 : last.kind}`);
  } finally {
    await w.close();
    cleanup();
  }
});

test('explain workers: a partition of the snapshot that a worker\'s reader cannot open makes its groups unseen, not on CPU', async () => {
  const { dir, cleanup } = tempDir('xw-miss');
  const w = headWriter(dir);
  const r = openStoreReader(dir);
  try {
    await feed(w, frames(W0 + N * 100 * MS + 50 * MS).toBuffer());
    await w.flush();
    const groups = inputs().slice(0, 3);
    const ok = explainBatch(r, groups, 'explain', true, EXPLAIN);
    assert.ok(ok.every((x) => x.kind === 'explained'), 'committed: explained');
    assert.equal(r.partitionMisses, 0);
    // a reader that has not opened the partitions yet, whose opens fail (the lmdb-js race, or a partition dropped since)
    const r2 = openStoreReader(dir);
    const root = r2.root as unknown as { openDB: (...a: unknown[]) => unknown };
    const openDB = root.openDB.bind(root);
    const parts = new Set(r2.partitions().map((pm) => partitionDbName(pm.idx)));
    assert.ok(parts.size > 0);
    root.openDB = (name: unknown, ...rest: unknown[]) => (parts.has(String(name)) ? undefined : openDB(name, ...rest));
    const missed = explainBatch(r2, groups, 'explain', true, EXPLAIN);
    assert.ok(r2.partitionMisses > 0, 'the failed opens are counted');
    assert.deepEqual(missed.map((x) => x.kind), ['unseen', 'unseen', 'unseen']);
    // without the check (a reader explaining on its own), the same reader reads the partition as empty
    const blind = explainBatch(r2, groups.slice(0, 1), 'explain', false, EXPLAIN);
    assert.equal(blind[0].kind, 'explained');
    await r2.root.close();
  } finally {
    await r.root.close();
    await w.close();
    cleanup();
  }
});

test('explain workers: a window not committed yet (in the writer\'s head) is answered unseen by a worker, never counted on CPU; the pipeline explains it with the head', async () => {
  const { dir, cleanup } = tempDir('xw-head');
  const end = W0 + N * 100 * MS;
  const w = headWriter(dir);
  const pool = new ExplainPool({ workers: 1, dir, explain: EXPLAIN, log: () => {} });
  try {
    // the first half committed, the rest ingested only (open blocks in the head)
    await feed(w, frames(W0 + 600 * MS, 6).toBuffer());
    await w.flush();
    const fw = new FrameWriter();
    for (let k = 6; k < N; k++) {
      const W = W0 + k * 100 * MS;
      fw.offcpu({ ts: W + 50 * MS, pid: PID, tid: B, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG, outCpu: 0, cpu: 0 });
    }
    fw.raw(Kind.DRAINED, 24, { ts: end + 50 * MS });
    await feed(w, fw.toBuffer());
    assert.ok(w.reader.hasHead && w.reader.knownThroughNs()! >= end, 'the head is ingested through the end');
    const groups = inputs();
    const res = (await pool.submit(groups, 'explain', true))!;
    for (let k = 0; k < N; k++) {
      // request k's spans end by W0 + k*100 + 98 ms; committed through ~W0 + 600 ms
      if (k < 5) assert.equal(res[k].kind, 'explained', `request ${k} is committed`);
      if (k >= 6) assert.equal(res[k].kind, 'unseen', `request ${k} is in the head only`);
    }
    // without the check (a sender with no head), the worker's view of the uncommitted part is unknown, never on CPU
    const blind = (await pool.submit([groups[9]], 'explain', false))!;
    assert.equal(blind[0].kind, 'explained');
    const sB = blind[0].kind === 'explained' ? blind[0].explanation.spans[2] : null;
    const headB = explainBatch(w.reader, [groups[9]], 'explain', false, EXPLAIN)[0];
    const hB = headB.kind === 'explained' ? headB.explanation.spans[2] : null;
    assert.ok(sB && hB);
    assert.equal(hB.breakdown_ns.runqueue, 30 * MS, 'the head has the preemption');
    assert.equal(sB.breakdown_ns.on_cpu, 0, 'a worker never counts time it has not seen as on CPU');
    assert.equal(sB.breakdown_ns.unknown, sB.duration_ns);
    assert.equal(sB.data_quality!.settling, true);

    // the pipeline: the workers take the committed traces, the receiving thread the rest (with the head)
    const sent: OutgoingSpan[] = [];
    const up = { send: (xs: OutgoingSpan[]) => { sent.push(...xs); } } as unknown as UpstreamExporter;
    const kernel: KernelSide = {
      reader: w.reader, storeDir: dir,
      watermarkUnixNano: () => epoch(w.ingestWatermarkNs),
      // as the daemon says it (sealed blocks are committed by the round under way): here too early on purpose
      committedUnixNano: () => epoch(w.ingestWatermarkNs),
    };
    const p = new EnrichPipeline({ kernel, upstream: up, explainWorkers: 1, tickMs: 5, explain: EXPLAIN, log: () => {} });
    try {
      await p.consume(request(groups), META);
      await waitFor(() => sent.length === 4 * N);
    } finally {
      await p.close(); // also when the wait times out: its worker thread would keep the test process alive
    }
    assert.equal(p.counters.workers.spans >= 3 * N, true, JSON.stringify(p.counters.workers));
    assert.ok(p.counters.workers.unseen > 0, 'the head-only traces came back from the worker');
    assert.equal(p.counters.enrichedPartial, 0);
    // every span on B gets its preemption, from the worker or from the head
    for (let k = 0; k < N; k++) {
      const s = wire(sent.find((o) => o.span.spanId === sp(4 * k + 3))!);
      const rq = s.attributes.find((a) => a.key === 'kspan.runqueue_ns');
      // (the committed half also has a 1 ms wait for a CPU after B's I/O)
      assert.deepEqual(rq?.value, { type: 'int', value: BigInt((k < 6 ? 31 : 30) * MS) }, `request ${k}`);
    }
  } finally {
    await pool.close();
    await w.close();
    cleanup();
  }
});

function request(groups: ExplainGroup[]): DecodedTraceRequest {
  const spans: Span[] = groups.flatMap((g) => g.spans.map((s): Span => ({
    traceId: s.traceId, spanId: s.spanId, traceState: '', parentSpanId: s.parentSpanId ?? '', flags: 1, name: s.name, kind: 2,
    startTimeUnixNano: s.startUnixNano, endTimeUnixNano: s.endUnixNano,
    attributes: [
      ...(s.tid ? [{ key: 'linux.tid', value: { type: 'int' as const, value: BigInt(s.tid) } }] : []),
      ...(s.pid ? [{ key: 'process.pid', value: { type: 'int' as const, value: BigInt(s.pid) } }] : []),
      { key: 'app.attr', value: { type: 'double' as const, value: 1.0 } },
    ],
    droppedAttributesCount: 0, events: [{ timeUnixNano: s.startUnixNano, name: 'app.event', attributes: [], droppedAttributesCount: 0 }],
    droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
  })));
  return {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { type: 'string', value: 'svc' } }], droppedAttributesCount: 0 },
      scopeSpans: [{ scope: { name: 's', version: '1', attributes: [], droppedAttributesCount: 0 }, spans, schemaUrl: '' }], schemaUrl: '',
    }],
  };
}

/** A sent span as the upstream gets it: encoded (with what a worker encoded) and decoded again. */
function wire(o: OutgoingSpan): Span {
  const req: DecodedTraceRequest = {
    resourceSpans: [{ resource: { attributes: [], droppedAttributesCount: 0 }, scopeSpans: [{ scope: o.scope, spans: [o.span], schemaUrl: '' }], schemaUrl: '' }],
  };
  return decodeTraceRequestProtobuf(encodeTraceRequest(req)).resourceSpans[0].scopeSpans[0].spans[0];
}

async function waitFor(cond: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function runPipeline(dir: string, w: StoreWriter, workers: number, crash = false): Promise<{ sent: OutgoingSpan[]; p: EnrichPipeline }> {
  const sent: OutgoingSpan[] = [];
  const up = { send: (xs: OutgoingSpan[]) => { sent.push(...xs); } } as unknown as UpstreamExporter;
  const far = EPOCH0 + 10n ** 15n;
  const kernel: KernelSide = { reader: w.reader, storeDir: dir, watermarkUnixNano: () => far };
  // no timer ticks: the test drives them
  const p = new EnrichPipeline({ kernel, upstream: up, explainWorkers: workers, tickMs: 3_600_000, explain: EXPLAIN, log: () => {} });
  try {
    if (workers) await waitFor(() => p.pool!.live === workers);
    await p.consume(request(inputs()), META);
    if (crash) {
      p.pool!.crashWorker(0);
      p.tick(false); // the batch goes to the worker that is dying
      await waitFor(() => sent.length === 4 * N);
      // started again: later spans are explained there
      await waitFor(() => p.pool!.counters.restarts === 1 && p.pool!.live === 1);
      await p.consume(request(inputs()), META);
    }
    p.tick(false);
    await waitFor(() => sent.length === (crash ? 8 : 4) * N);
  } finally {
    // also when a wait times out: a worker thread left running keeps the test process alive
    await p.close();
  }
  return { sent, p };
}

test('explain workers: the pipeline sends the same spans (ids, order, attributes, events) with 2 workers as with none', async () => {
  const { dir, cleanup } = tempDir('xw-pipeline');
  const w = headWriter(dir);
  try {
    await feed(w, frames(W0 + N * 100 * MS + 50 * MS).toBuffer());
    await w.flush();
    const here = await runPipeline(dir, w, 0);
    const there = await runPipeline(dir, w, 2);
    assert.equal(there.p.counters.workers.spans, 3 * N, 'every joinable span went to a worker');
    assert.equal(here.p.counters.workers.spans, 0);
    // the no-join spans go out at once, the rest per batch: compare in the order each went out
    assert.deepEqual(there.sent.map(wire), here.sent.map(wire));
    assert.ok(there.sent.some((o) => o.span.encodedExtra), 'the workers\' kspan fields travel encoded');
    assert.deepEqual(there.p.counters.passed, here.p.counters.passed);
    assert.equal(there.p.counters.enriched, here.p.counters.enriched);
    assert.ok(here.p.counters.enriched >= 3 * N - 1, JSON.stringify(here.p.counters));
    const a = wire(here.sent.find((o) => o.span.spanId === sp(1))!);
    assert.ok(a.attributes.some((x) => x.key === 'kspan.top_cause'));
    assert.deepEqual(a.attributes.find((x) => x.key === 'app.attr')?.value, { type: 'double', value: 1.0 });
  } finally {
    await w.close();
    cleanup();
  }
});

test('explain workers: a worker that dies loses no span without a count (its batch goes out unchanged) and is started again', async () => {
  const { dir, cleanup } = tempDir('xw-crash');
  const w = headWriter(dir);
  try {
    await feed(w, frames(W0 + N * 100 * MS + 50 * MS).toBuffer());
    await w.flush();
    const { sent, p } = await runPipeline(dir, w, 1, true);
    assert.equal(p.pool!.counters.crashes, 1);
    assert.equal(p.counters.passed.workerLost, 3 * N, JSON.stringify(p.counters.passed));
    assert.equal(p.counters.workers.lostBatches, 1);
    assert.equal(sent.length, 8 * N);
    // the first round went out unchanged (no kspan attributes), the second was explained by the restarted worker
    const first = sent.filter((o) => o.span.spanId === sp(1)).map(wire);
    assert.equal(first.length, 2);
    assert.ok(!first[0].attributes.some((x) => x.key.startsWith('kspan.')));
    assert.ok(first[1].attributes.some((x) => x.key === 'kspan.top_cause'));
    assert.equal(p.counters.enriched >= 3 * N - 1, true);
  } finally {
    await w.close();
    cleanup();
  }
});

test('explain workers: with the workers full, a trace past its wait and not covered is still explained here in the same tick; the rest wait for the workers and all go out', async () => {
  const { dir, cleanup } = tempDir('xw-full');
  const n = 200; // 600 joinable spans: more than the pool's two batches in flight can take
  const w = headWriter(dir);
  // closed in `finally` too: a failed assertion must not leave the worker thread running
  let p: EnrichPipeline | null = null;
  let closed = false;
  try {
    await feed(w, frames(W0 + n * 100 * MS + 50 * MS, n).toBuffer());
    await w.flush();
    const sent: OutgoingSpan[] = [];
    const up = { send: (xs: OutgoingSpan[]) => { sent.push(...xs); } } as unknown as UpstreamExporter;
    // the watermark covers the n requests; a late trace X (past the data) is not covered
    const mark = epoch(W0 + n * 100 * MS + 50 * MS);
    const kernel: KernelSide = { reader: w.reader, storeDir: dir, watermarkUnixNano: () => mark, committedUnixNano: () => mark };
    p = new EnrichPipeline({ kernel, upstream: up, explainWorkers: 1, tickMs: 3_600_000, waitMs: 30, explain: EXPLAIN, log: () => {} });
    await waitFor(() => p!.pool!.live === 1);
    const late = W0 + (n + 50) * 100 * MS;
    const x: ExplainGroup = { traceId: tr(9999), spans: [{ traceId: tr(9999), spanId: sp(99_999), service: 'svc', name: 'late', startUnixNano: epoch(late), endUnixNano: epoch(late + 10 * MS), tid: A, pid: PID }] };
    await p.consume(request([x]), META);
    await new Promise((r) => setTimeout(r, 60)); // X is past its wait; the requests below are not
    await p.consume(request(inputs(n)), META);
    const before = sent.length;
    p.tick(false);
    assert.ok(p.pool!.capacity === 0, 'the workers are full');
    assert.ok(sent.slice(before).some((o) => o.span.spanId === sp(99_999)), 'X went out in this tick, not behind the workers');
    assert.ok(p.bufferedSpans > 0, 'covered traces wait for the workers');
    // the workers' answers bring more ticks until everything is out
    await waitFor(() => sent.length === 4 * n + 1);
    await p.close();
    closed = true;
    assert.equal(p.counters.workers.spans, 3 * n, 'every covered joinable span went to the worker');
    assert.equal(new Set(sent.map((o) => o.span.spanId)).size, 4 * n + 1, 'no span lost or sent twice');
  } finally {
    if (p && !closed) await p.close();
    await w.close();
    cleanup();
  }
});

// Disk full (issue 12), on a 16 MiB tmpfs with a ballast file:
//  1. the real StoreWriter fed synthetic frames: commits fail, nothing throws,
//     data is held and retried, past the retry buffer events are counted as
//     not stored and the session ends with its reason; space back: it
//     commits again, a new session starts, every event is either committed
//     or counted;
//  2. `node bin/kspan.js run` (a stand-in probe at 300 k events/s, OTLP in,
//     mockotlpserver upstream): every span sent arrives upstream while the
//     store is full; the log says so once, the status line while it lasts;
//     it stores again when space returns;
//  3. `node bin/kspan.js record --data`: stops with one line and its summary
//     (exit 1), a restart does not crash; with --max-size the oldest
//     partitions go so that restarts succeed;
//  4. the span index, whose calls share a commit when they come while one is
//     in flight: every call of a batch that fails rejects with the reason,
//     none hangs, none stays readable; space back, they commit again;
//  5. open-interval rows alone (threads blocked at the watermark) reach the
//     retained-bytes bound: discarding, then committed when space returns.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import { openStoreReader, openStoreWriter, statsOf, usedBytes, type SpanInput, type StoreHealth } from '../../src/store/index.js';
import { fakeProbePath } from '../helpers/fake-probe.js';
import { FrameWriter } from '../helpers/frames.js';
import { otlpJsonBody } from '../helpers/otlp-json.js';
import { UpstreamSink } from '../otel/upstream-sink.js';
import { SynthGen } from '../store/synth.js';
import { feed, sleep } from '../store/util.js';
import { mountTmpfs } from './tmpfs.js';

const KSPAN = join(REPO_ROOT, 'bin', 'kspan.js');
/** a stack trace or an unhandled rejection on stderr: a crash, not a reason */
const CRASH = /UnhandledPromiseRejection|unhandled rejection|\n\s+at .+:\d+:\d+\)?\n|Segmentation|core dumped/i;

test('writer on a full disk: commits fail without throwing, data held and retried, then counted; space back: commits again, new session', async (t) => {
  const fs = mountTmpfs(16);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => { unhandled.push(e); };
  process.on('unhandledRejection', onUnhandled);
  const states: StoreHealth[] = [];
  const w = openStoreWriter(join(fs.dir, 'store'), {
    partitionNs: 1e9, maxRetainedBytes: 2 << 20, retryMinMs: 100, retryMaxMs: 400, onStoreState: (h) => states.push(h),
  });
  try {
    fs.ballast(9);
    const g = new SynthGen({ seed: 7, t0: 5e12, threads: 100, gapNs: 10_000 });
    // fill: 50 k records per step until the retry buffer is full
    let steps = 0;
    while (!w.health.discarding && steps++ < 60) {
      await feed(w, g.next(50_000));
      await sleep(30);
    }
    assert.ok(w.health.discarding, `still storing after ${steps} steps: ${JSON.stringify(w.health)}`);
    const committedAtFull = w.counters.committedEvents;
    assert.ok(committedAtFull > 100_000, `${committedAtFull} events committed before the disk filled`);
    // while full: ingest goes on, nothing committed, events counted
    for (let i = 0; i < 5; i++) {
      await feed(w, g.next(50_000));
      await sleep(30);
    }
    const full = w.health;
    assert.equal(full.ok, false);
    assert.equal(full.space, true, full.error ?? '');
    assert.ok(full.notStoredEvents >= 5 * 45_000, `${full.notStoredEvents} events counted as not stored`);
    assert.ok(full.retainedBytes <= (2 << 20) + (1 << 20), `retained ${full.retainedBytes}`);
    assert.equal(w.counters.committedEvents, committedAtFull);
    await assert.rejects(w.flush(), /cannot commit/);
    // space back
    fs.freeBallast();
    steps = 0;
    while (!w.health.ok && steps++ < 40) {
      await feed(w, g.next(10_000));
      await sleep(100);
    }
    assert.ok(w.health.ok, `not committing again: ${JSON.stringify(w.health)}`);
    await feed(w, g.next(50_000));
    await w.flush();
    // every event generated is committed or counted as not stored
    assert.equal(w.counters.events + w.counters.storeFull, g.events);
    assert.equal(w.counters.committedEvents, w.counters.events);
    assert.deepEqual(states.map((h) => `${h.ok ? 'ok' : 'failing'}${h.discarding ? '+discarding' : ''}`), ['failing', 'failing+discarding', 'ok']);
    // the gap is a closed session with its reason; the next one starts when commits work again
    const sessions = w.reader.sessions();
    assert.equal(sessions.length, 2, JSON.stringify(sessions));
    assert.equal(sessions[0].closed, true);
    assert.match(sessions[0].endReason ?? '', /^store full: /);
    assert.ok(sessions[1].startNs > sessions[0].endNs);
    assert.equal(w.reader.coverage(sessions[0].endNs, sessions[1].startNs).covered, false);
    assert.equal(w.reader.coverage(sessions[1].startNs, w.maxTimeNs).covered, true);
    await w.close();
    const r = openStoreReader(join(fs.dir, 'store'));
    assert.equal(statsOf(r, join(fs.dir, 'store')).events, w.counters.committedEvents);
    assert.equal(r.skipCounters().storeFull, w.counters.storeFull);
    await r.root.close();
    assert.equal(unhandled.length, 0, String(unhandled[0]));
    t.diagnostic(`${committedAtFull} events committed before the disk filled, ${w.counters.storeFull} not stored while full, ` +
      `${w.counters.commitFailures} failed transactions, ${w.counters.committedEvents} committed in all`);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await w.close();
    fs.cleanup();
  }
});

test('kspan run on a full disk: every span is forwarded while the store cannot commit, said once, counted; it stores again when space returns', async (t) => {
  const fs = mountTmpfs(16);
  const sink = await UpstreamSink.start();
  const data = join(fs.dir, 'store');
  const kspan = spawn(process.execPath, [
    KSPAN, 'run', '--data', data, '--otlp-grpc', 'off', '--otlp-http', '127.0.0.1:0', '--upstream', sink.grpcUrl,
    '--status-interval', '1', '--store-retry-buffer', '1M', '--wait', '300',
  ], { cwd: REPO_ROOT, env: { ...process.env, KSPAN_PROBE: fakeProbePath(), FAKE_PROBE_RATE: '300000' } });
  let stderr = '';
  kspan.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    const port = JSON.parse(await new Promise<string>((resolve, reject) => {
      createInterface({ input: kspan.stdout }).once('line', resolve);
      kspan.once('exit', (c) => reject(new Error(`kspan run exited ${c}: ${stderr}`)));
    })).otlp_http_port;
    fs.ballast(10);
    let sent = 0;
    let accepted = 0;
    const send = async (): Promise<void> => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: otlpJsonBody('full-disk', sent, 20) });
      sent += 20;
      if (r.status === 200) accepted += 20;
    };
    const sendFor = async (ms: number, until?: () => boolean): Promise<void> => {
      const t0 = Date.now();
      while (Date.now() - t0 < ms && !(until?.() ?? false)) {
        await send();
        await sleep(100);
      }
    };
    // the disk fills (the stand-in probe writes ~3 MB/s of events into ~6 MB of room)
    await sendFor(30_000, () => /STORE FULL since/.test(stderr));
    assert.match(stderr, /store cannot commit \(.+\): spans are received and forwarded as before/);
    // full for a while: spans keep flowing
    const sentAtFull = sent;
    await sendFor(2500);
    assert.ok(sent - sentAtFull >= 200, `${sent - sentAtFull} spans sent while full`);
    assert.match(stderr, /store still cannot commit: new kernel events are not stored/);
    // space back
    fs.freeBallast();
    await sendFor(15_000, () => /store commits again after/.test(stderr));
    assert.match(stderr, /store commits again after [\d.]+ s; not stored so far: [1-9]\d* kernel events, [1-9]\d* spans/);
    await sendFor(1000);
    await sink.waitFor((r) => r.length >= sent, 15_000, `${sent} spans`);
    kspan.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => kspan.once('exit', r));
    assert.equal(code, 0, stderr.slice(-3000));
    assert.equal(accepted, sent, 'every request answered 200');
    assert.equal(sink.received.filter((x) => x.resource['service.name'] === 'full-disk').length, sent, 'every span upstream, once');
    // said once per change, not per failed commit
    assert.equal(stderr.match(/store cannot commit \(/g)?.length, 1);
    assert.equal(stderr.match(/store commits again/g)?.length, 1);
    assert.doesNotMatch(stderr, CRASH);
    const done = /done: (\d+) spans received.*not stored \(store full\): (\d+) events, (\d+) spans/.exec(stderr);
    assert.ok(done, stderr.slice(-2000));
    assert.equal(Number(done[1]), sent);
    assert.ok(Number(done[2]) > 0 && Number(done[3]) > 0, done[0]);
    const r = openStoreReader(data);
    const cut = r.sessions().filter((s) => /^store full: /.test(s.endReason ?? ''));
    assert.equal(cut.length, 1, JSON.stringify(r.sessions()));
    const st = statsOf(r, data);
    await r.root.close();
    t.diagnostic(`${sent} spans sent, ${sink.received.length} upstream; not stored while full: ${done[2]} events, ${done[3]} spans; ${st.events} events in the store`);
  } finally {
    if (kspan.exitCode === null && kspan.signalCode === null) {
      kspan.kill('SIGKILL');
      await new Promise((r) => kspan.once('exit', r));
    }
    await sink.close();
    fs.cleanup();
  }
});

function record(args: string[], env: Record<string, string>): { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [KSPAN, 'record', '--quiet', ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

test('kspan record --data on a full disk: one line and the summary, exit 1, no crash on restart; with --max-size room is made and restarts succeed', async (t) => {
  const fs = mountTmpfs(16);
  const env = { KSPAN_PROBE: fakeProbePath(), FAKE_PROBE_RATE: '300000' };
  try {
    fs.ballast(10);
    const plain = join(fs.dir, 'plain');
    const runs = [record(['--data', plain], env), record(['--data', plain], env)];
    for (const [i, r] of runs.entries()) {
      assert.equal(r.signal, null, `run ${i}: killed by ${r.signal}`);
      assert.equal(r.code, 1, `run ${i}: ${r.stderr}`);
      const lines = r.stderr.split('\n').filter((l) => /stopped: the store/.test(l));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^kspan record: stopped: the store in \S+ cannot commit \(.+\); [\d,]+ events not stored; free space, or set --max-size/);
      assert.match(r.stdout, /captured [\d,]+ records in/, 'the summary');
      assert.doesNotMatch(r.stderr, CRASH);
    }
    // the restart finds the disk still full: it stops again, quickly, the same way
    assert.ok(runs[1].ms < 30_000);
    fs.freeBallast();
    spawnSync('rm', ['-rf', plain]);
    fs.ballast(10);
    // with a size limit larger than the disk: the first stop makes room; later runs hold under what the disk allows
    const limited = join(fs.dir, 'limited');
    const codes: number[] = [];
    let made = '';
    // each stop lowers the bound to what the disk allowed then; on a loaded machine a later run may
    // write faster and make room once more before the bound settles: at most 6 runs, until two in a row succeed
    for (let i = 0; i < 6 && !(codes.length >= 4 && codes.at(-1) === 0 && codes.at(-2) === 0); i++) {
      const r = record(['--data', limited, '--max-size', '100M', '--duration', '4'], env);
      assert.equal(r.signal, null, r.stderr);
      assert.doesNotMatch(r.stderr, CRASH);
      codes.push(r.code!);
      if (r.code === 1) {
        assert.match(r.stderr, /stopped: the store in \S+ cannot commit .*; dropped the \d+ oldest partition\(s\) to make room, the store is held under [\d.]+ MB/, r.stderr);
        made ||= /held under [\d.]+ MB/.exec(r.stderr)![0];
      } else {
        assert.equal(r.code, 0, r.stderr);
      }
    }
    assert.equal(codes[0], 1, 'the first run fills the disk');
    assert.deepEqual(codes.slice(-2), [0, 0], `later runs succeed: exit codes ${codes.join(',')}`);
    assert.ok(codes.filter((c) => c === 1).length <= 2, `the bound settles after at most one more stop: exit codes ${codes.join(',')}`);
    const r = openStoreReader(limited);
    const st = statsOf(r, limited);
    assert.ok(st.events > 100_000, `${st.events} events kept`);
    assert.ok(usedBytes(r) < 6 << 20, `used ${usedBytes(r)}`);
    await r.root.close();
    t.diagnostic(`without a limit: exit ${runs.map((x) => x.code).join(', ')} in ${runs.map((x) => x.ms).join(', ')} ms; --max-size 100M: exit codes ${codes.join(', ')} (${made}), ${st.events} events kept`);
  } finally {
    fs.cleanup();
  }
});

test('span index on a full disk: every call of a failed batch rejects with the commit error, none hangs or stays readable; space back: puts commit again; closed while full, close returns', { timeout: 60_000 }, async () => {
  const fs = mountTmpfs(8);
  const w = openStoreWriter(join(fs.dir, 'store'));
  const E = 1_763_730_000_000_000_000n;
  let n = 0;
  const call = (spans: number): SpanInput[] => Array.from({ length: spans }, () => {
    n++;
    return {
      traceId: n.toString(16).padStart(32, '0'), spanId: n.toString(16).padStart(16, '0'), service: 'full', name: 'x'.repeat(2000),
      startUnixNano: E + BigInt(n), endUnixNano: E + BigInt(n) + 1_000_000n, attributes: { note: 'y'.repeat(2000) },
    };
  });
  try {
    await w.reader.spans.putSpans(call(10));
    fs.ballast(7);
    // calls made while a batch is in flight go together in the next: fire them without waiting, as the pipeline does
    const batches0 = w.reader.spans.batches;
    const calls = Array.from({ length: 40 }, () => call(100));
    const results = await Promise.allSettled(calls.map((c) => w.reader.spans.putSpans(c)));
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    assert.ok(rejected.length > 0, 'some calls failed on the full disk');
    for (const r of rejected) assert.match(String(r.reason), /^Error: span index commit failed: \S/);
    const batches = w.reader.spans.batches - batches0;
    assert.ok(batches < calls.length, `${calls.length} calls in ${batches} commits`);
    // a failed call's spans are not readable (its puts were never committed), a committed one's are
    results.forEach((r, i) => {
      const s = calls[i][0];
      assert.equal(w.reader.spans.getTrace(s.traceId).length, r.status === 'fulfilled' ? 1 : 0, `call ${i} ${r.status}`);
    });
    // space back: the next calls commit
    fs.freeBallast();
    const after = call(50);
    await w.reader.spans.putSpans(after);
    assert.equal(w.reader.spans.getTrace(after[0].traceId).length, 1);
    // full again, and closed while it is: close returns (lmdb-js would wait for the failed batch's flush)
    fs.ballast(7);
    const again = await Promise.allSettled(Array.from({ length: 20 }, () => w.reader.spans.putSpans(call(100))));
    assert.ok(again.some((r) => r.status === 'rejected'));
    const t0 = Date.now();
    await w.close();
    assert.ok(Date.now() - t0 < 5000, `close took ${Date.now() - t0} ms`);
  } finally {
    await w.close().catch(() => {});
    fs.cleanup();
  }
});

// Open-interval rows (the blocked-task snapshots' reports, store/open-intervals.ts)
// wait for a commit like blocks do: while commits fail they count in the
// retained bytes, so a host full of blocked threads cannot pile them up past
// the bound; past it the writer discards as for events; space back, the rows
// held are committed with the session they belong to.
test('writer on a full disk: open-interval rows alone reach the retained-bytes bound, then discarding; space back: the held rows are committed', { timeout: 120_000 }, async () => {
  const fs = mountTmpfs(16);
  const MS = 1e6;
  const T0 = 5e12;
  const bound = 1 << 20;
  const w = openStoreWriter(join(fs.dir, 'store'), { partitionNs: 1e9, maxRetainedBytes: bound, retryMinMs: 100, retryMaxMs: 400 });
  try {
    const head = new FrameWriter();
    head.hello({ ts: T0, monoNs: T0, realtimeNs: 1_763_730_000_000_000_000n, abiVersion: 5 });
    head.offcpu({ ts: T0 + MS, pid: 10, tid: 10, startNs: T0 + MS / 2, runnableNs: T0 + MS, prevState: 1 });
    head.drained({ ts: T0 + 2 * MS });
    await feed(w, head.toBuffer());
    await w.flush();
    // fill the disk to its last MiB
    const st = statfsSync(fs.dir);
    fs.ballast(Math.max(0, Math.floor((st.bavail * st.bsize) / 1048576) - 1));
    const PER_STEP = 3000;
    let tid = 1000;
    let t = T0 + 10 * MS;
    let steps = 0;
    let peak = 0;
    while (!w.health.discarding && steps++ < 80) {
      const fw = new FrameWriter();
      for (let i = 0; i < PER_STEP; i++) fw.blocked({ ts: t, pid: 100, tid: tid++, startNs: t - 5 * MS, prevState: 1 });
      t += 50 * MS;
      fw.drained({ ts: t });
      await feed(w, fw.toBuffer());
      if (!w.health.discarding) peak = Math.max(peak, w.health.retainedBytes);
      await sleep(60);
    }
    const h = w.health;
    assert.equal(h.ok, false, 'commits fail on the full disk');
    assert.equal(h.discarding, true, `still storing after ${steps} steps of ${PER_STEP} open intervals: ${JSON.stringify(h)}`);
    // no blocks waited: the open rows alone filled the bound, and never by more than one step's rows
    assert.equal(w.counters.events, 1);
    assert.ok(peak <= bound + PER_STEP * 128, `retained ${peak} bytes (bound ${bound})`);
    // space back: the rows held are committed (they end with the cut session)
    fs.freeBallast();
    steps = 0;
    while (!w.health.ok && steps++ < 40) {
      const fw = new FrameWriter();
      t += 50 * MS;
      fw.drained({ ts: t });
      await feed(w, fw.toBuffer());
      await sleep(100);
    }
    assert.ok(w.health.ok, `not committing again: ${JSON.stringify(w.health)}`);
    await w.flush();
    await w.close();
    const r = openStoreReader(join(fs.dir, 'store'));
    try {
      // the session was cut where the bound was passed, with its reason
      const cut = r.sessions()[0];
      assert.equal(cut.closed, true);
      assert.match(cut.endReason ?? '', /^store full: /);
      const o = r.openIntervals(1000);
      assert.deepEqual(o.map((x) => x.start), [T0 + 5 * MS], 'the first reported interval is stored');
    } finally {
      await r.root.close();
    }
  } finally {
    await w.close().catch(() => {});
    fs.cleanup();
  }
});

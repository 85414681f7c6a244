// Probe supervision (issue 12): SIGKILL the real kspan-probe under
// `node bin/kspan.js run`; it is restarted with backoff, the gap is a closed
// session with the kill as its reason, a span over the gap has unknown time
// and is not covered, a span after the restart is explained normally, and
// the status line and the final line count the restart.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../src/capture/index.js';
import { explainTrace } from '../../src/correlator/index.js';
import { formatStats, openStoreReader, statsOf } from '../../src/store/index.js';
import { requireLiveProbe, sleep } from '../helpers/live.js';
import { UpstreamSink, type Received } from '../otel/upstream-sink.js';

let sink: UpstreamSink;
let kspan: ChildProcessWithoutNullStreams;
let stderr = '';
let port = 0;
let dataDir = '';
let loop: ChildProcess | null = null;

before(async () => {
  requireLiveProbe();
  sink = await UpstreamSink.start();
  dataDir = mkdtempSync(join(tmpdir(), 'kspan-restart-'));
  kspan = spawn(process.execPath, [
    join(REPO_ROOT, 'bin', 'kspan.js'), 'run', '--data', dataDir, '--otlp-grpc', 'off', '--otlp-http', '127.0.0.1:0',
    '--upstream', sink.grpcUrl, '--wait', '5000', '--status-interval', '1',
  ], { cwd: REPO_ROOT });
  kspan.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: kspan.stdout }).once('line', resolve);
    kspan.once('exit', (c) => reject(new Error(`kspan run exited ${c}: ${stderr}`)));
  });
  port = JSON.parse(line).otlp_http_port;
});

after(async () => {
  loop?.kill('SIGKILL');
  if (kspan && kspan.exitCode === null) {
    kspan.kill('SIGKILL');
    await new Promise((r) => kspan.once('exit', r));
  }
  await sink?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Children of pid (every thread's children list). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch { /* thread gone */ }
  }
  return out;
}
function probePid(): number | null {
  for (const c of childrenOf(kspan.pid!)) {
    try {
      if (readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'kspan-probe') return c;
    } catch { /* gone */ }
  }
  return null;
}

async function waitFor(what: string, pred: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; kspan stderr:\n${stderr.slice(-3000)}`);
    await sleep(50);
  }
}

async function sendSpan(traceId: string, spanId: string, tid: number, startMs: number, endMs: number): Promise<void> {
  const body = {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'restart-test' } }, { key: 'process.pid', value: { intValue: String(tid) } }] },
      scopeSpans: [{ scope: { name: 't' }, spans: [{
        traceId, spanId, name: 'work', kind: 2,
        startTimeUnixNano: String(BigInt(startMs) * 1_000_000n), endTimeUnixNano: String(BigInt(endMs) * 1_000_000n),
        attributes: [{ key: 'linux.tid', value: { intValue: String(tid) } }],
      }] }],
    }],
  };
  const r = await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200);
}

const num = (r: Received, k: string): number => Number(r.span.attributes[k]);

test('probe killed under kspan run: restarted, the gap is a closed session, spans over it are not covered, spans after it are explained', async (t) => {
  // a thread that blocks every 20 ms (a shell waiting for `sleep`): off-CPU intervals all along
  loop = spawn('/bin/sh', ['-c', 'while :; do sleep 0.02; done'], { stdio: 'ignore' });
  const tid = loop.pid!;
  await waitFor('capture running', () => probePid() !== null && /capture running/.test(stderr), 20_000);
  await sleep(500);
  const aStart = Date.now();
  await sleep(300);
  const old = probePid()!;
  const killedAt = Date.now();
  process.kill(old, 'SIGKILL');
  await waitFor('the restart', () => /capture restarted \(1 restart/.test(stderr), 30_000);
  const restartedMs = Date.now() - killedAt;
  const fresh = probePid();
  assert.ok(fresh !== null && fresh !== old, `a new probe (old ${old}, now ${fresh})`);
  assert.match(stderr, /capture stopped: kspan-probe was killed by SIGKILL.*restarting in 1 s/);
  await sleep(600);
  const aEnd = Date.now();
  await sendSpan('a'.repeat(32), '1'.repeat(16), tid, aStart, aEnd);
  await sleep(200);
  const bStart = Date.now();
  await sleep(500);
  const bEnd = Date.now();
  await sendSpan('b'.repeat(32), '2'.repeat(16), tid, bStart, bEnd);

  const a = await sink.span('1'.repeat(16), 30_000);
  const b = await sink.span('2'.repeat(16), 30_000);
  // over the gap: joined to the thread, part of the window not covered, that part unknown
  assert.equal(a.span.attributes['kspan.correlation.method'], 'thread');
  const aDur = (aEnd - aStart) * 1e6;
  assert.ok(num(a, 'kspan.data.coverage') < 0.95, `coverage ${num(a, 'kspan.data.coverage')}`);
  assert.ok(num(a, 'kspan.unknown_ns') >= 0.2 * aDur, `unknown ${num(a, 'kspan.unknown_ns') / 1e6} ms of ${aDur / 1e6} ms`);
  // after the restart: covered, explained (the shell waits in `sleep` most of the time), nothing unknown
  assert.equal(b.span.attributes['kspan.correlation.method'], 'thread');
  assert.equal(num(b, 'kspan.data.coverage'), 1);
  const bDur = (bEnd - bStart) * 1e6;
  assert.ok(num(b, 'kspan.unknown_ns') < 0.05 * bDur, `unknown ${num(b, 'kspan.unknown_ns') / 1e6} ms of ${bDur / 1e6} ms`);
  const offCpu = num(b, 'kspan.sleep_ns') + num(b, 'kspan.futex_ns') + num(b, 'kspan.io_ns') + num(b, 'kspan.runqueue_ns');
  assert.ok(offCpu > 0.5 * bDur, `off-CPU ${offCpu / 1e6} ms of ${bDur / 1e6} ms`);

  // the status line counts it
  await waitFor('a status line with the restart', () => /capture restarted 1x \(last: kspan-probe was killed by SIGKILL/.test(stderr), 5000);
  kspan.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => kspan.once('exit', r));
  assert.equal(code, 0, stderr.slice(-2000));
  assert.match(stderr, /done: .*capture restarted 1x/);

  // the store: the first session ends with the kill as its reason, the next starts after the gap
  const r = openStoreReader(dataDir);
  try {
    const sessions = r.sessions();
    assert.ok(sessions.length >= 2, JSON.stringify(sessions.map((s) => [s.startNs, s.endNs, s.endReason])));
    const [s0, s1] = sessions;
    assert.equal(s0.closed, true);
    assert.match(s0.endReason ?? '', /SIGKILL/);
    const gap = s1.startNs - s0.endNs;
    assert.ok(gap > 0.5e9 && gap < restartedMs * 1e6 + 1e9, `gap ${gap / 1e6} ms (restart took ${restartedMs} ms)`);
    assert.equal(s1.probePid, fresh);
    const ea = explainTrace(r, 'a'.repeat(32));
    assert.equal(ea.data_quality.covered, false);
    assert.ok(ea.spans[0].breakdown_ns.unknown >= 0.95 * gap, `unknown ${ea.spans[0].breakdown_ns.unknown / 1e6} ms, gap ${gap / 1e6} ms`);
    const eb = explainTrace(r, 'b'.repeat(32));
    assert.equal(eb.data_quality.covered, true);
    assert.match(formatStats(statsOf(r, dataDir)), /\n {4}[\d.]+ \.\. [\d.]+ s {2}groups: [a-z,]+ {2}ended: kspan-probe was killed by SIGKILL/);
    t.diagnostic(`restart after ${restartedMs} ms; gap ${(gap / 1e6).toFixed(0)} ms; span over it: coverage ${num(a, 'kspan.data.coverage').toFixed(2)}, ` +
      `unknown ${(ea.spans[0].breakdown_ns.unknown / 1e6).toFixed(0)} ms; span after: off-CPU ${(offCpu / 1e6).toFixed(0)} of ${(bDur / 1e6).toFixed(0)} ms`);
  } finally {
    await r.root.close();
  }
});

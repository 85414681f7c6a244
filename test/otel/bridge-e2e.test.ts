// The OTel bridge end to end, everything real: `kspan run` (the CLI, with the
// real probe capturing the host) between apps instrumented with the official
// OTel SDKs and an OTLP backend (@elastic/mockotlpserver).
//
//   Node app (OTel JS SDK + LinuxThreadIdSpanProcessor, OTLP/gRPC) ─┐
//   Python app (OTel Python SDK + kspan_otel, OTLP/gRPC and HTTP)  ─┼─► kspan run ─► mockotlpserver
//
// Known answers: the Node span spins on a CPU shared with a pinned cpu_hog
// (preemption = wall - own CPU time, culprit = the hog); the Python span
// waits for a threading.Lock held by another thread (wait measured by the
// app, culprit = the holder's tid).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../src/capture/index.js';
import { FIXTURES as FIXTURE_BIN, requireLiveProbe } from '../helpers/live.js';
import { run, within } from '../kernel/harness.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDaemon } from '../../src/daemon/index.js';
import { UpstreamSink, type Received } from './upstream-sink.js';

const PY = join(REPO_ROOT, '.venv', 'bin', 'python');
const num = (v: unknown): number => Number(v);

let sink: UpstreamSink;
let kspan: ChildProcessWithoutNullStreams;
let stderr = '';
let ports: { otlp_grpc_port: number; otlp_http_port: number; mcp_url: string };
let pyApp: { trace_id: string; holder_tid: number } | null = null;
let dataDir: string;

before(async () => {
  requireLiveProbe();
  sink = await UpstreamSink.start();
  dataDir = mkdtempSync(join(tmpdir(), 'kspan-bridge-'));
  kspan = spawn(process.execPath, [
    '--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'run', '--data', dataDir,
    '--otlp-grpc', '127.0.0.1:0', '--otlp-http', '127.0.0.1:0', '--upstream', sink.grpcUrl,
    '--wait', '4000', '--status-interval', '2', '--mcp-http', '127.0.0.1:0',
  ], { cwd: REPO_ROOT });
  kspan.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: kspan.stdout });
    rl.once('line', resolve);
    kspan.once('exit', (c) => reject(new Error(`kspan run exited ${c}: ${stderr}`)));
  });
  ports = JSON.parse(line);
  assert.ok(ports.otlp_grpc_port > 0 && ports.otlp_http_port > 0, line);
});

after(async () => {
  if (kspan && kspan.exitCode === null) {
    kspan.kill('SIGTERM');
    await new Promise((r) => kspan.once('exit', r));
  }
  await sink?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function causes(r: Received): Record<string, any>[] {
  return (r.span.events ?? []).filter((e) => e.name === 'kspan.cause').map((e) => e.attributes);
}

test('Node app (OTel JS SDK) → kspan run → backend: the span keeps its ids and names the CPU hog', async () => {
  // a hog and the app pinned to the same CPU. The hog outlasts the app whatever its start-up costs (killed
  // below): on a clean clone tsx compiles the app's imports first, at half a CPU, and a 3 s hog ended
  // while the app's busy loop ran (it lost 70-82 ms to the hog instead of > 150 ms)
  const hog = spawn(join(FIXTURE_BIN, 'cpu_hog'), ['0', '30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((r) => setTimeout(r, 150));
    const app = await run('taskset', ['-c', '0', process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'otel', 'apps', 'busy-app.ts')], {
      env: { ...process.env, KSPAN_OTLP: `http://127.0.0.1:${ports.otlp_grpc_port}`, BUSY_MS: '700' },
      timeoutMs: 30_000,
    });
    assert.equal(app.code, 0, app.stderr);
    const a = JSON.parse(app.stdout.trim().split('\n').pop()!);
    const got = await sink.span(a.span_id, 20_000);
    // forwarded as it was sent
    assert.equal(got.span.traceId, a.trace_id);
    assert.equal(got.span.name, 'compute');
    assert.equal(got.resource['service.name'], 'busy-node');
    assert.equal(got.scope.name, 'kspan-test-app');
    assert.equal(got.scope.version, '1.0.0');
    assert.equal(num(got.span.attributes['app.busy_ms']), 700);
    assert.equal(num(got.span.attributes['linux.tid']), a.tid);
    // and enriched
    const at = got.span.attributes;
    assert.equal(at['kspan.correlation.method'], 'thread');
    assert.equal(num(at['kspan.correlation.tid']), a.tid);
    const injected = a.wall_ns - a.cpu_ns; // what the app did not spend on its CPU
    assert.ok(injected > 150e6, `the hog took a real share: ${(injected / 1e6).toFixed(0)} ms`);
    const pre = causes(got).find((c) => c['kspan.cause.kind'] === 'cpu_preemption');
    assert.ok(pre, `a kspan.cause cpu_preemption event: ${JSON.stringify(causes(got))}`);
    assert.equal(num(pre['kspan.culprit.pid']), hog.pid, 'culprit = the hog');
    assert.equal(pre['kspan.culprit.comm'], 'cpu_hog');
    assert.ok(within(num(pre['kspan.duration_ns']), injected, 0.25),
      `preemption ${(num(pre['kspan.duration_ns']) / 1e6).toFixed(0)} ms vs ${(injected / 1e6).toFixed(0)} ms measured by the app`);
    assert.ok(within(num(at['kspan.on_cpu_ns']), a.cpu_ns, 0.25), `on_cpu ${num(at['kspan.on_cpu_ns']) / 1e6} ms vs ${a.cpu_ns / 1e6} ms`);
    assert.ok(num(pre['kspan.share']) > 0.2 && num(pre['kspan.share']) <= 1);
    assert.match(pre['kspan.summary'], /cpu_hog/);
  } finally {
    hog.kill('SIGKILL');
  }
});

for (const protocol of ['grpc', 'http/protobuf'] as const) {
  test(`Python app (OTel Python SDK, ${protocol}) → kspan run → backend: lock contention with the holder thread`, async () => {
    const url = protocol === 'grpc' ? `http://127.0.0.1:${ports.otlp_grpc_port}` : `http://127.0.0.1:${ports.otlp_http_port}`;
    const app = await run(PY, [join(REPO_ROOT, 'test', 'otel', 'apps', 'lock_app.py')], {
      env: { ...process.env, KSPAN_OTLP: url, KSPAN_PROTOCOL: protocol, HOLD_MS: '300' }, timeoutMs: 30_000,
    });
    assert.equal(app.code, 0, app.stderr);
    const a = JSON.parse(app.stdout.trim().split('\n').pop()!);
    assert.ok(a.wait_ns > 200e6, `the app waited ${a.wait_ns / 1e6} ms`);
    pyApp = a;
    const got = await sink.span(a.span_id, 20_000);
    assert.equal(got.span.traceId, a.trace_id);
    assert.equal(got.span.name, 'checkout');
    assert.equal(got.resource['service.name'], 'lock-py');
    assert.equal(num(got.span.attributes['linux.tid']), a.tid);
    assert.equal(got.span.attributes['kspan.correlation.method'], 'thread');
    const lock = causes(got).find((c) => c['kspan.cause.kind'] === 'lock_contention');
    assert.ok(lock, `a lock_contention cause: ${JSON.stringify(causes(got))}`);
    assert.equal(causes(got)[0]['kspan.cause.kind'], 'lock_contention', 'the largest cause');
    assert.equal(num(lock['kspan.culprit.tid']), a.holder_tid, 'culprit = the thread holding the lock');
    assert.equal(num(lock['kspan.culprit.pid']), a.pid);
    assert.ok(within(num(lock['kspan.duration_ns']), a.wait_ns, 0.2),
      `lock wait ${(num(lock['kspan.duration_ns']) / 1e6).toFixed(0)} ms vs ${(a.wait_ns / 1e6).toFixed(0)} ms measured`);
    assert.equal(lock['kspan.severity'], 'high');
    // the chain of the cause is there too
    const chain = (got.span.events ?? []).filter((e) => e.name === 'kspan.chain' && num(e.attributes['kspan.cause.index']) === num(lock['kspan.cause.index']));
    assert.ok(chain.length >= 1, 'kspan.chain events for the lock');
  });
}

test('kspan run --mcp-http: an agent asks explain_request over MCP; the tool call is traced upstream', async () => {
  assert.ok(pyApp, 'the Python scenario ran');
  assert.match(ports.mcp_url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  const client = new Client({ name: 'kspan-e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(ports.mcp_url)));
  try {
    const r = await client.callTool({ name: 'explain_request', arguments: { trace_id: pyApp.trace_id } });
    assert.ok(!r.isError, JSON.stringify(r.content));
    const e = r.structuredContent as { found: boolean; spans: { causes: { kind: string; culprit: { tid: number } | null }[] }[] };
    assert.equal(e.found, true);
    assert.equal(e.spans[0].causes[0].kind, 'lock_contention');
    assert.equal(e.spans[0].causes[0].culprit?.tid, pyApp.holder_tid);
  } finally {
    await client.close();
  }
  await sink.waitFor((r) => r.some((x) => x.span.name === 'tools/call explain_request' && x.resource['service.name'] === 'kspan'), 15_000, 'the MCP call span');
});

test('the status line and a graceful stop: everything received is accounted for', async () => {
  // at least one status line was printed while running
  assert.match(stderr, /spans \d+\/s \(\d+ in, \d+ enriched/);
  kspan.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => kspan.once('exit', r));
  assert.equal(code, 0, stderr);
  const done = /done: (\d+) spans received, (\d+) enriched, (\d+) forwarded unchanged .*upstream: (\d+) exported, (\d+) dropped/.exec(stderr);
  assert.ok(done, stderr.slice(-2000));
  const [received, enriched, unchanged, exported, dropped] = done.slice(1).map(Number);
  assert.equal(received, enriched + unchanged);
  assert.equal(exported, received, 'every span went upstream');
  assert.equal(dropped, 0);
  // everything upstream is the apps' spans, plus kspan's own MCP call spans
  assert.equal(sink.received.filter((x) => x.resource['service.name'] !== 'kspan').length, received);
  assert.ok(enriched >= 3, `the three scenario spans were enriched (${enriched})`);
});

test('kernel side down (probe killed, restart pending): the daemon keeps forwarding spans, unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-down-'));
  const d = await startDaemon({
    dataDir: dir, otlpGrpc: null, otlpHttp: '127.0.0.1:0', upstream: { url: sink.grpcUrl, timeoutMs: 2000 },
    capture: {}, waitMs: 10_000, log: () => {}, captureRestart: { minMs: 60_000 }, // the restart itself: test/reliability/probe-restart
  });
  try {
    assert.equal(d.status().capture, 'running');
    process.kill(d.probe!.pid!, 'SIGKILL');
    const t0 = Date.now();
    while (d.status().capture === 'running' && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.equal(d.status().capture, 'restarting');
    const spanId = 'abcdef0123456789';
    const req = {
      resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'after-crash' } }] }, scopeSpans: [{ scope: { name: 's' }, spans: [{
        traceId: 'abcdef0123456789abcdef0123456789', spanId, name: 'late', kind: 1,
        startTimeUnixNano: String(BigInt(Date.now() - 50) * 1_000_000n), endTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n),
        attributes: [{ key: 'linux.tid', value: { intValue: String(process.pid) } }],
      }] }] }],
    };
    const res = await fetch(`http://127.0.0.1:${d.receiver.httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
    assert.equal(res.status, 200);
    const got = await sink.span(spanId, 10_000);
    assert.ok(Date.now() - t0 < 8000, 'not held for the 10 s wait');
    assert.deepEqual(Object.keys(got.span.attributes), ['linux.tid'], 'unchanged');
    assert.equal(d.pipeline.counters.passed.kernelDown, 1);
  } finally {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

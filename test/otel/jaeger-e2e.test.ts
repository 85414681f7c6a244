// kspan in front of a real Jaeger v2 and a real OpenTelemetry Collector, as a
// user runs them (issue 11, item 5). Everything is real: `node bin/kspan.js
// run` with the probe capturing the host, apps on the official OTel SDKs,
// Jaeger v2 all-in-one (memory storage) and the collector distribution built
// by scripts/setup.sh (test/helpers/jaeger.ts), all on free loopback ports.
// What Jaeger shows is read back from its query API (/api/traces/<id>).
//
//   a. default flags, in line: 20 lock-bound requests (Node app, Python app)
//      → kspan run → Jaeger; every span has a kspan.cause lock_contention log
//      naming the holder's tid, and kspan.futex_ns within 15% of the app's wait.
//   b. the README's "In line" collector config, as written (ports substituted):
//      app → collector → kspan → Jaeger.
//   c. --emit child-spans with the README's fan-out config: the collector
//      sends to Jaeger and to kspan; Jaeger has the original span once and
//      kspan's `kspan` child span under it.
//
// Needs root (the probe) and build/jaeger/jaeger, build/otelcol/otelcol-kspan
// (`npm run setup`). Not root: skipped, with the reason. A missing binary or
// probe: the test fails and says what is missing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import { requireLiveProbe } from '../helpers/live.js';
import { within } from '../kernel/harness.js';
import {
  GroupProcess, OTELCOL_BIN, freePort, kv, parentOf, requireBuilt, spanEvents, startCollector, startJaeger, startKspanRun,
  type Jaeger, type JaegerSpan, type JaegerTrace,
} from '../helpers/jaeger.js';

const NOT_ROOT = process.geteuid?.() !== 0
  ? `needs root (euid ${process.geteuid?.()}): kspan run loads the real BPF programs; run the tests as root (sudo npm test), as CI does`
  : false;
const PY = join(REPO_ROOT, '.venv', 'bin', 'python');
const APPS = join(REPO_ROOT, 'test', 'otel', 'apps');
const REQUESTS = 20;
const HOLD_MS = 120;
const num = (v: unknown): number => Number(v);

interface AppResult { pid: number; tid: number; holder_tid: number; requests: { trace_id: string; span_id: string; wait_ns: number }[] }

let jaeger: Jaeger | null = null;

before(async () => {
  if (NOT_ROOT) return;
  requireLiveProbe();
  jaeger = await startJaeger();
});

after(async () => {
  await jaeger?.stop();
});

/** Runs an app (node or python) that prints one JSON line; fails with its output otherwise. */
async function runApp(lang: 'node' | 'python', otlpUrl: string, requests: number): Promise<AppResult> {
  const env = { ...process.env, KSPAN_OTLP: otlpUrl, REQUESTS: String(requests), HOLD_MS: String(HOLD_MS) };
  const app = lang === 'node'
    ? new GroupProcess('node app', process.execPath, ['--import', 'tsx', join(APPS, 'lock-requests.ts')], { env })
    : new GroupProcess('python app', PY, [join(APPS, 'lock_requests.py')], { env });
  await app.wait(60_000);
  assert.equal(app.exitCode, 0, `${lang} app exited ${app.exitCode ?? app.exitSignal}: ${app.tail(3000)}`);
  const a = JSON.parse(app.stdout.trim().split('\n').pop()!) as AppResult;
  assert.equal(a.requests.length, requests);
  assert.notEqual(a.holder_tid, a.tid, 'the holder is a sibling thread');
  for (const q of a.requests) {
    assert.ok(q.wait_ns > 0.5 * HOLD_MS * 1e6, `the request waited for the lock (${(q.wait_ns / 1e6).toFixed(1)} ms)`);
  }
  return a;
}

/** Waits until Jaeger has each request's span; returns them by span id. */
async function spansInJaeger(a: AppResult, timeoutMs: number): Promise<Map<string, { span: JaegerSpan; trace: JaegerTrace }>> {
  const out = new Map<string, { span: JaegerSpan; trace: JaegerTrace }>();
  const deadline = Date.now() + timeoutMs;
  for (const q of a.requests) {
    const trace = await jaeger!.waitForTrace(q.trace_id, (t) => t.spans.some((s) => s.spanID === q.span_id), Math.max(1000, deadline - Date.now()));
    out.set(q.span_id, { span: trace.spans.find((s) => s.spanID === q.span_id)!, trace });
  }
  return out;
}

interface Verdict { cause: boolean; culprit: boolean; futex: boolean; detail: string }

/** What issue 11 asks of each span: a lock_contention cause naming the holder, futex_ns within 15% of the wait (with the runqueue after the wake, when the waiter waited for a CPU). */
function judge(span: JaegerSpan, wait_ns: number, holderTid: number): Verdict {
  const tags = kv(span.tags);
  const lock = spanEvents(span, 'kspan.cause').find((c) => c['kspan.cause.kind'] === 'lock_contention');
  const futex = num(tags['kspan.futex_ns'] ?? NaN);
  const v = {
    cause: !!lock,
    culprit: !!lock && num(lock['kspan.culprit.tid']) === holderTid,
    // the measured wait may also hold the waiter's wait for a CPU after the wake, which kspan calls runqueue
    futex: Number.isFinite(futex) && futex >= 0.5 * wait_ns
      && (within(futex, wait_ns, 0.15) || within(futex + num(tags['kspan.runqueue_ns'] ?? 0), wait_ns, 0.15)),
  };
  const ms = (x: unknown): string => (num(x) / 1e6).toFixed(1);
  const detail = `span ${span.spanID}: wait ${ms(wait_ns)} ms; futex_ns ${ms(tags['kspan.futex_ns'])} on_cpu_ns ${ms(tags['kspan.on_cpu_ns'])} ` +
    `unknown_ns ${ms(tags['kspan.unknown_ns'])} runqueue_ns ${ms(tags['kspan.runqueue_ns'])} settling ${tags['kspan.data.settling']} ` +
    `coverage ${tags['kspan.data.coverage']} lost_events ${tags['kspan.data.lost_events']} method ${tags['kspan.correlation.method']} ` +
    `tid ${tags['kspan.correlation.tid']} top_cause ${tags['kspan.top_cause']}; ` +
    `lock_contention ${lock ? `${ms(lock['kspan.duration_ns'])} ms, culprit tid ${lock['kspan.culprit.tid']}` : '-'} (holder ${holderTid})`;
  return { ...v, detail };
}

function report(name: string, verdicts: Verdict[]): string {
  const n = verdicts.length;
  const c = (f: (v: Verdict) => boolean): number => verdicts.filter(f).length;
  const line = `RESULT ${name}: ${c((v) => v.cause && v.culprit && v.futex)}/${n} right ` +
    `(lock_contention ${c((v) => v.cause)}/${n}, culprit = holder ${c((v) => v.culprit)}/${n}, futex_ns within 15% ${c((v) => v.futex)}/${n})`;
  process.stdout.write(`${line}\n`);
  return line;
}

for (const lang of ['node', 'python'] as const) {
  test(`default flags, in line: ${REQUESTS} lock-bound requests (${lang === 'node' ? 'Node, OTel JS SDK' : 'Python, OTel Python SDK'}) → kspan run → Jaeger`, { skip: NOT_ROOT, timeout: 150_000 }, async () => {
    const kspan = await startKspanRun(['--upstream', jaeger!.otlpGrpcUrl]);
    let code: number | null;
    try {
      const a = await runApp(lang, `http://127.0.0.1:${kspan.otlpGrpcPort}`, REQUESTS);
      const spans = await spansInJaeger(a, 60_000);
      const verdicts = a.requests.map((q) => judge(spans.get(q.span_id)!.span, q.wait_ns, a.holder_tid));
      for (const q of a.requests) {
        const { span, trace } = spans.get(q.span_id)!;
        assert.equal(span.operationName, 'checkout');
        assert.equal(trace.processes[span.processID].serviceName, lang === 'node' ? 'lock-node' : 'lock-py');
        assert.equal(num(kv(span.tags)['linux.tid']), a.tid);
      }
      const line = report(`jaeger_inline_${lang}`, verdicts);
      const wrong = verdicts.filter((v) => !(v.cause && v.culprit && v.futex));
      assert.equal(wrong.length, 0, `${line}\nwrong:\n  ${wrong.map((v) => v.detail).join('\n  ')}`);
    } finally {
      code = await kspan.stop();
    }
    assert.equal(code, 0, `kspan run exited ${code}:\n${kspan.proc.tail()}`);
  });
}

// ------------------------------------------------------------ README configs

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const YAML_BLOCKS = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
/** The "In line" collector config: the block with the otlp/kspan exporter and the receivers. */
const INLINE_YAML = YAML_BLOCKS.find((b) => /^receivers:/m.test(b) && b.includes('otlp/kspan:'));
/** The "Spans already exported elsewhere" fan-out fragment: exporters otlp/backend and otlp/kspan. */
const FANOUT_YAML = YAML_BLOCKS.find((b) => b.includes('otlp/backend'));

/** Replaces each `from` (which must occur exactly once, so a README change is noticed) by `to`. */
function substitute(yaml: string, subs: [string, string][]): string {
  for (const [from, to] of subs) {
    assert.equal(yaml.split(from).length - 1, 1, `README's collector config has "${from}" once:\n${yaml}`);
    yaml = yaml.replace(from, to);
  }
  return yaml;
}

// Flags for the collector that are not part of the README's YAML: its own
// metrics endpoint (default localhost:8888, a fixed port) is turned off so
// that the test binds only free loopback ports.
const COLLECTOR_FLAGS = ['--set=service.telemetry.metrics.level=none'];

/**
 * The README's in-line config with only its addresses substituted:
 *   0.0.0.0:4317    (receiver, gRPC)  → 127.0.0.1:<free port>
 *   0.0.0.0:4318    (receiver, HTTP)  → 127.0.0.1:<free port>
 *   127.0.0.1:14317 (otlp/kspan)      → 127.0.0.1:<kspan run's OTLP/gRPC port>
 */
async function readmeInline(kspanGrpcPort: number): Promise<{ yaml: string; grpcPort: number }> {
  assert.ok(INLINE_YAML, 'README.md has the "In line" collector config (a yaml block with receivers and the otlp/kspan exporter)');
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const yaml = substitute(INLINE_YAML, [
    ['endpoint: 0.0.0.0:4317', 'endpoint: ' + `127.0.0.1:${grpcPort}`],
    ['endpoint: 0.0.0.0:4318', 'endpoint: ' + `127.0.0.1:${httpPort}`],
    ['endpoint: 127.0.0.1:14317', `endpoint: 127.0.0.1:${kspanGrpcPort}`],
  ]);
  return { yaml, grpcPort };
}

function lockCause(span: JaegerSpan): Record<string, unknown> | undefined {
  return spanEvents(span, 'kspan.cause').find((c) => c['kspan.cause.kind'] === 'lock_contention');
}

test("the README's in-line collector config, as written: app → collector → kspan run → Jaeger", { skip: NOT_ROOT, timeout: 150_000 }, async () => {
  requireBuilt(OTELCOL_BIN);
  const kspan = await startKspanRun(['--upstream', jaeger!.otlpGrpcUrl]);
  let collector: Awaited<ReturnType<typeof startCollector>> | null = null;
  try {
    const cfg = await readmeInline(kspan.otlpGrpcPort);
    collector = await startCollector([cfg.yaml], { waitPorts: [cfg.grpcPort], flags: COLLECTOR_FLAGS });
    const a = await runApp('python', `http://127.0.0.1:${cfg.grpcPort}`, 3);
    const spans = await spansInJaeger(a, 60_000);
    const verdicts = a.requests.map((q) => judge(spans.get(q.span_id)!.span, q.wait_ns, a.holder_tid));
    const line = report('jaeger_readme_inline_collector', verdicts);
    for (const q of a.requests) {
      const { span } = spans.get(q.span_id)!;
      const tags = kv(span.tags);
      assert.equal(tags['kspan.correlation.method'], 'thread', `kspan enriched the span on its way (${line})`);
      const lock = lockCause(span);
      assert.ok(lock, `a kspan.cause lock_contention log: ${JSON.stringify(spanEvents(span, 'kspan.cause'))}\n${line}\n${verdicts.map((v) => v.detail).join('\n')}`);
      assert.equal(num(lock['kspan.culprit.tid']), a.holder_tid, 'culprit = the holder thread');
      assert.ok(spanEvents(span, 'kspan.chain').length >= 1, 'the cause has its chain');
    }
  } finally {
    await collector?.stop();
    await kspan.stop();
  }
});

test('--emit child-spans, README fan-out config: Jaeger has the original span once and the kspan child under it', { skip: NOT_ROOT, timeout: 150_000 }, async () => {
  requireBuilt(OTELCOL_BIN);
  assert.ok(FANOUT_YAML, 'README.md has the fan-out config (a yaml block with otlp/backend)');
  const kspan = await startKspanRun(['--emit', 'child-spans', '--upstream', jaeger!.otlpGrpcUrl]);
  let collector: Awaited<ReturnType<typeof startCollector>> | null = null;
  try {
    // The README's fan-out block is a fragment (exporters and the pipeline)
    // meant to go with the in-line config's receivers and processors: the
    // collector merges the two documents. Substituted: tempo.example:4317 →
    // Jaeger's OTLP/gRPC port, 127.0.0.1:14317 → kspan's; and, in a third
    // document, `tls: { insecure: true }` for otlp/backend (the README's
    // remote backend uses TLS; this Jaeger listens in plain text on loopback).
    const base = await readmeInline(kspan.otlpGrpcPort);
    const fanout = substitute(FANOUT_YAML, [
      ['endpoint: tempo.example:4317', 'endpoint: ' + `127.0.0.1:${jaeger!.otlpGrpcPort}`],
      ['endpoint: 127.0.0.1:14317', `endpoint: 127.0.0.1:${kspan.otlpGrpcPort}`],
    ]);
    const plainText = 'exporters:\n  otlp/backend:\n    tls: { insecure: true }\n';
    collector = await startCollector([base.yaml, fanout, plainText], { waitPorts: [base.grpcPort], flags: COLLECTOR_FLAGS });
    const a = await runApp('python', `http://127.0.0.1:${base.grpcPort}`, 3);
    const isChild = (id: string) => (s: JaegerSpan): boolean => s.operationName === 'kspan' && parentOf(s) === id;
    for (const q of a.requests) {
      await jaeger!.waitForTrace(q.trace_id, (t) => t.spans.some((s) => s.spanID === q.span_id) && t.spans.some(isChild(q.span_id)), 60_000, { raw: true });
    }
    // everything buffered is flushed before counting (no late second copy)
    await collector.stop();
    collector = null;
    assert.equal(await kspan.stop(), 0, kspan.proc.tail());
    for (const q of a.requests) {
      const t = (await jaeger!.getTrace(q.trace_id, { raw: true }))!;
      const originals = t.spans.filter((s) => s.spanID === q.span_id);
      assert.equal(originals.length, 1, `the original span once: ${JSON.stringify(t.spans.map((s) => [s.spanID, s.operationName]))}`);
      const orig = originals[0];
      assert.equal(orig.operationName, 'checkout');
      assert.deepEqual(Object.keys(kv(orig.tags)).filter((k) => k.startsWith('kspan.')), [], 'the original is not amended');
      assert.deepEqual(spanEvents(orig, 'kspan.cause'), []);
      const children = t.spans.filter(isChild(q.span_id));
      assert.equal(children.length, 1, 'one kspan child span');
      const child = children[0];
      assert.equal(t.spans.length, 2, 'the trace is the original and its kspan child');
      assert.equal(t.processes[child.processID].serviceName, 'lock-py', 'the child keeps the resource of its span');
      assert.equal(kv(child.tags)['kspan.correlation.method'], 'thread');
      assert.ok(child.startTime >= orig.startTime && child.startTime + child.duration <= orig.startTime + orig.duration + 1,
        'the child lies within the original');
      const lock = lockCause(child);
      assert.ok(lock, `the kspan child has a kspan.cause lock_contention log: ${JSON.stringify(spanEvents(child, 'kspan.cause'))}; ` +
        judge(child, q.wait_ns, a.holder_tid).detail);
      assert.equal(num(lock['kspan.culprit.tid']), a.holder_tid, 'culprit = the holder thread');
    }
  } finally {
    await collector?.stop();
    await kspan.stop();
  }
});

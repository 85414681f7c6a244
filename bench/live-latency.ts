// The in-line bridge live, as users run it: the real probe capturing this
// host, `kspan run`'s daemon (startDaemon, default wait and drain period),
// the vLLM-shaped demo workload as load, and a driver sending spans of its
// own thread at --rate spans/s over OTLP/HTTP; the upstream is a sink in
// another process.
//
//   driver ──OTLP/HTTP──► kspan daemon (this process) ──OTLP/gRPC──► sink
//   examples/vllm/serve.py ──OTLP/HTTP──┘   (the demo load, its spans too)
//
// Two figures:
//   - visibility lag: how far the daemon's ingest watermark (time before
//     which every kernel event is readable by explain) trails the wall clock,
//     sampled every 5 ms: an event ending just after one watermark becomes
//     readable at the next, so this bounds event end -> readable.
//   - added latency: per driver span, arrival at the sink (epoch) - the span's
//     end time: the wait for the watermark, explain, enrich, export.
// Also the share of spans explained before their window was fully ingested
// (the bounded wait expired: `kspan.data.settling`). The driver's first 2 s
// are a warm-up (module loading, JIT, caches) and are not measured.
//
//   npm run bench:live [-- --quick] [-- --rate N] [-- --duration S] [-- --no-load]
// Needs root (the probe). Ends with RESULT lines.

import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startDaemon } from '../src/daemon/index.js';
import { ENGINE_COMM, EXAMPLE_DIR, buildExample, defaultPython } from '../src/demo/index.js';
import { ask, startRole } from './lib/roles.js';
import { OtlpReceiver, encodeTraceRequest, findAttr, type DecodedTraceRequest, type KeyValue, type Span } from '../src/otel/index.js';

const SELF = fileURLToPath(import.meta.url);
const PROBE = fileURLToPath(new URL('../build/kspan-probe', import.meta.url));
const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, 'no-load': { type: 'boolean' }, rate: { type: 'string' }, duration: { type: 'string' }, role: { type: 'string' }, port: { type: 'string' } },
});
const epochNs = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e3)) * 1000n;
const send = (m: unknown): void => { process.send!(m); };

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

// ---------------------------------------------------------------- sink
async function sinkRole(): Promise<void> {
  const lat: number[] = [];
  let driverSpans = 0;
  let enriched = 0;
  let partial = 0;
  let other = 0;
  const rx = await OtlpReceiver.start({
    httpAddr: null, grpcAddr: '127.0.0.1:0',
    consumer: {
      async consume(req) {
        const now = epochNs();
        for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) {
          if (findAttr(s.attributes, 'bench.warmup')) continue;
          if (!findAttr(s.attributes, 'bench.driver')) {
            other++;
            continue;
          }
          driverSpans++;
          lat.push(Number(now - s.endTimeUnixNano) / 1e6);
          if (findAttr(s.attributes, 'kspan.correlation.method')) enriched++;
          if (findAttr(s.attributes, 'kspan.data.settling')) partial++;
        }
        return { rejectedSpans: 0 };
      },
    },
  });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'stats') send({ lat, driverSpans, enriched, partial, other });
    if (m.cmd === 'stop') void rx.close().then(() => process.exit(0));
  });
  send({ ready: true, port: rx.grpcPort });
}

// ---------------------------------------------------------------- driver
async function driverRole(): Promise<void> {
  const port = Number(values.port);
  const rate = Number(values.rate ?? 2000);
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const str = (key: string, value: string): KeyValue => ({ key, value: { type: 'string', value } });
  const int = (key: string, value: number): KeyValue => ({ key, value: { type: 'int', value: BigInt(value) } });
  let n = 0;
  let sent = 0;
  let errors = 0;
  let stop = false;
  const rtt: number[] = [];
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'stop') stop = true;
  });
  send({ ready: true, port: 0 });
  const tick = 10; // ms: rate/100 spans per request
  const per = Math.max(1, Math.round((rate * tick) / 1000));
  const t0 = performance.now();
  const WARMUP_MS = 2000; // the daemon's first explains compile and warm caches: not measured
  while (!stop) {
    const warm = performance.now() - t0 < WARMUP_MS;
    // each span: the last 2 ms of this (Node main) thread, which is the OS thread process.pid
    const end = epochNs();
    const spans: Span[] = [];
    for (let k = 0; k < per; k++) {
      n++;
      spans.push({
        traceId: (0xb1e0000000000000n + BigInt(n)).toString(16).padStart(32, '0'), spanId: (0x1000000000000000n + BigInt(n)).toString(16).padStart(16, '0'),
        traceState: '', parentSpanId: '', flags: 1, name: 'GET /live', kind: 2, startTimeUnixNano: end - 2_000_000n, endTimeUnixNano: end,
        attributes: [int('linux.tid', process.pid), int('process.pid', process.pid), int(warm ? 'bench.warmup' : 'bench.driver', 1)],
        droppedAttributesCount: 0, events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
      });
    }
    const req: DecodedTraceRequest = {
      resourceSpans: [{
        resource: { attributes: [str('service.name', 'bench-live')], droppedAttributesCount: 0 },
        scopeSpans: [{ scope: { name: 'bench', version: '1', attributes: [], droppedAttributesCount: 0 }, spans, schemaUrl: '' }], schemaUrl: '',
      }],
    };
    const body = encodeTraceRequest(req);
    const t = performance.now();
    request({ host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent, headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      res.resume();
      if (!warm) res.on('end', () => rtt.push(performance.now() - t));
      if (res.statusCode !== 200) errors++;
    }).on('error', () => { errors++; }).end(body);
    sent += per;
    const next = t0 + (sent / rate) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  send({ sent, errors, rttP50: pct(rtt, 0.5), rttP99: pct(rtt, 0.99) });
}

// ---------------------------------------------------------------- main
const child = (role: string, args: string[]): Promise<{ cp: ChildProcess; port: number }> => startRole(SELF, role, args);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:live needs root (the probe loads BPF programs)');
  if (!existsSync(PROBE)) throw new Error('build/kspan-probe is missing: npm run build');
  const quick = !!values.quick;
  const durationS = Number(values.duration ?? (quick ? 8 : 30));
  const rate = Number(values.rate ?? 2000);
  const dir = mkdtempSync(join(tmpdir(), 'kspan-bench-live-'));
  const python = defaultPython();
  const buildDir = join(dir, 'example');
  buildExample(python, buildDir);
  const sink = await child('sink', []);
  const logs: string[] = [];
  const daemon = await startDaemon({
    dataDir: join(dir, 'store'), otlpGrpc: null, otlpHttp: '127.0.0.1:0', upstream: { url: `http://127.0.0.1:${sink.port}` },
    capture: {}, explain: { serviceProcess: { vllm: ENGINE_COMM } }, statusIntervalMs: 0, log: (m) => logs.push(m),
  });
  const port = daemon.receiver.httpPort!;
  const writer = daemon.store.writer;
  const probe = daemon.probe;
  if (!probe) throw new Error(`capture did not start: ${logs.join('; ')}`);
  let workload: ReturnType<typeof spawn> | null = null;
  let driver: ChildProcess | null = null;
  try {
    // the demo load: engine + tokenizer lock + CPU neighbour + CUDA stand-in, its spans through the daemon too
    if (!values['no-load']) workload = spawn(python, [join(EXAMPLE_DIR, 'serve.py'), '--duration', String(durationS + 2), '--process-id-of', 'engine', '--build-dir', buildDir], {
      stdio: ['ignore', 'ignore', 'ignore'], detached: true,
      env: { ...process.env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf', OTEL_SERVICE_NAME: 'vllm' },
    });
    await new Promise((r) => setTimeout(r, 1500));
    const lag: number[] = [];
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const sampler = setInterval(() => {
      const clock = probe.state.clock;
      if (!clock.size) return;
      lag.push(Number(epochNs() - clock.toEpochNs(writer.ingestWatermarkNs)) / 1e6);
    }, 5);
    driver = (await child('driver', ['--port', String(port), '--rate', String(rate)])).cp;
    console.log(`live: probe pid ${probe.pid}, daemon OTLP/HTTP :${port}, driver ${rate} spans/s for ${durationS} s (after a 2 s warm-up)${workload ? ', demo workload as load' : ', no other load'}`);
    await new Promise((r) => setTimeout(r, durationS * 1000 + 2000)); // + the driver's warm-up
    const drv = await ask<{ sent: number; errors: number; rttP50: number; rttP99: number }>(driver, 'stop');
    clearInterval(sampler);
    loop.disable();
    await new Promise((r) => setTimeout(r, 2500)); // the bounded wait (1 s) and export
    const backlog = { buffered: daemon.pipeline.bufferedSpans, upstreamQueued: daemon.upstream?.pending ?? 0 };
    const st = await ask<{ lat: number[]; driverSpans: number; enriched: number; partial: number; other: number }>(sink.cp, 'stats');
    const c = daemon.pipeline.counters;
    console.log(`visibility lag (ingest watermark behind the wall clock, ${lag.length} samples): p50 ${pct(lag, 0.5).toFixed(1)} ms, p99 ${pct(lag, 0.99).toFixed(1)} ms, max ${Math.max(...lag).toFixed(1)} ms`);
    console.log(`driver: OTLP/HTTP request -> response p50 ${drv.rttP50.toFixed(1)} ms, p99 ${drv.rttP99.toFixed(1)} ms (queueing included)`);
    console.log(`driver: ${drv.sent} spans sent (${drv.errors} errors); sink: ${st.driverSpans} arrived, ${st.enriched} enriched, ${st.partial} partial (wait expired), ${st.other} demo spans`);
    console.log(`added latency (span end -> upstream): p50 ${pct(st.lat, 0.5).toFixed(1)} ms, p99 ${pct(st.lat, 0.99).toFixed(1)} ms, max ${Math.max(...st.lat).toFixed(1)} ms`);
    console.log(`daemon event loop delay: p50 ${(loop.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms`);
    console.log(`daemon: received ${c.received}, enriched ${c.enriched} (${c.enrichedPartial} partial), unchanged ${Object.values(c.passed).reduce((a, b) => a + b, 0)}; when the driver stopped: ${backlog.buffered} waiting for the watermark, ${backlog.upstreamQueued} queued for upstream; kernel records lost ${probe.state.totalLost}`);
    console.log(`RESULT visibility_lag_p50 ${pct(lag, 0.5).toFixed(1)} ms`);
    console.log(`RESULT visibility_lag_p99 ${pct(lag, 0.99).toFixed(1)} ms`);
    console.log(`RESULT added_latency_p50 ${pct(st.lat, 0.5).toFixed(1)} ms`);
    console.log(`RESULT added_latency_p99 ${pct(st.lat, 0.99).toFixed(1)} ms`);
    console.log(`RESULT enriched_partial ${((100 * st.partial) / Math.max(1, st.driverSpans)).toFixed(2)} %`);
  } finally {
    driver?.kill();
    if (workload?.pid) try { process.kill(-workload.pid, 'SIGKILL'); } catch { /* gone */ }
    await daemon.close();
    await ask(sink.cp, 'stop').catch(() => undefined);
    sink.cp.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.role === 'sink') await sinkRole();
else if (values.role === 'driver') await driverRole();
else await main().then(() => process.exit(0), (e: Error) => { console.error(`bench:live: ${e.message}`); process.exit(1); });

// The OTel bridge under load: OTLP/HTTP in → span index → explain → kspan
// events → OTLP/gRPC out, in one Node process.
//
//   driver (CPU 0) ──HTTP protobuf──► kspan pipeline (CPU 1) ──gRPC──► sink (CPU 0)
//
// The kspan process runs EnrichPipeline + OtlpReceiver + UpstreamExporter (kspan's
// own encoder over grpc-js) on
// a copy of the synthetic store of bench:query (1,000 threads, ~1 M events
// per second of capture time), its watermark past every span (so the
// configured wait never applies: what is measured is the work). Spans: 1-20 ms
// 90% on a thread of the store (linux.tid + process.pid), 10% with no
// correlation attributes; by default on 100 threads (5 processes) at store
// times advancing as a live service's would, with --random on any of the
// 1,000 threads at any time (no locality: the worst case). The sink is kspan's own OTLP receiver in
// another process, counting spans and reading each span's `bench.sent_ns`
// attribute (CLOCK_MONOTONIC, shared by the processes) to time it.
//
// --explain-workers N: explain on N worker threads (0, the default: on the
// receiving thread). The kspan process is pinned to CPU 1 with no workers and
// to both CPUs with workers (--kspan-cpus LIST to choose): its workers then
// share CPU 0 with the driver and the sink.
//
// Phase 1, throughput: every request sent as fast as the pipeline takes
// them (4 in flight); spans/s = spans delivered to the sink / elapsed.
// Every span goes through explain (those with nothing to join in O(1)).
// Phase 1b, pass-through: the same with the kernel side down (spans stored
// and forwarded unchanged), on the same kspan process.
// Phase 2, latency: 2,000 spans/s for a few seconds; per span, sink arrival -
// send time = the latency kspan adds (receive, store, explain, export).
// Phase 3: the same at 10,000 spans/s.
// The enrichment buffer and the upstream queue are set to hold the whole
// flood, so every span is explained and peak memory follows the backlog;
// --default-bounds runs with kspan run's bounds instead: the flood's excess
// goes out unchanged (counted bufferFull) and memory stays bounded.
//
//   npm run bench:pipeline [-- --quick] [-- --spans N] [-- --random] [-- --no-cache] [-- --no-enrich] [-- --explain-workers N] [-- --default-bounds]
//   KSPAN_BENCH_PROF=DIR: a CPU profile of the kspan process into DIR

import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openStoreWriter } from '../src/store/index.js';
import {
  EnrichPipeline, OtlpReceiver, UpstreamExporter, encodeTraceRequest, findAttr,
} from '../src/otel/index.js';
import { ask, startRole } from './lib/roles.js';
import { EPOCH0, SPANS_PER_REQ, SpanMix, THREADS } from './lib/span-mix.js';
import { ensureSynthStore } from './lib/synth-store.js';
import { RssSampler, type RssPeak } from './lib/rss.js';

const SELF = fileURLToPath(import.meta.url);

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' }, spans: { type: 'string' }, role: { type: 'string' }, dir: { type: 'string' }, sink: { type: 'string' }, events: { type: 'string' },
    'no-cache': { type: 'boolean' }, 'no-enrich': { type: 'boolean' }, random: { type: 'boolean' }, 'explain-workers': { type: 'string' }, 'kspan-cpus': { type: 'string' },
    'default-bounds': { type: 'boolean' },
  },
});

const mb = (r: RssPeak): string => `${r.totalMb.toFixed(0)} MB: ${r.anonMb.toFixed(0)} anonymous (main thread's heap ${r.heapMb.toFixed(0)}, external ${r.externalMb.toFixed(0)}), ${r.fileMb.toFixed(0)} file`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}
const monoNs = (): bigint => process.hrtime.bigint();
const send = (m: unknown): void => { process.send!(m); };

// ---------------------------------------------------------------- sink role
async function sinkRole(): Promise<void> {
  let spans = 0;
  const lat: number[] = [];
  const rx = await OtlpReceiver.start({
    httpAddr: null, grpcAddr: '127.0.0.1:0',
    consumer: {
      async consume(req) {
        const now = monoNs();
        for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) {
          spans++;
          const v = findAttr(s.attributes, 'bench.sent_ns');
          if (v && v.type === 'int' && v.value > 0n) lat.push(Number(now - v.value) / 1e6);
        }
        return { rejectedSpans: 0 };
      },
    },
  });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'count') send({ spans });
    if (m.cmd === 'latency') { send({ lat }); lat.length = 0; }
    if (m.cmd === 'stop') void rx.close().then(() => process.exit(0));
  });
  send({ ready: true, port: rx.grpcPort });
}

// ---------------------------------------------------------------- kspan role
async function kspanRole(): Promise<void> {
  const w = openStoreWriter(values.dir!);
  if (!values['no-cache']) w.reader.enableBlockCache(); // as kspan run does
  // the bench's bounds hold the whole flood (every span explained); --default-bounds: kspan run's
  // (50,000 spans / 128 MiB waiting, 100,000 spans / 256 MiB queued upstream), so a flood sheds, counted
  const defaults = !!values['default-bounds'];
  const up = new UpstreamExporter({ url: values.sink!, maxQueueSpans: defaults ? undefined : 1_000_000, maxBatchSpans: 1024, log: (m) => console.error(m) });
  // --no-enrich (or phase 1b): a kernel side that is down, so spans are stored and forwarded unchanged
  let down = !!values['no-enrich'];
  const mark = (): bigint | null => (down ? null : EPOCH0 + 10n ** 15n);
  const pipeline = new EnrichPipeline({
    kernel: { reader: w.reader, watermarkUnixNano: mark, committedUnixNano: mark, storeDir: values.dir! },
    spanSink: w.reader.spans, upstream: up,
    ...(defaults ? {} : { maxBufferedSpans: 1_000_000, maxBufferedBytes: 8 * 1024 ** 3 }), explainWorkers: Number(values['explain-workers'] ?? 0),
    log: (m) => console.error(m),
  });
  const rx = await OtlpReceiver.start({ consumer: pipeline, httpAddr: '127.0.0.1:0', grpcAddr: null });
  const cpu0 = process.cpuUsage();
  const rss = new RssSampler(50);
  // what the process holds under the flood: spans buffered (waiting or at workers) and queued upstream, peaks
  let heldPeak = { buffered: 0, upstream: 0 };
  setInterval(() => {
    heldPeak.buffered = Math.max(heldPeak.buffered, pipeline.bufferedSpans);
    heldPeak.upstream = Math.max(heldPeak.upstream, up.pending);
  }, 50).unref();
  process.on('message', async (m: { cmd: string }) => {
    if (m.cmd === 'stats') {
      const c = process.cpuUsage(cpu0);
      const held = heldPeak;
      heldPeak = { buffered: 0, upstream: 0 };
      send({ counters: pipeline.counters, upstream: up.counters, cpuS: (c.user + c.system) / 1e6, buffered: pipeline.bufferedSpans, pending: up.pending, rss: rss.take(), held, pool: pipeline.pool?.counters ?? null, indexCommits: w.reader.spans.batches });
    }
    if (m.cmd === 'down') { down = true; send({ ok: true }); }
    if (m.cmd === 'stop') {
      await rx.close();
      await pipeline.close();
      await up.close();
      await w.close();
      process.exit(0);
    }
  });
  send({ ready: true, port: rx.httpPort });
}

// ---------------------------------------------------------------- driver
function child(role: string, cpu: number | string, args: string[]): Promise<{ cp: ChildProcess; port: number }> {
  const prof = process.env.KSPAN_BENCH_PROF && role === 'kspan' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KSPAN_BENCH_PROF}`] : [];
  return startRole(SELF, role, args, { cpu, execArgv: prof });
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 });
function postOnce(port: number, body: Buffer): Promise<{ status: number; retryAfterS: number }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path: '/v1/traces', method: 'POST', agent, headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, retryAfterS: Number(res.headers['retry-after'] ?? 1) }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** requests kspan answered "retry later" (503: its upstream behind), retried as OTel SDKs do */
let refused = 0;
/** POST a request; a 503 is retried after its Retry-After, as an OTel SDK's exporter does. */
async function post(port: number, body: Buffer): Promise<number> {
  for (;;) {
    const r = await postOnce(port, body);
    if (r.status !== 503) return r.status;
    refused++;
    await new Promise((res) => setTimeout(res, 1000 * r.retryAfterS));
  }
}

async function waitCount(sink: ChildProcess, n: number, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const { spans } = await ask<{ spans: number }>(sink, 'count');
    if (spans >= n || Date.now() - t0 > timeoutMs) return spans;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function driver(): Promise<void> {
  const quick = !!values.quick;
  const total = values.spans ? Number(values.spans) : quick ? 40_960 : 204_800;
  const events = values.events ? Number(values.events) : quick ? 2_000_000 : 20_000_000;
  const built = await ensureSynthStore(events, THREADS);
  const dir = mkdtempSync(join(tmpdir(), 'kspan-bench-pipeline-'));
  try {
    cpSync(built.dir, dir, { recursive: true });
    console.log(`store: ${built.events.toLocaleString('en-US')} events (copy in ${dir})`);
    const sink = await child('sink', 0, []);
    const workers = Number(values['explain-workers'] ?? 0);
    const kspanCpus = values['kspan-cpus'] ?? (workers > 0 ? '0-1' : '1');
    console.log(`kspan process: ${workers} explain worker(s), CPUs ${kspanCpus}`);
    const ks = await child('kspan', kspanCpus, ['--dir', dir, '--sink', `http://127.0.0.1:${sink.port}`, '--explain-workers', String(workers),
      ...(values['no-cache'] ? ['--no-cache'] : []), ...(values['no-enrich'] ? ['--no-enrich'] : []), ...(values['default-bounds'] ? ['--default-bounds'] : [])]);
    // children never outlive the driver (an error below, Ctrl-C)
    const killAll = (): void => { ks.cp.kill('SIGKILL'); sink.cp.kill('SIGKILL'); };
    process.once('exit', killAll);
    // the span mix (bench/lib/span-mix.ts): 100 threads at advancing store times, or --random
    const mix = new SpanMix(built.minNs, built.maxNs, !!values.random);

    // warm-up (JIT, caches)
    for (let i = 0; i < 8; i++) await post(ks.port, encodeTraceRequest(mix.request(null, i / 8)));
    await waitCount(sink.cp, 8 * SPANS_PER_REQ, 30_000);

    // phase 1: throughput (1b: the same, the kernel side down: pass-through)
    type Stats = { cpuS: number; rss: RssPeak; held: { buffered: number; upstream: number }; counters: { enriched: number; passed: Record<string, number>; explainMs: number; workers: Record<string, number> }; upstream: { exported: number; dropped: { queueFull: number } }; pool: Record<string, number> | null; indexCommits: number };
    const throughput = async (label: string): Promise<{ rate: number; cpu: number; got: number; rss: RssPeak; shed: number }> => {
      const reqs: Buffer[] = [];
      const nReq = total / SPANS_PER_REQ;
      for (let i = 0; i < nReq; i++) reqs.push(encodeTraceRequest(mix.request(null, i / nReq)));
      const before = (await ask<{ spans: number }>(sink.cp, 'count')).spans;
      const refused0 = refused;
      const st0 = await ask<Stats>(ks.cp, 'stats');
      const t0 = performance.now();
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < reqs.length) {
          const code = await post(ks.port, reqs[next++]);
          if (code !== 200) throw new Error(`HTTP ${code}`);
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      const got = (await waitCount(sink.cp, before + total, 120_000)) - before;
      const el = (performance.now() - t0) / 1000;
      const st1 = await ask<Stats>(ks.cp, 'stats');
      const rate = got / el;
      const cpu = st1.cpuS - st0.cpuS;
      console.log(`${label}: ${got.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} spans through in ${el.toFixed(2)} s = ${Math.round(rate).toLocaleString('en-US')} spans/s; ` +
        `kspan used ${cpu.toFixed(2)} CPU-s (${(100 * cpu / el).toFixed(0)}% of one core; ${Math.round(got / cpu).toLocaleString('en-US')} spans per kspan CPU-s; peak RSS ${mb(st1.rss)}; peak spans held ${st1.held.buffered.toLocaleString('en-US')} in the buffer, ${st1.held.upstream.toLocaleString('en-US')} queued upstream; ` +
        `${refused - refused0} requests refused and retried, ${st1.upstream.dropped.queueFull - st0.upstream.dropped.queueFull} dropped upstream); ` +
        `${st1.counters.enriched} enriched in total, passed ${JSON.stringify(st1.counters.passed)}, workers ${JSON.stringify(st1.counters.workers)}${st1.pool ? ` pool ${JSON.stringify(st1.pool)}` : ''}; span index commits so far ${st1.indexCommits}`);
      return { rate, cpu: cpu / el, got: got / cpu, rss: st1.rss, shed: st1.counters.passed.bufferFull - st0.counters.passed.bufferFull };
    };
    const p1 = await throughput('phase 1');

    // phase 2 (3): latency at a steady 2,000 (10,000) spans/s
    const latency = async (perS: number): Promise<number[]> => {
      const secs = quick ? 3 : 8;
      const perReq = SPANS_PER_REQ;
      const intervalMs = (perReq / perS) * 1000;
      await ask(sink.cp, 'latency'); // reset
      const sentBefore = (await ask<{ spans: number }>(sink.cp, 'count')).spans;
      const startAt = performance.now();
      const endAt = startAt + secs * 1000;
      const inflight: Promise<number>[] = [];
      // requests on a schedule (not after each other's replies): a slow reply does not lower the rate
      for (let k = 0; ; k++) {
        const due = startAt + k * intervalMs;
        if (due >= endAt) break;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const progress = (performance.now() - startAt) / (secs * 1000);
        inflight.push(post(ks.port, encodeTraceRequest(mix.request(monoNs(), Math.min(1, progress)))));
      }
      await Promise.all(inflight);
      // every span out (an overloaded kspan drains its backlog before the next phase), then 1.5 s more
      await waitCount(sink.cp, sentBefore + inflight.length * perReq, 120_000);
      await new Promise((r) => setTimeout(r, 1500));
      const { lat } = await ask<{ lat: number[] }>(sink.cp, 'latency');
      console.log(`latency at ${perS.toLocaleString('en-US')} spans/s: ${lat.length.toLocaleString('en-US')} spans: added latency p50 ${pct(lat, 0.5).toFixed(1)} ms, p99 ${pct(lat, 0.99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms`);
      return lat;
    };
    const lat = await latency(2000);
    const lat10k = await latency(10_000);
    const st3 = await ask<Stats>(ks.cp, 'stats');

    // phase 1b: pass-through (the kernel side down) on the same process
    let pass: Awaited<ReturnType<typeof throughput>> | null = null;
    if (!values['no-enrich']) {
      await ask(ks.cp, 'down');
      pass = await throughput('phase 1b (pass-through)');
    }

    ks.cp.send({ cmd: 'stop' });
    sink.cp.send({ cmd: 'stop' });
    await Promise.all([new Promise((r) => ks.cp.once('exit', r)), new Promise((r) => sink.cp.once('exit', r))]);
    const what = values['no-enrich'] ? 'passed through unchanged'
      : values['default-bounds'] ? `kspan run's default bounds: ${p1.shed.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} forwarded unchanged, buffer full`
      : 'every span explained';
    console.log(`RESULT pipeline_spans_per_s ${Math.round(p1.rate)} spans/s (${what}, ${workers} explain worker(s))`);
    console.log(`RESULT pipeline_cpu_share ${p1.cpu.toFixed(2)} cores`);
    console.log(`RESULT pipeline_spans_per_cpu_s ${Math.round(p1.got)} spans per kspan CPU-s`);
    console.log(`RESULT pipeline_rss_peak_mb ${p1.rss.totalMb.toFixed(0)} MB (phase 1)`);
    console.log(`RESULT pipeline_rss_anon_peak_mb ${p1.rss.anonMb.toFixed(0)} MB (phase 1, anonymous: heaps and buffers)`);
    console.log(`RESULT pipeline_rss_file_peak_mb ${p1.rss.fileMb.toFixed(0)} MB (phase 1, file pages: the store's memory map)`);
    if (pass) {
      console.log(`RESULT pipeline_passthrough_spans_per_s ${Math.round(pass.rate)} spans/s`);
      console.log(`RESULT pipeline_passthrough_spans_per_cpu_s ${Math.round(pass.got)} spans per kspan CPU-s`);
    }
    console.log(`RESULT pipeline_added_latency_p50_ms ${pct(lat, 0.5).toFixed(1)} ms (2,000 spans/s)`);
    console.log(`RESULT pipeline_added_latency_p99_ms ${pct(lat, 0.99).toFixed(1)} ms (2,000 spans/s)`);
    console.log(`RESULT pipeline_added_latency_10k_p50_ms ${pct(lat10k, 0.5).toFixed(1)} ms (10,000 spans/s)`);
    console.log(`RESULT pipeline_added_latency_10k_p99_ms ${pct(lat10k, 0.99).toFixed(1)} ms (10,000 spans/s)`);
    console.log(`RESULT pipeline_rss_peak_latency_mb ${st3.rss.totalMb.toFixed(0)} MB (phases 2-3)`);
    console.log(`RESULT pipeline_rss_anon_peak_latency_mb ${st3.rss.anonMb.toFixed(0)} MB (phases 2-3, anonymous)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    agent.destroy();
  }
}

if (values.role === 'sink') await sinkRole();
else if (values.role === 'kspan') await kspanRole();
else await driver();

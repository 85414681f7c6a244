// `kspan demo`: capture + OTLP bridge on a temporary store, around the
// vLLM-shaped example (examples/vllm/serve.py), then the slowest requests and
// the explanation of the worst one. See README.md in this directory.
//
// Wiring (all in-process, no daemon):
//   recordIntoStore(dir)            store writer + capture sink
//   ProbeProcess.start({pids: [workload], follow, cudaLibs: [example libcudart]}, sink)
//   OtlpReceiver.start({consumer: EnrichPipeline(...), 127.0.0.1:0 gRPC + HTTP}): the OTel bridge as
//     `kspan run` has it (span index, watermark, kspan.* span events), forwarding over OTLP/gRPC
//     (UpstreamExporter) to a stand-in backend: another OtlpReceiver that keeps what it gets
//   workload: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = the receiver, started held (--wait-go)
//             until the probe follows its pid
//   then: probe flush/stop, store flush/close, openStoreReader(dir),
//         findSlowSpans + explainTrace(..., { serviceProcess: { vllm: 'VLLM::EngineCor' } })

import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { REPO_ROOT, startCapture, type CaptureSession, type CaptureSink } from '../capture/index.js';
import { explainTrace, type ExplainOptions, type Explanation } from '../correlator/index.js';
import { EnrichPipeline, OtlpReceiver, UpstreamExporter, findAttr, type AnyValue, type Span } from '../otel/index.js';
import { perfettoTraceJson } from '../perfetto/index.js';
import { openStoreReader, recordIntoStore, type RecordIntoStore, type StoredSpan } from '../store/index.js';
import { formatDemoReport, type DemoInfo, type DemoRequest } from './report.js';

export { formatDemoReport, type DemoInfo, type DemoRequest } from './report.js';

/** The engine's comm as the kernel keeps it (15 bytes of "VLLM::EngineCore"). */
export const ENGINE_COMM = 'VLLM::EngineCor';
export const EXAMPLE_DIR = join(REPO_ROOT, 'examples', 'vllm');
const SERVE = join(EXAMPLE_DIR, 'serve.py');

export interface DemoOptions {
  /** seconds of load (default 12) */
  durationS?: number;
  /** keep the store here (default: a new temporary directory) */
  dataDir?: string;
  /** python with the OTel SDK (default: .venv/bin/python of the repo, else python3) */
  python?: string;
  /** OTLP protocol the workload exports with (default grpc) */
  protocol?: 'grpc' | 'http/protobuf';
  /** extra arguments for examples/vllm/serve.py */
  workloadArgs?: string[];
  /** progress lines (stderr by default) */
  progress?: (line: string) => void;
  /** how many slow requests to list (default 5) */
  top?: number;
}

export interface DemoResult {
  /** explanation of the slowest request (explain contract) plus `demo` */
  explanation: Explanation & { demo: DemoInfo };
  report: string;
}

/** A failure the user can act on: message only, exit 1. */
export class DemoError extends Error {}

type Workload = ChildProcessByStdio<Writable, Readable, Readable>;

interface WorkloadEvent {
  event: string;
  [k: string]: unknown;
}

export function defaultPython(): string {
  const venv = join(REPO_ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** Compile the example's native libraries (serve.py --build-only); returns their paths. */
export function buildExample(python = defaultPython(), buildDir = join(EXAMPLE_DIR, 'build')): Record<string, string> {
  const r = spawnSync(python, [SERVE, '--build-only', '--build-dir', buildDir], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new DemoError(`cannot run ${python}: ${r.error.message}`);
  if (r.status !== 0) throw new DemoError(`building examples/vllm failed (${python} serve.py --build-only):\n${(r.stderr || r.stdout).trim()}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  const ev = line ? (JSON.parse(line) as { libs?: Record<string, string> }) : {};
  if (!ev.libs) throw new DemoError(`serve.py --build-only printed no library paths: ${r.stdout}`);
  return ev.libs;
}

/** Python with the OTel SDK, or a clear error. */
function checkPython(python: string): void {
  const r = spawnSync(python, ['-c', 'import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, opentelemetry.exporter.otlp.proto.http.trace_exporter'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new DemoError(`cannot run ${python}: ${r.error.message} (--python PATH picks another interpreter)`);
  if (r.status !== 0) {
    throw new DemoError(`${python} lacks the OpenTelemetry SDK / OTLP exporters (pip install -r requirements.txt into .venv):\n${r.stderr.trim().split('\n').slice(-1)[0]}`);
  }
}

function lines(stream: Readable, onLine: (l: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (l) onLine(l);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
  });
}

/** Perfetto timeline of the worst request (src/perfetto), written next to the store. */
async function writePerfetto(dir: string, traceId: string, explain: ExplainOptions): Promise<{ path: string | null; note: string }> {
  const out = join(dir, `trace-${traceId}.perfetto.json`);
  const reader = openStoreReader(dir);
  try {
    const { json, result } = await perfettoTraceJson(reader, { traceId }, { explain });
    if (!result.found) return { path: null, note: 'the trace was not found for the Perfetto export' };
    writeFileSync(out, json);
    return { path: out, note: `${result.events.toLocaleString('en-US')} trace events, ${result.threads} threads; open it in https://ui.perfetto.dev` };
  } catch (e) {
    return { path: null, note: `Perfetto export failed: ${(e as Error).message}` };
  } finally {
    void reader.root.close();
  }
}

/**
 * Run the demo end to end. Throws DemoError / ProbeError for what the user
 * must fix (not root, no BTF, python without the OTel SDK, ...).
 */
export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const durationS = o.durationS ?? 12;
  const say = o.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const python = o.python ?? defaultPython();
  const protocol = o.protocol ?? 'grpc';
  const t0 = Date.now();
  const el = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

  checkPython(python);
  // examples/vllm/build (git-ignored), or a private temp dir when the checkout is read-only
  let buildDir = join(EXAMPLE_DIR, 'build');
  try {
    accessSync(existsSync(buildDir) ? buildDir : EXAMPLE_DIR, fsConstants.W_OK);
  } catch {
    buildDir = mkdtempSync(join(tmpdir(), 'kspan-vllm-build-'));
  }
  const libs = buildExample(python, buildDir);
  const cudaLib = libs['libcudart.so.12'];

  const dir = o.dataDir ? resolve(o.dataDir) : mkdtempSync(join(tmpdir(), 'kspan-demo-'));
  mkdirSync(dir, { recursive: true });
  let store: RecordIntoStore;
  try {
    store = recordIntoStore(dir);
  } catch (e) {
    throw new DemoError(`cannot open a store in ${dir}: ${(e as Error).message}`);
  }
  // the stand-in backend: keeps the enriched spans kspan forwards, as Jaeger/Tempo would get them
  const backendSpans = new Map<string, Span>();
  let backend: OtlpReceiver | null = null;
  let upstream: UpstreamExporter | null = null;
  let pipeline: EnrichPipeline | null = null;
  let rx: OtlpReceiver | null = null;
  let workload: Workload | null = null;
  let capture: CaptureSession | null = null;
  let storeClosed = false;
  let interrupted: string | null = null;
  let removeSignals = (): void => undefined;
  const cleanup = async (): Promise<void> => {
    removeSignals();
    if (workload && workload.exitCode === null && workload.signalCode === null) {
      try {
        process.kill(-workload.pid!, 'SIGKILL'); // its process group: engine and neighbour too
      } catch { /* gone */ }
    }
    if (capture?.running) await capture.stop().catch(() => undefined);
    await rx?.close().catch(() => undefined);
    await pipeline?.close().catch(() => undefined);
    await upstream?.close(2000).catch(() => undefined);
    await backend?.close().catch(() => undefined);
    if (!storeClosed) {
      storeClosed = true;
      await store.close().catch(() => undefined);
    }
  };

  try {
    backend = await OtlpReceiver.start({
      grpcAddr: '127.0.0.1:0', httpAddr: null,
      consumer: {
        async consume(req) {
          for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) for (const sp of ss.spans) backendSpans.set(sp.traceId + sp.spanId, sp);
          return { rejectedSpans: 0 };
        },
      },
    });
    upstream = new UpstreamExporter({ url: `http://127.0.0.1:${backend.grpcPort}`, log: (m) => say(`kspan demo: ${m}`) });
    const writer = store.writer;
    pipeline = new EnrichPipeline({
      kernel: {
        reader: writer.reader,
        watermarkUnixNano: () => (capture?.running ? writer.toUnixNano(writer.ingestWatermarkNs) : null),
      },
      spanSink: writer.reader.spans, upstream, waitMs: 3000,
      explain: { serviceProcess: { vllm: ENGINE_COMM } },
      log: (m) => say(`kspan demo: ${m}`),
    });
    writer.reader.enableBlockCache();
    const consumer = pipeline;
    rx = await OtlpReceiver.start({ consumer, grpcAddr: '127.0.0.1:0', httpAddr: '127.0.0.1:0', log: (m) => say(`kspan demo: receiver: ${m}`) });
    const endpoint = protocol === 'grpc' ? `http://127.0.0.1:${rx.grpcPort}` : `http://127.0.0.1:${rx.httpPort}/v1/traces`;
    say(`kspan demo: store ${dir}; OTLP receiver on 127.0.0.1:${rx.grpcPort} (gRPC), 127.0.0.1:${rx.httpPort} (HTTP)`);

    // 1. the workload, held before it forks anything
    const w = spawn(python, [SERVE, '--wait-go', '--duration', String(durationS), '--process-id-of', 'engine', '--build-dir', buildDir, ...(o.workloadArgs ?? [])], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // own process group, so a failure can kill all of it
      env: {
        ...process.env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol,
        OTEL_SERVICE_NAME: 'vllm', PYTHONUNBUFFERED: '1',
      },
    });
    workload = w;
    // Ctrl-C / SIGTERM: stop the workload's whole process group (it runs detached), then clean up
    const onSignal = (sig: NodeJS.Signals): void => {
      interrupted = sig;
      try {
        process.kill(-w.pid!, 'SIGKILL');
      } catch { /* gone */ }
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    removeSignals = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    const events: WorkloadEvent[] = [];
    const waiters: { pred: (e: WorkloadEvent) => boolean; res: (e: WorkloadEvent) => void }[] = [];
    const stderrTail: string[] = [];
    const info: Partial<DemoInfo> = {};
    let lastProgress: WorkloadEvent | null = null;
    const onEvent = (e: WorkloadEvent): void => {
      events.push(e);
      switch (e.event) {
        case 'started':
          say(`kspan demo: ${el()}  engine pid ${e.engine_pid} (${ENGINE_COMM}) on CPU ${e.engine_cpu}, tokenizer tid ${e.tokenizer_tid}, ` +
            `API server pid ${e.api_pid}, neighbour pid ${e.neighbour_pid}; exporting OTLP/${e.protocol} to ${e.endpoint}`);
          break;
        case 'neighbour':
          say(`kspan demo: ${el()}  CPU neighbour pid ${e.pid} ${e.state === 'on' ? `starts spinning on CPU ${e.cpu} (the engine's)` : 'stops'}`);
          if (e.state === 'on') info.neighbour_on_unix_nano = String(e.unix_nano);
          else info.neighbour_off_unix_nano = String(e.unix_nano);
          break;
        case 'progress':
          lastProgress = e;
          break;
      }
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].pred(e)) {
          waiters[i].res(e);
          waiters.splice(i, 1);
        }
      }
    };
    lines(w.stdout, (l) => {
      if (!l.startsWith('{')) return say(`workload: ${l}`);
      try {
        onEvent(JSON.parse(l) as WorkloadEvent);
      } catch {
        say(`workload: ${l}`);
      }
    });
    lines(w.stderr, (l) => {
      stderrTail.push(l);
      if (stderrTail.length > 20) stderrTail.shift();
      if (/error|Traceback|failed/i.test(l)) say(`workload: ${l}`);
    });
    const exited = new Promise<number>((res) => {
      w.on('exit', (code, sig) => res(code ?? (sig ? 128 : 1)));
      w.on('error', () => res(127));
    });
    const waitEvent = (pred: (e: WorkloadEvent) => boolean, ms: number, what: string): Promise<WorkloadEvent> => {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise<WorkloadEvent>((res, rej) => {
        const timer = setTimeout(() => rej(new DemoError(`the workload did not report ${what} within ${ms / 1000} s:\n${stderrTail.join('\n')}`)), ms);
        waiters.push({ pred, res: (e) => { clearTimeout(timer); res(e); } });
        void exited.then((code) => {
          clearTimeout(timer);
          rej(new DemoError(`the workload exited (${code}) before reporting ${what}:\n${stderrTail.join('\n')}`));
        });
      });
    };
    const ready = await waitEvent((e) => e.event === 'ready', 60_000, 'ready');
    const wpid = Number(ready.pid);

    // 2. capture: the workload and everything it forks, CUDA uprobes on the example's libcudart
    const sink: CaptureSink = { onBatch: (b, c) => store.sink.onBatch(b, c) };
    capture = await startCapture({
      pids: [wpid], follow: true, cudaLibs: [cudaLib],
      onStderr: (line) => say(line.startsWith('kspan-probe') ? line : `kspan-probe: ${line}`),
    }, sink, { log: (m) => say(`kspan demo: ${m}`), cudaWatch: false });
    const probe = capture.probe;
    say(`kspan demo: ${el()}  capture running (pid ${wpid} and its children; CUDA uprobes on ${cudaLib}); load for ${durationS} s`);
    w.stdin.write('go\n');

    const started = await waitEvent((e) => e.event === 'started', 60_000, 'its processes');
    Object.assign(info, {
      api_pid: Number(started.api_pid), engine_pid: Number(started.engine_pid), engine_tid: Number(started.engine_tid),
      tokenizer_tid: Number(started.tokenizer_tid), neighbour_pid: started.neighbour_pid === null ? null : Number(started.neighbour_pid),
      engine_cpu: Number(started.engine_cpu), engine_comm: ENGINE_COMM, cuda_lib: cudaLib, service: String(started.service),
      protocol, started_unix_nano: String(started.unix_nano),
    });

    // 3. progress while it runs
    const p = probe;
    const tick = setInterval(() => {
      const lp = lastProgress;
      const sp = store.progress();
      const lost = p.state.totalLost;
      say(`kspan demo: ${el()}  requests ${lp ? `${lp.sent} sent / ${lp.done} done` : '-'}  spans received ${consumer.counters.received} (enriched ${consumer.counters.enriched})  ` +
        `kernel records ${p.decoder.records.toLocaleString('en-US')} (${sp.committedEvents.toLocaleString('en-US')} stored)${lost ? `  lost ${lost}` : ''}`);
    }, 2000);
    tick.unref();
    const code = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), (durationS + 90) * 1000).unref())]);
    clearInterval(tick);
    if (interrupted) throw new DemoError(`interrupted (${interrupted}); the store so far is in ${dir}`);
    if (code === -1) throw new DemoError(`the workload did not finish within ${durationS + 90} s`);
    const done = events.find((e) => e.event === 'done');
    if (!done) throw new DemoError(`the workload exited (${code}) without finishing:\n${stderrTail.join('\n')}`);
    const doneCount = Number(done.done);
    // the workload flushed its exporter before exiting; give the last request a moment to land
    for (let i = 0; i < 50 && consumer.counters.received < doneCount; i++) await new Promise((r) => setTimeout(r, 100));
    say(`kspan demo: ${el()}  workload done: ${done.sent} requests, ${doneCount} finished, ${consumer.counters.received} spans received; stopping capture`);

    // 4. stop capture, commit everything, enrich and forward what is still buffered
    await capture.flush();
    await rx.close();
    rx = null;
    await store.writer.flush();
    await pipeline.close();
    await upstream.close(10_000);
    upstream = null;
    const bridge = { ...consumer.counters, passed: Object.values(consumer.counters.passed).reduce((a, b) => a + b, 0) };
    pipeline = null;
    await capture.stop();
    const lost = probe.state.totalLost;
    const records = probe.decoder.records;
    await store.writer.flush();
    const stored = store.progress();
    storeClosed = true;
    await store.close();
    if (bridge.received === 0) throw new DemoError(`no spans reached the receiver (endpoint ${endpoint}):\n${stderrTail.join('\n')}`);

    // 5. the answer
    const perWorkload = new Map<string, DemoRequest>();
    for (const s of (done.spans as { trace_id: string; request_id: string; e2e_s: number; queue_s: number; ttft_s: number; tokens: number }[]) ?? []) {
      perWorkload.set(s.trace_id, { trace_id: s.trace_id, request_id: s.request_id, duration_ns: Math.round(s.e2e_s * 1e9), queue_ns: Math.round(s.queue_s * 1e9), ttft_ns: Math.round(s.ttft_s * 1e9), tokens: s.tokens, start_unix_nano: '' });
    }
    // capture is over and flushed: the session is closed, nothing is still arriving
    const explainOpts: ExplainOptions = { serviceProcess: { [info.service!]: ENGINE_COMM } };
    const reader = openStoreReader(dir);
    let explanation: Explanation;
    let slowest: DemoRequest[];
    let reqSpanId: string | null = null;
    try {
      const top: StoredSpan[] = reader.spans.findSlowSpans({ service: info.service!, limit: o.top ?? 5 });
      if (!top.length) throw new DemoError(`no ${info.service} spans in the store`);
      slowest = top.map((s) => ({
        ...(perWorkload.get(s.traceId) ?? { queue_ns: null, ttft_ns: null, tokens: null }),
        trace_id: s.traceId, request_id: s.requestId ?? '', duration_ns: s.durationNs, start_unix_nano: s.startUnixNano,
      }));
      explanation = explainTrace(reader, top[0].traceId, explainOpts);
      reqSpanId = top[0].spanId;
    } finally {
      void reader.root.close();
    }
    const perfetto = await writePerfetto(dir, slowest[0].trace_id, explainOpts);
    // the worst request's span as the backend got it: kspan's events in it
    const worst = backendSpans.get(slowest[0].trace_id + (reqSpanId ?? ''));
    const val = (v: AnyValue | undefined): string | number | null =>
      v === undefined ? null : v.type === 'string' ? v.value : v.type === 'int' ? Number(v.value) : v.type === 'double' ? v.value : null;
    const spanEvents = (worst?.events ?? []).filter((e) => e.name === 'kspan.cause').map((e) => ({
      kind: String(val(findAttr(e.attributes, 'kspan.cause.kind'))),
      share: Number(val(findAttr(e.attributes, 'kspan.share'))),
      culprit: val(findAttr(e.attributes, 'kspan.culprit.comm')) as string | null,
    }));
    const demo: DemoInfo = {
      ...(info as DemoInfo),
      workload_pid: wpid, duration_s: durationS, elapsed_s: (Date.now() - t0) / 1000,
      requests_sent: Number(done.sent), requests_done: doneCount, spans_received: bridge.received,
      spans_enriched: bridge.enriched, spans_unchanged: bridge.passed, spans_at_backend: backendSpans.size,
      worst_span_kspan_events: spanEvents,
      kernel_records: records, kernel_events_stored: stored.committedEvents, lost_records: lost,
      store: dir, perfetto: perfetto.path, perfetto_note: perfetto.note, slowest,
    };
    const full = { ...explanation, demo };
    writeFileSync(join(dir, 'demo.json'), JSON.stringify(full, null, 1) + '\n');
    return { explanation: full, report: formatDemoReport(full) };
  } finally {
    await cleanup();
  }
}


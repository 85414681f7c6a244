// `kspan run`: the daemon that sits beside an OTel collector on a host.
// It composes the modules, nothing more:
//
//   capture (ProbeProcess) ─► store (StoreWriter) ◄─ span index
//                                  │                    ▲
//   OTLP receivers ─► EnrichPipeline (watermark, explain, enrich) ─► UpstreamExporter
//   MCP over HTTP (read-only handle on the store; tool calls traced upstream)
//
// Capture failing to start (no privileges, no BTF) does not stop the daemon:
// spans keep flowing through unchanged, and the status line says why. A
// probe that dies later (killed, crashed) is restarted with backoff (1 s
// doubling to 60 s; back to 1 s after a minute of running): the capture
// session ends where the data ends, with the reason, so explains over the
// gap say "not covered", and the status line counts the restarts.
//
// A store that cannot commit (disk full) does not stop the daemon either:
// spans are received and forwarded as before (counted as not stored), the
// writer keeps kernel data in memory and retries (store/writer.ts); the log
// says so once per change and the status line while it lasts.

import { startCapture, type CaptureSession, type CaptureSink, type ProbeOptions, type ProbeProcess } from '../capture/index.js';
import type { ExplainOptions } from '../correlator/index.js';
import {
  EnrichPipeline, OtlpReceiver, UpstreamExporter, createOtlpTraceExporter, type EmitMode, type KernelSide, type UpstreamProtocol,
} from '../otel/index.js';
import { localHost, recordIntoStore, usedBytes, type HostIdentity, type RecordIntoStore, type StoreHealth } from '../store/index.js';
import { startMcpHttpServer, type McpHttpHandle, type PeerOptions } from '../mcp/index.js';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

export interface DaemonOptions {
  /** store directory (created if needed) */
  dataDir: string;
  maxAgeNs?: number;
  maxBytes?: number;
  /** OTLP listen addresses, host:port; null disables one */
  otlpGrpc: string | null;
  otlpHttp: string | null;
  maxBodyBytes?: number;
  /** where spans go after enrichment; null: enrich and store only */
  upstream: {
    url: string; protocol?: UpstreamProtocol; headers?: Record<string, string>; compression?: boolean;
    maxQueueSpans?: number; maxQueueBytes?: number; timeoutMs?: number;
  } | null;
  emit?: EmitMode;
  /** longest a span waits for the kernel data of its window, ms */
  waitMs?: number;
  /** spans shorter than this are forwarded unchanged without explaining, ms */
  minSpanMs?: number;
  /** spans buffered for enrichment at most */
  maxBufferedSpans?: number;
  /** estimated memory of the spans waiting for enrichment at most (default 128 MiB) */
  maxBufferedBytes?: number;
  /** explain workers (worker_threads; default 0: explain on the receiving thread) */
  explainWorkers?: number;
  /** capture options; null: no capture (store and forward only; what's in the store is still used) */
  capture: ProbeOptions | null;
  explain?: ExplainOptions;
  /** MCP over Streamable HTTP beside the receivers (src/mcp); null: none */
  mcpHttp?: { addr: string; tokenFile?: string; allowedHosts?: string[]; peers?: PeerOptions | null } | null;
  /** host.name recorded in the store and named by status and MCP (default os.hostname()) */
  hostName?: string;
  /** kernel data held in memory while the store cannot commit, bytes (default 32 MiB); past it, new events are not stored */
  storeRetryBytes?: number;
  /** restart a probe that died: first after minMs, doubling up to maxMs (default 1 s .. 60 s); false: never */
  captureRestart?: { minMs?: number; maxMs?: number } | false;
  /** status line every N ms on the log (0: none) */
  statusIntervalMs?: number;
  log?: (msg: string) => void;
}

export interface DaemonStatus {
  /** the host this daemon speaks for (host.name, boot id) */
  host: HostIdentity;
  /** cgroup v2 paths capture is scoped to (empty: the whole host) */
  cgroups: string[];
  uptimeS: number;
  /** restarting: the probe died and is restarted after a backoff */
  capture: 'running' | 'restarting' | 'stopped' | 'off' | 'failed';
  captureError: string | null;
  /** probe restarts after it died: how many, why it last stopped, when the next try is (null: none pending) */
  captureRestarts: { count: number; lastReason: string | null; nextInMs: number | null };
  /**
   * refused: OTLP requests answered "retry later" (the upstream behind, or the receivers' in-flight memory
   * budget used up); expired: deleted from the span index by retention (--max-age / --max-size)
   */
  spans: { received: number; enriched: number; enrichedPartial: number; passed: number; stored: number; notStored: number; buffered: number; refusedRequests: number; expired: number };
  /** the store: committing or not (disk full), and what was not stored because of it */
  store: { ok: boolean; error: string | null; failingSinceMs: number | null; notStoredEvents: number; notStoredSpans: number; retainedBytes: number; capBytes: number };
  upstream: { exported: number; queued: number; dropped: number; down: boolean } | null;
  /** outOfRange: events not stored because they are past the store's time range (2^53 ns = 104 days of monotonic time from its origin) */
  events: { stored: number; lostInKernel: number; outOfRange: number };
  /** how far the ingest watermark (kernel data readable by explain) lags the wall clock, ms (null: no capture) */
  lagMs: number | null;
  storeBytes: number;
}

export interface Daemon {
  readonly receiver: OtlpReceiver;
  readonly pipeline: EnrichPipeline;
  readonly upstream: UpstreamExporter | null;
  readonly store: RecordIntoStore;
  /** the running probe (a new one after each restart) */
  readonly probe: ProbeProcess | null;
  readonly mcp: McpHttpHandle | null;
  status(): DaemonStatus;
  /** one line for humans */
  statusLine(): string;
  /** stop receiving, enrich and send what is buffered, flush upstream (bounded), stop capture, close the store */
  close(): Promise<void>;
}

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const log = o.log ?? ((m: string) => process.stderr.write(`kspan run: ${m}\n`));
  const t0 = Date.now();
  const host = localHost(o.hostName);
  const cgroups = [...new Set([...(o.capture?.cgroup ? [o.capture.cgroup] : []), ...(o.capture?.cgroups ?? [])])];
  let store: RecordIntoStore;
  let pipelineRef: EnrichPipeline | null = null;
  let lastHealth: StoreHealth | null = null;
  const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
  // one line per change of the store's state (failing, not storing new events, room made, committing again)
  const onStoreState = (h: StoreHealth): void => {
    const prev = lastHealth;
    lastHealth = h;
    if (!h.ok && (!prev || prev.ok)) {
      log(`store cannot commit (${h.error}): spans are received and forwarded as before, counted as not stored; ` +
        `kernel data is kept in memory and committed when it can (retried with backoff)`);
    }
    if (h.discarding && !prev?.discarding) {
      log(`store still cannot commit: new kernel events are not stored (counted) until it can; ` +
        `the capture session ends here, explains over the gap say "not covered"`);
    }
    if (h.emergencyDropped > (prev?.emergencyDropped ?? 0)) {
      log(`store full: dropped the ${h.emergencyDropped - (prev?.emergencyDropped ?? 0)} oldest partition(s) to make room; ` +
        `holding the store under ${mb(h.capBytes)} from now on (85% of where the disk filled)`);
    }
    if (h.ok && prev && !prev.ok) {
      const spans = pipelineRef?.counters.notStoredBy.storeError ?? 0;
      log(`store commits again after ${((Date.now() - (prev.failingSince ?? Date.now())) / 1000).toFixed(1)} s; ` +
        `not stored so far: ${h.notStoredEvents} kernel events, ${spans} spans`);
    }
  };
  try {
    store = recordIntoStore(o.dataDir, { maxAgeNs: o.maxAgeNs, maxBytes: o.maxBytes, host, cgroups, maxRetainedBytes: o.storeRetryBytes, onStoreState });
  } catch (e) {
    throw new Error(`cannot open the store in ${o.dataDir}: ${(e as Error).message}`);
  }
  const writer = store.writer;

  // --- capture, supervised
  let capture: CaptureSession | null = null;
  let captureState: DaemonStatus['capture'] = o.capture ? 'running' : 'off';
  let captureError: string | null = null;
  const restarts = { count: 0, lastReason: null as string | null, nextAt: null as number | null };
  const restartMin = o.captureRestart === false ? 0 : o.captureRestart?.minMs ?? 1000;
  const restartMax = o.captureRestart === false ? 0 : o.captureRestart?.maxMs ?? 60_000;
  let backoffMs = restartMin;
  let restartTimer: NodeJS.Timeout | null = null;
  let closingDaemon = false;
  /** kernel losses of probes that exited (the running probe counts its own) */
  let lostBefore = 0;
  const sink: CaptureSink = { onBatch: (b, c) => store.sink.onBatch(b, c) };
  const startProbe = (): Promise<CaptureSession> => startCapture(
    { ...o.capture!, onStderr: (line) => log(line.startsWith('kspan-probe') ? line : `kspan-probe: ${line}`) }, sink,
    { log, cudaWatch: { pids: o.capture!.pids?.length ? () => new Set(o.capture!.pids) : null } },
  );
  const scheduleRestart = (): void => {
    const wait = backoffMs;
    backoffMs = Math.min(backoffMs * 2, restartMax);
    restarts.nextAt = Date.now() + wait;
    restartTimer = setTimeout(() => {
      restartTimer = null;
      restarts.nextAt = null;
      if (closingDaemon) return;
      startProbe().then((c) => {
        if (closingDaemon) {
          void c.stop().catch(() => undefined);
          return;
        }
        capture = c;
        restarts.count++;
        captureState = 'running';
        captureError = null;
        log(`capture restarted (${restarts.count} restart${restarts.count === 1 ? '' : 's'}; it had stopped: ${restarts.lastReason})`);
        watch(c);
      }, (e: Error) => {
        if (closingDaemon) return;
        captureError = e.message;
        log(`capture restart failed: ${e.message.split('\n')[0]}; next try in ${(backoffMs / 1000).toFixed(0)} s`);
        scheduleRestart();
      });
    }, wait);
  };
  const watch = (c: CaptureSession): void => {
    const startedAt = Date.now();
    const onExit = (why: string): void => {
      if (closingDaemon || capture !== c || captureState !== 'running') return;
      lostBefore += c.probe.state.totalLost;
      void c.stop().catch(() => undefined); // the CUDA watcher
      // the data ends here: the session closes with the reason, the gap until a new probe's HELLO is not covered
      writer.endSession({ atNs: writer.ingestWatermarkNs, reason: why });
      captureError = why;
      restarts.lastReason = why;
      if (!restartMin) {
        captureState = 'stopped';
        log(`capture stopped: ${why}; spans are forwarded unchanged from now on`);
        return;
      }
      // a probe that ran a while starts over at the shortest wait
      if (Date.now() - startedAt >= 60_000) backoffMs = restartMin;
      captureState = 'restarting';
      log(`capture stopped: ${why}; restarting in ${(backoffMs / 1000).toFixed(0)} s (spans are forwarded unchanged meanwhile)`);
      scheduleRestart();
    };
    c.probe.done.then(
      (exit) => onExit(`kspan-probe exited (${exit.signal ?? `code ${exit.code}`})`),
      (e: Error) => onExit(e.message.split('\n')[0]),
    );
  };
  if (o.capture) {
    try {
      capture = await startProbe();
      watch(capture);
    } catch (e) {
      captureState = 'failed';
      captureError = (e as Error).message;
      log(`capture could not start: ${captureError}`);
      log('spans will be stored and forwarded unchanged (see `kspan doctor`)');
    }
  }
  // the pipeline explains recent windows of the same threads again and again
  writer.reader.enableBlockCache();
  const kernel: KernelSide = {
    reader: writer.reader,
    watermarkUnixNano(): bigint | null {
      if (!capture?.running || captureState !== 'running') return null;
      return writer.toUnixNano(writer.ingestWatermarkNs);
    },
    // explain workers read what is committed (not the writer's head); a commit still under way is
    // caught by the worker's own check (its snapshot's committed end) and explained here instead
    committedUnixNano(): bigint | null {
      if (!capture?.running || captureState !== 'running') return null;
      return writer.toUnixNano(writer.committedThroughNs);
    },
    storeDir: o.dataDir,
  };

  // --- upstream, pipeline, receivers
  const upstream = o.upstream ? new UpstreamExporter({ ...o.upstream, log: (m) => log(m) }) : null;
  // spans go to the store's span index unless it cannot commit (then they are counted as not stored)
  const spanSink = { putSpans: (x: Parameters<typeof writer.reader.spans.putSpans>[0]) => writer.reader.spans.putSpans(x), writable: () => writer.health.ok };
  const pipeline = new EnrichPipeline({
    kernel, spanSink, upstream, emit: o.emit, waitMs: o.waitMs, maxBufferedSpans: o.maxBufferedSpans, maxBufferedBytes: o.maxBufferedBytes, minDurationMs: o.minSpanMs,
    explain: o.explain, explainWorkers: o.explainWorkers ?? 0, log: (m) => log(m),
  });
  pipelineRef = pipeline;
  let receiver: OtlpReceiver;
  try {
    receiver = await OtlpReceiver.start({
      consumer: pipeline, grpcAddr: o.otlpGrpc, httpAddr: o.otlpHttp, maxBodyBytes: o.maxBodyBytes, log: (m) => log(m),
    });
  } catch (e) {
    await pipeline.close();
    await upstream?.close(1000);
    closingDaemon = true;
    if (restartTimer) clearTimeout(restartTimer);
    await capture?.stop().catch(() => undefined);
    await store.close();
    throw e;
  }

  let final: DaemonStatus | null = null; // after close(): the store is closed, numbers are frozen
  // --- MCP over HTTP: its own read-only handle on the store; tool calls are
  // traced to the upstream when there is one
  let mcp: McpHttpHandle | null = null;
  let tracing: BasicTracerProvider | null = null;
  if (o.mcpHttp) {
    if (o.upstream) {
      const exporter = createOtlpTraceExporter(o.upstream);
      tracing = new BasicTracerProvider({
        resource: resourceFromAttributes({ 'service.name': 'kspan', 'process.pid': process.pid }),
        spanProcessors: [new BatchSpanProcessor(exporter)],
      });
    }
    try {
      // the daemon's reader: MCP answers include what is ingested but not yet committed (the store's head)
      mcp = await startMcpHttpServer({
        reader: writer.reader, dataDir: o.dataDir, addr: o.mcpHttp.addr, tokenFile: o.mcpHttp.tokenFile, allowedHosts: o.mcpHttp.allowedHosts,
        serviceProcess: o.explain?.serviceProcess, tracer: tracing?.getTracer('kspan-mcp'), diag: (m) => log(`mcp: ${m}`),
        host, peers: o.mcpHttp.peers ?? null,
      });
      log(`MCP (Streamable HTTP) at ${mcp.url}${mcp.auth ? ' (bearer token required)' : ''}`);
    } catch (e) {
      await receiver.close();
      await pipeline.close();
      await upstream?.close(1000);
      await tracing?.shutdown();
      closingDaemon = true;
      if (restartTimer) clearTimeout(restartTimer);
      await capture?.stop().catch(() => undefined);
      await store.close();
      throw new Error(`MCP over HTTP: ${(e as Error).message}`);
    }
  }

  const status = (): DaemonStatus => {
    if (final) return final;
    const c = pipeline.counters;
    const passed = Object.values(c.passed).reduce((a, b) => a + b, 0);
    const w = kernel.watermarkUnixNano();
    const h = writer.health;
    return {
      host, cgroups,
      uptimeS: (Date.now() - t0) / 1000,
      capture: captureState,
      captureError,
      captureRestarts: { count: restarts.count, lastReason: restarts.lastReason, nextInMs: restarts.nextAt === null ? null : Math.max(0, restarts.nextAt - Date.now()) },
      spans: {
        received: c.received, enriched: c.enriched, enrichedPartial: c.enrichedPartial, passed, stored: c.stored, notStored: c.notStored,
        buffered: pipeline.bufferedSpans, refusedRequests: receiver.counters.busy + receiver.counters.consumerBusy,
        expired: writer.counters.expiredSpans,
      },
      store: {
        ok: h.ok, error: h.error, failingSinceMs: h.failingSince, notStoredEvents: h.notStoredEvents, notStoredSpans: c.notStoredBy.storeError,
        retainedBytes: h.retainedBytes, capBytes: h.capBytes,
      },
      upstream: upstream ? {
        exported: upstream.counters.exported, queued: upstream.pending, down: upstream.down,
        dropped: upstream.counters.dropped.queueFull + upstream.counters.dropped.rejected + upstream.counters.dropped.shutdown,
      } : null,
      events: {
        stored: writer.counters.committedEvents, lostInKernel: lostBefore + (capture?.probe.state.totalLost ?? 0),
        outOfRange: writer.counters.outOfRange,
      },
      lagMs: w === null ? null : Math.max(0, Number(BigInt(Date.now()) * 1_000_000n - w) / 1e6),
      storeBytes: usedBytes(writer),
    };
  };

  let prev = { t: Date.now(), spans: 0, events: 0 };
  const statusLine = (): string => {
    const s = status();
    const now = Date.now();
    const dt = Math.max(0.001, (now - prev.t) / 1000);
    const spanRate = (s.spans.received - prev.spans) / dt;
    const evRate = (s.events.stored - prev.events) / dt;
    prev = { t: now, spans: s.spans.received, events: s.events.stored };
    const up = s.upstream
      ? ` | upstream ${s.upstream.down ? 'DOWN' : 'ok'}: ${s.upstream.exported} sent, ${s.upstream.queued} queued, ${s.upstream.dropped} dropped`
      : ' | no upstream';
    const r = s.captureRestarts;
    let cap = s.capture === 'running' ? `lag ${s.lagMs === null ? '?' : Math.round(s.lagMs)} ms` : `capture ${s.capture}`;
    if (s.capture === 'restarting') cap = `capture DOWN (${r.lastReason}), restart in ${Math.ceil((r.nextInMs ?? 0) / 1000)} s`;
    if (r.count) cap += ` | capture restarted ${r.count}x (last: ${r.lastReason})`;
    const partial = s.spans.enrichedPartial ? ` (${s.spans.enrichedPartial} partial)` : '';
    const st = s.store;
    const store = !st.ok
      ? ` | STORE FULL since ${new Date(st.failingSinceMs ?? Date.now()).toISOString().slice(11, 19)} (${st.error}): ${st.notStoredEvents} events, ${st.notStoredSpans} spans not stored, ${mb(st.retainedBytes)} waiting`
      : st.notStoredEvents || st.notStoredSpans ? ` | store ok (was full: ${st.notStoredEvents} events, ${st.notStoredSpans} spans not stored)` : '';
    const range = s.events.outOfRange
      ? ` | ${s.events.outOfRange} events NOT STORED: past the store's 104-day time range (start kspan on a new --data directory)` : '';
    const refused = s.spans.refusedRequests ? `, ${s.spans.refusedRequests} requests refused: retry later` : '';
    return `${s.host.name}: spans ${spanRate.toFixed(0)}/s (${s.spans.received} in, ${s.spans.enriched} enriched${partial}, ${s.spans.passed} unchanged, ` +
      `${s.spans.buffered} waiting${refused}) | events ${evRate.toFixed(0)}/s, ${s.events.lostInKernel} lost | ${cap}${up}${store}${range}`;
  };
  let statusTimer: NodeJS.Timeout | null = null;
  if (o.statusIntervalMs) {
    statusTimer = setInterval(() => log(statusLine()), o.statusIntervalMs);
    statusTimer.unref?.();
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closingDaemon = true;
      if (restartTimer) clearTimeout(restartTimer);
      if (statusTimer) clearInterval(statusTimer);
      await mcp?.close();
      await tracing?.shutdown().catch(() => undefined);
      await receiver.close();
      // kernel data for the last spans: drain the probe, commit, then enrich
      await capture?.flush();
      await writer.flush().catch(() => undefined);
      await pipeline.close();
      if (upstream) await upstream.close(10_000);
      if (capture) {
        captureState = 'stopped';
        await capture.stop().catch((e: Error) => log(`capture: ${e.message}`));
      }
      final = status();
      final.capture = captureState;
      await store.close();
    })();
    return closing;
  };

  return {
    receiver, pipeline, upstream, store, mcp, status, statusLine, close,
    get probe() {
      return capture?.probe ?? null;
    },
  };
}

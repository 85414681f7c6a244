// `kspan run`: the daemon that sits beside an OTel collector on a host.
// It composes the modules, nothing more:
//
//   capture (ProbeProcess) ─► store (StoreWriter) ◄─ span index
//                                  │                    ▲
//   OTLP receivers ─► EnrichPipeline (watermark, explain, enrich) ─► UpstreamExporter
//   MCP over HTTP (read-only handle on the store; tool calls traced upstream)
//
// Capture failing to start (no privileges, no BTF) does not stop the daemon:
// spans keep flowing through unchanged, and the status line says why.

import { startCapture, type CaptureSession, type CaptureSink, type ProbeOptions, type ProbeProcess } from '../capture/index.js';
import type { ExplainOptions } from '../correlator/index.js';
import {
  EnrichPipeline, OtlpReceiver, UpstreamExporter, createOtlpTraceExporter, type EmitMode, type KernelSide, type UpstreamProtocol,
} from '../otel/index.js';
import { localHost, recordIntoStore, usedBytes, type HostIdentity, type RecordIntoStore } from '../store/index.js';
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
  /** capture options; null: no capture (store and forward only; what's in the store is still used) */
  capture: ProbeOptions | null;
  explain?: ExplainOptions;
  /** MCP over Streamable HTTP beside the receivers (src/mcp); null: none */
  mcpHttp?: { addr: string; tokenFile?: string; allowedHosts?: string[]; peers?: PeerOptions | null } | null;
  /** host.name recorded in the store and named by status and MCP (default os.hostname()) */
  hostName?: string;
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
  capture: 'running' | 'stopped' | 'off' | 'failed';
  captureError: string | null;
  spans: { received: number; enriched: number; enrichedPartial: number; passed: number; stored: number; buffered: number };
  upstream: { exported: number; queued: number; dropped: number; down: boolean } | null;
  events: { stored: number; lostInKernel: number };
  /** how far the ingest watermark (kernel data readable by explain) lags the wall clock, ms (null: no capture) */
  lagMs: number | null;
  storeBytes: number;
}

export interface Daemon {
  readonly receiver: OtlpReceiver;
  readonly pipeline: EnrichPipeline;
  readonly upstream: UpstreamExporter | null;
  readonly store: RecordIntoStore;
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
  try {
    store = recordIntoStore(o.dataDir, { maxAgeNs: o.maxAgeNs, maxBytes: o.maxBytes, host, cgroups });
  } catch (e) {
    throw new Error(`cannot open the store in ${o.dataDir}: ${(e as Error).message}`);
  }

  // --- capture
  let capture: CaptureSession | null = null;
  let captureState: DaemonStatus['capture'] = o.capture ? 'running' : 'off';
  let captureError: string | null = null;
  if (o.capture) {
    const sink: CaptureSink = { onBatch: (b, c) => store.sink.onBatch(b, c) };
    try {
      capture = await startCapture({ ...o.capture, onStderr: (line) => log(line.startsWith('kspan-probe') ? line : `kspan-probe: ${line}`) }, sink, {
        log, cudaWatch: { pids: o.capture.pids?.length ? () => new Set(o.capture!.pids) : null },
      });
      const onExit = (why: string): void => {
        if (captureState !== 'running') return;
        captureState = 'stopped';
        captureError = why;
        log(`capture stopped: ${why}; spans are forwarded unchanged from now on`);
      };
      capture.probe.done.then(
        (exit) => onExit(`kspan-probe exited (${exit.signal ?? `code ${exit.code}`})`),
        (e: Error) => onExit(e.message),
      );
    } catch (e) {
      captureState = 'failed';
      captureError = (e as Error).message;
      log(`capture could not start: ${captureError}`);
      log('spans will be stored and forwarded unchanged (see `kspan doctor`)');
    }
  }
  const probe = capture?.probe ?? null;

  const writer = store.writer;
  // the pipeline explains recent windows of the same threads again and again
  writer.reader.enableBlockCache();
  const kernel: KernelSide = {
    reader: writer.reader,
    watermarkUnixNano(): bigint | null {
      if (!capture?.running || captureState !== 'running') return null;
      return capture.toEpochNs(writer.ingestWatermarkNs);
    },
  };

  // --- upstream, pipeline, receivers
  const upstream = o.upstream ? new UpstreamExporter({ ...o.upstream, log: (m) => log(m) }) : null;
  const pipeline = new EnrichPipeline({
    kernel, spanSink: writer.reader.spans, upstream, emit: o.emit, waitMs: o.waitMs, maxBufferedSpans: o.maxBufferedSpans, minDurationMs: o.minSpanMs,
    explain: o.explain, log: (m) => log(m),
  });
  let receiver: OtlpReceiver;
  try {
    receiver = await OtlpReceiver.start({
      consumer: pipeline, grpcAddr: o.otlpGrpc, httpAddr: o.otlpHttp, maxBodyBytes: o.maxBodyBytes, log: (m) => log(m),
    });
  } catch (e) {
    await pipeline.close();
    await upstream?.close(1000);
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
    return {
      host, cgroups,
      uptimeS: (Date.now() - t0) / 1000,
      capture: captureState,
      captureError,
      spans: { received: c.received, enriched: c.enriched, enrichedPartial: c.enrichedPartial, passed, stored: c.stored, buffered: pipeline.bufferedSpans },
      upstream: upstream ? {
        exported: upstream.counters.exported, queued: upstream.pending, down: upstream.down,
        dropped: upstream.counters.dropped.queueFull + upstream.counters.dropped.rejected + upstream.counters.dropped.shutdown,
      } : null,
      events: { stored: writer.counters.committedEvents, lostInKernel: probe?.state.totalLost ?? 0 },
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
    const cap = s.capture === 'running' ? `lag ${s.lagMs === null ? '?' : Math.round(s.lagMs)} ms` : `capture ${s.capture}`;
    const partial = s.spans.enrichedPartial ? ` (${s.spans.enrichedPartial} partial)` : '';
    return `${s.host.name}: spans ${spanRate.toFixed(0)}/s (${s.spans.received} in, ${s.spans.enriched} enriched${partial}, ${s.spans.passed} unchanged, ` +
      `${s.spans.buffered} waiting) | events ${evRate.toFixed(0)}/s, ${s.events.lostInKernel} lost | ${cap}${up}`;
  };
  let statusTimer: NodeJS.Timeout | null = null;
  if (o.statusIntervalMs) {
    statusTimer = setInterval(() => log(statusLine()), o.statusIntervalMs);
    statusTimer.unref?.();
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
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

  return { receiver, pipeline, upstream, store, probe, mcp, status, statusLine, close };
}

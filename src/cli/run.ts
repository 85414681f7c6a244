// `kspan run`: the daemon beside an OTel collector (src/daemon), from its flags.

import { availableParallelism } from 'node:os';
import { startDaemon, type Daemon } from '../daemon/index.js';
import { DEFAULT_OTLP_GRPC_ADDR, DEFAULT_OTLP_HTTP_ADDR, type UpstreamProtocol } from '../otel/index.js';
import type { PeerOptions } from '../mcp/index.js';
import { checkHostName } from '../store/index.js';
import { UsageError, intOpt, nonNegative, parse, parseDuration, parseSize, ringMbOpt, serviceProcessOpt } from './args.js';
import { PEER_ARG_SPECS, peerOptionsFrom } from './mcp.js';

export const RUN_HELP = `usage: kspan
  run [options]                       the daemon beside an OTel collector: capture + store + OTLP in,
                                      kernel causes into the spans, OTLP out
      --data DIR          the store (default /var/lib/kspan)
      --otlp-grpc ADDR    OTLP/gRPC listen address (default 127.0.0.1:4317; "off" disables)
      --otlp-http ADDR    OTLP/HTTP listen address (default 127.0.0.1:4318; "off" disables)
      --upstream URL      forward spans there (OTLP/gRPC, or OTLP/HTTP when the path ends in /v1/traces);
                          none: enrich and store only
      --upstream-protocol grpc|http/protobuf    --upstream-gzip    --upstream-header K=V (repeatable)
      --queue-spans N     spans held while upstream is down (default 100000; past it the oldest are dropped;
                          from 90% of it, new OTLP requests are refused as retryable, 503 / RESOURCE_EXHAUSTED)
      --queue-bytes SIZE  bytes held while upstream is down (default 256M; the same rules)
      --emit MODE         span-events (default: the span itself gets kspan.* events and attributes) or
                          child-spans (a \`kspan\` child span; for spans already exported elsewhere)
      --wait MS           longest a span waits for the kernel data of its window (default 1000)
      --buffer-spans N    spans waiting for enrichment at most (default 50000; past it: forwarded unchanged)
      --buffer-bytes SIZE their estimated memory at most (default 128M; past it: forwarded unchanged)
      --min-span-ms MS    forward spans shorter than MS unchanged, unexplained (default 0: explain all)
      --explain-workers N explain on N worker threads (default: cores - 1, between 1 and 4; 0: on the
                          thread that receives and exports)
      --service-process SERVICE=COMM   join spans of SERVICE to the process named COMM (repeatable)
      --thread-id-is-os-tid            spans' thread.id is the Linux tid (default: only linux.tid is)
      --no-capture        no kernel capture (store and forward; what the store has is still used)
      --pid P, --cgroup PATH, --follow, --cuda-lib PATH, --groups LIST, --ring-mb N, --max-age D, --max-size S
                          as for record (a larger --ring-mb makes kernel record losses rarer)
      --host-name NAME    host.name this daemon records, reports and stamps on spans (kspan.host.name);
                          default os.hostname(). For several kspans sharing a kernel and a hostname.
      --mcp-http ADDR     also serve the MCP tools over Streamable HTTP at ADDR/mcp (loopback unless a token
                          is set: KSPAN_MCP_TOKEN or --mcp-token-file FILE; calls traced to --upstream)
      --mcp-allowed-host NAME   extra Host header accepted by --mcp-http (e.g. a Service's DNS name; repeatable)
      --peers URL,... | --peers-file F | --peers-dns NAME:PORT   with --mcp-http: other kspans that
                          explain_request / find_slow_requests fan out to (see \`kspan mcp --help\`)
      --status-interval S status line every S seconds on stderr (default 10; 0: none)
      --store-retry-buffer SIZE  kernel data held in memory while the store cannot commit (disk full;
                          default 32M); past it new events are not stored (counted) until it can
      --duration S        stop after S seconds (default: until SIGINT/SIGTERM)`;

export async function cmdRun(argv: string[]): Promise<number> {
  const { values: o } = parse(argv, {
    data: { type: 'string' },
    'otlp-grpc': { type: 'string' },
    'otlp-http': { type: 'string' },
    upstream: { type: 'string' },
    'upstream-protocol': { type: 'string' },
    'upstream-gzip': { type: 'boolean' },
    'upstream-header': { type: 'string', multiple: true },
    'queue-spans': { type: 'string' },
    'queue-bytes': { type: 'string' },
    emit: { type: 'string' },
    wait: { type: 'string' },
    'buffer-spans': { type: 'string' },
    'buffer-bytes': { type: 'string' },
    'min-span-ms': { type: 'string' },
    'explain-workers': { type: 'string' },
    'service-process': { type: 'string', multiple: true },
    'thread-id-is-os-tid': { type: 'boolean' },
    'no-capture': { type: 'boolean' },
    pid: { type: 'string', short: 'p', multiple: true },
    follow: { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    groups: { type: 'string' },
    'ring-mb': { type: 'string' },
    'max-age': { type: 'string' },
    'max-size': { type: 'string' },
    'status-interval': { type: 'string' },
    'store-retry-buffer': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'mcp-http': { type: 'string' },
    'mcp-token-file': { type: 'string' },
    'mcp-allowed-host': { type: 'string', multiple: true },
    cgroup: { type: 'string', multiple: true },
    'host-name': { type: 'string' },
    ...PEER_ARG_SPECS,
  });
  if (o.help) {
    process.stdout.write(RUN_HELP + '\n');
    return 0;
  }
  if ((o['mcp-token-file'] || o['mcp-allowed-host']) && !o['mcp-http']) throw new UsageError('--mcp-token-file and --mcp-allowed-host apply to --mcp-http');
  let peers: PeerOptions | null;
  try {
    peers = peerOptionsFrom(o);
    if (o['host-name'] !== undefined) checkHostName(o['host-name']);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (peers && !o['mcp-http']) throw new UsageError('--peers, --peers-file and --peers-dns apply to --mcp-http (the fan-out is an MCP feature)');
  if (o.cgroup?.length && o['no-capture']) throw new UsageError('--cgroup scopes capture: it does not go with --no-capture');
  const addr = (v: string | undefined, def: string): string | null => (v === 'off' ? null : v ?? def);
  const emit = o.emit ?? 'span-events';
  if (emit !== 'span-events' && emit !== 'child-spans') throw new UsageError(`--emit wants span-events or child-spans, got "${emit}"`);
  const protocol = o['upstream-protocol'];
  if (protocol !== undefined && protocol !== 'grpc' && protocol !== 'http/protobuf') {
    throw new UsageError(`--upstream-protocol wants grpc or http/protobuf, got "${protocol}"`);
  }
  if ((protocol || o['upstream-gzip'] || o['upstream-header'] || o['queue-spans'] || o['queue-bytes']) && !o.upstream) {
    throw new UsageError('--upstream-protocol, --upstream-gzip, --upstream-header, --queue-spans and --queue-bytes apply to --upstream');
  }
  if (o.upstream) {
    try {
      const u = new URL(/^[a-z]+:\/\//i.test(o.upstream) ? o.upstream : `http://${o.upstream}`);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw new UsageError(`--upstream wants a URL like http://127.0.0.1:4317 or https://collector:4318/v1/traces, got "${o.upstream}"`);
    }
  }
  const headers: Record<string, string> = {};
  for (const h of o['upstream-header'] ?? []) {
    const i = h.indexOf('=');
    if (i <= 0) throw new UsageError(`--upstream-header wants KEY=VALUE, got "${h}"`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1);
  }
  const serviceProcess = serviceProcessOpt(o['service-process']);
  const durationS = o.duration !== undefined ? Number(o.duration) : undefined;
  if (durationS !== undefined && !(durationS > 0)) throw new UsageError(`--duration wants seconds > 0, got "${o.duration}"`);
  const statusS = o['status-interval'] !== undefined ? Number(o['status-interval']) : 10;
  if (!(statusS >= 0)) throw new UsageError(`--status-interval wants seconds >= 0, got "${o['status-interval']}"`);
  const dataDir = o.data ?? '/var/lib/kspan';
  const pids = (o.pid ?? []).map((p) => intOpt(p, 'pid', 1)!);
  const log = (m: string): void => { process.stderr.write(`kspan run: ${m}\n`); };

  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      dataDir,
      maxAgeNs: o['max-age'] !== undefined ? parseDuration(o['max-age'], 'max-age') : undefined,
      maxBytes: o['max-size'] !== undefined ? parseSize(o['max-size'], 'max-size') : undefined,
      storeRetryBytes: o['store-retry-buffer'] !== undefined ? parseSize(o['store-retry-buffer'], 'store-retry-buffer') : undefined,
      otlpGrpc: addr(o['otlp-grpc'], DEFAULT_OTLP_GRPC_ADDR),
      otlpHttp: addr(o['otlp-http'], DEFAULT_OTLP_HTTP_ADDR),
      upstream: o.upstream ? {
        url: o.upstream, protocol: protocol as UpstreamProtocol | undefined, compression: o['upstream-gzip'],
        headers: Object.keys(headers).length ? headers : undefined, maxQueueSpans: intOpt(o['queue-spans'], 'queue-spans', 1),
        maxQueueBytes: o['queue-bytes'] !== undefined ? parseSize(o['queue-bytes'], 'queue-bytes') : undefined,
      } : null,
      emit,
      waitMs: intOpt(o.wait, 'wait'),
      maxBufferedSpans: intOpt(o['buffer-spans'], 'buffer-spans', 1),
      maxBufferedBytes: o['buffer-bytes'] !== undefined ? parseSize(o['buffer-bytes'], 'buffer-bytes') : undefined,
      minSpanMs: o['min-span-ms'] !== undefined ? nonNegative(o['min-span-ms'], 'min-span-ms') : undefined,
      explainWorkers: intOpt(o['explain-workers'], 'explain-workers', 0) ?? Math.min(4, Math.max(1, availableParallelism() - 1)),
      capture: o['no-capture'] ? null : {
        pids, follow: o.follow ?? false, cudaLibs: o['cuda-lib'],
        groups: o.groups?.split(',').map((g) => g.trim()).filter(Boolean),
        cgroups: o.cgroup, ringMb: ringMbOpt(o['ring-mb']),
      },
      explain: { serviceProcess, threadIdIsOsTid: o['thread-id-is-os-tid'] },
      mcpHttp: o['mcp-http'] ? { addr: o['mcp-http'], tokenFile: o['mcp-token-file'], allowedHosts: o['mcp-allowed-host'], peers } : null,
      hostName: o['host-name'],
      statusIntervalMs: statusS * 1000,
      log,
    });
  } catch (e) {
    // an option parsed on the way (sizes, counts, durations): a usage error, exit 2
    if (e instanceof UsageError) throw e;
    process.stderr.write(`kspan run: ${(e as Error).message}\n`);
    return 1;
  }
  const r = daemon.receiver;
  const hostOf = (a: string): string => a.slice(0, a.lastIndexOf(':'));
  const listening = [
    r.grpcPort > 0 ? `gRPC ${hostOf(o['otlp-grpc'] ?? DEFAULT_OTLP_GRPC_ADDR)}:${r.grpcPort}` : '',
    r.httpPort > 0 ? `HTTP ${hostOf(o['otlp-http'] ?? DEFAULT_OTLP_HTTP_ADDR)}:${r.httpPort}` : '',
  ].filter(Boolean).join(', ');
  const st0 = daemon.status();
  log(`host ${st0.host.name} (boot ${st0.host.bootId ?? '?'})${st0.cgroups.length ? `, capture scoped to ${st0.cgroups.join(', ')}` : ''}` +
    `${daemon.mcp?.fanout ? `; fan-out to peers (${(await daemon.mcp.fanout.peers.list()).urls.length} now)` : ''}`);
  log(`store ${dataDir}; OTLP ${listening || 'off'}` +
    `; ${o.upstream ? `forwarding to ${o.upstream} (${daemon.upstream!.protocol}, ${emit})` : 'no upstream: enrich and store only'}` +
    `; capture ${daemon.status().capture}`);
  // ready line: tests and scripts wait for it (ports when 0 was asked for)
  process.stdout.write(JSON.stringify({
    ready: true, otlp_grpc_port: r.grpcPort, otlp_http_port: r.httpPort, mcp_url: daemon.mcp?.url ?? null, data: dataDir,
    host: st0.host.name, boot_id: st0.host.bootId, cgroups: st0.cgroups,
  }) + '\n');

  const reason = await new Promise<string>((resolve) => {
    const onSig = (sig: NodeJS.Signals): void => resolve(sig);
    process.once('SIGINT', onSig);
    process.once('SIGTERM', onSig);
    if (durationS !== undefined) setTimeout(() => resolve('duration'), durationS * 1000).unref();
  });
  log(`stopping (${reason}): flushing buffered spans`);
  // a second signal while flushing: leave at once
  const force = (): void => { log('second signal: exiting without flushing'); process.exit(130); };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await daemon.close();
  const s = daemon.status();
  const c = daemon.pipeline.counters;
  log(`done: ${s.spans.received} spans received, ${s.spans.enriched} enriched, ${s.spans.passed} forwarded unchanged ` +
    `(${Object.entries(c.passed).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})` +
    (s.upstream ? `; upstream: ${s.upstream.exported} exported, ${s.upstream.dropped} dropped` : '') + `; ${s.events.stored} kernel events stored` +
    (s.store.notStoredEvents || s.store.notStoredSpans ? `; not stored (store full): ${s.store.notStoredEvents} events, ${s.store.notStoredSpans} spans` : '') +
    (s.captureRestarts.count ? `; capture restarted ${s.captureRestarts.count}x` : ''));
  process.off('SIGINT', force);
  process.off('SIGTERM', force);
  return 0;
}

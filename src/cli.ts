// The `kspan` command. bin/kspan.js imports dist/cli.js and calls main();
// `tsx src/cli.ts ...` runs it from source. Commands live in COMMANDS; each
// returns its exit code (2 = usage error).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  Kind, ProbeError, TASK, TaskEvent, REPO_ROOT, RecordView, SummarySink, TaskNames, formatDoctor,
  kindFromName, recordToJson, recordToText, replayFile, runDoctor, startCapture, type CaptureSession, type CaptureSink, type ClockHistory,
  type ProbeOptions, type ProbeProcess, type RecordBatch,
} from './capture/index.js';
import { formatStats, openStoreReader, recordIntoStore, storeStats, type RecordIntoStore } from './store/index.js';
import { explainTrace, explainWindow, formatExplanation, parseServiceProcess } from './correlator/index.js';
import { cmdDemo } from './demo/index.js';
import { startDaemon, type Daemon } from './daemon/index.js';
import { DEFAULT_OTLP_GRPC_ADDR, DEFAULT_OTLP_HTTP_ADDR, type UpstreamProtocol } from './otel/index.js';
import { cmdExport } from './perfetto/command.js';
import { cmdMcp } from './mcp/command.js';

class UsageError extends Error {}

const HELP = `kspan — kernel causes inside OpenTelemetry spans

usage: kspan <command> [options]

commands:
  record [options] [-- CMD ARGS...]   capture kernel events (host-wide, or of CMD and its children)
      --data DIR          store the events in the kspan store in DIR (LMDB; created if needed)
      --max-age D         with --data: drop data older than D (e.g. 90m, 24h, 7d)
      --max-size S        with --data: keep the store under S (e.g. 500M, 10G)
      --out FILE          write the raw record stream to FILE (replay with \`kspan dump\`)
      --duration S        stop after S seconds (default: until Ctrl-C, or until CMD exits)
      --pid P             capture only process P (repeatable)
      --follow            also capture processes they fork (default on with -- CMD; --no-follow)
      --cuda-lib PATH     attach CUDA uprobes to this libcudart/libcuda from the start (repeatable);
                          libraries that captured processes load later are attached when seen in
                          /proc/PID/maps, missing the calls made before that
      --offcpu-min-us N   shortest off-CPU interval recorded (default 50)
      --futex-min-us N    shortest futex wait recorded (default 50)
      --stacks            take user+kernel stacks of long blocks
      --groups LIST       probe groups (default sched,task,futex,block,tcp,cuda)
      --ring-mb N         scheduler ring size in MiB (default 16)
      --quiet             no progress line
  run [options]                       the daemon beside an OTel collector: capture + store + OTLP in,
                                      kernel causes into the spans, OTLP out
      --data DIR          the store (default /var/lib/kspan)
      --otlp-grpc ADDR    OTLP/gRPC listen address (default 127.0.0.1:4317; "off" disables)
      --otlp-http ADDR    OTLP/HTTP listen address (default 127.0.0.1:4318; "off" disables)
      --upstream URL      forward spans there (OTLP/gRPC, or OTLP/HTTP when the path ends in /v1/traces);
                          none: enrich and store only
      --upstream-protocol grpc|http/protobuf    --upstream-gzip    --upstream-header K=V (repeatable)
      --queue-spans N     spans held while upstream is down (default 100000; past it the oldest are dropped)
      --queue-bytes SIZE  bytes held while upstream is down (default 256M; past it the oldest are dropped)
      --emit MODE         span-events (default: the span itself gets kspan.* events and attributes) or
                          child-spans (a \`kspan\` child span; for spans already exported elsewhere)
      --wait MS           longest a span waits for the kernel data of its window (default 1000)
      --buffer-spans N    spans waiting for enrichment at most (default 50000; past it: forwarded unchanged)
      --min-span-ms MS    forward spans shorter than MS unchanged, unexplained (default 0: explain all)
      --service-process SERVICE=COMM   join spans of SERVICE to the process named COMM (repeatable)
      --thread-id-is-os-tid            spans' thread.id is the Linux tid (default: only linux.tid is)
      --no-capture        no kernel capture (store and forward; what the store has is still used)
      --pid P, --follow, --cuda-lib PATH, --groups LIST, --max-age D, --max-size S   as for record
      --mcp-http ADDR     also serve the MCP tools over Streamable HTTP at ADDR/mcp (loopback unless a token
                          is set: KSPAN_MCP_TOKEN or --mcp-token-file FILE; calls traced to --upstream)
      --status-interval S status line every S seconds on stderr (default 10; 0: none)
      --store-retry-buffer SIZE  kernel data held in memory while the store cannot commit (disk full;
                          default 32M); past it new events are not stored (counted) until it can
      --duration S        stop after S seconds (default: until SIGINT/SIGTERM)
  stats --data DIR [--json]                   what a store holds: time range, events by kind, threads, drops, size
  explain TRACE_ID --data DIR [--json]        why the trace's spans were slow: time breakdown, causes, chains
      [--service-process SERVICE=COMM]... [--thread-id-is-os-tid]   join options, as for run
  explain --tid T|--pid P --from A --to B --data DIR [--json]
                                              the same for a thread or process and a window (A, B: epoch ns
                                              or RFC 3339 times); exits 3 when the trace is not stored
  dump FILE [--json] [--kind K,...] [--tid T]   print a recorded file, one record per line
  doctor [--json] [--cuda-lib PATH]...        check that capture can run here, and why not
  mcp --data DIR [--http ADDR]                MCP server for AI agents: read-only tools (explain_request, find_slow_requests,
                                              distributions, off-CPU, who_woke, futex contention, status) over stdio,
                                              or Streamable HTTP at ADDR/mcp (token from KSPAN_MCP_TOKEN or --token-file,
                                              required off loopback); \`kspan mcp --help\`, src/mcp/README.md
  demo [--duration S] [--json] [--data DIR]   capture + OTLP around a vLLM-shaped example (examples/vllm) on a
                                              temporary store, then the slowest requests and why (needs root)
  export perfetto --data DIR (--trace-id ID | --pid P|--tid T --from A --to B) [--out FILE] [--max-events N]
                                              Chrome trace-event JSON for ui.perfetto.dev: threads as tracks,
                                              on/off-CPU slices, wakeup flows, CUDA/futex/I/O calls, the spans
                                              (stdout unless --out; exits 3 when the trace is not stored)
  help | --help | --version

Capture needs root (or CAP_BPF + CAP_PERFMON) for build/kspan-probe; see \`kspan doctor\`.`;

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  record: cmdRecord,
  run: cmdRun,
  dump: cmdDump,
  stats: cmdStats,
  explain: cmdExplain,
  doctor: cmdDoctor,
  demo: cmdDemo,
  export: cmdExport,
  mcp: cmdMcp,
  help: async () => {
    process.stdout.write(HELP + '\n');
    return 0;
  },
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h') {
    (cmd === undefined ? process.stderr : process.stdout).write(HELP + '\n');
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`kspan ${version()}\n`);
    return 0;
  }
  const run = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!run) {
    process.stderr.write(`kspan: unknown command "${cmd}" (try \`kspan help\`)\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`kspan ${cmd}: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`kspan ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, positionals = false) {
  return parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: positionals, strict: true });
}

function intOpt(v: string | undefined, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} wants an integer >= ${min}, got "${v}"`);
  return n;
}

// ---------------------------------------------------------------------------
// run

function nonNegative(v: string, name: string): number {
  const n = Number(v);
  if (!(n >= 0)) throw new UsageError(`--${name} wants a number >= 0, got "${v}"`);
  return n;
}

/** --service-process SERVICE=COMM (repeatable) -> the correlator's serviceProcess map */
function serviceProcessOpt(list: string[] | undefined): Record<string, string> {
  try {
    return parseServiceProcess(list);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

async function cmdRun(argv: string[]): Promise<number> {
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
    'min-span-ms': { type: 'string' },
    'service-process': { type: 'string', multiple: true },
    'thread-id-is-os-tid': { type: 'boolean' },
    'no-capture': { type: 'boolean' },
    pid: { type: 'string', short: 'p', multiple: true },
    follow: { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    groups: { type: 'string' },
    'max-age': { type: 'string' },
    'max-size': { type: 'string' },
    'status-interval': { type: 'string' },
    'store-retry-buffer': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    'mcp-http': { type: 'string' },
    'mcp-token-file': { type: 'string' },
  });
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (o['mcp-token-file'] && !o['mcp-http']) throw new UsageError('--mcp-token-file applies to --mcp-http');
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
      minSpanMs: o['min-span-ms'] !== undefined ? nonNegative(o['min-span-ms'], 'min-span-ms') : undefined,
      capture: o['no-capture'] ? null : {
        pids, follow: o.follow ?? false, cudaLibs: o['cuda-lib'],
        groups: o.groups?.split(',').map((g) => g.trim()).filter(Boolean),
      },
      explain: { serviceProcess, threadIdIsOsTid: o['thread-id-is-os-tid'] },
      mcpHttp: o['mcp-http'] ? { addr: o['mcp-http'], tokenFile: o['mcp-token-file'] } : null,
      statusIntervalMs: statusS * 1000,
      log,
    });
  } catch (e) {
    process.stderr.write(`kspan run: ${(e as Error).message}\n`);
    return 1;
  }
  const r = daemon.receiver;
  const hostOf = (a: string): string => a.slice(0, a.lastIndexOf(':'));
  const listening = [
    r.grpcPort > 0 ? `gRPC ${hostOf(o['otlp-grpc'] ?? DEFAULT_OTLP_GRPC_ADDR)}:${r.grpcPort}` : '',
    r.httpPort > 0 ? `HTTP ${hostOf(o['otlp-http'] ?? DEFAULT_OTLP_HTTP_ADDR)}:${r.httpPort}` : '',
  ].filter(Boolean).join(', ');
  log(`store ${dataDir}; OTLP ${listening || 'off'}` +
    `; ${o.upstream ? `forwarding to ${o.upstream} (${daemon.upstream!.protocol}, ${emit})` : 'no upstream: enrich and store only'}` +
    `; capture ${daemon.status().capture}`);
  // ready line: tests and scripts wait for it (ports when 0 was asked for)
  process.stdout.write(JSON.stringify({
    ready: true, otlp_grpc_port: r.grpcPort, otlp_http_port: r.httpPort, mcp_url: daemon.mcp?.url ?? null, data: dataDir,
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

// ---------------------------------------------------------------------------
// record

async function cmdRecord(argv: string[]): Promise<number> {
  // `--` separates kspan's options from the command to run
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const cmd = dd >= 0 ? argv.slice(dd + 1) : [];
  const { values: o, positionals } = parse(own, {
    out: { type: 'string', short: 'o' },
    data: { type: 'string' },
    'max-age': { type: 'string' },
    'max-size': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    pid: { type: 'string', short: 'p', multiple: true },
    follow: { type: 'boolean' },
    'no-follow': { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    'offcpu-min-us': { type: 'string' },
    'futex-min-us': { type: 'string' },
    stacks: { type: 'boolean' },
    groups: { type: 'string' },
    'ring-mb': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  }, true);
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (put the command to run after --)`);
  if (dd >= 0 && cmd.length === 0) throw new UsageError('nothing after --');
  const durationS = o.duration !== undefined ? Number(o.duration) : undefined;
  if (durationS !== undefined && !(durationS > 0)) throw new UsageError(`--duration wants seconds > 0, got "${o.duration}"`);
  const pids = (o.pid ?? []).map((p) => intOpt(p, 'pid', 1)!);
  const follow = o['no-follow'] ? false : o.follow ?? cmd.length > 0;

  const probeOpts: ProbeOptions = {
    pids,
    follow,
    cudaLibs: o['cuda-lib'],
    offcpuMinUs: intOpt(o['offcpu-min-us'], 'offcpu-min-us'),
    futexMinUs: intOpt(o['futex-min-us'], 'futex-min-us'),
    stacks: o.stacks,
    groups: o.groups?.split(',').map((g) => g.trim()).filter(Boolean),
    ringMb: intOpt(o['ring-mb'], 'ring-mb', 1),
    teePath: o.out,
  };
  if ((o['max-age'] || o['max-size']) && !o.data) throw new UsageError('--max-age and --max-size apply to --data');
  const maxAgeNs = o['max-age'] !== undefined ? parseDuration(o['max-age'], 'max-age') : undefined;
  const maxBytes = o['max-size'] !== undefined ? parseSize(o['max-size'], 'max-size') : undefined;
  let store: RecordIntoStore | null = null;
  // the store cannot commit (disk full): capture stops with this reason
  let storeFull: ((why: string) => void) | null = null;
  let storeFullWhy: string | null = null;
  const storeFailed = new Promise<string>((res) => {
    storeFull = (why) => {
      storeFullWhy ??= why;
      res(why);
    };
  });
  if (o.data) {
    try {
      store = recordIntoStore(o.data, {
        maxAgeNs, maxBytes,
        onStoreState: (h) => {
          if (!h.ok) storeFull?.(h.error ?? 'commit failed');
        },
      });
    } catch (e) {
      throw new Error(`cannot open the store in ${o.data}: ${(e as Error).message}`);
    }
  }
  const summary = new SummarySink();
  // only a filtered capture needs to know its processes (CUDA library scan)
  const tracker = cmd.length || pids.length ? new PidTracker() : null;
  const storeSink = store?.sink ?? null;
  const sink: CaptureSink = {
    onBatch(b, c) {
      tracker?.onBatch(b);
      summary.onBatch(b, c);
      // the store's promise (when it is behind) is the backpressure
      return storeSink?.onBatch(b, c);
    },
  };
  const progress = new Progress(!o.quiet, store);
  probeOpts.onStderr = (line) => progress.message(line.startsWith('kspan-probe') ? line : `kspan-probe: ${line}`);

  let child: ChildProcess | null = null;
  let childExit: Promise<number> | null = null;
  let firstCommand: string | undefined;
  const t0 = process.hrtime.bigint();

  if (cmd.length) {
    // Start CMD stopped (the shell stops itself, then execs CMD in place, so
    // the pid is the same) so it is in the filter before its first instruction.
    child = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$@"', 'sh', ...cmd], { stdio: 'inherit' });
    const c = child;
    childExit = new Promise<number>((res) => {
      c.on('exit', (code, sig) => res(code ?? 128 + (sig ? osConstants.signals[sig] ?? 0 : 0)));
      c.on('error', (e) => {
        progress.message(`kspan record: cannot run ${cmd[0]}: ${e.message}`);
        res(127);
      });
    });
    const pid = c.pid;
    if (pid === undefined || !(await waitStopped(pid, 5000))) {
      c.kill('SIGKILL');
      await store?.close();
      throw new Error(`could not start ${cmd[0]} stopped`);
    }
    probeOpts.pids = [pid, ...pids];
    // the filter holds CMD (stopped) before its first instruction: `pid add` is answered after attaching
    firstCommand = `pid add ${pid}`;
  }
  for (const p of probeOpts.pids ?? []) tracker?.pids.add(p);
  let capture: CaptureSession;
  try {
    capture = await startCapture(probeOpts, sink, {
      log: (m) => progress.message(`kspan record: ${m}`), firstCommand,
      // CUDA libraries loaded after the probe started (CMD has not even exec'd yet)
      cudaWatch: { pids: tracker ? () => tracker.pids : null, intervalMs: tracker ? 500 : 5000, ...(child ? { fastMs: 10, fastForMs: 3000 } : {}) },
    });
  } catch (e) {
    if (child) {
      child.kill('SIGKILL');
      await childExit;
    }
    progress.done();
    await store?.close();
    return reportProbeError(e);
  }
  if (child) process.kill(child.pid!, 'SIGCONT');
  const probe = capture.probe;

  progress.start(probe);
  const stopReason = await waitForStop(probe, durationS, child, childExit, storeFailed);
  if (stopReason === 'store full' && child && child.exitCode === null && child.signalCode === null) {
    // CMD keeps running; kspan stops capturing it
    progress.message(`kspan record: the store cannot commit: capture stops; ${cmd[0]} keeps running`);
  }

  let failure: unknown = null;
  // everything produced before now reaches the summary / the file
  await capture.flush();
  try {
    await capture.stop();
  } catch (e) {
    failure = e;
  }
  let storeFailure: unknown = null;
  let stored: ReturnType<RecordIntoStore['progress']> | null = null;
  let made = '';
  if (store) {
    const w = store.writer;
    try {
      await w.flush(); // everything captured is committed
    } catch (e) {
      storeFailure = e;
    }
    if (storeFailure && (maxBytes || maxAgeNs)) {
      // Disk full. With a size or age limit, make room now so that a restart can commit (no crash
      // loop under a supervisor): the oldest partitions go, then what is held is committed.
      await w.makeRoom(true);
      if (w.health.ok) storeFailure = null;
    }
    const h = w.health;
    if (h.emergencyDropped) made = `; dropped the ${h.emergencyDropped} oldest partition(s) to make room, the store is held under ${(h.capBytes / 1e6).toFixed(1)} MB from now on`;
    stored = store.progress();
    await store.close();
  }
  progress.done();
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;

  let code = 0;
  if (failure) code = reportProbeError(failure);
  if (storeFailure || storeFullWhy) {
    // one line: why it stopped, what was not stored, what was done about it
    const h = store!.writer.health;
    const why = storeFailure ? (storeFailure as Error).message.replace(/^the store in \S+ cannot commit: /, '') : storeFullWhy;
    const lost = (stored?.events ?? 0) - (stored?.committedEvents ?? 0) + h.notStoredEvents;
    process.stderr.write(`kspan record: stopped: the store in ${o.data} cannot commit (${why}; disk full?)` +
      `${lost > 0 ? `; ${lost.toLocaleString('en-US')} events not stored` : ''}` +
      (made || (maxBytes || maxAgeNs ? '' : '; free space, or set --max-size below the free space, before restarting')) + '\n');
    code = 1;
  }
  if (childExit) {
    if (stopReason === 'duration') process.stderr.write(`kspan record: --duration reached; waiting for ${cmd[0]} to exit\n`);
    const cc = await childExit;
    if (!failure && !code) code = cc;
  }

  const d = probe.decoder;
  const problems = d.corruptBytes || d.unknownKinds || d.truncatedBytes
    ? ` (decoder: ${d.corruptBytes} corrupt bytes, ${d.unknownKinds} unknown records, ${d.truncatedBytes} truncated bytes)`
    : '';
  if (o.out) {
    const size = safeSize(o.out);
    const lost = probe.state.totalLost;
    process.stderr.write(
      `kspan record: wrote ${summary.totalRecords.toLocaleString('en-US')} records (${(size / 1e6).toFixed(1)} MB) to ${o.out} in ${elapsedS.toFixed(1)} s` +
      `${lost ? `; ${lost} records lost in the kernel` : ''}${problems}\n`);
  } else {
    process.stdout.write(summary.format(probe.state, { elapsedS }) + '\n');
    if (problems) process.stderr.write(`kspan record:${problems}\n`);
  }
  if (stored) {
    const p = stored;
    process.stderr.write(`kspan record: stored ${p.committedEvents.toLocaleString('en-US')} events in ${o.data} ` +
      `(${p.liveEvents.toLocaleString('en-US')} events, ${(p.usedBytes / 1e6).toFixed(1)} MB in use${p.skipped ? `, ${p.skipped} records skipped` : ''}); \`kspan stats --data ${o.data}\`\n`);
  }
  return code;
}

const DURATION_UNITS: Record<string, number> = { s: 1e9, m: 60e9, h: 3600e9, d: 86400e9 };
/** "90m", "24h", "7d", "3600s" -> ns */
function parseDuration(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(v.trim());
  if (!m || !(Number(m[1]) > 0)) throw new UsageError(`--${name} wants a duration like 90m, 24h or 7d, got "${v}"`);
  return Number(m[1]) * DURATION_UNITS[m[2]];
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
/** "500M", "10G", "1048576" -> bytes */
function parseSize(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m || !(Number(m[1]) > 0)) throw new UsageError(`--${name} wants a size like 500M or 10G, got "${v}"`);
  return Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()]);
}

/**
 * Resolves with why capture should stop: the duration passed, CMD exited,
 * the probe exited, or SIGINT/SIGTERM. With a CMD running, a terminal's
 * Ctrl-C reaches CMD too (same process group), so kspan waits for CMD to
 * exit (without a terminal it passes SIGINT on); a second Ctrl-C kills CMD,
 * a SIGTERM is passed on.
 */
function waitForStop(
  probe: ProbeProcess, durationS: number | undefined, child: ChildProcess | null, childExit: Promise<number> | null, storeFailed: Promise<string>,
): Promise<string> {
  return new Promise<string>((resolve) => {
    let sigints = 0;
    let timer: NodeJS.Timeout | null = null;
    const finish = (why: string): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (timer) clearTimeout(timer);
      resolve(why);
    };
    const onSignal = (sig: NodeJS.Signals): void => {
      if (child && child.exitCode === null && child.signalCode === null) {
        sigints++;
        if (sig === 'SIGTERM') child.kill('SIGTERM');
        else if (sigints > 1) child.kill('SIGKILL');
        // no terminal: nobody else delivered the SIGINT to CMD
        else if (!process.stdin.isTTY) child.kill('SIGINT');
        return;
      }
      finish(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (durationS !== undefined) timer = setTimeout(() => finish('duration'), durationS * 1000);
    childExit?.then(() => finish('command exited'));
    probe.done.then(() => finish('probe exited'), () => finish('probe failed'));
    storeFailed.then(() => finish('store full'));
  });
}

function reportProbeError(e: unknown): number {
  const err = e as Error;
  process.stderr.write(`kspan record: ${err.message}\n`);
  if (e instanceof ProbeError && e.reason !== 'not_built') process.stderr.write('kspan record: `kspan doctor` checks what capture needs\n');
  return 1;
}

function safeSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Processes seen in a filtered capture (their own records, forks, execs): where to look for CUDA libraries. */
class PidTracker {
  readonly pids = new Set<number>();
  private readonly v = new RecordView();
  onBatch(b: RecordBatch): void {
    const v = this.v;
    for (let i = 0; i < b.count; i++) {
      v.set(b, i);
      const k = v.kind;
      if (k === Kind.OFFCPU || k === Kind.CUDA_CALL || (k === Kind.TASK && (v.u32(TASK.event) === TaskEvent.FORK || v.u32(TASK.event) === TaskEvent.EXEC))) {
        this.pids.add(v.pid);
      }
    }
  }
}

/** Poll /proc/PID/stat until the task is stopped (state T). */
async function waitStopped(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'T') return true;
      if (state === 'Z' || state === 'X') return false;
    } catch {
      return false;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}

/** Live progress on stderr: a rewritten line on a TTY, a line every 5 s otherwise. */
class Progress {
  private timer: NodeJS.Timeout | null = null;
  private readonly tty = process.stderr.isTTY === true;
  private lineShown = false;
  private lastRecords = 0;
  private lastT = 0;
  private t0 = 0;

  constructor(private readonly enabled: boolean, private readonly store: RecordIntoStore | null = null) {}

  start(probe: ProbeProcess): void {
    if (!this.enabled) return;
    this.t0 = this.lastT = Date.now();
    const tick = (): void => {
      const now = Date.now();
      const recs = probe.decoder.records;
      const rate = ((recs - this.lastRecords) * 1000) / Math.max(1, now - this.lastT);
      this.lastRecords = recs;
      this.lastT = now;
      const drops = probe.state.drops.filter((x) => x !== undefined).map((x) => `${x!.name} ${x!.lost}`).join(' ');
      let line = `kspan: ${((now - this.t0) / 1000).toFixed(1)} s  ${recs.toLocaleString('en-US')} records  ${Math.round(rate).toLocaleString('en-US')}/s  lost: ${drops || '-'}`;
      if (this.store) {
        const p = this.store.progress();
        line += `  stored: ${p.committedEvents.toLocaleString('en-US')} events, ${(p.usedBytes / 1e6).toFixed(1)} MB`;
      }
      if (this.tty) {
        process.stderr.write(`\r\x1b[K${line}`);
        this.lineShown = true;
      } else {
        process.stderr.write(line + '\n');
      }
    };
    this.timer = setInterval(tick, this.tty ? 500 : 5000);
    this.timer.unref();
  }

  /** A message that must not be garbled by the progress line. */
  message(text: string): void {
    if (this.lineShown) process.stderr.write('\r\x1b[K');
    this.lineShown = false;
    process.stderr.write(text + '\n');
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.lineShown) process.stderr.write('\r\x1b[K');
    this.lineShown = false;
  }
}

// ---------------------------------------------------------------------------
// stats

async function cmdStats(argv: string[]): Promise<number> {
  const { values: o } = parse(argv, { data: { type: 'string' }, json: { type: 'boolean' } });
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (!o.data) throw new UsageError('--data DIR is required (the store `kspan record --data DIR` wrote)');
  if (!existsSync(join(o.data, 'data.mdb'))) throw new Error(`no kspan store in ${o.data} (no data.mdb)`);
  const s = storeStats(o.data);
  process.stdout.write(o.json ? JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n' : formatStats(s) + '\n');
  return 0;
}

// ---------------------------------------------------------------------------
// explain

async function cmdExplain(argv: string[]): Promise<number> {
  const { values: o, positionals } = parse(argv, {
    data: { type: 'string' },
    json: { type: 'boolean' },
    tid: { type: 'string' },
    pid: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    'service-process': { type: 'string', multiple: true },
    'thread-id-is-os-tid': { type: 'boolean' },
  }, true);
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const explainOpts = { serviceProcess: serviceProcessOpt(o['service-process']), threadIdIsOsTid: o['thread-id-is-os-tid'] };
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir) throw new UsageError('--data DIR is required (or set KSPAN_DATA)');
  if (!existsSync(join(dir, 'data.mdb'))) throw new Error(`no kspan store in ${dir} (no data.mdb)`);
  const windowMode = o.tid !== undefined || o.pid !== undefined || o.from !== undefined || o.to !== undefined;
  if (windowMode === (positionals.length > 0)) {
    throw new UsageError('give a trace id, or --tid/--pid with --from and --to');
  }
  const reader = openStoreReader(dir);
  try {
    let e;
    if (windowMode) {
      if ((o.tid === undefined) === (o.pid === undefined)) throw new UsageError('give one of --tid and --pid');
      if (!o.from || !o.to) throw new UsageError('--from and --to are required with --tid/--pid');
      const fromUnixNano = parseTime(o.from, 'from'), toUnixNano = parseTime(o.to, 'to');
      if (toUnixNano <= fromUnixNano) throw new UsageError('--to must be after --from');
      e = explainWindow(reader, { tid: intOpt(o.tid, 'tid', 1), pid: intOpt(o.pid, 'pid', 1), fromUnixNano, toUnixNano }, explainOpts);
    } else {
      if (positionals.length > 1) throw new UsageError(`one trace id, got ${positionals.length}`);
      const traceId = positionals[0].toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(traceId)) throw new UsageError(`a trace id is 32 hex digits, got "${positionals[0]}"`);
      e = explainTrace(reader, traceId, explainOpts);
    }
    process.stdout.write(o.json ? JSON.stringify(e) + '\n' : formatExplanation(e) + '\n');
    return e.found ? 0 : 3;
  } finally {
    void reader.root.close();
  }
}

/** Epoch nanoseconds (digits) or an RFC 3339 time (ms precision, or ns when it has 9 fraction digits). */
function parseTime(v: string, name: string): bigint {
  if (/^\d+$/.test(v)) return BigInt(v);
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(v);
  const base = m ? Date.parse(m[1] + (m[3] ?? 'Z')) : NaN;
  if (!m || Number.isNaN(base)) throw new UsageError(`--${name} wants epoch nanoseconds or an RFC 3339 time, got "${v}"`);
  return BigInt(base) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
}

// ---------------------------------------------------------------------------
// dump

async function cmdDump(argv: string[]): Promise<number> {
  const { values: o, positionals } = parse(argv, {
    json: { type: 'boolean' },
    kind: { type: 'string', short: 'k' },
    tid: { type: 'string', multiple: true },
  }, true);
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('usage: kspan dump FILE [--json] [--kind K,...] [--tid T]');
  const file = positionals[0];
  statSync(file); // a clear ENOENT before streaming
  const kinds = new Set<number>();
  for (const k of o.kind?.split(',') ?? []) {
    const n = kindFromName(k.trim());
    if (n === undefined) throw new UsageError(`unknown kind "${k}"`);
    kinds.add(n);
  }
  const tids = new Set((o.tid ?? []).map((t) => intOpt(t, 'tid')!));
  // First pass: every name in the file, for records that precede their TASK record.
  const later = new TaskNames(1 << 20);
  await replayFile(file, { onBatch: (b) => later.observeBatch(b) });
  const names = new TaskNames(65536, later);
  const v = new RecordView();
  const out = process.stdout;
  const ac = new AbortController();
  out.on('error', () => ac.abort()); // EPIPE from `| head`: stop quietly
  const fmt = o.json
    ? (c: ClockHistory): string => JSON.stringify(recordToJson(v, c, names))
    : (c: ClockHistory): string => recordToText(v, c, names);
  const sink: CaptureSink = {
    onBatch(batch: RecordBatch, clock: ClockHistory): void | Promise<void> {
      if (ac.signal.aborted) return;
      names.observeBatch(batch);
      const lines: string[] = [];
      for (let i = 0; i < batch.count; i++) {
        v.set(batch, i);
        if (kinds.size && !kinds.has(v.kind)) continue;
        if (tids.size && !tids.has(v.tid)) continue;
        lines.push(fmt(clock));
      }
      if (!lines.length) return;
      if (!out.write(lines.join('\n') + '\n')) {
        return new Promise<void>((res) => {
          const done = (): void => {
            out.off('drain', done);
            ac.signal.removeEventListener('abort', done);
            res();
          };
          out.on('drain', done);
          ac.signal.addEventListener('abort', done);
        });
      }
    },
  };
  const r = await replayFile(file, sink, { signal: ac.signal });
  if (ac.signal.aborted) return 0;
  const c = r.counters;
  process.stderr.write(
    `kspan dump: ${c.records.toLocaleString('en-US')} records, ${c.unknownKinds} unknown-kind records skipped, ` +
    `${c.corruptBytes} corrupt bytes (${c.resyncs} resyncs), ${c.truncatedBytes} truncated bytes at the end` +
    `${r.state.totalLost ? `; ${r.state.totalLost} records were lost in the kernel during capture` : ''}\n`);
  if (r.state.clock.size === 0) process.stderr.write('kspan dump: no HELLO or CLOCK record: times are monotonic ns, not epoch\n');
  return 0;
}

// ---------------------------------------------------------------------------
// doctor

async function cmdDoctor(argv: string[]): Promise<number> {
  const { values: o } = parse(argv, {
    json: { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    'no-probe': { type: 'boolean' },
  });
  if (o.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const r = await runDoctor({ cudaLibs: o['cuda-lib'], noProbe: o['no-probe'] });
  process.stdout.write((o.json ? JSON.stringify(r, null, 2) : formatDoctor(r)) + '\n');
  return r.ready ? 0 : 1;
}

// Run directly (`tsx src/cli.ts ...`): bin/kspan.js imports instead.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (e: unknown) => {
    process.stderr.write(`kspan: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  });
}

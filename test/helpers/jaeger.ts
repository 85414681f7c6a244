// Real Jaeger v2 and a real OpenTelemetry Collector for end-to-end tests.
//
// Both are built from Go modules by scripts/setup.sh and cached under build/:
//   build/jaeger/jaeger              github.com/jaegertracing/jaeger/cmd/jaeger v1.76.0
//   build/otelcol/otelcol-kspan      the collector builder's distribution of
//                                    test/collector/builder-config.yaml (v0.165.0)
// Each runs from a config file written at run time, on free loopback ports, in
// its own process group; stop() (and, as a last resort, process exit) kills the
// whole group, so nothing is left running when a test fails.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/probe.js';

export const JAEGER_BIN = join(REPO_ROOT, 'build', 'jaeger', 'jaeger');
export const OTELCOL_BIN = join(REPO_ROOT, 'build', 'otelcol', 'otelcol-kspan');

/** Throws (failing the test) when a binary setup.sh builds is missing. */
export function requireBuilt(bin: string): void {
  if (!existsSync(bin)) {
    throw new Error(`${bin} is not built: run \`npm run setup\` (it builds Jaeger and the test collector from Go modules into build/; needs Go 1.26+)`);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A loopback port that was free a moment ago (the kernel's ephemeral choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

// every group still alive gets SIGKILL when the test process exits, whatever happened
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pgid of liveGroups) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  }
});

// util-linux's setpriv (installed by setup) starts each child with
// PR_SET_PDEATHSIG = SIGKILL, so it dies with the test process even when that
// is killed outright (the test runner's file timeout) and no handler runs.
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;

/**
 * A child in its own process group (detached), with its output kept (the
 * last 256 KiB) for error messages. stop(): SIGTERM to the group, SIGKILL to
 * the group after graceMs. Killed (SIGKILL) if the test process dies first.
 */
export class GroupProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** stdout and stderr as they came (the last 256-512 KiB) */
  output = '';
  /** stdout alone, whole */
  stdout = '';
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;

  constructor(readonly name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    if (SETPRIV) [cmd, args] = [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]];
    this.child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd ?? REPO_ROOT });
    if (this.child.pid === undefined) throw new Error(`cannot start ${name} (${cmd})`);
    this.pid = this.child.pid;
    liveGroups.add(this.pid);
    const keep = (d: Buffer): void => {
      this.output += d.toString();
      if (this.output.length > 512 * 1024) this.output = this.output.slice(-256 * 1024);
    };
    this.child.stdout!.on('data', (d: Buffer) => { this.stdout += d.toString(); keep(d); });
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** The last n characters of its output, for assertion messages. */
  tail(n = 4000): string {
    return this.output.slice(-n);
  }

  /** Waits until re matches the output; throws if the process exits first or after timeoutMs. */
  async waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const t0 = Date.now();
    for (;;) {
      const m = re.exec(this.output);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited (${this.exitCode ?? this.exitSignal}) before ${re}:\n${this.tail()}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`${this.name}: no ${re} after ${timeoutMs} ms:\n${this.tail()}`);
      await sleep(50);
    }
  }

  /** Waits for it to exit by itself; after timeoutMs the group is killed and this throws. */
  async wait(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), timeoutMs); }),
    ]);
    clearTimeout(timer);
    await this.stop(0);
    if (timedOut) throw new Error(`${this.name} still running after ${timeoutMs} ms (killed):\n${this.tail()}`);
  }

  /** SIGTERM to the whole group, SIGKILL after graceMs; resolves when the leader is gone. */
  async stop(graceMs = 5000): Promise<void> {
    if (!liveGroups.has(this.pid)) return; // stopped already
    const kill = (sig: NodeJS.Signals): void => {
      try { process.kill(-this.pid, sig); } catch { /* already gone */ }
    };
    if (this.running) {
      kill('SIGTERM');
      const t = setTimeout(() => kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    kill('SIGKILL'); // anything the leader left behind in its group
    liveGroups.delete(this.pid);
  }
}

export const READY = /Everything is ready\. Begin running and processing data\./;

// ---------------------------------------------------------------- Jaeger

/** A span as Jaeger's query API (`/api/traces/<id>`, the UI's JSON) gives it. */
export interface JaegerKV { key: string; type: string; value: unknown }
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number; // µs since epoch
  duration: number; // µs
  tags: JaegerKV[];
  logs: { timestamp: number; fields: JaegerKV[] }[];
  processID: string;
  warnings: string[] | null;
}
export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: JaegerKV[] }>;
  warnings: string[] | null;
}

/** Tags (or a log's fields) as an object. */
export function kv(list: JaegerKV[] | undefined): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const t of list ?? []) o[t.key] = t.value;
  return o;
}

/** A span's logs (span events) named `name` (Jaeger puts the event name in the field `event`), as objects. */
export function spanEvents(span: JaegerSpan, name: string): Record<string, unknown>[] {
  return span.logs.map((l) => kv(l.fields)).filter((f) => f.event === name);
}

/** The parent span id (the CHILD_OF reference), or null for a root span. */
export function parentOf(span: JaegerSpan): string | null {
  return span.references.find((r) => r.refType === 'CHILD_OF')?.spanID ?? null;
}

export interface Jaeger {
  /** OTLP/gRPC receiver, e.g. http://127.0.0.1:PORT (what --upstream and exporters point at) */
  otlpGrpcUrl: string;
  otlpGrpcPort: number;
  /** query HTTP API (and UI), e.g. http://127.0.0.1:PORT */
  queryUrl: string;
  proc: GroupProcess;
  /** GET /api/traces/<id>; null while Jaeger does not know the trace. raw: no query-side adjusters (dedupe etc.). */
  getTrace(traceId: string, opts?: { raw?: boolean }): Promise<JaegerTrace | null>;
  /** Polls getTrace until done(trace) is true; throws with the last trace seen after timeoutMs. */
  waitForTrace(traceId: string, done: (t: JaegerTrace) => boolean, timeoutMs: number, opts?: { raw?: boolean }): Promise<JaegerTrace>;
  stop(): Promise<void>;
}

export function jaegerConfig(p: { grpc: number; http: number; queryHttp: number; queryGrpc: number }): string {
  // Jaeger v2 is an OTel Collector distribution: the same config layout, plus
  // Jaeger's extensions (jaeger_storage: backends; jaeger_query: API + UI).
  return `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:${p.queryHttp}
    grpc:
      endpoint: 127.0.0.1:${p.queryGrpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${p.grpc}
      http:
        endpoint: 127.0.0.1:${p.http}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`;
}

/**
 * Jaeger v2 all-in-one with memory storage on free loopback ports: OTLP
 * (gRPC, HTTP) in, the query API out. Resolves when the query API answers and
 * the OTLP port accepts connections. A port taken between choosing and
 * binding it: tried again with new ports (3 times).
 */
export async function startJaeger(): Promise<Jaeger> {
  requireBuilt(JAEGER_BIN);
  let lastErr: Error | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'kspan-jaeger-'));
    const ports = { grpc: await freePort(), http: await freePort(), queryHttp: await freePort(), queryGrpc: await freePort() };
    const cfg = join(dir, 'jaeger.yaml');
    writeFileSync(cfg, jaegerConfig(ports));
    const proc = new GroupProcess('jaeger', JAEGER_BIN, ['--config', cfg]);
    const queryUrl = `http://127.0.0.1:${ports.queryHttp}`;
    try {
      await proc.waitForOutput(READY, 60_000);
      const t0 = Date.now();
      for (;;) {
        const ok = await fetch(`${queryUrl}/api/services`).then((r) => r.ok, () => false);
        if (ok && await canConnect(ports.grpc)) break;
        if (!proc.running || Date.now() - t0 > 20_000) throw new Error(`jaeger not answering on ${queryUrl}:\n${proc.tail()}`);
        await sleep(100);
      }
    } catch (e) {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
      lastErr = e as Error;
      if (/address already in use/.test(proc.output)) continue;
      throw e;
    }
    const getTrace = async (traceId: string, opts: { raw?: boolean } = {}): Promise<JaegerTrace | null> => {
      const res = await fetch(`${queryUrl}/api/traces/${traceId}${opts.raw ? '?raw=true' : ''}`);
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`jaeger GET /api/traces/${traceId}: ${res.status} ${await res.text()}`);
      const body = await res.json() as { data: JaegerTrace[] | null };
      return body.data?.[0] ?? null;
    };
    return {
      otlpGrpcUrl: `http://127.0.0.1:${ports.grpc}`,
      otlpGrpcPort: ports.grpc,
      queryUrl,
      proc,
      getTrace,
      async waitForTrace(traceId, done, timeoutMs, opts = {}) {
        const t0 = Date.now();
        let last: JaegerTrace | null = null;
        for (;;) {
          last = await getTrace(traceId, opts);
          if (last && done(last)) return last;
          if (Date.now() - t0 > timeoutMs) {
            throw new Error(`jaeger: trace ${traceId} not as expected after ${timeoutMs} ms; last seen: ${JSON.stringify(last)?.slice(0, 3000)}`);
          }
          await sleep(200);
        }
      },
      async stop() {
        await proc.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastErr!;
}

// ---------------------------------------------------------------- collector

export interface Collector {
  proc: GroupProcess;
  stop(): Promise<void>;
}

/**
 * The built collector (build/otelcol/otelcol-kspan) with the given config
 * documents (YAML text, merged in order as the collector merges several
 * --config flags) and extra flags (e.g. `--set=...`). Resolves when it says it
 * is ready and each of waitPorts accepts connections.
 */
export async function startCollector(configs: string[], opts: { waitPorts?: number[]; flags?: string[] } = {}): Promise<Collector> {
  requireBuilt(OTELCOL_BIN);
  const dir = mkdtempSync(join(tmpdir(), 'kspan-otelcol-'));
  const args: string[] = [];
  configs.forEach((c, i) => {
    const f = join(dir, `config-${i}.yaml`);
    writeFileSync(f, c);
    args.push(`--config=${f}`);
  });
  args.push(...(opts.flags ?? []));
  const proc = new GroupProcess('otelcol', OTELCOL_BIN, args);
  const stop = async (): Promise<void> => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await proc.waitForOutput(READY, 60_000);
    const t0 = Date.now();
    for (const port of opts.waitPorts ?? []) {
      while (!(await canConnect(port))) {
        if (!proc.running || Date.now() - t0 > 20_000) throw new Error(`otelcol not listening on ${port}:\n${proc.tail()}`);
        await sleep(100);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { proc, stop };
}

// ---------------------------------------------------------------- kspan run

export interface KspanRun {
  proc: GroupProcess;
  otlpGrpcPort: number;
  otlpHttpPort: number;
  dataDir: string;
  /** SIGTERM (kspan flushes what it buffers), then the group is gone; returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * `node bin/kspan.js run --data <tmp> --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 ARGS`
 * (the built CLI, as a user runs it; root and the real probe). Resolves on its ready line.
 */
export async function startKspanRun(args: string[]): Promise<KspanRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kspan-run-'));
  const proc = new GroupProcess('kspan run', process.execPath, [
    join(REPO_ROOT, 'bin', 'kspan.js'), 'run', '--data', dataDir,
    '--otlp-grpc', '127.0.0.1:0', '--otlp-http', '127.0.0.1:0', ...args,
  ]);
  try {
    const m = await proc.waitForOutput(/^(\{"ready":true.*\})$/m, 60_000);
    const ready = JSON.parse(m[1]) as { otlp_grpc_port: number; otlp_http_port: number };
    return {
      proc, dataDir, otlpGrpcPort: ready.otlp_grpc_port, otlpHttpPort: ready.otlp_http_port,
      async stop() {
        await proc.stop(20_000);
        rmSync(dataDir, { recursive: true, force: true });
        return proc.exitCode;
      },
    };
  } catch (e) {
    await proc.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}

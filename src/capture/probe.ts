// ProbeProcess: runs build/kspan-probe (docs/probe.md), decodes its stdout,
// tracks HELLO/CLOCK/DROPS/STATUS, answers control commands via ACK records
// and turns its exit codes into errors that say what to do.

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { FrameDecoder } from './decoder.js';
import { pump } from './pump.js';
import { CaptureState, type AckInfo, type CaptureSink, type HelloInfo } from './state.js';

/** Repository root: this file is src/capture/probe.ts or dist/capture/probe.js. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** $KSPAN_PROBE, else <repo>/build/kspan-probe. */
export function probePath(): string {
  return process.env.KSPAN_PROBE || join(REPO_ROOT, 'build', 'kspan-probe');
}

export interface ProbeOptions {
  /** Binary to run (default probePath()). */
  path?: string;
  /** Capture only these processes (tgids). Empty: host-wide. */
  pids?: number[];
  /** Never capture these processes (tgids), also in host-wide mode (`--exclude-pid`). */
  excludePids?: number[];
  /**
   * Exclude this Node process (process.pid) too (default true): kspan's own
   * reading of the stream would otherwise feed the stream (every read wakes
   * it, every wakeup is an off-CPU record, ...). Applies whatever `pids` says,
   * since `pid clear` can make a filtered capture host-wide later; it is left
   * out only when `pids` names process.pid itself.
   */
  excludeSelf?: boolean;
  /** Capture children of captured processes too. */
  follow?: boolean;
  /** Probe groups: sched task futex blocked block tcp cuda (the default), futex-syscalls (opt-in). */
  groups?: string[];
  /** Extra CUDA libraries to attach uprobes to. */
  cudaLibs?: string[];
  /** Don't scan /proc/*\/maps for CUDA libraries. */
  noCudaScan?: boolean;
  offcpuMinUs?: number;
  futexMinUs?: number;
  stacks?: boolean;
  stackMinUs?: number;
  /** Capture only tasks in this cgroup v2 (or below it); kept for callers of one path. */
  cgroup?: string;
  /** Capture only tasks in these cgroup v2 directories or below them (a path under /sys/fs/cgroup, or absolute). */
  cgroups?: string[];
  ringMb?: number;
  drainMs?: number;
  clockMs?: number;
  /** Attach, report STATUS, detach and exit. */
  check?: boolean;
  /** Probe logs attach results and libbpf warnings on stderr. */
  verbose?: boolean;
  /** Write the raw stdout bytes (exactly the frames) to this file. */
  teePath?: string;
  /** Each line the probe writes to stderr (they are also kept in stderrTail). */
  onStderr?: (line: string) => void;
  /** Extra arguments appended to the command line. */
  extraArgs?: string[];
}

export function probeArgs(o: ProbeOptions): string[] {
  const a: string[] = [];
  const pids = o.pids ?? [];
  for (const p of pids) a.push('--pid', String(p));
  const excluded = [...(o.excludePids ?? [])];
  if (o.excludeSelf !== false && !pids.includes(process.pid) && !excluded.includes(process.pid)) excluded.push(process.pid);
  for (const p of excluded) a.push('--exclude-pid', String(p));
  if (o.follow) a.push('--follow');
  if (o.groups && o.groups.length) a.push('--groups', o.groups.join(','));
  for (const l of o.cudaLibs ?? []) a.push('--cuda-lib', l);
  if (o.noCudaScan) a.push('--no-cuda-scan');
  if (o.offcpuMinUs !== undefined) a.push('--offcpu-min-us', String(o.offcpuMinUs));
  if (o.futexMinUs !== undefined) a.push('--futex-min-us', String(o.futexMinUs));
  if (o.stacks) a.push('--stacks');
  if (o.stackMinUs !== undefined) a.push('--stack-min-us', String(o.stackMinUs));
  for (const c of new Set([...(o.cgroup ? [o.cgroup] : []), ...(o.cgroups ?? [])])) a.push('--cgroup', c);
  if (o.ringMb !== undefined) a.push('--ring-mb', String(o.ringMb));
  if (o.drainMs !== undefined) a.push('--drain-ms', String(o.drainMs));
  if (o.clockMs !== undefined) a.push('--clock-ms', String(o.clockMs));
  if (o.check) a.push('--check');
  if (o.verbose) a.push('--verbose');
  if (o.extraArgs) a.push(...o.extraArgs);
  return a;
}

/** Exit codes of kspan-probe (docs/probe.md). */
export const PROBE_EXIT: Readonly<Record<number, { reason: string; hint: string }>> = {
  1: { reason: 'failed', hint: 'see the probe message' },
  2: { reason: 'bad_command_line', hint: 'kspan and kspan-probe disagree on flags: rebuild with `make -s probe`' },
  10: { reason: 'not_privileged', hint: 'kspan-probe needs root, or CAP_BPF + CAP_PERFMON (+ CAP_SYS_RESOURCE on old kernels): run with sudo' },
  11: { reason: 'no_btf', hint: 'the kernel has no BTF (/sys/kernel/btf/vmlinux): it needs CONFIG_DEBUG_INFO_BTF=y' },
  12: { reason: 'bpf_refused', hint: 'the kernel refused the BPF programs (verifier or unsupported program type)' },
  13: { reason: 'attach_failed', hint: 'no probe group could be attached (run `kspan doctor`)' },
  14: { reason: 'no_tracefs', hint: 'tracefs is unavailable and could not be mounted at /sys/kernel/tracing' },
};

export class ProbeError extends Error {
  constructor(
    message: string,
    /** 'not_privileged', 'no_btf', ..., 'spawn_failed', 'not_built', 'signal', 'failed' */
    readonly reason: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderrTail: readonly string[],
  ) {
    super(message);
    this.name = 'ProbeError';
  }
}

export interface ProbeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ControlResult {
  err: number;
  msg: string;
}

type Child = ChildProcessByStdio<Writable, Readable, Readable>;

export class ProbeProcess {
  readonly decoder = new FrameDecoder();
  readonly state = new CaptureState();
  /** Resolves with HELLO; rejects if the probe dies first. */
  readonly ready: Promise<HelloInfo>;
  /** Resolves when the probe exited and its output was consumed; rejects with ProbeError on failure. */
  readonly done: Promise<ProbeExit>;
  /** Last lines of the probe's stderr. */
  readonly stderrTail: string[] = [];
  readonly path: string;
  readonly args: string[];

  private child: Child | null = null;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: ControlResult) => void; reject: (e: Error) => void }>();
  private stopping = false;
  private exited: ProbeExit | null = null;
  private failure: Error | null = null;
  private resolveReady!: (h: HelloInfo) => void;
  private rejectReady!: (e: Error) => void;
  private resolveDone!: (e: ProbeExit) => void;
  private rejectDone!: (e: Error) => void;
  private tee: WriteStream | null = null;

  constructor(private readonly opts: ProbeOptions = {}, private readonly sink: CaptureSink | null = null) {
    this.path = opts.path ?? probePath();
    this.args = probeArgs(opts);
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    // Marked handled: callers that care await them; nobody else should crash on them.
    this.ready.catch(() => {});
    this.done.catch(() => {});
    this.state.onHello = (h) => this.resolveReady(h);
  }

  /** Spawn and start consuming. */
  static start(opts: ProbeOptions = {}, sink: CaptureSink | null = null): ProbeProcess {
    return new ProbeProcess(opts, sink).start();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.exited === null;
  }

  start(): this {
    if (this.child) throw new Error('probe already started');
    if (!existsSync(this.path)) {
      this.fail(new ProbeError(
        `kspan-probe not found at ${this.path}: build it with \`make -s probe\` (or point KSPAN_PROBE at it)`,
        'not_built', null, null, []));
      return this;
    }
    if (this.opts.teePath) {
      this.tee = createWriteStream(this.opts.teePath);
      this.tee.on('error', (e) => this.fail(new ProbeError(`writing ${this.opts.teePath}: ${e.message}`, 'tee_failed', null, null, [])));
    }
    // Own process group: a terminal Ctrl-C reaches kspan, which then stops the
    // probe in order (flush, final DROPS). If kspan dies, stdin EOF stops it.
    const child = spawn(this.path, this.args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true }) as Child;
    this.child = child;
    child.stdin.on('error', () => {}); // EPIPE after the probe died: reported via exit
    this.readStderr(child.stderr);

    const exit = new Promise<ProbeExit>((res) => {
      child.on('exit', (code, signal) => {
        this.exited = { code, signal };
        res(this.exited);
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        this.fail(new ProbeError(`cannot run ${this.path}: ${e.message}`, 'spawn_failed', null, null, []));
        // a failed spawn emits no 'exit'
        if (child.pid === undefined) {
          this.exited = { code: null, signal: null };
          res(this.exited);
        }
      });
    });
    const consumed = pump(child.stdout, {
      decoder: this.decoder,
      state: this.state,
      sink: this.sink,
      tee: this.tee,
      onAcks: (acks) => this.onAcks(acks),
    });
    consumed.catch((e: Error) => {
      // sink or tee failed: stop the probe, report the cause
      this.fail(e);
      this.kill('SIGTERM');
    });
    void this.finish(exit, consumed);
    return this;
  }

  private async finish(exit: Promise<ProbeExit>, consumed: Promise<void>): Promise<void> {
    const ex = await exit;
    await consumed.catch(() => {});
    // stderr may still be flushing the last line
    if (this.child && !this.child.stderr.readableEnded) await Promise.race([once(this.child.stderr, 'end'), sleep(200)]).catch(() => {});
    if (this.tee) {
      const t = this.tee;
      this.tee = null;
      await new Promise<void>((res) => t.end(res));
    }
    const err = this.failure ?? this.exitError(ex);
    for (const p of this.pending.values()) p.reject(err ?? new Error('kspan-probe exited before answering'));
    this.pending.clear();
    this.rejectReady(err ?? new Error('kspan-probe exited without a HELLO record'));
    if (err) this.rejectDone(err);
    else this.resolveDone(ex);
  }

  private exitError(ex: ProbeExit): ProbeError | null {
    if (ex.code === 0) return null;
    if (ex.code === null && this.stopping && (ex.signal === 'SIGTERM' || ex.signal === 'SIGKILL')) return null;
    const last = this.stderrTail.length ? this.stderrTail[this.stderrTail.length - 1] : '';
    if (ex.code === null) {
      return new ProbeError(`kspan-probe was killed by ${ex.signal}${last ? `: ${last}` : ''}`, 'signal', null, ex.signal, this.stderrTail.slice());
    }
    const known = PROBE_EXIT[ex.code] ?? { reason: 'failed', hint: `exit code ${ex.code}` };
    const msg = `kspan-probe failed (exit ${ex.code}, ${known.reason}): ${known.hint}${last ? `\n  probe said: ${last}` : ''}`;
    return new ProbeError(msg, known.reason, ex.code, null, this.stderrTail.slice());
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    if (!this.child) {
      // never started: settle everything now
      this.rejectReady(e);
      this.rejectDone(e);
    }
  }

  private readStderr(s: Readable): void {
    let part = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      part += d;
      let nl: number;
      while ((nl = part.indexOf('\n')) >= 0) {
        const line = part.slice(0, nl).trimEnd();
        part = part.slice(nl + 1);
        if (!line) continue;
        this.stderrTail.push(line);
        if (this.stderrTail.length > 50) this.stderrTail.shift();
        this.opts.onStderr?.(line);
      }
    });
    s.on('end', () => {
      if (part.trim()) {
        this.stderrTail.push(part.trim());
        this.opts.onStderr?.(part.trim());
      }
    });
  }

  private onAcks(acks: AckInfo[]): void {
    for (const a of acks) {
      const p = this.pending.get(a.seq);
      if (!p) continue;
      this.pending.delete(a.seq);
      p.resolve({ err: a.err, msg: a.msg });
    }
  }

  /**
   * Send one control command (docs/probe.md: "ping", "flush", "pid add 123",
   * ...). Resolves with the ACK once every record before it has been handed
   * to the sink. `err` is 0 or -errno; it does not reject on a refusal.
   */
  control(cmd: string): Promise<ControlResult> {
    const c = this.child;
    if (!c || this.exited || this.stopping || !c.stdin.writable) {
      return Promise.reject(this.failure ?? new Error(`kspan-probe is not running (command: ${cmd})`));
    }
    if (/[\r\n]/.test(cmd)) return Promise.reject(new Error('control command must be one line'));
    const seq = ++this.seq;
    return new Promise<ControlResult>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      c.stdin.write(`${seq} ${cmd}\n`);
    });
  }

  /** Send a command and throw if the probe refused it. */
  async command(cmd: string): Promise<ControlResult> {
    const r = await this.control(cmd);
    if (r.err !== 0) throw new Error(`kspan-probe refused "${cmd}": ${r.msg || `error ${r.err}`}`);
    return r;
  }

  /**
   * Stop cleanly: close stdin (the probe drains and writes final DROPS),
   * SIGTERM after `graceMs`, SIGKILL after as long again. Resolves when the
   * output has been consumed. The default grace is long because the kernel
   * takes ~0.1 s per uprobe to detach (about 2 s per CUDA library); the
   * stream itself ends before that.
   */
  async stop(graceMs = 10000): Promise<ProbeExit> {
    const c = this.child;
    if (!c) return this.done;
    if (!this.stopping) {
      this.stopping = true;
      c.stdin.end();
      const t1 = setTimeout(() => this.kill('SIGTERM'), graceMs);
      const t2 = setTimeout(() => this.kill('SIGKILL'), 2 * graceMs);
      t1.unref();
      t2.unref();
      this.done.finally(() => {
        clearTimeout(t1);
        clearTimeout(t2);
      }).catch(() => {});
    }
    return this.done;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child && !this.exited) {
      try {
        this.child.kill(signal);
      } catch {
        /* already gone */
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Run the probe with --check: HELLO + one STATUS per group, then exit. */
export async function runProbeCheck(opts: ProbeOptions = {}, timeoutMs = 30000): Promise<{ state: CaptureState; exit: ProbeExit; stderr: string[] }> {
  const p = new ProbeProcess({ ...opts, check: true }).start();
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  timer.unref();
  try {
    const exit = await p.done;
    return { state: p.state, exit, stderr: p.stderrTail };
  } finally {
    clearTimeout(timer);
  }
}

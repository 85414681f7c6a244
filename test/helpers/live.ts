// Helpers for tests that run the real probe (build/kspan-probe) against real
// kernel activity. They need root (or CAP_BPF + CAP_PERFMON), a kernel with
// BTF, the probe (`make -s probe`) and the fixtures (`make -C test/fixtures`);
// CI has all of them. requireLiveProbe() fails a test with what is missing
// instead of letting it skip quietly.

import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, chmodSync, constants as fsConstants, copyFileSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { REPO_ROOT, probePath } from '../../src/capture/probe.js';
import type { CaptureSink } from '../../src/capture/state.js';
import { RecordView, type RecordBatch } from '../../src/capture/decoder.js';
import { AckView, CudaCallView, FutexWaitView, FutexWakeView, OffcpuView, StatusView, TaskView } from '../../src/capture/views.js';
import { Kind } from '../../src/capture/records.js';

export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'bin');

/** Throws (failing the test) unless the real probe can run here. */
export function requireLiveProbe(): void {
  const problems: string[] = [];
  const euid = process.geteuid?.() ?? -1;
  if (euid !== 0) problems.push(`not root (euid ${euid}): run the tests as root (sudo npm test); CI does`);
  const p = probePath();
  try {
    accessSync(p, fsConstants.X_OK);
  } catch {
    problems.push(`${p} is not built: run \`make -s probe\` (npm test does it)`);
  }
  if (!existsSync('/sys/kernel/btf/vmlinux')) problems.push('the kernel has no BTF (/sys/kernel/btf/vmlinux)');
  if (problems.length) throw new Error(`this test runs the real kspan-probe and cannot here: ${problems.join('; ')}`);
}

/** Path of a fixture program; fails clearly when the fixtures are not built. */
export function fixture(name: string): string {
  const f = join(FIXTURES, name);
  if (!existsSync(f)) throw new Error(`${f} missing: build the fixtures with \`make -C test/fixtures\``);
  return f;
}

/** CLOCK_MONOTONIC ns (libuv's hrtime is CLOCK_MONOTONIC on Linux, the clock of bpf_ktime_get_ns). */
export function monoNs(): number {
  return Number(process.hrtime.bigint());
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let unprivileged: string | null = null;

/**
 * An executable that runs the real probe as nobody without capabilities
 * (setpriv). The probe is copied to a directory nobody can reach, since the
 * checkout may not be (e.g. under /root).
 */
export function unprivilegedProbe(): string {
  if (unprivileged) return unprivileged;
  requireLiveProbe();
  if (spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('setpriv (util-linux) is needed to run the probe unprivileged');
  }
  const dir = mkdtempSync(join(tmpdir(), 'kspan-nopriv-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const probe = join(dir, 'kspan-probe.real');
  copyFileSync(probePath(), probe);
  chmodSync(probe, 0o755);
  const exe = join(dir, 'kspan-probe');
  writeFileSync(exe, `#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all '${probe}' "$@"\n`);
  chmodSync(exe, 0o755);
  unprivileged = exe;
  return exe;
}

type Gated = ChildProcessByStdio<Writable, Readable, null>;

/**
 * A command that exists (its pid is known) but does nothing until release():
 * `sh -c 'read; exec CMD'`, so the exec'd CMD keeps the pid a test puts in
 * the probe's filter before CMD runs.
 */
export class GatedChild {
  readonly child: Gated;
  readonly pid: number;
  /** Resolves when CMD exited, with its exit code and stdout. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>;

  constructor(cmd: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn('/bin/sh', ['-c', 'read _go; exec "$@"', 'sh', ...cmd], { stdio: ['pipe', 'pipe', 'inherit'], env });
    if (this.child.pid === undefined) throw new Error(`cannot spawn ${cmd.join(' ')}`);
    this.pid = this.child.pid;
    let out = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => (out += d));
    this.exited = new Promise((res) => {
      this.child.on('close', (code, signal) => res({ code, signal, stdout: out }));
    });
  }

  release(): void {
    this.child.stdin.end('go\n');
  }

  /** release() and wait for CMD to exit (fixtures print their JSON line on stdout). */
  async run(): Promise<{ code: number | null; stdout: string }> {
    this.release();
    return this.exited;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Run a command to its end (not gated). */
export function runChild(cmd: string[]): Promise<{ pid: number; code: number | null; stdout: string }> {
  const c = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout.setEncoding('utf8');
  c.stdout.on('data', (d: string) => (out += d));
  return new Promise((res, rej) => {
    c.on('error', rej);
    c.on('close', (code) => res({ pid: c.pid!, code, stdout: out }));
  });
}

/** A record copied out of its batch: header plus the fields the tests look at. */
export interface Rec {
  kind: number;
  pid: number;
  tid: number;
  ts: number;
  /** OFFCPU, FUTEX_WAIT, FUTEX_WAKE, CUDA_CALL */
  startNs?: number;
  /** OFFCPU */
  blockedNs?: number;
  prevState?: number;
  flags?: number;
  /** FUTEX_WAIT, FUTEX_WAKE */
  uaddr?: number;
  ret?: number;
  /** TASK */
  event?: number;
  otherPid?: number;
  comm?: string;
  exitCode?: number;
  /** CUDA_CALL */
  api?: number;
  /** ACK */
  seq?: number;
  err?: number;
  msg?: string;
  /** STATUS */
  group?: number;
  nAttached?: number;
}

/** Kinds the BPF programs produce (counted in the DROPS records); the others are the probe's own. */
export const KERNEL_KINDS: ReadonlySet<number> = new Set([
  Kind.OFFCPU, Kind.FUTEX_WAIT, Kind.FUTEX_WAKE, Kind.BLOCK_IO, Kind.TCP_RETRANS, Kind.CUDA_CALL, Kind.TASK, Kind.STACK,
]);

/** Keeps every record (as a Rec), a hash of the raw bytes in order, and counts by kind. */
export class Collector implements CaptureSink {
  readonly records: Rec[] = [];
  readonly byKind = new Map<number, number>();
  private readonly hash = createHash('sha256');
  private readonly v = new RecordView();
  private readonly off = new OffcpuView();
  private readonly fw = new FutexWaitView();
  private readonly fk = new FutexWakeView();
  private readonly task = new TaskView();
  private readonly cuda = new CudaCallView();
  private readonly ack = new AckView();
  private readonly st = new StatusView();

  onBatch(b: RecordBatch): void {
    const v = this.v;
    for (let i = 0; i < b.count; i++) {
      v.set(b, i);
      this.hash.update(v.bytes());
      const kind = v.kind;
      this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
      const r: Rec = { kind, pid: v.pid, tid: v.tid, ts: v.ts };
      switch (kind) {
        case Kind.OFFCPU: {
          const o = this.off.setFrom(v);
          Object.assign(r, { startNs: o.startNs, blockedNs: o.blockedNs, prevState: o.prevState, flags: o.flags });
          break;
        }
        case Kind.FUTEX_WAIT: {
          const f = this.fw.setFrom(v);
          Object.assign(r, { startNs: f.startNs, uaddr: f.uaddr, ret: f.ret });
          break;
        }
        case Kind.FUTEX_WAKE: {
          const f = this.fk.setFrom(v);
          Object.assign(r, { startNs: f.startNs, uaddr: f.uaddr, ret: f.ret });
          break;
        }
        case Kind.TASK: {
          const t = this.task.setFrom(v);
          Object.assign(r, { event: t.event, otherPid: t.otherPid, comm: t.taskComm, exitCode: t.exitCode });
          break;
        }
        case Kind.CUDA_CALL: {
          const c = this.cuda.setFrom(v);
          Object.assign(r, { startNs: c.startNs, api: c.api, ret: c.ret });
          break;
        }
        case Kind.ACK: {
          const a = this.ack.setFrom(v);
          Object.assign(r, { seq: a.seq, err: a.err, msg: a.msg });
          break;
        }
        case Kind.STATUS: {
          const s = this.st.setFrom(v);
          Object.assign(r, { group: s.group, err: s.err, nAttached: s.nAttached });
          break;
        }
      }
      this.records.push(r);
    }
  }

  /** sha256 of every record's bytes, in stream order. */
  digest(): string {
    return this.hash.copy().digest('hex');
  }

  of(kind: number, pid?: number): Rec[] {
    return this.records.filter((r) => r.kind === kind && (pid === undefined || r.pid === pid));
  }

  count(kind: number): number {
    return this.byKind.get(kind) ?? 0;
  }

  /** Records the BPF programs produced (what the DROPS counters count). */
  get kernelRecords(): number {
    let n = 0;
    for (const [k, c] of this.byKind) if (KERNEL_KINDS.has(k)) n += c;
    return n;
  }
}

/**
 * NVIDIA's real libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel in the
 * project venv (requirements.txt; `npm run setup` installs it), resolved.
 */
export function cudartFromVenv(): string {
  const sp = join(REPO_ROOT, '.venv', 'lib');
  let found: string | null = null;
  try {
    for (const py of readdirSync(sp)) {
      const p = join(sp, py, 'site-packages', 'nvidia', 'cuda_runtime', 'lib', 'libcudart.so.12');
      if (existsSync(p)) found = realpathSync(p);
    }
  } catch {
    /* no venv */
  }
  if (!found) {
    throw new Error(`NVIDIA's libcudart.so.12 is not in ${sp}/python3*/site-packages/nvidia/cuda_runtime/lib: ` +
      'install requirements.txt into .venv (npm run setup)');
  }
  return found;
}

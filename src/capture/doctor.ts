// `kspan doctor`: can capture run here, and if not, why. Static checks first
// (kernel, BTF, privileges, tracefs, probe binary), then the probe itself
// with --check, which attaches every group, reports one STATUS each and exits.

import { accessSync, constants as fsConstants, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { arch, release } from 'node:os';
import { ProbeError, probePath, runProbeCheck } from './probe.js';
import { groupName, STATUS_DETACHED } from './records.js';
import { errnoName } from './json.js';
import type { StatusInfo } from './state.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface CudaLib {
  path: string;
  /** 'maps' (loaded by a running process) or 'arg' (--cuda-lib) */
  source: 'maps' | 'arg';
  exists: boolean;
  /** processes that have it mapped */
  pids: number[];
}

export interface DoctorReport {
  ready: boolean;
  /** why capture cannot run (null when ready) */
  reason: string | null;
  checks: Check[];
  probe: {
    path: string;
    ran: boolean;
    exitCode: number | null;
    error: string | null;
    groups: { group: string; err: number; error: string | null; n_attached: number; n_failed: number; detail: string }[];
  };
  cudaLibs: CudaLib[];
}

export interface DoctorOptions {
  cudaLibs?: string[];
  /** Skip running the probe (static checks only). */
  noProbe?: boolean;
  probePath?: string;
}

// Capability bits (include/uapi/linux/capability.h)
export const CAP_SYS_ADMIN = 21;
export const CAP_PERFMON = 38;
export const CAP_BPF = 39;

/** CapEff from /proc/self/status as a BigInt bit set. */
export function effectiveCaps(statusText?: string): bigint {
  const text = statusText ?? readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(text);
  return m ? BigInt('0x' + m[1]) : 0n;
}

export function hasCap(caps: bigint, bit: number): boolean {
  return ((caps >> BigInt(bit)) & 1n) === 1n;
}

/** "6.18.44-fc" -> [6, 18] */
export function kernelVersion(rel: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * What kspan-probe needs of the kernel, and since when. The floor is the
 * latest of those that apply to the architecture: the sched programs take
 * sched_switch's `prev_state` argument (tp_btf; 5.18) and never re-read
 * prev->__state; futex waits come from a blocked task's saved registers
 * (bpf_task_pt_regs, 5.15); on x86-64 the interrupt context comes from the
 * per-CPU preempt count through bpf_rdonly_cast (6.2). Older features used:
 * BTF tp_btf programs (5.5), ring buffers and task iterators (5.8), task storage (5.11).
 */
export const PROBE_NEEDS: readonly { what: string; since: readonly [number, number]; arch?: string }[] = [
  { what: "sched_switch's prev_state argument (tp_btf)", since: [5, 18] },
  { what: 'bpf_task_pt_regs (futex arguments from saved registers)', since: [5, 15] },
  { what: 'bpf_rdonly_cast (interrupt context from the x86-64 preempt count)', since: [6, 2], arch: 'x64' },
];
/** block_io_start (6.5): block I/O charged to the submitting thread. */
export const BLOCK_IO_START: readonly [number, number] = [6, 5];

const atLeast = ([maj, min]: readonly [number, number], [fm, fn]: readonly [number, number]): boolean => maj > fm || (maj === fm && min >= fn);

/** The oldest kernel the probe runs on, for an architecture (Node's os.arch() names). */
export function kernelFloor(archName: string): [number, number] {
  let f: readonly [number, number] = [0, 0];
  for (const n of PROBE_NEEDS) if ((!n.arch || n.arch === archName) && !atLeast(f, n.since)) f = n.since;
  return [f[0], f[1]];
}

/** The kernel checks: the floor, and what block_io_start (6.5) adds. `blockIoStart`: the tracepoint was seen (null: unknown, go by version). */
export function kernelChecks(rel: string, archName: string, blockIoStart: boolean | null): Check[] {
  const v = kernelVersion(rel);
  const out: Check[] = [];
  const floor = kernelFloor(archName);
  if (atLeast(v, floor)) out.push({ name: 'kernel', status: 'ok', detail: `${rel} (${archName})` });
  else {
    const missing = PROBE_NEEDS.filter((n) => (!n.arch || n.arch === archName) && !atLeast(v, n.since)).map((n) => `${n.what}: ${n.since.join('.')}`);
    out.push({ name: 'kernel', status: 'fail', detail: `${rel}: kspan-probe needs Linux >= ${floor.join('.')} on ${archName} (${missing.join('; ')})` });
  }
  const has = blockIoStart ?? atLeast(v, BLOCK_IO_START);
  out.push(has
    ? { name: 'block I/O', status: 'ok', detail: 'block_io_start (Linux 6.5+): each request is charged to the thread that submitted it' }
    : {
      name: 'block I/O', status: 'warn',
      detail: 'no block_io_start (Linux < 6.5): a request is charged to the thread current when it is dispatched ' +
        '(block_rq_issue), usually the submitter but kblockd or another task\'s plug flush for queued I/O; such records are marked issuer-guessed',
    });
  return out;
}

/** What the probe does on this CPU architecture (Node's os.arch() names). */
export function archCheck(a: string): Check {
  if (a === 'x64') return { name: 'arch', status: 'ok', detail: 'x86-64: every probe group, CUDA launch stream arguments (SysV ABI)' };
  if (a === 'arm64') {
    return {
      name: 'arch', status: 'ok',
      detail: 'arm64: syscall arguments from registers (syscallno, orig_x0), CUDA launch stream arguments per AAPCS64; ' +
        'the BPF programs are compile-checked for arm64 (make check-arm64), tested on x86-64',
    };
  }
  return {
    name: 'arch', status: 'warn',
    detail: `${a}: the BPF programs are built and checked for x86-64 and arm64 only (Makefile ARCH); elsewhere ` +
      'the CUDA launch stream argument is not read (0) and syscall arguments are not decoded from registers',
  };
}

/** Does this kernel have the block_io_start tracepoint? null when tracefs is not readable. */
function blockIoStartSeen(): boolean | null {
  for (const root of ['/sys/kernel/tracing', '/sys/kernel/debug/tracing']) {
    if (existsSync(`${root}/events/block`)) return existsSync(`${root}/events/block/block_io_start`);
  }
  return null;
}

const CUDA_LIB_RE = /\/(libcudart\.so[^/]*|libcuda\.so[^/]*)$/;

/** CUDA libraries mapped by running processes (/proc/*\/maps), plus the given paths. */
export function findCudaLibs(extra: string[] = []): CudaLib[] {
  const found = new Map<string, CudaLib>();
  let dirs: string[] = [];
  try {
    dirs = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    /* no /proc */
  }
  for (const d of dirs) {
    let maps: string;
    try {
      maps = readFileSync(`/proc/${d}/maps`, 'utf8');
    } catch {
      continue; // gone, or not ours to read
    }
    if (!maps.includes('libcud')) continue;
    for (const line of maps.split('\n')) {
      const i = line.indexOf('/');
      if (i < 0) continue;
      const path = line.slice(i).replace(/ \(deleted\)$/, '');
      if (!CUDA_LIB_RE.test(path)) continue;
      let e = found.get(path);
      if (!e) found.set(path, (e = { path, source: 'maps', exists: true, pids: [] }));
      const pid = Number(d);
      if (!e.pids.includes(pid)) e.pids.push(pid);
    }
  }
  for (const p of extra) {
    if (!found.has(p)) found.set(p, { path: p, source: 'arg', exists: existsSync(p), pids: [] });
  }
  return [...found.values()];
}

export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const checks: Check[] = [];
  let fatal: string | null = null;
  const failed = (name: string, detail: string): void => {
    checks.push({ name, status: 'fail', detail });
    fatal ??= `${name}: ${detail}`;
  };

  // kernel: the probe's floor, what block_io_start adds; the CPU architecture
  const rel = release();
  for (const c of kernelChecks(rel, arch(), blockIoStartSeen())) {
    if (c.status === 'fail') failed(c.name, c.detail);
    else checks.push(c);
  }
  checks.push(archCheck(arch()));

  // BTF
  const btf = '/sys/kernel/btf/vmlinux';
  if (existsSync(btf)) checks.push({ name: 'btf', status: 'ok', detail: `${btf} (${(statSync(btf).size / 1e6).toFixed(1)} MB)` });
  else failed('btf', `${btf} missing: the kernel needs CONFIG_DEBUG_INFO_BTF=y (CO-RE programs cannot load)`);

  // privileges
  const euid = process.geteuid?.() ?? -1;
  const caps = effectiveCaps();
  const capNames = [[CAP_BPF, 'CAP_BPF'], [CAP_PERFMON, 'CAP_PERFMON'], [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN']] as const;
  const have = capNames.filter(([b]) => hasCap(caps, b)).map(([, n]) => n);
  if (euid === 0) {
    checks.push({ name: 'privileges', status: 'ok', detail: `root (CapEff 0x${caps.toString(16)}${have.length ? `: ${have.join(', ')}` : ''})` });
  } else if (hasCap(caps, CAP_SYS_ADMIN) || (hasCap(caps, CAP_BPF) && hasCap(caps, CAP_PERFMON))) {
    checks.push({ name: 'privileges', status: 'ok', detail: `uid ${euid} with ${have.join(', ')}` });
  } else {
    failed('privileges', `uid ${euid} without CAP_BPF + CAP_PERFMON (have: ${have.join(', ') || 'none'}): run as root (sudo kspan ...) or grant the capabilities to build/kspan-probe`);
  }

  // tracefs
  if (existsSync('/sys/kernel/tracing/events')) {
    checks.push({ name: 'tracefs', status: 'ok', detail: '/sys/kernel/tracing' });
  } else {
    checks.push({ name: 'tracefs', status: 'warn', detail: '/sys/kernel/tracing is not mounted; the probe mounts it when it starts (needs privileges)' });
  }

  // probe binary
  const path = opts.probePath ?? probePath();
  let probeOk = false;
  try {
    accessSync(path, fsConstants.X_OK);
    probeOk = true;
    checks.push({ name: 'probe binary', status: 'ok', detail: path });
  } catch {
    failed('probe binary', `${path} ${existsSync(path) ? 'is not executable' : 'not built'}: run \`make -s probe\` (or set KSPAN_PROBE)`);
  }

  // probe --check
  const probe: DoctorReport['probe'] = { path, ran: false, exitCode: null, error: null, groups: [] };
  if (probeOk && !opts.noProbe) {
    probe.ran = true;
    try {
      const r = await runProbeCheck({ path, cudaLibs: opts.cudaLibs });
      probe.exitCode = r.exit.code;
      probe.groups = r.state.status.map(statusRow);
      const core = latestPerGroup(r.state.status);
      const on = core.filter((s) => s.err === 0 && s.nAttached > 0);
      const idle = core.filter((s) => s.err === 0 && s.nAttached === 0);
      const attached = on.length;
      checks.push({
        name: 'probe check',
        status: attached > 0 ? 'ok' : 'fail',
        detail: `attached: ${on.map((s) => s.name).join(' ') || 'none'} (ABI ${r.state.hello?.abiVersion ?? '?'})` +
          (idle.length ? `; idle: ${idle.map((s) => `${s.name}${s.detail ? ` (${s.detail})` : ''}`).join(', ')}` : ''),
      });
      for (const s of core) {
        if (s.err !== 0 && s.err !== STATUS_DETACHED) {
          checks.push({ name: `  ${s.name}`, status: 'warn', detail: `${errnoName(s.err) ?? s.err}: ${s.detail || 'not attached'} (${s.nFailed} failed)` });
        }
      }
      if (attached === 0) fatal ??= 'probe check: no probe group attached';
    } catch (e) {
      const err = e as Error;
      probe.error = err.message;
      probe.exitCode = e instanceof ProbeError ? e.exitCode : null;
      failed('probe check', err.message.replace(/\n\s*/g, ' — '));
    }
  }

  // CUDA libraries
  const libs = findCudaLibs(opts.cudaLibs ?? []);
  if (libs.length === 0) {
    checks.push({ name: 'cuda libs', status: 'info', detail: 'none loaded by a running process; give --cuda-lib PATH to attach to one (e.g. torch/lib/libcudart.so.12)' });
  } else {
    for (const l of libs) {
      const where = l.source === 'maps' ? `mapped by ${l.pids.length} process${l.pids.length === 1 ? '' : 'es'}` : 'given';
      checks.push({ name: 'cuda lib', status: l.exists ? 'ok' : 'fail', detail: `${l.path} (${where}${l.exists ? '' : ', not found'})` });
      if (!l.exists) fatal ??= `cuda lib: ${l.path} not found`;
    }
  }

  return { ready: fatal === null, reason: fatal, checks, probe, cudaLibs: libs };
}

/** The CUDA group reports once per library; the core groups once each. Keep the last per group. */
function latestPerGroup(st: StatusInfo[]): StatusInfo[] {
  const m = new Map<number, StatusInfo>();
  for (const s of st) {
    const prev = m.get(s.group);
    // for CUDA, prefer a success over a later failure of another library
    if (!prev || !(prev.err === 0 && prev.nAttached > 0 && s.err !== 0)) m.set(s.group, s);
  }
  return [...m.values()].sort((a, b) => a.group - b.group);
}

function statusRow(s: StatusInfo): DoctorReport['probe']['groups'][number] {
  return {
    group: groupName(s.group), err: s.err, error: s.err === STATUS_DETACHED ? 'detached' : errnoName(s.err),
    n_attached: s.nAttached, n_failed: s.nFailed, detail: s.detail,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const mark: Record<CheckStatus, string> = { ok: ' ok ', warn: 'WARN', fail: 'FAIL', info: 'info' };
  const L: string[] = ['kspan doctor'];
  for (const c of r.checks) L.push(`  [${mark[c.status]}] ${c.name.padEnd(14)} ${c.detail}`);
  if (r.probe.groups.length) {
    L.push('', '  probe groups (kspan-probe --check):');
    L.push(`    ${'GROUP'.padEnd(6)} ${'RESULT'.padEnd(9)} ${'ATTACHED'.padStart(8)} ${'FAILED'.padStart(6)}  DETAIL`);
    for (const g of r.probe.groups) {
      const res = g.err === 0 ? 'ok' : g.error ?? String(g.err);
      L.push(`    ${g.group.padEnd(6)} ${res.padEnd(9)} ${String(g.n_attached).padStart(8)} ${String(g.n_failed).padStart(6)}  ${g.detail}`);
    }
  }
  L.push('', r.ready ? 'capture: ready' : `capture: cannot run — ${r.reason}`);
  return L.join('\n');
}

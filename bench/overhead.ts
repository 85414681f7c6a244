// Overhead side by side: the same workload with no tracing, with kspan, with
// `perf sched record`, and with a bpftrace off-CPU script (bench/offcpu.bt),
// in one run, alternated (the order rotates every round, so drift and the
// other load on the machine fall on every side alike), medians of the rounds.
//
//   npm run bench:overhead [-- --quick] [-- --runs N] [-- --seconds S]
//                          [-- --sides none,kspan,perf,bpftrace] [-- --workloads request_loop,futex_pingpong]
//                          [-- --rt]
//
// Workloads (bench/workloads/, built by `make`):
//   (a) request_loop: 2 threads, per request ~200 µs CPU, a 100 µs sleep, a
//       20 µs critical section under a shared mutex;
//   (b) futex_pingpong: two threads pinned to CPU 0 handing a token over a
//       futex (a context-switch storm).
// Sides:
//   kspan     the real pipeline: kspan-probe host-wide, default groups and
//             thresholds, piped into the Node decoder (no --stats: the kernel's
//             run-time accounting costs two clock reads per program run);
//   perf      `perf sched record -a` into a file under /var/tmp (Debian linux-perf);
//   bpftrace  `bpftrace bench/offcpu.bt` (Debian bpftrace): sched_switch +
//             sched_waking, per-thread intervals in maps, in-kernel sums;
//   kspan-syscalls (only when named in --sides) kspan with the opt-in
//             futex-syscalls group instead of futex: what the syscall
//             tracepoints cost;
// a side whose tool is not installed is left out (said on stderr).
// Overhead = median over rounds of (1 - side ops/s / no-tracing ops/s of the
// same round). Also: the workload's own CPU per op (tracing in the kernel is
// charged to the traced tasks) and the tool's CPU (its processes).
// --rt runs the workloads under SCHED_FIFO (chrt -f 10): steadier numbers on
// a machine shared with other work, which then waits (up to the kernel's RT
// throttle, 95%) on the workload's CPUs while it runs.
// After the rounds, one more kspan run with --stats gives the BPF cost per
// hook (kernel-accounted ns per run) and the CPU per captured record.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ProbeProcess, REPO_ROOT, type CaptureSink } from '../src/capture/index.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    seconds: { type: 'string' },
    sides: { type: 'string' },
    workloads: { type: 'string' },
    rt: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs ?? (values.quick ? 3 : 7));
const seconds = Number(values.seconds ?? (values.quick ? 1 : 3));
const WORKLOADS = join(REPO_ROOT, 'bench', 'workloads', 'bin');
const CLK_TCK = 100;
type Side = 'none' | 'kspan' | 'kspan-syscalls' | 'perf' | 'bpftrace';

interface WorkOut { ops: number; seconds: number; ops_per_s: number; cpu_s: number; pid: number }
interface SideRun { w: WorkOut; toolCpuNs: number; records: number }

function runWorkload(name: string): Promise<WorkOut> {
  return new Promise((resolve, reject) => {
    const bin = join(WORKLOADS, name);
    const c = values.rt
      ? spawn('chrt', ['-f', '10', bin, String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] })
      : spawn(bin, [String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as WorkOut) : reject(new Error(`${name} exited ${code}`))));
  });
}

function procCpuNs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) / CLK_TCK) * 1e9; // utime + stime
  } catch {
    return 0;
  }
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((d) => existsSync(join(d, cmd)));
}

class CountingSink implements CaptureSink {
  records = 0;
  onBatch(batch: { count: number }): void {
    this.records += batch.count;
  }
}

/** This Node process's CPU while the workload runs, without tracing: spawning and waiting cost. */
let nodeIdleCpuNs: number[] = [];

async function sideNone(name: string): Promise<SideRun> {
  const c0 = process.cpuUsage();
  const w = await runWorkload(name);
  const cu = process.cpuUsage(c0);
  nodeIdleCpuNs.push((cu.user + cu.system) * 1000);
  return { w, toolCpuNs: 0, records: 0 };
}

interface KspanRun extends SideRun { bpf: Record<string, { runs: number; ns: number }>; probeCpuNs: number; consumerCpuNs: number }

async function sideKspan(name: string, stats = false, groups?: string[]): Promise<KspanRun> {
  const sink = new CountingSink();
  let bpf: KspanRun['bpf'] = {};
  const probe = ProbeProcess.start({
    noCudaScan: true, extraArgs: stats ? ['--stats'] : [], groups,
    onStderr: (line) => {
      const m = /stats (\{.*\})$/.exec(line);
      if (m) bpf = JSON.parse(m[1]) as KspanRun['bpf'];
    },
  }, sink);
  await probe.ready;
  await probe.command('ping');
  const probeCpu0 = procCpuNs(probe.pid!);
  const cons0 = process.cpuUsage();
  const rec0 = sink.records;
  const w = await runWorkload(name);
  await probe.command('flush');
  const probeCpuNs = procCpuNs(probe.pid!) - probeCpu0;
  const cu = process.cpuUsage(cons0);
  const records = sink.records - rec0;
  await probe.stop();
  // the consumer's CPU, less what this process spends on running the workload anyway
  const consumerCpuNs = Math.max(0, (cu.user + cu.system) * 1000 - median(nodeIdleCpuNs.length ? nodeIdleCpuNs : [0]));
  return { w, records, probeCpuNs, consumerCpuNs, toolCpuNs: probeCpuNs + consumerCpuNs, bpf };
}

/** Start a tracer, wait until it is tracing, run the workload, stop it with SIGINT. */
async function sideTool(name: string, cmd: string, args: string[], ready: (out: string) => boolean, cleanup?: () => void): Promise<SideRun> {
  const t = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((res) => t.on('close', () => res()));
  t.stdout!.on('data', (d: Buffer) => { if (out.length < 65536) out += d; });
  t.stderr!.on('data', (d: Buffer) => { if (out.length < 65536) out += d; });
  const t0 = Date.now();
  while (!ready(out)) {
    if (t.exitCode !== null || Date.now() - t0 > 30000) throw new Error(`${cmd} did not start: ${out.slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 300)); // the announcement comes just before the attach
  const cpu0 = procCpuNs(t.pid!);
  try {
    const w = await runWorkload(name);
    const toolCpuNs = procCpuNs(t.pid!) - cpu0;
    return { w, toolCpuNs, records: 0 };
  } finally {
    stop(t);
    await exited;
    cleanup?.();
  }
}

function stop(c: ChildProcess): void {
  if (c.exitCode === null) c.kill('SIGINT');
}

const PERF_DATA = `/var/tmp/kspan-bench-perf-${process.pid}.data`;

async function runSide(side: Side, name: string): Promise<SideRun> {
  switch (side) {
    case 'none': return sideNone(name);
    case 'kspan': return sideKspan(name);
    case 'kspan-syscalls': return sideKspan(name, false, ['sched', 'task', 'futex-syscalls', 'block', 'tcp', 'cuda']);
    case 'perf':
      // perf prints nothing when it starts: tracing has begun once it wrote the file's header
      return sideTool(name, 'perf', ['sched', 'record', '-a', '-o', PERF_DATA],
        () => existsSync(PERF_DATA) && statSync(PERF_DATA).size > 0,
        () => rmSync(PERF_DATA, { force: true }));
    case 'bpftrace':
      return sideTool(name, 'bpftrace', [join(REPO_ROOT, 'bench', 'offcpu.bt')], (out) => /Attaching \d+ probes/.test(out));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const pct = (x: number) => `${x.toFixed(2)}%`;

async function bench(name: string, label: string, sides: Side[]): Promise<void> {
  const res = new Map<Side, SideRun[]>(sides.map((s) => [s, []]));
  nodeIdleCpuNs = [];
  for (let i = 0; i < runs; i++) {
    // rotate the order every round: each side goes first, second, ... in turn
    const order = sides.map((_, k) => sides[(k + i) % sides.length]);
    // 'none' always has a value before 'kspan' needs nodeIdleCpuNs: measure it first on round 0
    if (i === 0) order.sort((a, b) => (a === 'none' ? -1 : b === 'none' ? 1 : 0));
    for (const s of order) res.get(s)!.push(await runSide(s, name));
    process.stderr.write(`  ${label} round ${i + 1}/${runs} (${order.join(' ')}): ` +
      sides.map((s) => `${s} ${res.get(s)![i].w.ops_per_s.toFixed(0)}`).join(', ') + ` ops/s; load ${loadavg()[0].toFixed(1)}\n`);
  }
  const none = res.get('none')!;
  const opsNone = median(none.map((r) => r.w.ops_per_s));
  const cpuOpNone = median(none.map((r) => (r.w.cpu_s * 1e9) / r.w.ops));
  console.log(`${label}: ${runs} rounds x ${seconds} s per side`);
  console.log(`  side            ops/s (median)   overhead (median of paired)   workload CPU/op   tool CPU (ms per s)`);
  for (const s of sides) {
    const rs = res.get(s)!;
    const ops = median(rs.map((r) => r.w.ops_per_s));
    const paired = median(rs.map((r, i) => (1 - r.w.ops_per_s / none[i].w.ops_per_s) * 100));
    const tag = s.replace('-', '_');
    const cpuOp = median(rs.map((r) => (r.w.cpu_s * 1e9) / r.w.ops));
    const tool = median(rs.map((r) => r.toolCpuNs / 1e6 / r.w.seconds));
    console.log(`  ${s.padEnd(14)}  ${ops.toFixed(0).padStart(12)}   ${s === 'none' ? '-'.padStart(12) : pct(paired).padStart(12)}` +
      `   (${pct((1 - ops / opsNone) * 100)} of medians)   ${cpuOp.toFixed(0).padStart(8)} ns (${s === 'none' ? '-' : pct((cpuOp / cpuOpNone - 1) * 100)})   ${tool.toFixed(1)}`);
    console.log(`RESULT ops_${label}_${tag} ${ops.toFixed(0)} ops/s`);
    if (s !== 'none') {
      console.log(`RESULT overhead_${label}_${tag}_pct ${paired.toFixed(2)} %`);
      console.log(`RESULT cpu_per_op_overhead_${label}_${tag}_pct ${((cpuOp / cpuOpNone - 1) * 100).toFixed(2)} %`);
    }
  }
  if (sides.includes('kspan')) {
    const k = res.get('kspan')! as KspanRun[];
    const recPerS = median(k.map((r) => r.records / r.w.seconds));
    // the kernel's accounting, in a separate run (it slows every program run a little)
    const st = await sideKspan(name, true);
    const bpfNs = Object.values(st.bpf).reduce((a, p) => a + p.ns, 0);
    const nsPerRecord = (bpfNs + st.probeCpuNs + st.consumerCpuNs) / Math.max(1, st.records);
    const hooks = Object.entries(st.bpf).filter(([, p]) => p.runs > 1000).sort((a, b) => b[1].ns - a[1].ns)
      .map(([n, p]) => `${n} ${(p.ns / p.runs).toFixed(0)} ns x ${p.runs}`).join(', ');
    console.log(`  kspan: ${recPerS.toFixed(0)} records/s; BPF per hook (--stats run): ${hooks}`);
    console.log(`  kspan --stats run: BPF ${(bpfNs / 1e6).toFixed(1)} ms, probe ${(st.probeCpuNs / 1e6).toFixed(1)} ms, ` +
      `consumer ${(st.consumerCpuNs / 1e6).toFixed(1)} ms for ${st.records} records = ${nsPerRecord.toFixed(0)} CPU ns/record`);
    console.log(`RESULT records_per_s_${label}_kspan ${recPerS.toFixed(0)} records/s`);
    console.log(`RESULT cpu_ns_per_record_${label}_kspan ${nsPerRecord.toFixed(0)} ns`);
    for (const [n, p] of Object.entries(st.bpf)) {
      if (p.runs > 1000) console.log(`RESULT bpf_ns_per_run_${label}_${n} ${(p.ns / p.runs).toFixed(0)} ns`);
    }
  }
}

if (process.geteuid?.() !== 0) {
  console.error('bench:overhead loads BPF programs and runs perf/bpftrace: run as root');
  process.exit(1);
}
const wanted = (values.sides ?? 'none,kspan,perf,bpftrace').split(',').map((s) => s.trim()) as Side[];
const sides: Side[] = ['none'];
for (const s of wanted) {
  if (s === 'none' || sides.includes(s)) continue;
  if (!['kspan', 'kspan-syscalls', 'perf', 'bpftrace'].includes(s)) throw new Error(`unknown side ${s}`);
  if ((s === 'perf' || s === 'bpftrace') && !onPath(s)) {
    console.error(`${s} is not installed: left out (Debian: apt-get install ${s === 'perf' ? 'linux-perf' : 'bpftrace'})`);
    continue;
  }
  sides.push(s);
}
const load0 = loadavg();
console.error(`overhead side by side: ${sides.join(', ')}; ${runs} rounds x ${seconds} s per side per workload${values.rt ? ', workloads SCHED_FIFO' : ''}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
const wls = (values.workloads ?? 'request_loop,futex_pingpong').split(',');
if (wls.includes('request_loop')) await bench('request_loop', 'request_loop', sides);
if (wls.includes('futex_pingpong')) await bench('futex_pingpong', 'pingpong', sides);
const load1 = loadavg();
console.log(`load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${load1.map((x) => x.toFixed(2)).join(' ')} (${(await import('node:os')).cpus().length} CPUs)`);
console.log(`RESULT load_average_start ${load0[0].toFixed(2)} load`);

// Overhead A/B: the same workload with and without the probe attached,
// alternated, medians of >= 5 runs each. The "with" side is the real
// pipeline: kspan-probe (host-wide, all groups, default thresholds) piped
// into the Node decoder.
//
//   npm run bench:overhead [-- --quick] [-- --runs N] [-- --seconds S]
//
// Workloads (bench/workloads/, built by `make`):
//   (a) request_loop: 2 threads, per request ~200 µs CPU, a 100 µs sleep, a
//       20 µs critical section under a shared mutex;
//   (b) futex_pingpong: two threads handing a token over a futex (a
//       context-switch storm).
// Reported: ops/s, overhead %, and CPU ns per captured record, where the CPU
// counted is the BPF programs' run time (the kernel's own accounting, probe
// --stats) + the probe process + the Node consumer; and the BPF cost per hook.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ProbeProcess, REPO_ROOT, type CaptureSink } from '../src/capture/index.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    seconds: { type: 'string' },
  },
});
const runs = Number(values.runs ?? 5);
const seconds = Number(values.seconds ?? (values.quick ? 1 : 3));
const WORKLOADS = join(REPO_ROOT, 'bench', 'workloads', 'bin');
const CLK_TCK = 100;

interface WorkOut { ops: number; seconds: number; ops_per_s: number; cpu_s: number; pid: number }

function runWorkload(name: string): Promise<WorkOut> {
  return new Promise((resolve, reject) => {
    const c = spawn(join(WORKLOADS, name), [String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as WorkOut) : reject(new Error(`${name} exited ${code}`))));
  });
}

function procCpuNs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) / CLK_TCK) * 1e9; // utime + stime
}

class CountingSink implements CaptureSink {
  records = 0;
  onBatch(batch: { count: number }): void {
    this.records += batch.count;
  }
}

interface WithRun { w: WorkOut; records: number; probeCpuNs: number; consumerCpuNs: number; bpf: Record<string, { runs: number; ns: number }> }

async function withProbe(name: string): Promise<WithRun> {
  const sink = new CountingSink();
  let bpf: WithRun['bpf'] = {};
  // --stats: the kernel accounts each BPF program's runs and run time.
  const probe = ProbeProcess.start({
    noCudaScan: true, extraArgs: ['--stats'],
    onStderr: (line) => {
      const m = /stats (\{.*\})$/.exec(line);
      if (m) bpf = JSON.parse(m[1]) as WithRun['bpf'];
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
  return { w, records, probeCpuNs, consumerCpuNs: (cu.user + cu.system) * 1000, bpf };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function bench(name: string, label: string): Promise<void> {
  const base: WorkOut[] = [];
  const withs: WithRun[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternate which side goes first, so drift (thermal, page cache) cancels out.
    if (i % 2 === 0) {
      base.push(await runWorkload(name));
      withs.push(await withProbe(name));
    } else {
      withs.push(await withProbe(name));
      base.push(await runWorkload(name));
    }
    process.stderr.write(`  ${label} run ${i + 1}/${runs}: ${base[i].ops_per_s.toFixed(0)} vs ${withs[i].w.ops_per_s.toFixed(0)} ops/s, ${withs[i].records} records\n`);
  }
  const opsBase = median(base.map((b) => b.ops_per_s));
  const opsWith = median(withs.map((r) => r.w.ops_per_s));
  const overhead = (1 - opsWith / opsBase) * 100;
  const cpuPerOpBase = median(base.map((b) => (b.cpu_s * 1e9) / b.ops));
  const bpfNs = (r: WithRun) => Object.values(r.bpf).reduce((a, p) => a + p.ns, 0);
  // CPU per captured record: BPF programs (kernel-accounted, whole capture
  // incl. the stats-free setup) + the probe process + the Node consumer.
  const nsPerEvent = median(withs.map((r) => (bpfNs(r) + r.probeCpuNs + r.consumerCpuNs) / Math.max(1, r.records)));
  const hooks = Object.entries(withs[withs.length - 1].bpf).filter(([, p]) => p.runs > 1000)
    .map(([name, p]) => `${name} ${(p.ns / p.runs).toFixed(0)} ns x ${p.runs}`).join(', ');
  console.log(`${label}: BPF cost per hook (last run): ${hooks}`);
  const eventsPerS = median(withs.map((r) => r.records / r.w.seconds));
  const part = (f: (r: WithRun) => number) => (median(withs.map(f)) / 1e6).toFixed(1);
  console.log(`${label}: CPU per run (median ms): BPF programs ${part(bpfNs)}, probe ${part((r) => r.probeCpuNs)}, ` +
    `consumer ${part((r) => r.consumerCpuNs)}, workload ${part((r) => r.w.cpu_s * 1e9)} ` +
    `(${part((r) => Math.max(0, r.w.cpu_s * 1e9 - cpuPerOpBase * r.w.ops))} more than without)`);
  console.log(`${label}: ${opsBase.toFixed(0)} ops/s without, ${opsWith.toFixed(0)} with the probe ` +
    `(${overhead.toFixed(2)}% overhead), ${eventsPerS.toFixed(0)} records/s captured, ${nsPerEvent.toFixed(0)} CPU ns/record`);
  console.log(`RESULT overhead_${label}_pct ${overhead.toFixed(2)} %`);
  console.log(`RESULT ops_${label}_without ${opsBase.toFixed(0)} ops/s`);
  console.log(`RESULT ops_${label}_with ${opsWith.toFixed(0)} ops/s`);
  console.log(`RESULT cpu_ns_per_record_${label} ${nsPerEvent.toFixed(0)} ns`);
}

if (process.geteuid?.() !== 0) {
  console.error('bench:overhead loads BPF programs: run as root');
  process.exit(1);
}
console.error(`overhead A/B: ${runs} runs x ${seconds} s per side per workload`);
await bench('request_loop', 'request_loop');
await bench('futex_pingpong', 'pingpong');

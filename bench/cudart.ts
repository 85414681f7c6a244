// Cost of kspan's CUDA uprobe + uretprobe per call, on NVIDIA's real
// libcudart.so.12 (the nvidia-cuda-runtime-cu12 wheel in .venv). No GPU is
// needed: without a driver every call returns 35 at once, so a tight loop of
// cudaStreamSynchronize measures the call, and with the probe attached what
// the uprobe pair adds (entry uprobe, uretprobe, the BPF programs, the record).
//
//   npm run bench:cudart [-- --quick] [-- --runs N]
//
// Two callers, alternated rounds without / with kspan-probe (groups task,cuda;
// --cuda-lib on the real library), medians:
//   C       bench/workloads/cudart_calls: dlopen + a C loop (what a framework's C++ does);
//   Python  test/fixtures/cudart_ctypes.py --bench: ctypes, as PyTorch's loader opens it.
// Reported: calls/s each way, ns added per call (median of paired rounds), and
// from a separate --stats run the kernel-accounted ns per run of the two
// programs and the CPU per captured record (BPF + probe + consumer).

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ProbeProcess, REPO_ROOT, type CaptureSink } from '../src/capture/index.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, runs: { type: 'string' } } });
const runs = Number(values.runs ?? (values.quick ? 3 : 7));
const C_CALLS = values.quick ? 500_000 : 2_000_000;
const PY_CALLS = values.quick ? 100_000 : 400_000;

function venvCudart(): string {
  const lib = join(REPO_ROOT, '.venv', 'lib');
  for (const py of existsSync(lib) ? readdirSync(lib) : []) {
    const p = join(lib, py, 'site-packages', 'nvidia', 'cuda_runtime', 'lib', 'libcudart.so.12');
    if (existsSync(p)) return realpathSync(p);
  }
  throw new Error('libcudart.so.12 not in .venv: install requirements.txt (npm run setup)');
}

interface Out { calls: number; calls_per_s: number; ns_per_call: number; ret?: number }

function runCaller(kind: 'C' | 'Python', lib: string): Promise<Out> {
  const [cmd, args] = kind === 'C'
    ? [join(REPO_ROOT, 'bench', 'workloads', 'bin', 'cudart_calls'), [lib, String(C_CALLS)]]
    : [join(REPO_ROOT, '.venv', 'bin', 'python'), [join(REPO_ROOT, 'test', 'fixtures', 'cudart_ctypes.py'), '--bench', String(PY_CALLS)]];
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Out) : reject(new Error(`${cmd} exited ${code}`))));
  });
}

class CountingSink implements CaptureSink {
  records = 0;
  onBatch(batch: { count: number }): void { this.records += batch.count; }
}

async function withProbe<T>(lib: string, stats: boolean, work: () => Promise<T>):
Promise<{ r: T; records: number; bpf: Record<string, { runs: number; ns: number }>; probeNs: number; consumerNs: number }> {
  const sink = new CountingSink();
  let bpf: Record<string, { runs: number; ns: number }> = {};
  const probe = ProbeProcess.start({
    noCudaScan: true, groups: ['task', 'cuda'], cudaLibs: [lib], extraArgs: stats ? ['--stats'] : [],
    onStderr: (line) => { const m = /stats (\{.*\})$/.exec(line); if (m) bpf = JSON.parse(m[1]); },
  }, sink);
  await probe.ready;
  await probe.command('ping');
  const cpu = (pid: number) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return ((Number(rest[11]) + Number(rest[12])) / 100) * 1e9;
    } catch { return 0; }
  };
  const p0 = cpu(probe.pid!);
  const c0 = process.cpuUsage();
  const r0 = sink.records;
  const r = await work();
  await probe.command('flush');
  const probeNs = cpu(probe.pid!) - p0;
  const cu = process.cpuUsage(c0);
  const records = sink.records - r0;
  await probe.stop(20_000); // uprobe detach takes the kernel ~0.1 s each
  return { r, records, bpf, probeNs, consumerNs: (cu.user + cu.system) * 1000 };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

if (process.geteuid?.() !== 0) {
  console.error('bench:cudart attaches uprobes: run as root');
  process.exit(1);
}
const lib = venvCudart();
console.error(`uprobe cost on ${lib}: ${runs} rounds`);
for (const kind of ['C', 'Python'] as const) {
  const without: Out[] = [];
  const withp: Out[] = [];
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      without.push(await runCaller(kind, lib));
      withp.push((await withProbe(lib, false, () => runCaller(kind, lib))).r);
    } else {
      withp.push((await withProbe(lib, false, () => runCaller(kind, lib))).r);
      without.push(await runCaller(kind, lib));
    }
    process.stderr.write(`  ${kind} round ${i + 1}/${runs}: ${without[i].ns_per_call.toFixed(1)} vs ${withp[i].ns_per_call.toFixed(1)} ns/call\n`);
  }
  const a = median(without.map((o) => o.calls_per_s));
  const b = median(withp.map((o) => o.calls_per_s));
  const added = median(withp.map((o, i) => o.ns_per_call - without[i].ns_per_call));
  const st = await withProbe(lib, true, () => runCaller(kind, lib));
  const enter = st.bpf.cuda_stream_sync_enter;
  const ret = st.bpf.cuda_stream_sync_return;
  const bpfNs = Object.values(st.bpf).reduce((x, p) => x + p.ns, 0);
  const perRecord = (bpfNs + st.probeNs + st.consumerNs) / Math.max(1, st.records);
  console.log(`${kind}: ${a.toFixed(0)} calls/s without, ${b.toFixed(0)} with the uprobe pair; ${added.toFixed(0)} ns added per call ` +
    `(median of paired rounds); BPF: enter ${enter ? (enter.ns / enter.runs).toFixed(0) : '?'} ns, return ${ret ? (ret.ns / ret.runs).toFixed(0) : '?'} ns per run; ` +
    `${st.records} records, ${perRecord.toFixed(0)} CPU ns per record (BPF + probe + consumer)`);
  const k = kind.toLowerCase();
  console.log(`RESULT cudart_${k}_calls_per_s_without ${a.toFixed(0)} calls/s`);
  console.log(`RESULT cudart_${k}_calls_per_s_with ${b.toFixed(0)} calls/s`);
  console.log(`RESULT cudart_${k}_ns_added_per_call ${added.toFixed(0)} ns`);
  if (enter) console.log(`RESULT cudart_${k}_bpf_enter_ns ${(enter.ns / enter.runs).toFixed(0)} ns`);
  if (ret) console.log(`RESULT cudart_${k}_bpf_return_ns ${(ret.ns / ret.runs).toFixed(0)} ns`);
  console.log(`RESULT cudart_${k}_cpu_ns_per_record ${perRecord.toFixed(0)} ns`);
}

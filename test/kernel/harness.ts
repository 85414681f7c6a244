// Test harness for the kernel tests: runs the real probe around real fixture
// programs (test/fixtures/) and collects the decoded records as plain objects
// (tests may allocate; the product path does not).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import {
  BlockIoView, CudaCallView, FutexWaitView, FutexWakeView, Kind, OffcpuView, ProbeProcess, REPO_ROOT,
  RecordView, StackView, TaskView, TcpRetransView, formatAddr, type CaptureSink, type ClockHistory,
  type ProbeOptions,
} from '../../src/capture/index.js';
import { openStoreWriter, type SpanInput } from '../../src/store/index.js';

export { requireLiveProbe } from '../helpers/live.js';
import { FIXTURES as FIXTURE_BIN } from '../helpers/live.js';
export { FIXTURE_BIN };
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

export interface OffCpu {
  pid: number; tid: number; start: number; end: number; runnable: number; blocked: number; runqueue: number;
  state: number; flags: number; wakerPid: number; wakerTid: number; wakerUaddr: number;
  preemptPid: number; preemptTid: number; lastPid: number; lastTid: number; cpu: number; outCpu: number;
}
export interface FutexWait { pid: number; tid: number; start: number; end: number; uaddr: number; op: number; ret: number; val: number; ownerTid: number; ownerSrc: number; flags: number }
export interface FutexWake { pid: number; tid: number; start: number; end: number; uaddr: number; op: number; ret: number }
export interface BlockIo { pid: number; tid: number; start: number; issue: number; end: number; dev: number; bytes: number; flags: number; error: number; comm: string }
export interface TcpRetrans { pid: number; tid: number; ts: number; family: number; saddr: string; daddr: string; sport: number; dport: number; state: number; inIrq: boolean; sockIno: number }
export interface CudaCall { pid: number; tid: number; start: number; end: number; api: number; apiName: string; arg: number; ret: number }
export interface Task { pid: number; tid: number; ts: number; event: number; comm: string; otherPid: number; otherTid: number; exitCode: number }
export interface Stack { pid: number; tid: number; start: number; nUser: number; nKernel: number; ips: number[] }

export interface Captured {
  offcpu: OffCpu[]; futexWait: FutexWait[]; futexWake: FutexWake[]; io: BlockIo[]; tcp: TcpRetrans[];
  cuda: CudaCall[]; task: Task[]; stack: Stack[];
  probe: ProbeProcess; clock: ClockHistory;
}

class Collector implements CaptureSink {
  readonly c: Omit<Captured, 'probe' | 'clock'> = {
    offcpu: [], futexWait: [], futexWake: [], io: [], tcp: [], cuda: [], task: [], stack: [],
  };
  private readonly v = new RecordView();
  private readonly off = new OffcpuView();
  private readonly fw = new FutexWaitView();
  private readonly fk = new FutexWakeView();
  private readonly io = new BlockIoView();
  private readonly tcp = new TcpRetransView();
  private readonly cu = new CudaCallView();
  private readonly tk = new TaskView();
  private readonly st = new StackView();

  constructor(private readonly keep: (pid: number) => boolean) {}

  onBatch(batch: Parameters<CaptureSink['onBatch']>[0]): void {
    const { v, c } = this;
    for (let i = 0; i < batch.count; i++) {
      v.set(batch, i);
      // TCP retransmits mostly fire in softirq: keep them all, tests match the tuple.
      if (v.kind !== Kind.TCP_RETRANS && !this.keep(v.pid)) continue;
      const base = { pid: v.pid, tid: v.tid };
      switch (v.kind) {
        case Kind.OFFCPU: {
          const o = this.off; o.setFrom(v);
          c.offcpu.push({ ...base, start: o.startNs, end: o.endNs, runnable: o.runnableNs, blocked: o.blockedNs,
            runqueue: o.runqueueNs, state: o.prevState, flags: o.flags, wakerPid: o.wakerPid, wakerTid: o.wakerTid,
            wakerUaddr: o.wakerUaddr, preemptPid: o.preemptPid, preemptTid: o.preemptTid, lastPid: o.lastPid,
            lastTid: o.lastTid, cpu: o.cpu, outCpu: o.outCpu });
          break;
        }
        case Kind.FUTEX_WAIT: {
          const f = this.fw; f.setFrom(v);
          c.futexWait.push({ ...base, start: f.startNs, end: f.ts, uaddr: f.uaddr, op: f.op, ret: f.ret, val: f.val,
            ownerTid: f.ownerTid, ownerSrc: f.ownerSrc, flags: f.flags });
          break;
        }
        case Kind.FUTEX_WAKE: {
          const f = this.fk; f.setFrom(v);
          c.futexWake.push({ ...base, start: f.startNs, end: f.ts, uaddr: f.uaddr, op: f.op, ret: f.ret });
          break;
        }
        case Kind.BLOCK_IO: {
          const b = this.io; b.setFrom(v);
          c.io.push({ ...base, start: b.startNs, issue: b.issueNs, end: b.ts, dev: b.dev, bytes: b.bytesLen,
            flags: b.flags, error: b.error, comm: b.issuerComm });
          break;
        }
        case Kind.TCP_RETRANS: {
          const t = this.tcp; t.setFrom(v);
          c.tcp.push({ ...base, ts: t.ts, family: t.family, saddr: formatAddr(t.family, t.saddrBytes()),
            daddr: formatAddr(t.family, t.daddrBytes()), sport: t.sport, dport: t.dport, state: t.state,
            inIrq: t.inIrq, sockIno: t.sockIno });
          break;
        }
        case Kind.CUDA_CALL: {
          const u = this.cu; u.setFrom(v);
          c.cuda.push({ ...base, start: u.startNs, end: u.ts, api: u.api, apiName: u.apiName, arg: u.arg, ret: u.ret });
          break;
        }
        case Kind.TASK: {
          const t = this.tk; t.setFrom(v);
          c.task.push({ ...base, ts: t.ts, event: t.event, comm: t.taskComm, otherPid: t.otherPid,
            otherTid: t.otherTid, exitCode: t.exitCode });
          break;
        }
        case Kind.STACK: {
          const s = this.st; s.setFrom(v);
          const ips: number[] = [];
          for (let k = 0; k < s.nFrames; k++) ips.push(s.ip(k));
          c.stack.push({ ...base, start: s.startNs, nUser: s.nUser, nKernel: s.nKernel, ips });
          break;
        }
      }
    }
  }
}

/**
 * Start the probe (host-wide unless opts.pids), run `work`, flush, stop, and
 * return the records of the processes `keep` accepts (default: all).
 */
export async function captureDuring(
  opts: ProbeOptions,
  work: (probe: ProbeProcess) => Promise<void>,
  keep: (pid: number) => boolean = () => true,
): Promise<Captured> {
  const sink = new Collector(keep);
  const probe = ProbeProcess.start({ noCudaScan: true, ...opts }, sink);
  await probe.ready;
  await probe.command('ping'); // acked after every group was attached
  try {
    await work(probe);
    await probe.command('flush');
  } finally {
    await probe.stop();
  }
  return { ...sink.c, probe, clock: probe.state.clock };
}

export interface RunResult { code: number | null; stdout: string; stderr: string; pid: number }

/** Run a program asynchronously (the event loop must keep draining the probe's pipe). */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, pid: child.pid ?? -1 });
    });
    child.stdin.on('error', () => {}); // EPIPE when the program never reads stdin
    child.stdin.end(opts.stdin ?? '');
  });
}

/** `kspan record --data DIR --pid PID --duration SECONDS` (a capture of a process already running); asserts it succeeded. */
export async function recordPid(dir: string, pid: number, seconds: number): Promise<RunResult> {
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir, '--pid', String(pid), '--duration', String(seconds)], { timeoutMs: 60000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  return r;
}

/** Run a fixture and parse the one JSON line it prints. */
export async function fixture<T = any>(name: string, args: string[] = [], opts: Parameters<typeof run>[2] = {}): Promise<T> {
  const cmd = name.endsWith('.sh') ? 'bash' : join(FIXTURE_BIN, name);
  const r = await run(cmd, name.endsWith('.sh') ? [join(FIXTURES, name), ...args] : args, opts);
  if (r.code !== 0) throw new Error(`${name} exited ${r.code}: ${r.stderr.trim()}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as T;
}

export const ms = (ns: number): number => ns / 1e6;

/** |actual - expected| <= tol * expected */
export function within(actual: number, expected: number, tol: number): boolean {
  return Math.abs(actual - expected) <= tol * expected;
}

/**
 * The probe's cudaStreamSynchronize calls against cuda_app's own clock around
 * each call (`sync_at_ns[i]`, lasting `sync_ns[i]`; both CLOCK_MONOTONIC like
 * the probe). A preemption between the app's clock read and the call (or after
 * the return) lengthens only the app's figure, so each probed call must lie
 * inside the app's interval and last at least the stub's sleep; and most calls
 * (a loaded 2-CPU machine preempts a few) must agree with the app within 0.2 ms.
 */
export function assertSyncsMatchApp(probed: { start: number; end: number }[], app: { sync_ns: number[]; sync_at_ns: number[] }, sleepNs: number): void {
  const n = app.sync_ns.length;
  const slack = 0.05e6;
  let agree = 0;
  for (let i = 0; i < n; i++) {
    const { start, end } = probed[i], at = app.sync_at_ns[i], d = end - start;
    assert.ok(start >= at - slack && end <= at + app.sync_ns[i] + slack, `sync ${i}: probe [${start}, ${end}] not inside the app's [${at}, ${at + app.sync_ns[i]}]`);
    assert.ok(d >= sleepNs, `sync ${i}: probe ${ms(d).toFixed(2)} ms < the stub's ${ms(sleepNs)} ms sleep`);
    if (Math.abs(d - app.sync_ns[i]) < 0.2e6) agree++;
  }
  assert.ok(agree >= Math.ceil(n * 0.75), `${agree} of ${n} syncs within 0.2 ms of the app's clock`);
}

export type Fixtures = Record<string, any>;

/**
 * `kspan record --data DIR -- bash -c SCRIPT` (run from the fixtures' bin dir):
 * a real capture of a scenario into a new store under /var/tmp (the caller
 * removes it); returns DIR and each fixture's JSON line by name.
 */
export async function recordScenario(script: string, want: string[], extra: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<{ dir: string; fx: Fixtures }> {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-scenario-'));
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir, ...extra,
    '--', 'bash', '-c', `cd ${FIXTURE_BIN} || exit 1; ${script}`], { env, timeoutMs: 120000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  const fx: Fixtures = {};
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('{"fixture"')) {
      const o = JSON.parse(line);
      fx[o.fixture] = o;
    }
  }
  for (const name of want) assert.ok(fx[name], `${name} printed its result: ${r.stdout} ${r.stderr}`);
  return { dir, fx };
}

/** A span of a scenario, in the fixtures' clock (monotonic ns). */
export interface ScenarioSpan {
  name: string;
  startMono: number;
  endMono: number;
  tid?: number;
  pid?: number;
  service?: string;
  requestId?: string;
  attributes?: Record<string, string | number | boolean>;
}

/**
 * Store one trace's spans in DIR's span index (monotonic ns converted with the store's clock history); returns the trace id.
 * `shiftNs`: the capture's times were shifted by this much (test/helpers/shift-probe.ts), the fixtures' were not.
 */
export async function putTrace(dir: string, spans: ScenarioSpan[], shiftNs = 0n): Promise<string> {
  const traceId = randomBytes(16).toString('hex');
  const w = openStoreWriter(dir);
  try {
    const clock = w.reader.clockHistory();
    const rel = (mono: number): number => Number(BigInt(mono) + shiftNs - w.reader.originNs);
    const input: SpanInput[] = spans.map((s) => ({
      traceId, spanId: randomBytes(8).toString('hex'), service: s.service ?? 'scenario', name: s.name,
      startUnixNano: clock.toEpochNs(rel(s.startMono)), endUnixNano: clock.toEpochNs(rel(s.endMono)),
      tid: s.tid ?? null, pid: s.pid ?? null, requestId: s.requestId ?? null, attributes: s.attributes ?? {},
    }));
    await w.reader.spans.putSpans(input);
  } finally {
    await w.close();
  }
  return traceId;
}

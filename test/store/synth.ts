// Synthetic "realistic mix" record stream for store tests and benchmarks:
// ~60% offcpu, 20% futex wait/wake, 10% cuda, 5% block io, rest task/clock,
// across `threads` threads (50 processes of 20 threads), ~1 M events/s of
// capture time overall, each thread's events ~1 ms apart. Deterministic for a
// given seed, and incremental: `next(n)` continues the same stream, so a test
// can regenerate exactly the first n records a writer process ingested.

import { CudaApi, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { FrameWriter } from '../helpers/frames.js';

export interface SynthOptions {
  threads?: number;
  seed?: number;
  /** first capture time, monotonic ns */
  t0?: number;
  /** tid of thread 0 (tids are tidBase .. tidBase + threads - 1) */
  tidBase?: number;
  /** mean capture-time gap between consecutive records, ns (default 1000: ~1 M records/s) */
  gapNs?: number;
  /** emit a HELLO first (default true) */
  hello?: boolean;
  /** keep every event's [start, end] (as stored) of these thread indexes in `kept` */
  keep?: number[];
}

/** What a generator emitted, per thread: thread events (everything but CLOCK/HELLO). */
export interface SynthTally {
  count: Float64Array;
  /** end time of the thread's last event (integer ns, as stored) */
  lastEnd: Float64Array;
  /** sum of (end - t0) over the thread's events (a cheap checksum) */
  sumEnd: Float64Array;
}

export class SynthGen {
  readonly threads: number;
  readonly t0: number;
  readonly tidBase: number;
  readonly gapNs: number;
  /** records emitted so far (HELLO not counted) */
  records = 0;
  /** thread events emitted so far */
  events = 0;
  /** latest end time emitted */
  lastEnd = 0;
  readonly tally: SynthTally;
  /** thread index -> [start, end] of each event, for SynthOptions.keep */
  readonly kept = new Map<number, [number, number][]>();
  private s: number;
  private readonly tnow: Float64Array;
  private now: number;
  private helloDone: boolean;
  private readonly fw = new FrameWriter(8 << 20);

  constructor(o: SynthOptions = {}) {
    this.threads = o.threads ?? 1000;
    this.s = o.seed ?? 42;
    this.t0 = o.t0 ?? 3_600_000_000_000;
    this.tidBase = o.tidBase ?? 10_000;
    this.gapNs = o.gapNs ?? 1000;
    this.helloDone = o.hello === false;
    this.tnow = new Float64Array(this.threads).fill(this.t0);
    this.now = this.t0;
    for (const ti of o.keep ?? []) this.kept.set(ti, []);
    this.tally = { count: new Float64Array(this.threads), lastEnd: new Float64Array(this.threads), sumEnd: new Float64Array(this.threads) };
  }

  tidOf(ti: number): number {
    return this.tidBase + ti;
  }

  private rnd(): number {
    return (this.s = (this.s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  }

  /** The next n records as frames (one Buffer; a HELLO first on the first call). */
  next(n: number): Buffer {
    const out: Buffer[] = [];
    this.emit(n, (b) => out.push(b));
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }

  /** The next n records, in chunks of at most ~8 MB. */
  nextChunks(n: number): Buffer[] {
    const out: Buffer[] = [];
    this.emit(n, (b) => out.push(b));
    return out;
  }

  /** Advance the generator state by n records without building frames (tally only). */
  skip(n: number): void {
    this.emit(n, null);
  }

  private emit(n: number, sink: ((b: Buffer) => void) | null): void {
    const fw = this.fw;
    const threads = this.threads;
    const rnd = (): number => this.rnd();
    const t0 = this.t0;
    const tally = this.tally;
    if (!this.helloDone) {
      this.helloDone = true;
      if (sink) fw.hello({ ts: t0, monoNs: t0, realtimeNs: 1_763_730_000_000_000_000n });
    }
    for (let i = 0; i < n; i++) {
      const ti = Math.floor(rnd() * threads);
      const tid = this.tidBase + ti;
      const pid = this.tidBase + (ti - (ti % 20)); // 50 processes of 20 threads (per 1,000)
      this.now += this.gapNs * (0.5 + rnd());
      const end = Math.max(this.now, this.tnow[ti] + 1000);
      this.tnow[ti] = end;
      const r = rnd() * 100;
      const cpu = Math.floor(rnd() * 2);
      const dur = 50_000 + Math.floor(rnd() * rnd() * 2_000_000);
      const peer = pid + Math.floor(rnd() * 3);
      const lock = 0x7f00_1000_0000 + (pid % 7) * 0x1000 + Math.floor(rnd() * 2) * 0x40;
      this.records++;
      if (end > this.lastEnd) this.lastEnd = end;
      if (r < 98) {
        this.events++;
        tally.count[ti]++;
        const e = Math.floor(end); // what the frame carries
        tally.lastEnd[ti] = e;
        tally.sumEnd[ti] += e - t0;
        const k = this.kept.get(ti);
        if (k) k.push([r < 72 ? e - dur : r < 80 ? e - 3000 : r < 90 ? e - Math.floor(dur / 10) : r < 95 ? e - dur : e, e]); // offcpu/futex wait, wake, cuda, block io, task
      }
      if (r < 60) {
        const woken = rnd() < 0.7;
        const runnable = end - Math.floor(dur * 0.1 * rnd());
        const futexWaker = woken ? rnd() < 0.3 : false;
        const uaddr = woken && rnd() < 0.3 ? lock : 0;
        const preemptTid = woken ? 0 : 900 + Math.floor(rnd() * 4);
        if (sink) {
          fw.offcpu({ ts: end, pid, tid, cpu, startNs: end - dur, runnableNs: runnable, prevState: woken ? 1 : 0,
            flags: woken ? OffcpuFlag.WOKEN | (futexWaker ? OffcpuFlag.WAKER_FUTEX : 0) : OffcpuFlag.PREEMPTED,
            wakerPid: woken ? pid : 0, wakerTid: woken ? peer : 0, wakerUaddr: uaddr,
            preemptPid: woken ? 0 : 900, preemptTid, lastPid: 0, lastTid: 0, outCpu: cpu, wakerCpu: woken ? 1 - cpu : 0 });
        }
      } else if (r < 72) {
        if (sink) fw.futexWait({ ts: end, pid, tid, cpu, startNs: end - dur, uaddr: lock, op: 0x80, ret: 0, val: 2, ownerTid: peer, ownerSrc: 2 });
      } else if (r < 80) {
        if (sink) fw.futexWake({ ts: end, pid, tid, cpu, startNs: end - 3000, uaddr: lock, op: 0x81, ret: 1 });
      } else if (r < 90) {
        const api = rnd() < 0.7 ? CudaApi.CUDA_LAUNCH_KERNEL : CudaApi.CUDA_STREAM_SYNC;
        if (sink) fw.cudaCall({ ts: end, pid, tid, cpu, startNs: end - Math.floor(dur / 10), api, arg: 0x5555_0000 + (pid % 4) * 0x100 });
      } else if (r < 95) {
        const sector = Math.floor(rnd() * 1e9);
        const bytes = 4096 * (1 + Math.floor(rnd() * 4));
        if (sink) fw.blockIo({ ts: end, pid, tid, cpu, startNs: end - dur, issueNs: end - dur + 2000, sector, dev: (8 << 20) | 1, bytes, flags: 1, comm: 'postgres' });
      } else if (r < 98) {
        if (sink) fw.task({ ts: end, pid, tid, event: TaskEvent.NAME, startTime: t0 - 1e9 - ti, comm: `worker-${ti % 20}`, pcomm: 'app' });
      } else {
        if (sink) fw.clock({ ts: end, realtimeNs: 1_763_730_000_000_000_000n + BigInt(Math.round(end - t0)), errorNs: 30 });
      }
      if (sink && fw.len > (8 << 20) - 4096) sink(Buffer.from(fw.take()));
    }
    if (sink && fw.len > 0) sink(Buffer.from(fw.take()));
  }
}

/** The whole stream of n records at once, in ~8 MB chunks (bench/store-ingest.ts). */
export function synthStream(n: number, threads: number, seed = 42, t0 = 3_600_000_000_000): Buffer[] {
  return new SynthGen({ threads, seed, t0 }).nextChunks(n);
}

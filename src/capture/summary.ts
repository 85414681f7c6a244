// SummarySink: the statistics `kspan record` prints at the end — records by
// kind, top threads by off-CPU time, futex waits, block I/O, CUDA calls by
// api with p50/p99. Per record it only updates numbers; allocation happens
// once per new thread / lock word / api, and in the bounded sample buffers.

import type { ClockHistory } from './clock.js';
import { fmtDur } from './json.js';
import { TaskNames } from './names.js';
import { KIND_MAX, Kind, cudaApiName, kindName } from './records.js';
import type { CaptureSink, CaptureState } from './state.js';
import { RecordView, type RecordBatch } from './decoder.js';
import { BlockIoView, CudaCallView, FutexWaitView, OffcpuView, TaskView } from './views.js';

/** Duration samples with a bounded reservoir, for percentiles. */
export class Samples {
  private a: Float64Array;
  n = 0;
  total = 0;
  private seen = 0;
  private rng = 0x2545f491;

  constructor(private readonly cap = 1 << 20) {
    this.a = new Float64Array(64);
  }

  add(x: number): void {
    this.total += x;
    this.seen++;
    if (this.n < this.cap) {
      if (this.n === this.a.length) {
        const b = new Float64Array(Math.min(this.cap, this.a.length * 2));
        b.set(this.a);
        this.a = b;
      }
      this.a[this.n++] = x;
    } else {
      // reservoir sampling keeps a uniform sample once full
      this.rng ^= this.rng << 13;
      this.rng ^= this.rng >>> 17;
      this.rng ^= this.rng << 5;
      const j = (this.rng >>> 0) % this.seen;
      if (j < this.cap) this.a[j] = x;
    }
  }

  get count(): number {
    return this.seen;
  }

  /** Percentiles (0..1) of what was kept; NaN when empty. */
  quantiles(qs: number[]): number[] {
    if (this.n === 0) return qs.map(() => NaN);
    const s = this.a.slice(0, this.n).sort();
    return qs.map((q) => s[Math.min(this.n - 1, Math.max(0, Math.ceil(q * this.n) - 1))]);
  }
}

interface ThreadStat {
  pid: number;
  tid: number;
  total: number;
  blocked: number;
  runq: number;
  count: number;
}

interface LockStat {
  pid: number;
  uaddr: number;
  total: number;
  count: number;
}

export class SummarySink implements CaptureSink {
  readonly byKind = new Float64Array(256);
  readonly names = new TaskNames();
  readonly threads = new Map<number, ThreadStat>();
  readonly futex = new Samples();
  readonly locks = new Map<number, LockStat>();
  readonly ioRead = new Samples();
  readonly ioWrite = new Samples();
  ioReadBytes = 0;
  ioWriteBytes = 0;
  readonly cuda = new Map<number, Samples>();
  tcpRetrans = 0;
  firstTs = 0;
  lastTs = 0;

  private readonly v = new RecordView();
  private readonly off = new OffcpuView();
  private readonly fw = new FutexWaitView();
  private readonly io = new BlockIoView();
  private readonly cu = new CudaCallView();
  private readonly tv = new TaskView();

  onBatch(batch: RecordBatch, _clock: ClockHistory): void {
    const v = this.v;
    for (let i = 0; i < batch.count; i++) {
      v.set(batch, i);
      const kind = v.kind;
      this.byKind[kind]++;
      if (kind >= Kind.CLOCK || kind === Kind.HELLO) continue;
      const ts = v.ts;
      if (this.firstTs === 0 || ts < this.firstTs) this.firstTs = ts;
      if (ts > this.lastTs) this.lastTs = ts;
      switch (kind) {
        case Kind.OFFCPU: {
          const o = this.off.setFrom(v);
          const tid = v.tid;
          let t = this.threads.get(tid);
          if (!t) this.threads.set(tid, (t = { pid: v.pid, tid, total: 0, blocked: 0, runq: 0, count: 0 }));
          const start = o.startNs;
          const runnable = o.runnableNs;
          t.total += ts - start;
          t.blocked += runnable - start;
          t.runq += ts - runnable;
          t.count++;
          break;
        }
        case Kind.FUTEX_WAIT: {
          const f = this.fw.setFrom(v);
          const d = ts - f.startNs;
          this.futex.add(d);
          const ua = f.uaddr;
          let l = this.locks.get(ua);
          if (!l) this.locks.set(ua, (l = { pid: v.pid, uaddr: ua, total: 0, count: 0 }));
          l.total += d;
          l.count++;
          break;
        }
        case Kind.BLOCK_IO: {
          const b = this.io.setFrom(v);
          const d = ts - b.startNs;
          if (b.isWrite) {
            this.ioWrite.add(d);
            this.ioWriteBytes += b.bytesLen;
          } else {
            this.ioRead.add(d);
            this.ioReadBytes += b.bytesLen;
          }
          break;
        }
        case Kind.CUDA_CALL: {
          const c = this.cu.setFrom(v);
          const api = c.api;
          let s = this.cuda.get(api);
          if (!s) this.cuda.set(api, (s = new Samples()));
          s.add(ts - c.startNs);
          break;
        }
        case Kind.TCP_RETRANS:
          this.tcpRetrans++;
          break;
        case Kind.TASK:
          this.names.observeTask(this.tv.setFrom(v));
          break;
      }
    }
  }

  get totalRecords(): number {
    let n = 0;
    for (let k = 0; k < 256; k++) n += this.byKind[k];
    return n;
  }

  /** Human-readable report. */
  format(state: CaptureState, opts: { top?: number; elapsedS?: number } = {}): string {
    const top = opts.top ?? 10;
    const L: string[] = [];
    const total = this.totalRecords;
    const el = opts.elapsedS;
    L.push(`captured ${num(total)} records${el ? ` in ${el.toFixed(1)} s (${num(Math.round(total / Math.max(el, 1e-9)))}/s)` : ''}`);
    const kinds: string[] = [];
    for (let k = 1; k < KIND_MAX; k++) if (this.byKind[k]) kinds.push(`${kindName(k)} ${num(this.byKind[k])}`);
    if (kinds.length) L.push(`  ${kinds.join(', ')}`);
    const drops = state.drops.filter((d) => d !== undefined);
    if (drops.length) {
      L.push(`drops: ${drops.map((d) => `${d!.name} ${num(d!.lost)} lost of ${num(d!.records + d!.lost)}`).join(', ')}` +
        (state.totalLost ? '  (records were lost: raise --ring-mb or the thresholds)' : ''));
    }

    const threads = [...this.threads.values()].sort((a, b) => b.total - a.total).slice(0, top);
    if (threads.length) {
      L.push('', `top threads by off-CPU time (intervals >= threshold):`);
      L.push(`  ${'TID'.padStart(8)} ${'PID'.padStart(8)}  ${'COMM'.padEnd(16)} ${'OFF-CPU'.padStart(9)} ${'BLOCKED'.padStart(9)} ${'RUNQUEUE'.padStart(9)} ${'COUNT'.padStart(8)}`);
      for (const t of threads) {
        L.push(`  ${String(t.tid).padStart(8)} ${String(t.pid).padStart(8)}  ${(this.names.get(t.tid) ?? '?').padEnd(16)} ${fmtDur(t.total).padStart(9)} ${fmtDur(t.blocked).padStart(9)} ${fmtDur(t.runq).padStart(9)} ${num(t.count).padStart(8)}`);
      }
    }

    if (this.futex.count) {
      const [p50, p99] = this.futex.quantiles([0.5, 0.99]);
      L.push('', `futex waits: ${num(this.futex.count)}, total ${fmtDur(this.futex.total)}, p50 ${fmtDur(p50)}, p99 ${fmtDur(p99)}`);
      const locks = [...this.locks.values()].sort((a, b) => b.total - a.total).slice(0, 5);
      for (const l of locks) {
        L.push(`  0x${l.uaddr.toString(16).padEnd(14)} pid ${String(l.pid).padEnd(8)} ${(this.names.process(l.pid) ?? '?').padEnd(16)} ${num(l.count).padStart(7)} waits ${fmtDur(l.total).padStart(9)}`);
      }
    }

    if (this.ioRead.count || this.ioWrite.count) {
      L.push('', 'block I/O:');
      for (const [name, s, bytes] of [['read', this.ioRead, this.ioReadBytes], ['write', this.ioWrite, this.ioWriteBytes]] as const) {
        if (!s.count) continue;
        const [p50, p99] = s.quantiles([0.5, 0.99]);
        L.push(`  ${name.padEnd(6)} ${num(s.count).padStart(8)} requests ${mb(bytes).padStart(10)}  p50 ${fmtDur(p50)}  p99 ${fmtDur(p99)}`);
      }
    }

    if (this.cuda.size) {
      L.push('', 'CUDA calls:');
      L.push(`  ${'API'.padEnd(24)} ${'COUNT'.padStart(8)} ${'P50'.padStart(9)} ${'P99'.padStart(9)} ${'TOTAL'.padStart(9)}`);
      const apis = [...this.cuda.entries()].sort((a, b) => b[1].total - a[1].total);
      for (const [api, s] of apis) {
        const [p50, p99] = s.quantiles([0.5, 0.99]);
        L.push(`  ${cudaApiName(api).padEnd(24)} ${num(s.count).padStart(8)} ${fmtDur(p50).padStart(9)} ${fmtDur(p99).padStart(9)} ${fmtDur(s.total).padStart(9)}`);
      }
    }
    if (this.tcpRetrans) L.push('', `TCP retransmits: ${num(this.tcpRetrans)}`);
    return L.join('\n');
  }
}

function num(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function mb(b: number): string {
  return b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
}

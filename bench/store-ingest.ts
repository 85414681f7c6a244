// Store ingest: realistic synthetic mix (~60% offcpu, 20% futex wait/wake,
// 10% cuda, 5% block io, rest task/clock) across 1,000 threads, built as real
// record frames (FrameWriter), decoded by FrameDecoder and fed to the store
// writer on one core. Reports events/s and bytes/event (pages in use).
//
//   npm run bench:ingest [-- --quick] [-- --events N] [-- --runs N]

import { rmSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { FrameDecoder } from '../src/capture/decoder.js';
import { ClockHistory } from '../src/capture/clock.js';
import { CudaApi, OffcpuFlag, TaskEvent } from '../src/capture/records.js';
import { openStoreWriter, usedBytes } from '../src/store/index.js';
import { FrameWriter } from '../test/helpers/frames.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, events: { type: 'string' }, runs: { type: 'string' }, threads: { type: 'string' } } });
const N = values.events ? Number(values.events) : values.quick ? 1_000_000 : 5_000_000;
const RUNS = values.runs ? Number(values.runs) : values.quick ? 3 : 5;
const THREADS = values.threads ? Number(values.threads) : 1000;
const ROOT = join(process.cwd(), 'build', 'bench-store');

/** Realistic stream: each thread has its own clock, a few wakers, a couple of locks; events ~1 ms apart per thread. */
export function synthStream(n: number, threads: number, seed = 42, t0 = 3_600_000_000_000): Buffer[] {
  const fw = new FrameWriter(8 << 20);
  const chunks: Buffer[] = [];
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const tnow = new Float64Array(threads).fill(t0);
  let now = t0;
  fw.hello({ ts: t0, monoNs: t0, realtimeNs: 1_763_730_000_000_000_000n });
  for (let i = 0; i < n; i++) {
    const ti = Math.floor(rnd() * threads);
    const tid = 10_000 + ti;
    const pid = 10_000 + (ti - (ti % 20)); // 50 processes of 20 threads
    now += 1000 / threads * 1000 * (0.5 + rnd()); // ~1M events/s of capture time overall
    const end = Math.max(now, tnow[ti] + 1000);
    tnow[ti] = end;
    const r = rnd() * 100;
    const cpu = Math.floor(rnd() * 2);
    const dur = 50_000 + Math.floor(rnd() * rnd() * 2_000_000);
    const peer = pid + Math.floor(rnd() * 3);
    const lock = 0x7f00_1000_0000 + (pid % 7) * 0x1000 + Math.floor(rnd() * 2) * 0x40;
    if (r < 60) {
      const woken = rnd() < 0.7;
      fw.offcpu({ ts: end, pid, tid, cpu, startNs: end - dur, runnableNs: end - Math.floor(dur * 0.1 * rnd()), prevState: woken ? 1 : 0,
        flags: woken ? OffcpuFlag.WOKEN | (rnd() < 0.3 ? OffcpuFlag.WAKER_FUTEX : 0) : OffcpuFlag.PREEMPTED,
        wakerPid: woken ? pid : 0, wakerTid: woken ? peer : 0, wakerUaddr: woken && rnd() < 0.3 ? lock : 0,
        preemptPid: woken ? 0 : 900, preemptTid: woken ? 0 : 900 + Math.floor(rnd() * 4), lastPid: 0, lastTid: 0, outCpu: cpu, wakerCpu: woken ? 1 - cpu : 0 });
    } else if (r < 72) {
      fw.futexWait({ ts: end, pid, tid, cpu, startNs: end - dur, uaddr: lock, op: 0x80, ret: 0, val: 2, ownerTid: peer, ownerSrc: 2 });
    } else if (r < 80) {
      fw.futexWake({ ts: end, pid, tid, cpu, startNs: end - 3000, uaddr: lock, op: 0x81, ret: 1 });
    } else if (r < 90) {
      fw.cudaCall({ ts: end, pid, tid, cpu, startNs: end - Math.floor(dur / 10), api: rnd() < 0.7 ? CudaApi.CUDA_LAUNCH_KERNEL : CudaApi.CUDA_STREAM_SYNC, arg: 0x5555_0000 + (pid % 4) * 0x100 });
    } else if (r < 95) {
      fw.blockIo({ ts: end, pid, tid, cpu, startNs: end - dur, issueNs: end - dur + 2000, sector: Math.floor(rnd() * 1e9), dev: (8 << 20) | 1, bytes: 4096 * (1 + Math.floor(rnd() * 4)), flags: 1, comm: 'postgres' });
    } else if (r < 98) {
      fw.task({ ts: end, pid, tid, event: TaskEvent.NAME, startTime: t0 - 1e9 - ti, comm: `worker-${ti % 20}`, pcomm: 'app' });
    } else {
      fw.clock({ ts: end, realtimeNs: 1_763_730_000_000_000_000n + BigInt(Math.round(end - t0)), errorNs: 30 });
    }
    if (fw.len > (8 << 20) - 4096) chunks.push(Buffer.from(fw.take()));
  }
  chunks.push(Buffer.from(fw.take()));
  return chunks;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function runOnce(chunks: Buffer[], dir: string): Promise<{ rate: number; bpe: number; fileBpe: number; events: number }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const w = openStoreWriter(dir);
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  const t0 = performance.now();
  for (const c of chunks) {
    for (let i = 0; i < c.length; i += 65536) {
      for (const b of d.push(c.subarray(i, i + 65536))) {
        const r = w.onBatch(b, clock);
        if (r) await r;
      }
    }
  }
  await w.flush();
  const ms = performance.now() - t0;
  const events = w.counters.events;
  const used = usedBytes(w);
  await w.close();
  const file = statSync(join(dir, 'data.mdb')).size;
  return { rate: events / (ms / 1000), bpe: used / events, fileBpe: file / events, events };
}

async function baseline(n: number, dir: string): Promise<number> {
  rmSync(dir, { recursive: true, force: true });
  const db = open({ path: dir, keyEncoding: 'binary', encoding: 'binary' });
  const slab = Buffer.alloc(32 * 10_000);
  const t0 = performance.now();
  let p: Promise<boolean> = Promise.resolve(true);
  let s = 1;
  for (let i = 0; i < n; i += 10_000) {
    const sl = Buffer.from(slab);
    for (let j = 0; j < 10_000; j++) {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      const k = Buffer.allocUnsafe(16);
      k.writeUInt32BE(s % 1000, 0);
      k.writeUInt32BE(0, 4);
      k.writeUInt32BE(i + j, 8);
      k.writeUInt32BE(j, 12);
      p = db.put(k, sl.subarray(j * 32, j * 32 + 32));
    }
    await p;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await db.close();
  return rate;
}

async function main(): Promise<void> {
  const tg = performance.now();
  const chunks = synthStream(N, THREADS);
  const bytes = chunks.reduce((a, c) => a + c.length, 0);
  console.log(`generated ${N.toLocaleString('en-US')} records (${(bytes / 1e6).toFixed(0)} MB of frames) across ${THREADS} threads in ${((performance.now() - tg) / 1000).toFixed(1)} s`);
  const rates: number[] = [];
  const bpes: number[] = [];
  const fbpes: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const x = await runOnce(chunks, join(ROOT, 'ingest'));
    rates.push(x.rate);
    bpes.push(x.bpe);
    fbpes.push(x.fileBpe);
    console.log(`run ${r + 1}: ${Math.round(x.rate).toLocaleString('en-US')} events/s, ${x.bpe.toFixed(2)} B/event in use, ${x.fileBpe.toFixed(2)} B/event data.mdb (${x.events.toLocaleString('en-US')} events)`);
  }
  const bn = values.quick ? 200_000 : 1_000_000;
  const base = await baseline(bn, join(ROOT, 'baseline'));
  console.log(`baseline: plain lmdb put per event (16-byte key, 32-byte value), ${bn.toLocaleString('en-US')} events: ${Math.round(base).toLocaleString('en-US')} events/s`);
  rmSync(ROOT, { recursive: true, force: true });
  console.log(`RESULT ingest_events_per_s ${Math.round(median(rates))} events/s`);
  console.log(`RESULT ingest_bytes_per_event ${median(bpes).toFixed(2)} B/event`);
  console.log(`RESULT ingest_file_bytes_per_event ${median(fbpes).toFixed(2)} B/event`);
  console.log(`RESULT baseline_plain_put_events_per_s ${Math.round(base)} events/s`);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) await main();

// Decode throughput: FrameDecoder + RecordView field reads over a realistic
// synthetic record file, read as a stream in 64 KiB chunks (what the probe
// pipe delivers).
//
//   npm run bench:decode [-- --quick] [-- --records N] [-- --runs N]
//
// Mix: ~60% offcpu, 20% futex wait/wake, 10% cuda, 5% block, rest task/clock.
// Prints the median of the runs and RESULT lines.

import { createReadStream, closeSync, openSync, rmSync, writeSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FrameDecoder, RecordView } from '../src/capture/decoder.js';
import { BLOCK_IO, CUDA_CALL, FUTEX_WAIT, FUTEX_WAKE, Kind, OFFCPU, TASK } from '../src/capture/records.js';
import { CudaApi, OffcpuFlag, TaskEvent } from '../src/capture/records.js';
import { FrameWriter } from '../test/helpers/frames.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    records: { type: 'string' },
    runs: { type: 'string' },
    chunk: { type: 'string' },
  },
});
const N = values.records ? Number(values.records) : values.quick ? 500_000 : 5_000_000;
const RUNS = values.runs ? Number(values.runs) : 5;
const CHUNK = values.chunk ? Number(values.chunk) : 64 * 1024;

// ---------------------------------------------------------------------------
// Synthetic file: one template record per kind, copied and patched (ts, tid,
// start) so that writing millions of records takes a second or two.

function templates(): Buffer[] {
  const t = (f: (w: FrameWriter) => void): Buffer => {
    const w = new FrameWriter(256);
    f(w);
    return w.toBuffer();
  };
  return [
    t((w) => w.offcpu({ pid: 1000, prevState: 1, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX, wakerPid: 1000, wakerTid: 1001, wakerUaddr: 0x7f12_3456_7890, outCpu: 1 })),
    t((w) => w.futexWait({ pid: 1000, uaddr: 0x7f12_3456_7890, op: 0x89, ret: 0, val: 2, ownerTid: 1001, ownerSrc: 2 })),
    t((w) => w.futexWake({ pid: 1000, uaddr: 0x7f12_3456_7890, op: 0x81, ret: 1 })),
    t((w) => w.cudaCall({ pid: 2000, api: CudaApi.CUDA_STREAM_SYNC, arg: 0x5555_0000 })),
    t((w) => w.blockIo({ pid: 3000, sector: 123456, dev: (8 << 20) | 1, bytes: 4096, flags: 1, comm: 'postgres' })),
    t((w) => w.task({ pid: 1000, event: TaskEvent.NAME, comm: 'worker', pcomm: 'app' })),
    t((w) => w.clock({ realtimeNs: 1_763_730_000_000_000_000n, errorNs: 30 })),
  ];
}

function writeFile(path: string, n: number): number {
  const tpl = templates();
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(8 << 20);
  let len = 0;
  let total = 0;
  let ts = 3_600_000_000_000; // one hour of uptime
  let seed = 42;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const r = seed % 100;
    const k = r < 60 ? 0 : r < 70 ? 1 : r < 80 ? 2 : r < 90 ? 3 : r < 95 ? 4 : r < 99 ? 5 : 6;
    const t = tpl[k];
    if (len + t.length > buf.length) {
      writeSync(fd, buf, 0, len);
      len = 0;
    }
    t.copy(buf, len);
    ts += 1 + (seed & 1023);
    const tid = 1000 + (seed >>> 8) % 64;
    buf.writeUInt32LE(ts % 4294967296, len + 8);
    buf.writeUInt32LE(Math.floor(ts / 4294967296), len + 12);
    buf.writeUInt32LE(tid, len + 20);
    if (k <= 4) {
      // every interval kind has start_ns at offset 24
      const start = ts - 50_000 - (seed & 0xffff);
      buf.writeUInt32LE(start % 4294967296, len + 24);
      buf.writeUInt32LE(Math.floor(start / 4294967296), len + 28);
    }
    len += t.length;
    total += t.length;
  }
  writeSync(fd, buf, 0, len);
  closeSync(fd);
  return total;
}

// ---------------------------------------------------------------------------
// One run: stream the file, decode, read the key fields of every record.

interface Run {
  records: number;
  bytes: number;
  seconds: number;
  check: number;
}

async function run(path: string): Promise<Run> {
  const d = new FrameDecoder();
  const v = new RecordView();
  let check = 0;
  const t0 = process.hrtime.bigint();
  const stream = createReadStream(path, { highWaterMark: CHUNK });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const batches = d.push(chunk);
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b];
      for (let i = 0; i < batch.count; i++) {
        v.set(batch, i);
        const kind = v.kind;
        const ts = v.ts;
        const tid = v.tid;
        let x = 0;
        switch (kind) {
          case Kind.OFFCPU:
            x = ts - v.u64(OFFCPU.start_ns) + v.u64(OFFCPU.runnable_ns) + v.u32(OFFCPU.flags) + v.u32(OFFCPU.waker_tid);
            break;
          case Kind.FUTEX_WAIT:
            x = ts - v.u64(FUTEX_WAIT.start_ns) + v.u64(FUTEX_WAIT.uaddr) + v.i32(FUTEX_WAIT.ret);
            break;
          case Kind.FUTEX_WAKE:
            x = v.u64(FUTEX_WAKE.uaddr) + v.i32(FUTEX_WAKE.ret);
            break;
          case Kind.CUDA_CALL:
            x = ts - v.u64(CUDA_CALL.start_ns) + v.u32(CUDA_CALL.api);
            break;
          case Kind.BLOCK_IO:
            x = ts - v.u64(BLOCK_IO.start_ns) + v.u32(BLOCK_IO.bytes) + v.u32(BLOCK_IO.flags);
            break;
          case Kind.TASK:
            x = v.u32(TASK.event);
            break;
        }
        check = (check + x + tid) % 1e15;
      }
    }
  }
  d.finish();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (d.corruptBytes || d.unknownKinds) throw new Error('decoder saw corruption in a clean file');
  return { records: d.records, bytes: d.bytes, seconds, check };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function mainBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-bench-'));
  const path = join(dir, 'decode.kspan');
  try {
    const tw = Date.now();
    const size = writeFile(path, N);
    console.log(`wrote ${N.toLocaleString('en-US')} records (${(size / 1e6).toFixed(1)} MB, ${(size / N).toFixed(1)} B/record) in ${((Date.now() - tw) / 1000).toFixed(1)} s`);
    console.log(`node ${process.version}, ${CHUNK / 1024} KiB chunks, ${RUNS} runs`);
    await run(path); // warm-up: JIT and page cache
    const rates: number[] = [];
    const mbs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const x = await run(path);
      if (x.records !== N) throw new Error(`decoded ${x.records} of ${N} records`);
      rates.push(x.records / x.seconds);
      mbs.push(x.bytes / 1e6 / x.seconds);
      console.log(`run ${r + 1}: ${(x.records / x.seconds / 1e6).toFixed(2)} M records/s, ${(x.bytes / 1e6 / x.seconds).toFixed(0)} MB/s (${x.seconds.toFixed(3)} s, check ${x.check})`);
    }
    console.log(`RESULT decode_records_per_s ${Math.round(median(rates))} records/s`);
    console.log(`RESULT decode_mb_per_s ${median(mbs).toFixed(1)} MB/s`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await mainBench();

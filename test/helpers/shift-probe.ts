// The real kspan-probe, as if the host had been up longer: runs
// build/kspan-probe with the same arguments and stdin, and adds
// SHIFT_PROBE_NS to every monotonic time in its records (header ts, HELLO's
// mono_ns, start/runnable/issue times, task start times, the loss counters'
// reading time) on the way out.
// Realtime clock halves are left alone, so epoch <-> monotonic stays
// consistent. For tests of exact times at 2^53 ns and 200 days of uptime:
//
//   KSPAN_PROBE=$(shiftProbePath()) SHIFT_PROBE_AT_NS=... SHIFT_PROBE_FILE=F node bin/kspan.js record --data DIR
//
// SHIFT_PROBE_AT_NS: the first record's time becomes this (whenever the probe
// starts); the shift chosen is written to SHIFT_PROBE_FILE (decimal ns).
// SHIFT_PROBE_NS instead: a fixed shift.
// A fixture's own monotonic times are the real ones: add the shift to compare.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BLOCKED, BLOCK_IO, CUDA_CALL, DRAINED, FUTEX_WAIT, FUTEX_WAKE, HDR, HELLO, Kind, OFFCPU, STACK, TASK,
} from '../../src/capture/records.js';
import { scriptExecutable } from './script-exe.js';

/** An executable that runs this script (KSPAN_PROBE wants a path); one per process, removed when it exits. */
export function shiftProbePath(): string {
  return scriptExecutable(fileURLToPath(import.meta.url));
}

/** Offsets of the monotonic u64 fields after the header's ts, per kind (0 in a record means "not seen": kept). */
const TIME_FIELDS: number[][] = [];
TIME_FIELDS[Kind.HELLO] = [HELLO.mono_ns];
TIME_FIELDS[Kind.OFFCPU] = [OFFCPU.start_ns, OFFCPU.runnable_ns];
TIME_FIELDS[Kind.FUTEX_WAIT] = [FUTEX_WAIT.start_ns];
TIME_FIELDS[Kind.FUTEX_WAKE] = [FUTEX_WAKE.start_ns];
TIME_FIELDS[Kind.BLOCK_IO] = [BLOCK_IO.start_ns, BLOCK_IO.issue_ns];
TIME_FIELDS[Kind.CUDA_CALL] = [CUDA_CALL.start_ns];
TIME_FIELDS[Kind.TASK] = [TASK.start_time];
TIME_FIELDS[Kind.STACK] = [STACK.start_ns];
TIME_FIELDS[Kind.DRAINED] = [DRAINED.lost_ts];
TIME_FIELDS[Kind.BLOCKED] = [BLOCKED.start_ns, BLOCKED.runnable_ns];

function shiftAt(b: Buffer, at: number, shift: bigint): void {
  const v = b.readBigUInt64LE(at);
  if (v !== 0n) b.writeBigUInt64LE(v + shift, at);
}

function main(): void {
  const at = process.env.SHIFT_PROBE_AT_NS ? BigInt(process.env.SHIFT_PROBE_AT_NS) : null;
  let shift: bigint | null = at === null ? BigInt(process.env.SHIFT_PROBE_NS ?? '0') : null;
  const real = join(fileURLToPath(new URL('../..', import.meta.url)), 'build', 'kspan-probe');
  const child = spawn(real, process.argv.slice(2), { stdio: ['pipe', 'pipe', 'inherit'] });
  process.stdin.pipe(child.stdin);
  // the probe stops when its stdin closes; pass signals on (kspan stops the probe with SIGTERM too)
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig));
  let carry = Buffer.alloc(0);
  child.stdout.on('data', (chunk: Buffer) => {
    const b = carry.length ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
    let p = 0;
    // records are 8-byte aligned, size (u16) first, a multiple of 8
    while (p + HDR.SIZE <= b.length) {
      const size = b.readUInt16LE(p);
      if (size < HDR.SIZE || p + size > b.length) break;
      const kind = b[p + 2];
      if (shift === null) {
        shift = at! - b.readBigUInt64LE(p + HDR.ts);
        if (process.env.SHIFT_PROBE_FILE) writeFileSync(process.env.SHIFT_PROBE_FILE, shift.toString());
      }
      shiftAt(b, p + HDR.ts, shift);
      for (const off of TIME_FIELDS[kind] ?? []) shiftAt(b, p + off, shift);
      p += size;
    }
    carry = b.subarray(p);
    process.stdout.write(b.subarray(0, p));
  });
  child.on('exit', (code, sig) => {
    if (carry.length) process.stdout.write(carry);
    process.stdout.end(() => process.exit(sig ? 128 : code ?? 0));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();

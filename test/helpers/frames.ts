// Synthetic kspan frames for tests and benchmarks: one writer per record kind
// (layouts from src/capture/records.ts, which layout.test.ts checks against
// bpf/kspan.h). Unset fields are 0. u64 fields take a number (exact below
// 2^53) or a bigint.
//
//   const w = new FrameWriter();
//   w.hello({ ts: 1e9, realtimeNs: 1_700_000_000_000_000_000n, monoNs: 1e9 });
//   w.offcpu({ ts: 2e9, tid: 42, startNs: 1.9e9, flags: OffcpuFlag.WOKEN });
//   const buf = w.toBuffer();

import {
  ACK, BLOCKED, BLOCK_IO, CLOCK, CUDA_CALL, DRAINED, DROPS, FUTEX_WAIT, FUTEX_WAKE, HELLO, Kind, OFFCPU,
  REC_MAGIC, STACK, STACK_FIXED, STATUS, TASK, TCP_RETRANS,
} from '../../src/capture/records.js';

export type U64 = number | bigint;

export interface Hdr {
  ts?: U64;
  pid?: number;
  tid?: number;
  cpu?: number;
}

export interface HelloRec extends Hdr {
  abiVersion?: number; ncpu?: number; monoNs?: U64; realtimeNs?: U64; bootIdHi?: U64; bootIdLo?: U64;
  offcpuMinNs?: number; probePid?: number;
}
export interface OffcpuRec extends Hdr {
  startNs?: U64; runnableNs?: U64; wakerUaddr?: U64; prevState?: number; flags?: number;
  wakerPid?: number; wakerTid?: number; preemptPid?: number; preemptTid?: number;
  lastPid?: number; lastTid?: number; outCpu?: number; wakerCpu?: number;
}
/** A thread still off CPU at a snapshot (h.ts); runnableNs 0: not woken yet. */
export interface BlockedRec extends Hdr {
  startNs?: U64; runnableNs?: U64; prevState?: number; flags?: number; wakerPid?: number; wakerTid?: number;
  preemptPid?: number; preemptTid?: number; uaddr?: U64; op?: number; val?: number; ownerTid?: number; ownerSrc?: number;
}
export interface FutexWaitRec extends Hdr {
  startNs?: U64; uaddr?: U64; op?: number; ret?: number; val?: number; ownerTid?: number; ownerSrc?: number; flags?: number;
}
export interface FutexWakeRec extends Hdr {
  startNs?: U64; uaddr?: U64; uaddr2?: U64; op?: number; ret?: number;
}
export interface BlockIoRec extends Hdr {
  startNs?: U64; issueNs?: U64; sector?: U64; dev?: number; bytes?: number; flags?: number; error?: number; comm?: string;
}
export interface TcpRetransRec extends Hdr {
  saddr?: number[] | Buffer; daddr?: number[] | Buffer; family?: number; sport?: number; dport?: number;
  state?: number; inIrq?: number; err?: number; sockIno?: U64;
}
export interface CudaCallRec extends Hdr {
  startNs?: U64; arg?: U64; api?: number; ret?: number;
}
export interface TaskRec extends Hdr {
  startTime?: U64; event?: number; otherPid?: number; otherTid?: number; exitCode?: number; comm?: string; pcomm?: string;
}
export interface StackRec extends Hdr {
  startNs?: U64; user?: U64[]; kernel?: U64[];
}
export interface ClockRec extends Hdr {
  realtimeNs?: U64; errorNs?: U64; stepped?: number;
}
export interface DropsRec extends Hdr {
  ring?: number; lost?: U64; records?: U64; bytes?: U64;
}
export interface StatusRec extends Hdr {
  group?: number; err?: number; nAttached?: number; nFailed?: number; detail?: string;
}
export interface AckRec extends Hdr {
  seq?: number; err?: number; msg?: string;
}

const TWO32 = 4294967296;

/** Appends records to a growing buffer. */
export class FrameWriter {
  buf: Buffer;
  len = 0;
  /** records written */
  count = 0;

  constructor(initial = 1 << 16) {
    this.buf = Buffer.alloc(initial);
  }

  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }

  /** Hand out the bytes written so far and start over (reuses the buffer). */
  take(): Buffer {
    const b = this.buf.subarray(0, this.len);
    this.len = 0;
    return b;
  }

  /** Reserve a zeroed record of `size` bytes with its header; returns its offset. */
  begin(kind: number, size: number, h: Hdr, magic = REC_MAGIC): number {
    if (this.len + size > this.buf.length) {
      const nb = Buffer.alloc(Math.max(this.buf.length * 2, this.len + size));
      this.buf.copy(nb, 0, 0, this.len);
      this.buf = nb;
    }
    const o = this.len;
    this.buf.fill(0, o, o + size);
    this.buf.writeUInt16LE(size, o);
    this.buf[o + 2] = kind;
    this.buf[o + 3] = magic;
    this.buf.writeUInt32LE(h.cpu ?? 0, o + 4);
    this.u64(o + 8, h.ts ?? 0);
    this.buf.writeUInt32LE(h.pid ?? 0, o + 16);
    this.buf.writeUInt32LE(h.tid ?? 0, o + 20);
    this.len += size;
    this.count++;
    return o;
  }

  u64(at: number, v: U64): void {
    if (typeof v === 'bigint') {
      this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
    } else {
      this.buf.writeUInt32LE(v % TWO32, at);
      this.buf.writeUInt32LE(Math.floor(v / TWO32), at + 4);
    }
  }
  u32(at: number, v: number | undefined): void {
    this.buf.writeUInt32LE((v ?? 0) >>> 0, at);
  }
  i32(at: number, v: number | undefined): void {
    this.buf.writeInt32LE(v ?? 0, at);
  }
  str(at: number, s: string | undefined, len: number): void {
    if (s) this.buf.write(s, at, len - 1, 'utf8'); // always NUL-terminated
  }

  /** Any record: header + `size - 24` zero bytes (e.g. an unknown kind). */
  raw(kind: number, size: number, h: Hdr = {}, magic = REC_MAGIC): this {
    this.begin(kind, size, h, magic);
    return this;
  }

  hello(r: HelloRec = {}): this {
    const o = this.begin(Kind.HELLO, HELLO.SIZE, r);
    this.u32(o + HELLO.abi_version, r.abiVersion ?? 1);
    this.u32(o + HELLO.ncpu, r.ncpu ?? 1);
    this.u64(o + HELLO.mono_ns, r.monoNs ?? r.ts ?? 0);
    this.u64(o + HELLO.realtime_ns, r.realtimeNs ?? 0);
    this.u64(o + HELLO.boot_id_hi, r.bootIdHi ?? 0);
    this.u64(o + HELLO.boot_id_lo, r.bootIdLo ?? 0);
    this.u32(o + HELLO.offcpu_min_ns, r.offcpuMinNs ?? 50_000);
    this.u32(o + HELLO.probe_pid, r.probePid);
    return this;
  }

  offcpu(r: OffcpuRec = {}): this {
    const o = this.begin(Kind.OFFCPU, OFFCPU.SIZE, r);
    this.u64(o + OFFCPU.start_ns, r.startNs ?? 0);
    this.u64(o + OFFCPU.runnable_ns, r.runnableNs ?? r.startNs ?? 0);
    this.u64(o + OFFCPU.waker_uaddr, r.wakerUaddr ?? 0);
    this.u32(o + OFFCPU.prev_state, r.prevState);
    this.u32(o + OFFCPU.flags, r.flags);
    this.u32(o + OFFCPU.waker_pid, r.wakerPid);
    this.u32(o + OFFCPU.waker_tid, r.wakerTid);
    this.u32(o + OFFCPU.preempt_pid, r.preemptPid);
    this.u32(o + OFFCPU.preempt_tid, r.preemptTid);
    this.u32(o + OFFCPU.last_pid, r.lastPid);
    this.u32(o + OFFCPU.last_tid, r.lastTid);
    this.u32(o + OFFCPU.out_cpu, r.outCpu);
    this.u32(o + OFFCPU.waker_cpu, r.wakerCpu);
    return this;
  }

  blocked(r: BlockedRec = {}): this {
    const o = this.begin(Kind.BLOCKED, BLOCKED.SIZE, r);
    this.u64(o + BLOCKED.start_ns, r.startNs ?? 0);
    this.u64(o + BLOCKED.runnable_ns, r.runnableNs ?? 0);
    this.u32(o + BLOCKED.prev_state, r.prevState);
    this.u32(o + BLOCKED.flags, r.flags);
    this.u32(o + BLOCKED.waker_pid, r.wakerPid);
    this.u32(o + BLOCKED.waker_tid, r.wakerTid);
    this.u32(o + BLOCKED.preempt_pid, r.preemptPid);
    this.u32(o + BLOCKED.preempt_tid, r.preemptTid);
    this.u64(o + BLOCKED.uaddr, r.uaddr ?? 0);
    this.u32(o + BLOCKED.op, r.op);
    this.u32(o + BLOCKED.val, r.val);
    this.u32(o + BLOCKED.owner_tid, r.ownerTid);
    this.u32(o + BLOCKED.owner_src, r.ownerSrc);
    return this;
  }

  futexWait(r: FutexWaitRec = {}): this {
    const o = this.begin(Kind.FUTEX_WAIT, FUTEX_WAIT.SIZE, r);
    this.u64(o + FUTEX_WAIT.start_ns, r.startNs ?? 0);
    this.u64(o + FUTEX_WAIT.uaddr, r.uaddr ?? 0);
    this.u32(o + FUTEX_WAIT.op, r.op);
    this.i32(o + FUTEX_WAIT.ret, r.ret);
    this.u32(o + FUTEX_WAIT.val, r.val);
    this.u32(o + FUTEX_WAIT.owner_tid, r.ownerTid);
    this.u32(o + FUTEX_WAIT.owner_src, r.ownerSrc);
    this.u32(o + FUTEX_WAIT.flags, r.flags);
    return this;
  }

  futexWake(r: FutexWakeRec = {}): this {
    const o = this.begin(Kind.FUTEX_WAKE, FUTEX_WAKE.SIZE, r);
    this.u64(o + FUTEX_WAKE.start_ns, r.startNs ?? 0);
    this.u64(o + FUTEX_WAKE.uaddr, r.uaddr ?? 0);
    this.u64(o + FUTEX_WAKE.uaddr2, r.uaddr2 ?? 0);
    this.u32(o + FUTEX_WAKE.op, r.op);
    this.i32(o + FUTEX_WAKE.ret, r.ret);
    return this;
  }

  blockIo(r: BlockIoRec = {}): this {
    const o = this.begin(Kind.BLOCK_IO, BLOCK_IO.SIZE, r);
    this.u64(o + BLOCK_IO.start_ns, r.startNs ?? 0);
    this.u64(o + BLOCK_IO.issue_ns, r.issueNs ?? 0);
    this.u64(o + BLOCK_IO.sector, r.sector ?? 0);
    this.u32(o + BLOCK_IO.dev, r.dev);
    this.u32(o + BLOCK_IO.bytes, r.bytes);
    this.u32(o + BLOCK_IO.flags, r.flags);
    this.i32(o + BLOCK_IO.error, r.error);
    this.str(o + BLOCK_IO.comm, r.comm, 16);
    return this;
  }

  tcpRetrans(r: TcpRetransRec = {}): this {
    const o = this.begin(Kind.TCP_RETRANS, TCP_RETRANS.SIZE, r);
    if (r.saddr) Buffer.from(r.saddr).copy(this.buf, o + TCP_RETRANS.saddr, 0, 16);
    if (r.daddr) Buffer.from(r.daddr).copy(this.buf, o + TCP_RETRANS.daddr, 0, 16);
    this.buf.writeUInt16LE(r.family ?? 2, o + TCP_RETRANS.family);
    this.buf.writeUInt16LE(r.sport ?? 0, o + TCP_RETRANS.sport);
    this.buf.writeUInt16LE(r.dport ?? 0, o + TCP_RETRANS.dport);
    this.buf[o + TCP_RETRANS.state] = r.state ?? 0;
    this.buf[o + TCP_RETRANS.in_irq] = r.inIrq ?? 0;
    this.i32(o + TCP_RETRANS.err, r.err);
    this.u64(o + TCP_RETRANS.sock_ino, r.sockIno ?? 0);
    return this;
  }

  cudaCall(r: CudaCallRec = {}): this {
    const o = this.begin(Kind.CUDA_CALL, CUDA_CALL.SIZE, r);
    this.u64(o + CUDA_CALL.start_ns, r.startNs ?? 0);
    this.u64(o + CUDA_CALL.arg, r.arg ?? 0);
    this.u32(o + CUDA_CALL.api, r.api);
    this.i32(o + CUDA_CALL.ret, r.ret);
    return this;
  }

  task(r: TaskRec = {}): this {
    const o = this.begin(Kind.TASK, TASK.SIZE, r);
    this.u64(o + TASK.start_time, r.startTime ?? 0);
    this.u32(o + TASK.event, r.event);
    this.u32(o + TASK.other_pid, r.otherPid);
    this.u32(o + TASK.other_tid, r.otherTid);
    this.i32(o + TASK.exit_code, r.exitCode);
    this.str(o + TASK.comm, r.comm, 16);
    this.str(o + TASK.pcomm, r.pcomm, 16);
    return this;
  }

  /** Sized to its frames, as the probe does (hdr.size = 40 + 8 * frames). */
  stack(r: StackRec = {}): this {
    const user = r.user ?? [];
    const kernel = r.kernel ?? [];
    const size = STACK_FIXED + 8 * (user.length + kernel.length);
    const o = this.begin(Kind.STACK, size, r);
    this.u64(o + STACK.start_ns, r.startNs ?? 0);
    this.u32(o + STACK.n_user, user.length);
    this.u32(o + STACK.n_kernel, kernel.length);
    [...user, ...kernel].forEach((ip, i) => this.u64(o + STACK.ips + 8 * i, ip));
    return this;
  }

  clock(r: ClockRec = {}): this {
    const o = this.begin(Kind.CLOCK, CLOCK.SIZE, r);
    this.u64(o + CLOCK.realtime_ns, r.realtimeNs ?? 0);
    this.u64(o + CLOCK.error_ns, r.errorNs ?? 0);
    this.u32(o + CLOCK.stepped, r.stepped);
    return this;
  }

  drops(r: DropsRec = {}): this {
    const o = this.begin(Kind.DROPS, DROPS.SIZE, r);
    this.u32(o + DROPS.ring, r.ring);
    this.u64(o + DROPS.lost, r.lost ?? 0);
    this.u64(o + DROPS.records, r.records ?? 0);
    this.u64(o + DROPS.bytes, r.bytes ?? 0);
    return this;
  }

  /** The watermark (h.ts) with the rings' loss counters read at lostTs (ABI 4); raw(Kind.DRAINED, 24) for the old form. */
  drained(r: Hdr & { lostTs?: U64; lost?: [number, number, number] } = {}): this {
    const o = this.begin(Kind.DRAINED, DRAINED.SIZE, r);
    this.u64(o + DRAINED.lost_ts, r.lostTs ?? 0);
    (r.lost ?? [0, 0, 0]).forEach((n, i) => this.u64(o + DRAINED.lost + 8 * i, n));
    return this;
  }

  status(r: StatusRec = {}): this {
    const o = this.begin(Kind.STATUS, STATUS.SIZE, r);
    this.u32(o + STATUS.group, r.group);
    this.i32(o + STATUS.err, r.err);
    this.u32(o + STATUS.n_attached, r.nAttached);
    this.u32(o + STATUS.n_failed, r.nFailed);
    this.str(o + STATUS.detail, r.detail, 96);
    return this;
  }

  ack(r: AckRec = {}): this {
    const o = this.begin(Kind.ACK, ACK.SIZE, r);
    this.u32(o + ACK.seq, r.seq);
    this.i32(o + ACK.err, r.err);
    this.str(o + ACK.msg, r.msg, 120);
    return this;
  }
}

/** IPv4 address "a.b.c.d" as the 16-byte field (first 4 bytes). */
export function ipv4Bytes(a: string): number[] {
  const b = a.split('.').map(Number);
  return [...b, ...new Array(12).fill(0)];
}

/** Full IPv6 address "x:x:x:x:x:x:x:x" (no ::) as 16 bytes. */
export function ipv6Bytes(a: string): number[] {
  const out: number[] = [];
  for (const g of a.split(':')) {
    const n = parseInt(g, 16);
    out.push(n >> 8, n & 0xff);
  }
  return out;
}

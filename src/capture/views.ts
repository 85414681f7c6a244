// Kind-specific flyweight readers: RecordView plus named getters for one
// record kind. Use one instance per kind and point it at a record with
// `set(batch, i)` or `setFrom(view)` after checking `view.kind`. Getters
// read in place; only the string ones (comm, detail, msg, hex) allocate.

import { RecordView } from './decoder.js';
import {
  ACK, ACK_MSG_LEN, BLOCKED, BLOCK_IO, CLOCK, CUDA_CALL, DRAINED, DROPS, FUTEX_WAIT, FUTEX_WAKE, HELLO, IoFlag, OFFCPU,
  OffcpuFlag, STACK, STACK_FIXED, STATUS, STATUS_DETAIL_LEN, TASK, TCP_RETRANS, cudaApiName,
} from './records.js';

export class HelloView extends RecordView {
  get abiVersion(): number { return this.u32(HELLO.abi_version); }
  get ncpu(): number { return this.u32(HELLO.ncpu); }
  get monoNs(): number { return this.u64(HELLO.mono_ns); }
  get realtimeNs(): bigint { return this.u64n(HELLO.realtime_ns); }
  get bootIdHi(): bigint { return this.u64n(HELLO.boot_id_hi); }
  get bootIdLo(): bigint { return this.u64n(HELLO.boot_id_lo); }
  /** boot_id as in /proc/sys/kernel/random/boot_id (the probe packs its 32 hex digits into hi, lo). */
  get bootId(): string {
    const h = this.u64n(HELLO.boot_id_hi).toString(16).padStart(16, '0') + this.u64n(HELLO.boot_id_lo).toString(16).padStart(16, '0');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  get offcpuMinNs(): number { return this.u32(HELLO.offcpu_min_ns); }
  get probePid(): number { return this.u32(HELLO.probe_pid); }
}

export class OffcpuView extends RecordView {
  /** switch-out */
  get startNs(): number { return this.u64(OFFCPU.start_ns); }
  /** first waking after the block (== startNs when preempted) */
  get runnableNs(): number { return this.u64(OFFCPU.runnable_ns); }
  /** switch-in (== ts) */
  get endNs(): number { return this.ts; }
  get durationNs(): number { return this.ts - this.u64(OFFCPU.start_ns); }
  get blockedNs(): number { return this.u64(OFFCPU.runnable_ns) - this.u64(OFFCPU.start_ns); }
  get runqueueNs(): number { return this.ts - this.u64(OFFCPU.runnable_ns); }
  get wakerUaddr(): number { return this.u64(OFFCPU.waker_uaddr); }
  get prevState(): number { return this.u32(OFFCPU.prev_state); }
  get flags(): number { return this.u32(OFFCPU.flags); }
  /** kernel preemption (sched_switch preempt == true) */
  get preempted(): boolean { return (this.u32(OFFCPU.flags) & OffcpuFlag.PREEMPTED) !== 0; }
  /** switched out while runnable (PREEMPTED or RESCHED): the whole interval is runqueue time */
  get runnableAtSwitch(): boolean { return (this.u32(OFFCPU.flags) & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0; }
  get woken(): boolean { return (this.u32(OFFCPU.flags) & OffcpuFlag.WOKEN) !== 0; }
  get wakerPid(): number { return this.u32(OFFCPU.waker_pid); }
  get wakerTid(): number { return this.u32(OFFCPU.waker_tid); }
  get preemptPid(): number { return this.u32(OFFCPU.preempt_pid); }
  get preemptTid(): number { return this.u32(OFFCPU.preempt_tid); }
  get lastPid(): number { return this.u32(OFFCPU.last_pid); }
  get lastTid(): number { return this.u32(OFFCPU.last_tid); }
  get outCpu(): number { return this.u32(OFFCPU.out_cpu); }
  get wakerCpu(): number { return this.u32(OFFCPU.waker_cpu); }
}

export class FutexWaitView extends RecordView {
  get startNs(): number { return this.u64(FUTEX_WAIT.start_ns); }
  get durationNs(): number { return this.ts - this.u64(FUTEX_WAIT.start_ns); }
  get uaddr(): number { return this.u64(FUTEX_WAIT.uaddr); }
  get op(): number { return this.u32(FUTEX_WAIT.op); }
  get ret(): number { return this.i32(FUTEX_WAIT.ret); }
  get val(): number { return this.u32(FUTEX_WAIT.val); }
  get ownerTid(): number { return this.u32(FUTEX_WAIT.owner_tid); }
  get ownerSrc(): number { return this.u32(FUTEX_WAIT.owner_src); }
  /** enum kspan_futex_flags: 0 = syscall tracepoints (ret exact) */
  get flags(): number { return this.u32(FUTEX_WAIT.flags); }
}

export class FutexWakeView extends RecordView {
  get startNs(): number { return this.u64(FUTEX_WAKE.start_ns); }
  get uaddr(): number { return this.u64(FUTEX_WAKE.uaddr); }
  get uaddr2(): number { return this.u64(FUTEX_WAKE.uaddr2); }
  get op(): number { return this.u32(FUTEX_WAKE.op); }
  /** waiters woken (or requeued), or -errno */
  get ret(): number { return this.i32(FUTEX_WAKE.ret); }
}

export class BlockIoView extends RecordView {
  get startNs(): number { return this.u64(BLOCK_IO.start_ns); }
  /** driver dispatch; 0 if unseen */
  get issueNs(): number { return this.u64(BLOCK_IO.issue_ns); }
  get durationNs(): number { return this.ts - this.u64(BLOCK_IO.start_ns); }
  get sector(): number { return this.u64(BLOCK_IO.sector); }
  get dev(): number { return this.u32(BLOCK_IO.dev); }
  get bytesLen(): number { return this.u32(BLOCK_IO.bytes); }
  get flags(): number { return this.u32(BLOCK_IO.flags); }
  get isWrite(): boolean { return (this.u32(BLOCK_IO.flags) & IoFlag.WRITE) !== 0; }
  get error(): number { return this.i32(BLOCK_IO.error); }
  get issuerComm(): string { return this.comm(BLOCK_IO.comm); }
}

export class TcpRetransView extends RecordView {
  get family(): number { return this.u16(TCP_RETRANS.family); }
  get sport(): number { return this.u16(TCP_RETRANS.sport); }
  get dport(): number { return this.u16(TCP_RETRANS.dport); }
  get state(): number { return this.u8(TCP_RETRANS.state); }
  get inIrq(): boolean { return this.u8(TCP_RETRANS.in_irq) !== 0; }
  get err(): number { return this.i32(TCP_RETRANS.err); }
  /** socket inode (socket:[N] in /proc/PID/fd); 0 once detached from a file */
  get sockIno(): number { return this.u64(TCP_RETRANS.sock_ino); }
  /** Address bytes (views into the batch, no copy). */
  saddrBytes(): Buffer { return this.buf.subarray(this.off + TCP_RETRANS.saddr, this.off + TCP_RETRANS.saddr + 16); }
  daddrBytes(): Buffer { return this.buf.subarray(this.off + TCP_RETRANS.daddr, this.off + TCP_RETRANS.daddr + 16); }
}

export class CudaCallView extends RecordView {
  get startNs(): number { return this.u64(CUDA_CALL.start_ns); }
  get durationNs(): number { return this.ts - this.u64(CUDA_CALL.start_ns); }
  /** stream (sync/launch), byte count (memcpy), event (event sync) */
  get arg(): number { return this.u64(CUDA_CALL.arg); }
  get api(): number { return this.u32(CUDA_CALL.api); }
  get apiName(): string { return cudaApiName(this.u32(CUDA_CALL.api)); }
  get ret(): number { return this.i32(CUDA_CALL.ret); }
}

export class TaskView extends RecordView {
  get startTime(): number { return this.u64(TASK.start_time); }
  get event(): number { return this.u32(TASK.event); }
  get otherPid(): number { return this.u32(TASK.other_pid); }
  get otherTid(): number { return this.u32(TASK.other_tid); }
  get exitCode(): number { return this.i32(TASK.exit_code); }
  get taskComm(): string { return this.comm(TASK.comm); }
  get processComm(): string { return this.comm(TASK.pcomm); }
}

export class StackView extends RecordView {
  get startNs(): number { return this.u64(STACK.start_ns); }
  get nUser(): number { return this.u32(STACK.n_user); }
  get nKernel(): number { return this.u32(STACK.n_kernel); }
  /** Frames that actually fit in hdr.size (guards against a bad count). */
  get nFrames(): number {
    return Math.min(this.u32(STACK.n_user) + this.u32(STACK.n_kernel), (this.size - STACK_FIXED) >>> 3);
  }
  /** Instruction pointer i (user frames first, then kernel frames). */
  ip(i: number): number { return this.u64(STACK.ips + 8 * i); }
  ipHex(i: number): string { return this.hex64(STACK.ips + 8 * i); }
}

export class ClockView extends RecordView {
  get realtimeNs(): bigint { return this.u64n(CLOCK.realtime_ns); }
  get errorNs(): number { return this.u64(CLOCK.error_ns); }
  get stepped(): boolean { return this.u32(CLOCK.stepped) !== 0; }
}

export class DropsView extends RecordView {
  get ring(): number { return this.u32(DROPS.ring); }
  get lost(): number { return this.u64(DROPS.lost); }
  get ringRecords(): number { return this.u64(DROPS.records); }
  get ringBytes(): number { return this.u64(DROPS.bytes); }
}

export class DrainedView extends RecordView {
  /** the loss counters are there (ABI >= 4) and were read (lost_ts != 0) */
  get hasLost(): boolean { return this.size >= DRAINED.SIZE && this.u64(DRAINED.lost_ts) !== 0; }
  get lostTs(): number { return this.u64(DRAINED.lost_ts); }
  lost(ring: number): number { return this.u64(DRAINED.lost + 8 * ring); }
}

/** A thread still off CPU at a blocked-task snapshot (ts): since startNs, woken at runnableNs (0: not yet). */
export class BlockedView extends RecordView {
  get startNs(): number { return this.u64(BLOCKED.start_ns); }
  get runnableNs(): number { return this.u64(BLOCKED.runnable_ns); }
  get prevState(): number { return this.u32(BLOCKED.prev_state); }
  get flags(): number { return this.u32(BLOCKED.flags); }
  get wakerPid(): number { return this.u32(BLOCKED.waker_pid); }
  get wakerTid(): number { return this.u32(BLOCKED.waker_tid); }
  get preemptPid(): number { return this.u32(BLOCKED.preempt_pid); }
  get preemptTid(): number { return this.u32(BLOCKED.preempt_tid); }
  /** the futex word it waits on (flags & IN_FUTEX), else 0 */
  get uaddr(): number { return this.u64(BLOCKED.uaddr); }
  get op(): number { return this.u32(BLOCKED.op); }
  get ownerTid(): number { return this.u32(BLOCKED.owner_tid); }
  get ownerSrc(): number { return this.u32(BLOCKED.owner_src); }
}

export class StatusView extends RecordView {
  get group(): number { return this.u32(STATUS.group); }
  get err(): number { return this.i32(STATUS.err); }
  get nAttached(): number { return this.u32(STATUS.n_attached); }
  get nFailed(): number { return this.u32(STATUS.n_failed); }
  get detail(): string { return this.str(STATUS.detail, STATUS_DETAIL_LEN); }
}

export class AckView extends RecordView {
  get seq(): number { return this.u32(ACK.seq); }
  get err(): number { return this.i32(ACK.err); }
  get msg(): string { return this.str(ACK.msg, ACK_MSG_LEN); }
}

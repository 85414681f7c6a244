// Record layouts, mirrored from bpf/kspan.h (THE contract). Every offset and
// size here is checked against a compiled C program by
// test/capture/layout.test.ts, so edit both together and bump ABI_VERSION.
//
// Layout: little-endian, every record starts with the 24-byte header, hdr.size
// is the whole record (multiple of 8). All times are CLOCK_MONOTONIC ns.

export const ABI_VERSION = 5;
export const REC_MAGIC = 0xb5;
export const COMM_LEN = 16;
export const MAX_STACK = 64;
export const MAX_REC = 4096;
export const HDR_SIZE = 24;

/** enum kspan_kind */
export const Kind = {
  HELLO: 1,
  OFFCPU: 2,
  FUTEX_WAIT: 3,
  FUTEX_WAKE: 4,
  BLOCK_IO: 5,
  TCP_RETRANS: 6,
  CUDA_CALL: 7,
  TASK: 8,
  STACK: 9,
  CLOCK: 10,
  DROPS: 11,
  STATUS: 12,
  ACK: 13,
  DRAINED: 14,
  /** ABI >= 5: a thread still off CPU at a blocked-task snapshot (not an interval: no switch-in yet) */
  BLOCKED: 15,
} as const;
export type KindNumber = (typeof Kind)[keyof typeof Kind];
export const KIND_MAX = 16;

const KIND_NAMES: readonly string[] = [
  'unknown', 'hello', 'offcpu', 'futex_wait', 'futex_wake', 'block_io', 'tcp_retrans',
  'cuda_call', 'task', 'stack', 'clock', 'drops', 'status', 'ack', 'drained', 'blocked',
];

/** Short lower-case name of a record kind ("offcpu", "futex_wait", ...); "kind<N>" when unknown. */
export function kindName(kind: number): string {
  return kind > 0 && kind < KIND_MAX ? KIND_NAMES[kind] : `kind${kind}`;
}

/** Inverse of kindName for the known kinds. */
export function kindFromName(name: string): number | undefined {
  const i = KIND_NAMES.indexOf(name);
  return i > 0 ? i : undefined;
}

// ---------------------------------------------------------------------------
// Struct layouts: field -> [offset, size]. Arrays (comm, saddr, ips) give the
// whole array's size. `sizeof` is sizeof(struct ...).

type Fields = Record<string, readonly [number, number]>;
interface StructLayout<F extends Fields = Fields> {
  readonly sizeof: number;
  readonly fields: F;
}
function struct<F extends Fields>(sizeof: number, fields: F): StructLayout<F> {
  return { sizeof, fields };
}

/** Every struct in kspan.h, by its C name (without `struct `). */
export const STRUCTS = {
  kspan_hdr: struct(24, {
    size: [0, 2], kind: [2, 1], magic: [3, 1], cpu: [4, 4], ts: [8, 8], pid: [16, 4], tid: [20, 4],
  }),
  kspan_hello: struct(72, {
    h: [0, 24], abi_version: [24, 4], ncpu: [28, 4], mono_ns: [32, 8], realtime_ns: [40, 8],
    boot_id_hi: [48, 8], boot_id_lo: [56, 8], offcpu_min_ns: [64, 4], probe_pid: [68, 4],
  }),
  kspan_offcpu: struct(88, {
    h: [0, 24], start_ns: [24, 8], runnable_ns: [32, 8], waker_uaddr: [40, 8], prev_state: [48, 4],
    flags: [52, 4], waker_pid: [56, 4], waker_tid: [60, 4], preempt_pid: [64, 4], preempt_tid: [68, 4],
    last_pid: [72, 4], last_tid: [76, 4], out_cpu: [80, 4], waker_cpu: [84, 4],
  }),
  kspan_futex_wait: struct(64, {
    h: [0, 24], start_ns: [24, 8], uaddr: [32, 8], op: [40, 4], ret: [44, 4], val: [48, 4],
    owner_tid: [52, 4], owner_src: [56, 4], flags: [60, 4],
  }),
  kspan_futex_wake: struct(56, {
    h: [0, 24], start_ns: [24, 8], uaddr: [32, 8], uaddr2: [40, 8], op: [48, 4], ret: [52, 4],
  }),
  kspan_block_io: struct(80, {
    h: [0, 24], start_ns: [24, 8], issue_ns: [32, 8], sector: [40, 8], dev: [48, 4], bytes: [52, 4],
    flags: [56, 4], error: [60, 4], comm: [64, 16],
  }),
  kspan_tcp_retrans: struct(80, {
    h: [0, 24], saddr: [24, 16], daddr: [40, 16], family: [56, 2], sport: [58, 2], dport: [60, 2],
    state: [62, 1], in_irq: [63, 1], err: [64, 4], _pad: [68, 4], sock_ino: [72, 8],
  }),
  kspan_cuda_call: struct(48, {
    h: [0, 24], start_ns: [24, 8], arg: [32, 8], api: [40, 4], ret: [44, 4],
  }),
  kspan_task: struct(80, {
    h: [0, 24], start_time: [24, 8], event: [32, 4], other_pid: [36, 4], other_tid: [40, 4],
    exit_code: [44, 4], comm: [48, 16], pcomm: [64, 16],
  }),
  kspan_stack: struct(1064, {
    h: [0, 24], start_ns: [24, 8], n_user: [32, 4], n_kernel: [36, 4], ips: [40, 1024],
  }),
  kspan_clock: struct(48, {
    h: [0, 24], realtime_ns: [24, 8], error_ns: [32, 8], stepped: [40, 4], _pad: [44, 4],
  }),
  kspan_drops: struct(56, {
    h: [0, 24], ring: [24, 4], _pad: [28, 4], lost: [32, 8], records: [40, 8], bytes: [48, 8],
  }),
  kspan_status: struct(136, {
    h: [0, 24], group: [24, 4], err: [28, 4], n_attached: [32, 4], n_failed: [36, 4], detail: [40, 96],
  }),
  kspan_ack: struct(152, {
    h: [0, 24], seq: [24, 4], err: [28, 4], msg: [32, 120],
  }),
  kspan_drained: struct(56, {
    h: [0, 24], lost_ts: [24, 8], lost: [32, 24],
  }),
  kspan_blocked: struct(88, {
    h: [0, 24], start_ns: [24, 8], runnable_ns: [32, 8], prev_state: [40, 4], flags: [44, 4], waker_pid: [48, 4],
    waker_tid: [52, 4], preempt_pid: [56, 4], preempt_tid: [60, 4], uaddr: [64, 8], op: [72, 4], val: [76, 4],
    owner_tid: [80, 4], owner_src: [84, 4],
  }),
  /** Not a record: loader <-> BPF configuration in the object's .bss (mirrored for the layout check). */
  kspan_cfg: struct(104, {
    offcpu_min_ns: [0, 8], futex_min_ns: [8, 8], stack_min_ns: [16, 8], cgroup_id: [24, 8], wake_bytes: [32, 8],
    filter_pids: [40, 4], follow: [44, 4], stacks: [48, 4], self_tgid: [52, 4], filter_gen: [56, 4], futex_mode: [60, 4],
    pc_rq_delta: [64, 8], irq_src: [72, 4], _pad: [76, 4], since_ns: [80, 8],
    snap_prev_ns: [88, 8], snap_now_ns: [96, 8],
  }),
} as const;

type Offsets<S extends StructLayout> = { readonly [K in keyof S['fields']]: number } & { readonly SIZE: number };
function offsets<S extends StructLayout>(s: S): Offsets<S> {
  const o: Record<string, number> = { SIZE: s.sizeof };
  for (const [k, [off]] of Object.entries(s.fields)) o[k] = off;
  return o as Offsets<S>;
}

// Byte offsets from the start of the record, per kind: e.g. OFFCPU.start_ns.
export const HDR = offsets(STRUCTS.kspan_hdr);
export const HELLO = offsets(STRUCTS.kspan_hello);
export const OFFCPU = offsets(STRUCTS.kspan_offcpu);
export const FUTEX_WAIT = offsets(STRUCTS.kspan_futex_wait);
export const FUTEX_WAKE = offsets(STRUCTS.kspan_futex_wake);
export const BLOCK_IO = offsets(STRUCTS.kspan_block_io);
export const TCP_RETRANS = offsets(STRUCTS.kspan_tcp_retrans);
export const CUDA_CALL = offsets(STRUCTS.kspan_cuda_call);
export const TASK = offsets(STRUCTS.kspan_task);
export const STACK = offsets(STRUCTS.kspan_stack);
export const CLOCK = offsets(STRUCTS.kspan_clock);
export const DROPS = offsets(STRUCTS.kspan_drops);
export const STATUS = offsets(STRUCTS.kspan_status);
export const ACK = offsets(STRUCTS.kspan_ack);
export const DRAINED = offsets(STRUCTS.kspan_drained);
export const BLOCKED = offsets(STRUCTS.kspan_blocked);
/** A DRAINED record of ABI <= 3 is its header only (no loss counters). */
export const DRAINED_V3_SIZE = 24;

/** Length of the char arrays, for RecordView.str(). */
export const STATUS_DETAIL_LEN = 96;
export const ACK_MSG_LEN = 120;
/** Header + fixed part of a stack record; ips[] follow, n_user + n_kernel of them. */
export const STACK_FIXED = 40;

/**
 * Smallest legal hdr.size per kind (index = kind): the struct size, except
 * STACK which is sized to its frames. A known kind below this is corrupt.
 * Larger is accepted (room for appended fields).
 */
export const MIN_SIZE: Uint16Array = (() => {
  const m = new Uint16Array(256);
  m[Kind.HELLO] = HELLO.SIZE;
  m[Kind.OFFCPU] = OFFCPU.SIZE;
  m[Kind.FUTEX_WAIT] = FUTEX_WAIT.SIZE;
  m[Kind.FUTEX_WAKE] = FUTEX_WAKE.SIZE;
  m[Kind.BLOCK_IO] = BLOCK_IO.SIZE;
  m[Kind.TCP_RETRANS] = TCP_RETRANS.SIZE;
  m[Kind.CUDA_CALL] = CUDA_CALL.SIZE;
  m[Kind.TASK] = TASK.SIZE;
  m[Kind.STACK] = STACK_FIXED;
  m[Kind.CLOCK] = CLOCK.SIZE;
  m[Kind.DROPS] = DROPS.SIZE;
  m[Kind.STATUS] = STATUS.SIZE;
  m[Kind.ACK] = ACK.SIZE;
  m[Kind.DRAINED] = DRAINED_V3_SIZE;
  m[Kind.BLOCKED] = BLOCKED.SIZE;
  return m;
})();

// ---------------------------------------------------------------------------
// Enums and flags

/** enum kspan_offcpu_flags */
export const OffcpuFlag = {
  PREEMPTED: 1 << 0,
  /** switched out while runnable via schedule() (return-to-user preemption, cond_resched, sched_yield): runqueue time */
  RESCHED: 1 << 1,
  WOKEN: 1 << 2,
  WAKER_HARDIRQ: 1 << 3,
  WAKER_SOFTIRQ: 1 << 4,
  WAKER_FUTEX: 1 << 5,
  NEW: 1 << 6,
  IN_FUTEX: 1 << 7,
  HAS_STACK: 1 << 8,
  /** already off CPU when the probe attached: start_ns is the probe's start, the kind of wait is not known */
  START_UNKNOWN: 1 << 9,
  /** never set by BPF: an interval known only from a BLOCKED snapshot (still off CPU then, no switch-in record yet) */
  OPEN: 1 << 10,
} as const;

/** enum kspan_owner_src */
export const OwnerSrc = { NONE: 0, PI_WORD: 1, GLIBC_MUTEX: 2 } as const;
export const OWNER_SRC_NAMES: Readonly<Record<number, string>> = { 0: 'none', 1: 'pi_word', 2: 'glibc_mutex' };

/** enum kspan_futex_flags (kspan_futex_wait.flags; 0 = from the syscall tracepoints, ret exact) */
export const FutexFlag = {
  /** from saved registers at sched_switch/sched_waking: start/end are the switch-out/switch-in */
  FROM_REGS: 1 << 0,
  /** ret inferred from the waker: 0 = woken by a futex wake call, -ETIMEDOUT = timer with a timeout armed */
  RET_INFERRED: 1 << 1,
  /** ret not knowable (signal, untracked waking): reported as 0 */
  RET_UNKNOWN: 1 << 2,
} as const;

/** enum kspan_io_flags */
export const IoFlag = {
  WRITE: 1 << 0,
  SYNC: 1 << 1,
  FLUSH: 1 << 2,
  FUA: 1 << 3,
  META: 1 << 4,
  DISCARD: 1 << 5,
  ISSUER_GUESSED: 1 << 6,
} as const;

/** enum kspan_cuda_api */
export const CudaApi = {
  CUDA_LAUNCH_KERNEL: 1,
  CUDA_MEMCPY: 2,
  CUDA_MEMCPY_ASYNC: 3,
  CUDA_STREAM_SYNC: 4,
  CUDA_DEVICE_SYNC: 5,
  CUDA_EVENT_SYNC: 6,
  CU_LAUNCH_KERNEL: 16,
  CU_MEMCPY: 17,
  CU_MEMCPY_ASYNC: 18,
  CU_CTX_SYNC: 19,
  CU_STREAM_SYNC: 20,
  CU_EVENT_SYNC: 21,
} as const;

/** The API's base symbol name (variants such as _ptsz/_v2 are folded into one id by the probe). */
export const CUDA_API_NAMES: Readonly<Record<number, string>> = {
  1: 'cudaLaunchKernel',
  2: 'cudaMemcpy',
  3: 'cudaMemcpyAsync',
  4: 'cudaStreamSynchronize',
  5: 'cudaDeviceSynchronize',
  6: 'cudaEventSynchronize',
  16: 'cuLaunchKernel',
  17: 'cuMemcpy',
  18: 'cuMemcpyAsync',
  19: 'cuCtxSynchronize',
  20: 'cuStreamSynchronize',
  21: 'cuEventSynchronize',
};
export function cudaApiName(api: number): string {
  return CUDA_API_NAMES[api] ?? `cuda_api_${api}`;
}
/** Calls that block the calling thread until GPU work finishes (cudaMemcpy is synchronous too). */
export function cudaApiBlocks(api: number): boolean {
  return api === 2 || api === 4 || api === 5 || api === 6 || api === 17 || api === 19 || api === 20 || api === 21;
}
/** Which meaning kspan_cuda_call.arg has for this api. */
export function cudaArgKind(api: number): 'stream' | 'bytes' | 'event' | 'none' {
  switch (api) {
    case 1: case 3: case 4: case 16: case 18: case 20: return 'stream';
    case 2: case 17: return 'bytes';
    case 6: case 21: return 'event';
    default: return 'none';
  }
}

/** enum kspan_task_event */
export const TaskEvent = { NAME: 1, FORK: 2, EXEC: 3, EXIT: 4, RENAME: 5 } as const;
export const TASK_EVENT_NAMES: Readonly<Record<number, string>> = {
  1: 'name', 2: 'fork', 3: 'exec', 4: 'exit', 5: 'rename',
};

/** enum kspan_ring */
export const Ring = { SCHED: 0, TASK: 1, CUDA: 2 } as const;
export const RING_MAX = 3;
export const RING_NAMES: readonly string[] = ['sched', 'task', 'cuda'];
export function ringName(ring: number): string {
  return RING_NAMES[ring] ?? `ring${ring}`;
}

/** enum kspan_group; names are the ones the probe's --groups and `attach` take. */
export const Group = { SCHED: 0, TASK: 1, FUTEX: 2, BLOCK: 3, TCP: 4, CUDA: 5, FUTEX_SYSCALLS: 6, BLOCKED: 7 } as const;
export const GROUP_MAX = 8;
/**
 * futex = from registers (default); futex-syscalls = the syscall tracepoints (opt-in);
 * blocked = the blocked-task snapshots before each watermark (KSPAN_BLOCKED, needs sched).
 */
export const GROUP_NAMES: readonly string[] = ['sched', 'task', 'futex', 'block', 'tcp', 'cuda', 'futex-syscalls', 'blocked'];
export function groupName(group: number): string {
  return GROUP_NAMES[group] ?? `group${group}`;
}
/** kspan_status.err value meaning "detached on request". */
export const STATUS_DETACHED = 1;

// ---------------------------------------------------------------------------
// Kernel constants used to render records.

/** Task state bits (include/linux/sched.h), as found in kspan_offcpu.prev_state. */
export const TaskState = {
  RUNNING: 0x0,
  INTERRUPTIBLE: 0x1,
  UNINTERRUPTIBLE: 0x2,
  STOPPED: 0x4,
  TRACED: 0x8,
  EXIT_DEAD: 0x10,
  EXIT_ZOMBIE: 0x20,
  PARKED: 0x40,
  DEAD: 0x80,
  WAKEKILL: 0x100,
  WAKING: 0x200,
  NOLOAD: 0x400,
  NEW: 0x800,
  RTLOCK_WAIT: 0x1000,
  FREEZABLE: 0x2000,
  FROZEN: 0x8000,
} as const;

/**
 * The state letter ps/ftrace would print for a switch-out: "R+" preempted,
 * "R" switched out runnable (RESCHED), else S D T t X Z P I (like the kernel's
 * task_state_index(): TASK_IDLE shows as I, TASK_RTLOCK_WAIT as D).
 */
export function stateLetters(prevState: number, preempted: boolean): string {
  if (preempted) return 'R+';
  const s = prevState >>> 0;
  if (s === (TaskState.UNINTERRUPTIBLE | TaskState.NOLOAD)) return 'I';
  if (s === TaskState.RTLOCK_WAIT) return 'D';
  const report = s & 0x7f; // TASK_REPORT: the bits ps reports
  if (report === 0) return 'R';
  const letters = 'SDTtXZP';
  // fls(): the highest reported bit wins, as in task_state_index().
  const bit = 31 - Math.clz32(report);
  return letters[bit];
}

/** An off-CPU record's state letters: '?' when its start (and so its kind of wait) is unknown (OffcpuFlag.START_UNKNOWN). */
export function offcpuState(prevState: number, flags: number): string {
  if (flags & OffcpuFlag.START_UNKNOWN) return '?';
  return stateLetters(prevState, (flags & OffcpuFlag.PREEMPTED) !== 0);
}

/** Futex command numbers (uapi/linux/futex.h). */
export const FUTEX_OP_NAMES: readonly string[] = [
  'FUTEX_WAIT', 'FUTEX_WAKE', 'FUTEX_FD', 'FUTEX_REQUEUE', 'FUTEX_CMP_REQUEUE', 'FUTEX_WAKE_OP',
  'FUTEX_LOCK_PI', 'FUTEX_UNLOCK_PI', 'FUTEX_TRYLOCK_PI', 'FUTEX_WAIT_BITSET', 'FUTEX_WAKE_BITSET',
  'FUTEX_WAIT_REQUEUE_PI', 'FUTEX_CMP_REQUEUE_PI', 'FUTEX_LOCK_PI2',
];
export const FUTEX_PRIVATE_FLAG = 128;
export const FUTEX_CLOCK_REALTIME = 256;
/** kspan marks futex2 syscalls (futex_waitv, ...) as op = 0xffff0000 | n. */
export const FUTEX2_MARK = 0xffff0000;

/** "FUTEX_WAIT_BITSET_PRIVATE", "FUTEX_LOCK_PI|FUTEX_CLOCK_REALTIME", "futex2:1". */
export function futexOpName(op: number): string {
  const o = op >>> 0;
  if ((o & 0xffff0000) >>> 0 === FUTEX2_MARK) return `futex2:${o & 0xffff}`;
  const cmd = o & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  let name = FUTEX_OP_NAMES[cmd] ?? `FUTEX_OP_${cmd}`;
  if (o & FUTEX_PRIVATE_FLAG) name += '_PRIVATE';
  if (o & FUTEX_CLOCK_REALTIME) name += '|FUTEX_CLOCK_REALTIME';
  return name;
}

/** TCP states (include/net/tcp_states.h). */
export const TCP_STATE_NAMES: readonly string[] = [
  'UNKNOWN', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE',
  'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'BOUND_INACTIVE',
];
export const AF_INET = 2;
export const AF_INET6 = 10;

/** Kernel dev_t (12:20 encoding) -> [major, minor]. */
export function devMajor(dev: number): number {
  return dev >>> 20;
}
export function devMinor(dev: number): number {
  return dev & 0xfffff;
}

/** Names of the set bits of `flags`, given a { NAME: bit } table; unknown bits as "0x..". */
export function flagNames(flags: number, table: Readonly<Record<string, number>>): string[] {
  const out: string[] = [];
  let rest = flags >>> 0;
  for (const [name, bit] of Object.entries(table)) {
    if (rest & bit) {
      out.push(name.toLowerCase());
      rest = (rest & ~bit) >>> 0;
    }
  }
  if (rest) out.push(`0x${rest.toString(16)}`);
  return out;
}

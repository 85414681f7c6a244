// LMDB layout of a kspan store (one directory, one environment).
//
// Sub-databases:
//   meta            binary key -> msgpack value: config, partitions, sessions,
//                   clock samples, drop counters, status, threads, processes
//   e:<P>           one per partition P (a sequence number; stores written before
//                   schema 2: P = floor(end_ns / partitionNs)). A partition holds the
//                   events whose end is in [fromNs, next partition's fromNs): a new one
//                   starts at each partitionNs time slot, and when the current one's
//                   blocks pass the size trigger (maxBytes / 16 by default), so
//                   retention by size can hold within a fraction of the limit.
//                   Readers skip partitions by their stored [minEnd, maxEnd] and
//                   maxDur (exact), never by P. binary key -> binary value
//     [u32 tid][u64 minStart][u32 seq]          event block of thread tid (codec.ts)
//     [u32 tid]                                 f64 LE: max (maxEnd - minStart) of tid's blocks here
//     [0xFFFFFFFE][u32 pid][u64 uaddr][u64 minStart][u32 seq]  futex index block
//     [0xFFFFFFFE][u32 pid][u64 uaddr]          f64 LE: max extent of that lock word's blocks
//     [0xFFFFFFFF][u32 pid][u32 tid]            (empty) tid belonged to pid in this partition
//   spans           [16 trace_id][8 span_id] -> msgpack StoredSpan
//   spans_by_time   [service utf8][0x00][u64 start_epoch_ns][16][8] -> f64 duration
//   spans_by_dur    [service utf8][0x00][u64 duration_ns][u64 start][16][8] -> (empty)
//
// All times in keys are u64 big-endian (memcmp order = numeric order).
// Monotonic times count from the store's origin (time.ts: exact at any
// uptime); thread start times in 't'/'P' keys are absolute u64.

import type { StatusInfo } from '../capture/index.js';
import { putAbsU64 } from './time.js';

/** 2: partitions are sequence-numbered with `fromNs` (size-triggered partitions); 1 (read and upgraded): P = time slot */
export const SCHEMA_VERSION = 2;
export const DEFAULT_PARTITION_NS = 10 * 60 * 1e9;
const TWO32 = 4294967296;

export const FUTEX_PREFIX = 0xfffffffe;
export const PIDMAP_PREFIX = 0xffffffff;

/** meta key tags (first byte) */
export const M = {
  CONFIG: 0x01,
  PARTITION: 0x70, // 'p' + u32 idx
  SESSION: 0x53, // 'S' + u64 start mono + u32 seq
  CLOCK: 0x63, // 'c' + u64 mono
  DROPS: 0x64, // 'd' + u8 ring + u64 ts
  STATUS: 0x73, // 's' + u64 ts + u32 seq
  THREAD: 0x74, // 't' + u32 tid + u64 start_time
  PROC: 0x50, // 'P' + u32 pid + u32 tid + u64 start_time
  COUNTERS: 0x43, // 'C': writer counters (skipped records etc.)
  RETAINED: 0x52, // 'R': { fromNs }: retention horizon, events before it were dropped
  HOST: 0x48, // 'H' + u64 epoch ms: HostMeta, the host of the writer that opened the store then
  NEXT_PARTITION: 0x4e, // 'N': number: the next partition's idx (never reused)
  ORIGIN: 0x4f, // 'O': { hi }: the store's time origin, hi * 2^32 monotonic ns (time.ts); absent: 0
  OPEN: 0x62, // 'b' + u32 tid + u64 start: OpenInterval, an off-CPU interval still open at a snapshot
} as const;

export function putU64(b: Buffer, at: number, v: number): void {
  if (v < 0) v = 0;
  b.writeUInt32BE(Math.floor(v / TWO32) >>> 0, at);
  b.writeUInt32BE(v % TWO32 >>> 0, at + 4);
}
export function getU64(b: Uint8Array, at: number): number {
  // byte arithmetic, not a DataView: this runs for every block key a scan visits
  const hi = b[at] * 0x1000000 + ((b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]);
  const lo = b[at + 4] * 0x1000000 + ((b[at + 5] << 16) | (b[at + 6] << 8) | b[at + 7]);
  return hi * TWO32 + lo;
}

/** meta 't' key of one thread incarnation: start_time as the absolute u64 (it may precede the origin). */
export function threadKey(tid: number, startTime: number, originHi: number): Buffer {
  const k = Buffer.allocUnsafe(13);
  k[0] = M.THREAD;
  k.writeUInt32BE(tid >>> 0, 1);
  putAbsU64(k, 5, startTime, originHi);
  return k;
}
/** meta 'P' key: incarnation (tid, startTime) belongs to pid. */
export function procKey(pid: number, tid: number, startTime: number, originHi: number): Buffer {
  const k = Buffer.allocUnsafe(17);
  k[0] = M.PROC;
  k.writeUInt32BE(pid >>> 0, 1);
  k.writeUInt32BE(tid >>> 0, 5);
  putAbsU64(k, 9, startTime, originHi);
  return k;
}

export function blockKey(tid: number, minStart: number, seq: number): Buffer {
  const k = Buffer.allocUnsafe(16);
  k.writeUInt32BE(tid, 0);
  putU64(k, 4, minStart);
  k.writeUInt32BE(seq >>> 0, 12);
  return k;
}
export function tidKey(tid: number, ts?: number): Buffer {
  if (ts === undefined) {
    const k = Buffer.allocUnsafe(4);
    k.writeUInt32BE(tid, 0);
    return k;
  }
  const k = Buffer.alloc(16);
  k.writeUInt32BE(tid, 0);
  putU64(k, 4, ts);
  return k;
}
export function futexPrefix(pid: number, uaddr: number): Buffer {
  const k = Buffer.allocUnsafe(16);
  k.writeUInt32BE(FUTEX_PREFIX, 0);
  k.writeUInt32BE(pid, 4);
  putU64(k, 8, uaddr);
  return k;
}
export function futexBlockKey(pid: number, uaddr: number, minStart: number, seq: number): Buffer {
  const k = Buffer.allocUnsafe(28);
  k.writeUInt32BE(FUTEX_PREFIX, 0);
  k.writeUInt32BE(pid, 4);
  putU64(k, 8, uaddr);
  putU64(k, 16, minStart);
  k.writeUInt32BE(seq >>> 0, 24);
  return k;
}
export function futexRangeKey(pid: number, uaddr: number, ts: number): Buffer {
  const k = Buffer.alloc(28);
  k.writeUInt32BE(FUTEX_PREFIX, 0);
  k.writeUInt32BE(pid, 4);
  putU64(k, 8, uaddr);
  putU64(k, 16, ts);
  return k;
}
export function pidMapKey(pid: number, tid: number): Buffer {
  const k = Buffer.allocUnsafe(12);
  k.writeUInt32BE(PIDMAP_PREFIX, 0);
  k.writeUInt32BE(pid, 4);
  k.writeUInt32BE(tid, 8);
  return k;
}
export function f64(v: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleLE(v, 0);
  return b;
}

export function metaKey(tag: number, ...parts: [number, 1 | 4 | 8][]): Buffer {
  let n = 1;
  for (const [, w] of parts) n += w;
  const k = Buffer.alloc(n);
  k[0] = tag;
  let p = 1;
  for (const [v, w] of parts) {
    if (w === 1) k[p] = v;
    else if (w === 4) k.writeUInt32BE(v >>> 0, p);
    else putU64(k, p, v);
    p += w;
  }
  return k;
}

/** Meta keys of the clock samples taken after `afterMono` (all when undefined), as a [start, end) range. */
export function clockSampleRange(afterMono: number | undefined): { start: Buffer; end: Buffer } {
  return { start: afterMono === undefined ? metaKey(M.CLOCK) : metaKey(M.CLOCK, [afterMono + 1, 8]), end: metaKey(M.CLOCK + 1) };
}

export function partitionDbName(idx: number): string {
  return `e:${idx}`;
}

// ---------------------------------------------------------------------------
// Stored metadata shapes (msgpack values in `meta`).

export interface StoreConfig {
  schema: number;
  partitionNs: number;
  createdAt: string;
}

export interface PartitionMeta {
  idx: number;
  /** events whose end is >= this (and below the next partition's fromNs) are routed here; absent (schema 1): idx * partitionNs */
  fromNs?: number;
  /** range of event end times stored, monotonic ns */
  minEnd: number;
  maxEnd: number;
  /** longest event (end - start) in the partition */
  maxDur: number;
  events: number;
  blocks: number;
  valueBytes: number;
  /** events by record kind (index = kind) */
  byKind: number[];
}

export interface GroupCoverage {
  /** [from, to] monotonic ns during which the group was attached (to = null: until session end) */
  ranges: { from: number; to: number | null; err: number; detail: string }[];
}

export interface SessionMeta {
  /** monotonic ns when capture started (HELLO, or first record) */
  startNs: number;
  /** latest capture time committed (advances while the session runs) */
  endNs: number;
  closed: boolean;
  bootId: string | null;
  /** (added) host.name of the capturing host (os.hostname() or `--host-name`); absent in older stores */
  hostName?: string;
  /** (added) cgroup v2 paths capture was scoped to (none: the whole host) */
  cgroups?: string[];
  probePid: number | null;
  /** kspan's own processes while capturing (the consumer; the probe is probePid): named as the observer when they are culprits */
  observerPids?: number[];
  offcpuMinNs: number | null;
  /** wall clock of ingest start/stop (ISO) */
  startedAt: string;
  stoppedAt: string | null;
  groups: Record<string, GroupCoverage>;
  /** why the session ended (null/absent: a clean stop), e.g. "kspan-probe was killed by SIGKILL", "store full: ..." */
  endReason?: string | null;
}

export interface ThreadMeta {
  tid: number;
  pid: number;
  /** task->start_time, monotonic ns: (tid, startTime) identifies one incarnation */
  startTime: number;
  comm: string;
  /** process (group leader) comm */
  pcomm: string;
  /** names over time: [ts, comm] (renames, exec) */
  names: [number, string][];
  firstSeen: number;
  lastSeen: number;
  forkTs: number | null;
  parentPid: number | null;
  parentTid: number | null;
  execTs: number | null;
  exitTs: number | null;
  exitCode: number | null;
}

export interface ClockSampleMeta {
  monoNs: number;
  realtimeNs: string;
  errorNs: number;
  stepped: boolean;
}

/**
 * An off-CPU interval still open at the probe's blocked-task snapshot
 * (KSPAN_BLOCKED): its switch-in record has not come yet. Kept until that
 * record is committed (then deleted), so that a reader that stops at the
 * committed watermark sees the thread off CPU up to it, not on CPU. One per
 * thread at a time in a running session; those left when a session ends stay
 * (the reader ends them with the session).
 */
export interface OpenInterval {
  tid: number;
  pid: number;
  /** switch-out, store ns */
  start: number;
  /** first waking (store ns); 0: not woken at the latest snapshot */
  runnable: number;
  /** the snapshot that last reported it */
  asOf: number;
  prevState: number;
  /** OffcpuFlag bits known at the snapshot */
  flags: number;
  wakerPid: number;
  wakerTid: number;
  preemptPid: number;
  preemptTid: number;
  /** CPU at switch-out */
  cpu: number;
  /** flags & IN_FUTEX: the futex wait it is blocked in (uaddr 0: none known) */
  uaddr: number;
  op: number;
  val: number;
  ownerTid: number;
  ownerSrc: number;
}

export function openIntervalKey(tid: number, start: number): Buffer {
  return metaKey(M.OPEN, [tid, 4], [start, 8]);
}

export interface DropsSample {
  ring: number;
  ts: number;
  lost: number;
  records: number;
  bytes: number;
}

/** A probe group's attach/detach result, as capture reports it. */
export type StatusMeta = StatusInfo;

/** Records that did not make it into the store, by reason. */
export interface SkipCounters {
  unknownKind: number;
  /** end < start, zero times, size below the struct */
  badValue: number;
  /** times the store cannot hold exactly: before its origin, or 2^53 ns (104 days) after it (time.ts) */
  outOfRange?: number;
  /** older than the oldest live partition (already expired) */
  expired: number;
  /** thread events discarded because the store could not commit (disk full) and the retry buffer was full */
  storeFull?: number;
  /** decoder-side counts are kept by the capture module (FrameDecoder counters) */
}

/** Lower bound of the end times routed to partition `pm` (schema 1 partitions: their time slot). */
export function partitionFromNs(pm: PartitionMeta, partitionNs: number): number {
  return pm.fromNs ?? pm.idx * partitionNs;
}

/** Can partition `pm` hold an event overlapping [a, b]? From its stored end range and longest event (exact). */
export function partitionMayOverlap(pm: PartitionMeta, a: number, b: number): boolean {
  return pm.maxEnd >= a && pm.minEnd - pm.maxDur <= b;
}

// StoreWriter: the ingest side (one per store: the daemon). It is a
// CaptureSink: `ProbeProcess.start(opts, writer)` / `replayFile(path, writer)`.
//
// Kernel events are buffered per thread (BlockBuilder, delta/varint coded as
// they arrive, no object per event) and flushed as one LMDB value per block
// when a block reaches `blockBytes`, when its oldest event is `maxAgeMs` of
// capture time (or wall time) old, when the event's partition changes, and on
// flush()/close(). Sealed blocks are put in commit rounds: one LMDB
// transaction per round (lmdb-js `transaction()`: the puts run in the write
// transaction, the commit on lmdb-js's write thread); onBatch returns a
// promise (backpressure) while too many bytes are uncommitted.
//
// Partitions: a new one starts at each `partitionNs` time slot and, with a
// size limit, whenever the current one's blocks pass `partitionBytes`
// (maxBytes / 16 by default), so retention by size holds within one small
// partition of the limit (schema.ts).
//
// A commit that fails (disk full: ENOSPC/EIO, MDB_MAP_FULL) never throws
// into the capture path: the round's puts stay queued (and readable through
// the head) and are retried with backoff (1 s doubling to 30 s); past
// `maxRetainedBytes` of queued data (blocks, and open-interval rows to put or
// delete), new events are not stored (counted as
// `storeFull`) and the capture session is closed with its reason, so the gap
// reads as not covered; a new session starts when a commit succeeds again.
// With a size or age limit, a commit that fails for space also drops the
// oldest partitions (`emergency` retention) and caps the store below the size
// at which the disk filled. `health` says where the store stands.

import { existsSync, mkdirSync } from 'node:fs';
import type { Database } from 'lmdb';
import {
  BLOCKED, BLOCK_IO, CLOCK, CUDA_CALL, DRAINED, DROPS, FUTEX_WAIT, FUTEX_WAKE, HDR, HELLO, HelloView, Kind, KIND_MAX, MIN_SIZE, OFFCPU, STATUS, STATUS_DETAIL_LEN, TASK,
  ClockHistory, groupName, type CaptureSink, type RecordBatch,
} from '../capture/index.js';
import { BlockBuilder, FutexBuilder, KIND_SPECS } from './codec.js';
import type { HeadBlock, StoreHead } from './head.js';
import { localHost, type HostIdentity, type HostMeta } from './host.js';
import { describeCommitError } from './commit-error.js';
import { StoreReader, openEnv, type OpenOptions } from './reader.js';
import {
  DEFAULT_PARTITION_NS, M, SCHEMA_VERSION, blockKey, clockSampleRange, f64, futexBlockKey, futexPrefix, getU64, metaKey, partitionFromNs,
  partitionMayOverlap, pidMapKey, procKey, threadKey, tidKey, type GroupCoverage, type PartitionMeta, type SessionMeta, type SkipCounters,
  openIntervalKey, type DropsSample, type OpenInterval, type StoreConfig, type ThreadMeta,
} from './schema.js';
import { RING_NAMES } from './drops.js';
import { REL_HI_LIMIT, originHiFor, relTime, relTimeSigned } from './time.js';

const TWO32 = 4294967296;

export interface WriterOptions extends OpenOptions {
  /** time partition width, ns (fixed when the store is created). Default 10 min. */
  partitionNs?: number;
  /**
   * start a new partition when the current one's blocks pass this many bytes
   * (default: maxBytes / 16, at least 256 KiB, when maxBytes is set; 0 = time slots only)
   */
  partitionBytes?: number;
  /**
   * largest block value, bytes: a block is sealed when its next event would likely take it past this.
   * Default 8176: two 4 KiB LMDB overflow pages less their 16-byte header (one byte more takes three pages).
   */
  blockBytes?: number;
  /** flush a block whose first event is this old (capture time, and wall time). Default 1000 ms. */
  maxAgeMs?: number;
  /** start a commit round when this many sealed bytes are pending. Default 1 MiB. */
  roundBytes?: number;
  /** ... or when the last round is this old (wall ms). Default 200. */
  roundMs?: number;
  /** onBatch returns a promise while more than this many bytes are uncommitted. Default 64 MiB. */
  maxOutstandingBytes?: number;
  /** while commits fail: sealed bytes kept for the retry; past it, new events are not stored (counted). Default 32 MiB. */
  maxRetainedBytes?: number;
  /** first retry after a failed commit, ms (doubling up to retryMaxMs). Default 1000. */
  retryMinMs?: number;
  /** Default 30000. */
  retryMaxMs?: number;
  /** retention: drop partitions older than this (capture time, ns); 0 = keep. */
  maxAgeNs?: number;
  /** retention: drop oldest partitions while pages in use exceed this (bytes); 0 = no limit. */
  maxBytes?: number;
  /** check retention every this many ms of wall time (default 1000; 0 = only when enforceRetention() is called or a partition starts). */
  retentionEveryMs?: number;
  /** told when the store stops committing and when it commits again */
  onStoreState?: (h: StoreHealth) => void;
  /** the host this writer runs on (default: os.hostname() and the kernel's boot id): recorded per session and in a host record */
  host?: HostIdentity;
  /** cgroup v2 paths capture is scoped to, recorded per session */
  cgroups?: string[];
}

export interface WriterCounters extends SkipCounters {
  outOfRange: number;
  /** kernel events accepted into thread blocks */
  events: number;
  /** of those, committed (durable per lmdb overlappingSync) */
  committedEvents: number;
  blocks: number;
  futexBlocks: number;
  commitRounds: number;
  /** value bytes written (blocks) */
  valueBytes: number;
  /** records seen by kind (index = kind) */
  byKind: number[];
  droppedPartitions: number;
  /** thread events not stored because the store could not commit (see SkipCounters) */
  storeFull: number;
  /** LMDB transactions of this writer that failed to commit */
  commitFailures: number;
  /** partitions dropped to make room after a commit failed for space */
  emergencyDropped: number;
  /** BLOCKED reports not kept because OPEN_INTERVALS_MAX intervals were open (those threads read as before: on CPU up to their switch-in) */
  openDropped: number;
  /** spans deleted from the span index by retention (started before the kernel data's horizon, or older than maxAgeNs) */
  expiredSpans: number;
  /** thread incarnations whose rows retention deleted (they exited before the horizon) */
  prunedThreads: number;
}

/** Open off-CPU intervals kept at most (one per thread; ~250 bytes each in memory: ≤ ~64 MB). */
const OPEN_INTERVALS_MAX = 1 << 18;
/** Memory of a queued open-interval row put or delete, bytes (key, object, list slot): counted in retainedBytes. */
const OPEN_ROW_BYTES = 128;

/** Where the store stands: committing, or not (and why, since when). */
export interface StoreHealth {
  ok: boolean;
  /** wall ms since commits fail (null: ok) */
  failingSince: number | null;
  /** the last commit error, e.g. "Input/output error (EIO)" */
  error: string | null;
  /** the error looks like no space (ENOSPC, EIO of a short write, MDB_MAP_FULL, EDQUOT) */
  space: boolean;
  /** sealed bytes waiting for a commit */
  retainedBytes: number;
  /** new events are not stored (the retry buffer is full) */
  discarding: boolean;
  /** wall ms of the next commit attempt (null: ok) */
  retryAt: number | null;
  /** times the store went from committing to failing */
  episodes: number;
  commitFailures: number;
  /** thread events not stored so far */
  notStoredEvents: number;
  /** partitions dropped to make room */
  emergencyDropped: number;
  /** size cap learned from a full disk (bytes; 0: none) */
  capBytes: number;
}

/** Thrown by flush() while the store cannot commit. */
export class StoreCommitError extends Error {
  constructor(message: string, readonly health: StoreHealth) {
    super(message);
    this.name = 'StoreCommitError';
  }
}

export interface RetentionResult {
  dropped: number[];
  usedBytes: number;
  ms: number;
  /** spans expired from the span index by this check */
  expiredSpans?: number;
}

interface Pending {
  part: number;
  key: Buffer;
  value: Buffer;
  events: number;
  /** the head entry this put makes durable (removed from the head once committed) */
  head: HeadBlock;
  /** thread blocks: the tid; futex-index blocks: -1 */
  tid: number;
  /** futex-index blocks: `${pid}:${uaddr}` */
  fx: string | null;
}

/** A put into a partition besides blocks: a block extent (value: the largest known, read at put time) or a pid-map key. */
interface PartPut {
  part: number;
  key: Buffer;
  /** extent of thread `tid` (fx null) or of lock word `fx`; pid-map keys: ext false */
  ext: boolean;
  tid: number;
  fx: string | null;
}

/** What one commit round writes (kept to be queued again when its commit fails). */
interface Round {
  pend: Pending[];
  bytes: number;
  events: number;
  partPuts: PartPut[];
  metaPuts: [string, Buffer, unknown][];
  parts: number[];
  threads: string[];
  newThreads: ThreadMeta[] | null;
  /** partitions opened inside this round's transaction (their handles die with it if it fails) */
  opened: number[];
  /** open-interval rows whose switch-in record this round makes committed */
  openDeletes: OpenClear[];
}

interface OpenClear {
  key: Buffer;
  /** the interval's end (its switch-in, or a later sign the thread ran) */
  end: number;
}

/**
 * u32 word indexes of the record fields read here, from the record ABI
 * (src/capture/records.ts). 64-bit fields are two words, low first.
 */
const w32 = (byteOff: number): number => byteOff >>> 2;
const W = {
  ts: w32(HDR.ts), tsHi: w32(HDR.ts) + 1, pid: w32(HDR.pid), tid: w32(HDR.tid),
  /** every interval kind has its start_ns at one offset (checked below) */
  start: w32(OFFCPU.start_ns), startHi: w32(OFFCPU.start_ns) + 1,
  /** futex waits and wakes have uaddr at one offset (checked below) */
  uaddr: w32(FUTEX_WAIT.uaddr), uaddrHi: w32(FUTEX_WAIT.uaddr) + 1,
  clockReal: w32(CLOCK.realtime_ns), clockRealHi: w32(CLOCK.realtime_ns) + 1,
  clockErr: w32(CLOCK.error_ns), clockErrHi: w32(CLOCK.error_ns) + 1, clockStepped: w32(CLOCK.stepped),
  dropsRing: w32(DROPS.ring), dropsLost: w32(DROPS.lost), dropsLostHi: w32(DROPS.lost) + 1,
  dropsRecords: w32(DROPS.records), dropsRecordsHi: w32(DROPS.records) + 1, dropsBytes: w32(DROPS.bytes), dropsBytesHi: w32(DROPS.bytes) + 1,
  blockedRunnable: w32(BLOCKED.runnable_ns), blockedRunnableHi: w32(BLOCKED.runnable_ns) + 1,
  blockedPrevState: w32(BLOCKED.prev_state), blockedFlags: w32(BLOCKED.flags), blockedWakerPid: w32(BLOCKED.waker_pid),
  blockedWakerTid: w32(BLOCKED.waker_tid), blockedPreemptPid: w32(BLOCKED.preempt_pid), blockedPreemptTid: w32(BLOCKED.preempt_tid),
  blockedUaddr: w32(BLOCKED.uaddr), blockedUaddrHi: w32(BLOCKED.uaddr) + 1, blockedOp: w32(BLOCKED.op), blockedVal: w32(BLOCKED.val),
  blockedOwnerTid: w32(BLOCKED.owner_tid), blockedOwnerSrc: w32(BLOCKED.owner_src),
  cpu: w32(HDR.cpu),
  drainedLostTs: w32(DRAINED.lost_ts), drainedLostTsHi: w32(DRAINED.lost_ts) + 1, drainedLost: w32(DRAINED.lost),
  statusGroup: w32(STATUS.group), statusErr: w32(STATUS.err), statusAttached: w32(STATUS.n_attached), statusFailed: w32(STATUS.n_failed),
  taskStart: w32(TASK.start_time), taskStartHi: w32(TASK.start_time) + 1, taskEvent: w32(TASK.event),
  helloMono: w32(HELLO.mono_ns), helloMonoHi: w32(HELLO.mono_ns) + 1,
  taskOtherPid: w32(TASK.other_pid), taskOtherTid: w32(TASK.other_tid), taskExitCode: w32(TASK.exit_code),
} as const;
for (const off of [FUTEX_WAIT.start_ns, FUTEX_WAKE.start_ns, BLOCK_IO.start_ns, CUDA_CALL.start_ns, BLOCKED.start_ns]) {
  if (off !== OFFCPU.start_ns) throw new Error('record ABI: interval kinds disagree on start_ns offset');
}
if (FUTEX_WAKE.uaddr !== FUTEX_WAIT.uaddr) throw new Error('record ABI: futex records disagree on uaddr offset');

/** Events are ingested through the probe's DRAINED time less this (a record is reserved right after its time is read). */
const DRAIN_SLOP_NS = 1_000_000;
const EMPTY = Buffer.alloc(0);
const ZERO_BYTE = Buffer.from([0]);
/**
 * Thread rows a retention check looks at, at most (pruneThreads): reading one
 * takes ~6 µs of the writer's thread (the OTel receiving thread in `kspan
 * run`), so ~6 ms a check; a sweep of 100,000 rows takes ~100 checks.
 */
const THREAD_SWEEP_ROWS = 1024;

/** lmdb-js prints every failed commit with console.error; the writer reports it itself (once), so those are left out. */
let lmdbErrorsQuiet = false;
function quietLmdbCommitErrors(): void {
  if (lmdbErrorsQuiet) return;
  lmdbErrorsQuiet = true;
  const orig = console.error.bind(console);
  console.error = (...args: unknown[]) => {
    const e = args[0];
    if (args.length === 1 && e instanceof Error && /[/\\]lmdb[/\\]write\.js/.test(e.stack ?? '')) return;
    orig(...args);
  };
}

export class StoreWriter implements CaptureSink {
  readonly reader: StoreReader;
  readonly counters: WriterCounters = {
    events: 0, committedEvents: 0, blocks: 0, futexBlocks: 0, commitRounds: 0, valueBytes: 0,
    byKind: new Array(KIND_MAX + 1).fill(0), unknownKind: 0, badValue: 0, outOfRange: 0, expired: 0, droppedPartitions: 0, expiredSpans: 0, prunedThreads: 0,
    storeFull: 0, commitFailures: 0, emergencyDropped: 0, openDropped: 0,
  };
  readonly partitionNs: number;
  private readonly o: Required<Omit<WriterOptions, keyof OpenOptions | 'onStoreState' | 'host' | 'cgroups'>>;
  /** the host recorded for this writer's sessions */
  readonly host: HostIdentity;
  private readonly cgroups: string[] | undefined;
  private readonly onStoreState: ((h: StoreHealth) => void) | null;
  private readonly threads = new Map<number, BlockBuilder>();
  private readonly futex = new Map<number, Map<number, FutexBuilder>>();
  private readonly partMeta = new Map<number, PartitionMeta>();
  /** live partitions, oldest first (idx order = time order) */
  private readonly order: number[] = [];
  private readonly dirtyParts = new Set<number>();
  /** partitions that existed when this writer opened (their extents may be stored already) */
  private readonly openedParts = new Set<number>();
  private readonly extents = new Map<number, Map<number, number>>();
  private readonly fxExtents = new Map<number, Map<string, number>>();
  private readonly pidTids = new Map<number, Set<number>>();
  private readonly threadMeta = new Map<string, ThreadMeta>();
  private readonly dirtyThreads = new Set<string>();
  /** head: sealed blocks not yet confirmed committed, by tid / by lock word */
  private readonly sealedThread = new Map<number, HeadBlock[]>();
  private readonly sealedFutex = new Map<string, HeadBlock[]>();
  /** head: thread incarnations first seen since the last commit round, by tid and by pid */
  private readonly newByTid = new Map<number, ThreadMeta[]>();
  private readonly newByPid = new Map<number, ThreadMeta[]>();
  /** latest DRAINED marker of the probe (0: none seen; streams without markers use maxTs) */
  private drainedNs = 0;
  /** per ring: the latest loss counter reading (DROPS or DRAINED) and whether it is stored (see onLoss) */
  private readonly lossLatest: ({ s: DropsSample; stored: boolean } | null)[] = RING_NAMES.map(() => null);
  /** off-CPU intervals of the running session still open at the latest snapshot, by tid (see onBlocked) */
  private readonly openIv = new Map<number, OpenInterval>();
  /** open-interval rows new or changed since the last round */
  private openPuts = new Map<string, [Buffer, OpenInterval]>();
  /** rows of intervals that ended, deleted once the end is committed */
  private openClears: OpenClear[] = [];
  private readonly scratch = { buf: new Uint8Array(16384) };
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private partPuts: PartPut[] = [];
  /** metadata puts for the next round, by key (hex): the latest value wins */
  private metaPuts = new Map<string, [Buffer, unknown]>();
  private slab = Buffer.allocUnsafe(4 << 20);
  private slabUsed = 0;
  private outstandingBytes = 0;
  private lastRound: Promise<void> = Promise.resolve();
  private lastRoundWall = Date.now();
  private lastSweepTs = 0;
  private lastRetentionWall = Date.now();
  private retentionDue = false;
  /** the thread-row sweep under way (pruneThreads): where the next check resumes, to which horizon */
  private threadSweep: { from: Buffer; horizon: number } | null = null;
  /** the horizon the last complete sweep pruned to */
  private sweptHorizon = 0;
  private seq = (Math.random() * TWO32) >>> 0;
  private maxTs = 0;
  /** the partition being written (newest), its lower bound and the end of its time slot */
  private cur = -1;
  private curFrom = Infinity;
  private curSlotEnd = Infinity;
  /** bytes sealed into the current partition, and in its open blocks (size trigger) */
  private curBytes = 0;
  private curOpen = 0;
  private splitDue = false;
  private splitBytes: number;
  private nextIdx = 0;
  /** retention horizon: events that end before it are expired */
  private horizonNs = 0;
  /** partitions dropped here whose LMDB drop did not commit: dropped again at the next retention run */
  private readonly zombies = new Set<number>();
  private session: SessionMeta | null = null;
  private sessionKey: Buffer | null = null;
  /** while discarding: what the session that was cut had (a new one starts with it when commits work again; null: none was running) */
  private resume: { info: Partial<SessionMeta>; groups: Record<string, GroupCoverage> } | null = null;
  private readonly hv = new HelloView();
  /** the clock samples ingested (store times): converts the watermark before they commit */
  private readonly clock = new ClockHistory();
  private statusSeq = 0;
  private closed = false;
  /** close() is under way: no emergency drops any more */
  private closing = false;
  private inTxn = false;
  private timer: NodeJS.Timeout | null = null;
  private retentionRunning: Promise<RetentionResult> | null = null;
  private emergency: Promise<void> | null = null;
  /** commits failing since, and why (null: committing) */
  private fail: { since: number; error: string; space: boolean; backoffMs: number; retryAt: number } | null = null;
  private discarding: { sinceNs: number; reason: string } | null = null;
  private episodes = 0;
  /** a size cap learned from a full disk (0: none), and the failure episode it was learned in */
  private capBytes = 0;
  private capEpisode = 0;
  /** error of the last timer-driven retention check (null: none) */
  lastRetentionError: Error | null = null;

  constructor(readonly dir: string, opts: WriterOptions = {}) {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    quietLmdbCommitErrors();
    const root = openEnv(dir, false, opts);
    this.reader = new StoreReader(root, false);
    this.reader.attachHead(this.headView());
    const meta = this.reader.meta;
    let cfg = meta.get(metaKey(M.CONFIG)) as StoreConfig | undefined;
    if (!cfg) {
      cfg = { schema: SCHEMA_VERSION, partitionNs: opts.partitionNs ?? DEFAULT_PARTITION_NS, createdAt: new Date().toISOString() };
      meta.putSync(metaKey(M.CONFIG), cfg);
    }
    if (cfg.schema !== SCHEMA_VERSION && cfg.schema !== 1) throw new Error(`store schema ${cfg.schema}, this kspan writes ${SCHEMA_VERSION}`);
    if (cfg.schema === 1) {
      // schema 1 partitions (idx = time slot) are read as they are; new ones are sequence-numbered
      cfg = { ...cfg, schema: SCHEMA_VERSION };
      this.putMeta(metaKey(M.CONFIG), cfg);
    }
    this.reader.config = cfg;
    this.partitionNs = cfg.partitionNs;
    const maxBytes = opts.maxBytes ?? 0;
    this.o = {
      partitionNs: cfg.partitionNs,
      partitionBytes: opts.partitionBytes ?? (maxBytes > 0 ? Math.max(256 << 10, Math.floor(maxBytes / 16)) : 0),
      blockBytes: opts.blockBytes ?? 8176,
      maxAgeMs: opts.maxAgeMs ?? 1000,
      roundBytes: opts.roundBytes ?? 1 << 20,
      roundMs: opts.roundMs ?? 200,
      maxOutstandingBytes: opts.maxOutstandingBytes ?? 64 << 20,
      maxRetainedBytes: opts.maxRetainedBytes ?? 32 << 20,
      retryMinMs: opts.retryMinMs ?? 1000,
      retryMaxMs: opts.retryMaxMs ?? 30_000,
      maxAgeNs: opts.maxAgeNs ?? 0,
      maxBytes,
      retentionEveryMs: opts.retentionEveryMs ?? 1000,
    };
    this.onStoreState = opts.onStoreState ?? null;
    this.host = opts.host ?? localHost();
    this.cgroups = opts.cgroups?.length ? [...opts.cgroups] : undefined;
    // the host of the data written from now on (a store moved between hosts, or renamed, keeps its history);
    // a restart on the same host and boot adds no row (a daemon restarted daily must not grow the list every explain reads)
    const latest = this.reader.hosts().at(-1);
    if (latest?.name !== this.host.name || latest.bootId !== this.host.bootId) {
      // rows stay in time order (hostAt relies on it) even if the wall clock stepped back
      const sinceMs = Math.max(Date.now(), (latest?.sinceMs ?? -1) + 1);
      const hm: HostMeta = { name: this.host.name, bootId: this.host.bootId, since: new Date(sinceMs).toISOString(), sinceMs };
      meta.putSync(metaKey(M.HOST, [sinceMs, 8]), hm);
    }
    this.splitBytes = this.o.partitionBytes;
    const c = meta.get(metaKey(M.COUNTERS)) as Partial<SkipCounters> | undefined;
    if (c) {
      this.counters.unknownKind = c.unknownKind ?? 0;
      this.counters.badValue = c.badValue ?? 0;
      this.counters.outOfRange = c.outOfRange ?? 0;
      this.counters.expired = c.expired ?? 0;
      this.counters.storeFull = c.storeFull ?? 0;
    }
    this.nextIdx = (meta.get(metaKey(M.NEXT_PARTITION)) as number | undefined) ?? 0;
    // every existing partition is opened now, before any write is under way (see StoreReader.mayOpen)
    for (const pm of this.reader.partitions()) {
      this.partMeta.set(pm.idx, pm);
      this.order.push(pm.idx);
      this.openedParts.add(pm.idx);
      this.reader.partitionDb(pm.idx);
      if (pm.maxEnd > this.maxTs) this.maxTs = pm.maxEnd;
      if (pm.idx >= this.nextIdx) this.nextIdx = pm.idx + 1;
    }
    this.order.sort((a, b) => a - b);
    if (this.order.length) {
      const last = this.partMeta.get(this.order[this.order.length - 1])!;
      this.setCurrent(last);
      this.curBytes = partitionBytes(this.reader, last.idx);
    }
    this.reader.mayOpen = () => this.inTxn;
    // the time origin: fixed once per store (time.ts); a store with data but no origin predates them (0)
    const origin = meta.get(metaKey(M.ORIGIN)) as { hi: number } | undefined;
    if (origin) this.originHi = origin.hi;
    else if (this.order.length || meta.getKeysCount(clockSampleRange(undefined)) > 0) this.fixOrigin(0);
    const ret = meta.get(metaKey(M.RETAINED)) as { fromNs: number; capBytes?: number; capFor?: number } | undefined;
    if (ret) this.horizonNs = ret.fromNs;
    // a cap learned from a full disk holds across restarts with the same --max-size (a new limit starts over)
    if (ret?.capBytes && ret.capFor === this.o.maxBytes) this.capTo(ret.capBytes);
  }

  get root() {
    return this.reader.root;
  }

  /** The store's time origin, high word (time.ts); null until a new store sees its first time. */
  private originHi: number | null = null;

  /** The store's origin; a new store's is fixed from the first time it sees (high word `firstHi`). */
  private originOf(firstHi: number): number {
    return this.originHi ?? this.fixOrigin(originHiFor(firstHi));
  }

  /** Fix the store's origin (once): every time stored from now on counts from hi * 2^32 ns. */
  private fixOrigin(hi: number): number {
    this.originHi = hi;
    this.reader.setOrigin(hi);
    this.putMeta(metaKey(M.ORIGIN), { hi });
    return hi;
  }

  /** Flush aged blocks and commit on a wall-clock timer too (for quiet captures). */
  startTimer(everyMs = 250): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), everyMs);
    this.timer.unref();
  }

  // ------------------------------------------------------------------
  // ingest

  onBatch(batch: RecordBatch, _clock?: ClockHistory): void | Promise<void> {
    const u32 = batch.u32;
    const buf = batch.buf;
    const offs = batch.offsets;
    const byKind = this.counters.byKind;
    for (let i = 0; i < batch.count; i++) {
      const off = offs[i];
      const w = off >>> 2;
      const w0 = u32[w];
      const size = w0 & 0xffff;
      const kind = (w0 >>> 16) & 0xff;
      if (kind > KIND_MAX) {
        this.counters.unknownKind++;
        continue;
      }
      byKind[kind]++;
      const sp = kind < KIND_SPECS.length ? KIND_SPECS[kind] : undefined;
      if (sp) {
        if (size < MIN_SIZE[kind] || (u32[w + W.tsHi] | u32[w + W.ts]) === 0) {
          this.counters.badValue++;
          continue;
        }
        // relative to the store's origin (time.ts relTime, inlined: this is the ingest hot path)
        const oh = this.originHi ?? this.originOf(u32[w + W.tsHi]);
        const endHi = u32[w + W.tsHi] - oh;
        let startHi = endHi;
        if (sp.interval) {
          if ((u32[w + W.startHi] | u32[w + W.start]) === 0) {
            this.counters.badValue++;
            continue;
          }
          startHi = u32[w + W.startHi] - oh;
        }
        if (startHi < 0 || endHi >= REL_HI_LIMIT) {
          // before the store's origin, or 2^53 ns past it: not representable exactly
          this.counters.outOfRange++;
          continue;
        }
        const end = endHi * TWO32 + u32[w + W.ts];
        const start = sp.interval ? startHi * TWO32 + u32[w + W.start] : end;
        if (start > end) {
          this.counters.badValue++;
          continue;
        }
        let part: number;
        if (end >= this.curFrom) {
          part = end >= this.curSlotEnd || this.splitDue ? this.newPartition(end) : this.cur;
        } else if (end < this.horizonNs) {
          this.counters.expired++;
          continue;
        } else {
          part = this.routeOld(end);
        }
        if (this.discarding !== null) {
          // the store cannot commit and the retry buffer is full: counted, not stored
          this.counters.storeFull++;
          if (end > this.maxTs) this.maxTs = end;
          continue;
        }
        const tid = u32[w + W.tid];
        let bb = this.threads.get(tid);
        if (bb === undefined) {
          bb = new BlockBuilder(tid, part);
          bb.originHi = oh;
          this.threads.set(tid, bb);
        } else if (bb.count > 0 && bb.partition !== part) {
          this.sealThread(bb);
        }
        if (bb.count === 0) {
          bb.reset(part);
          bb.openedAt = end;
        }
        const len0 = bb.len;
        bb.append(sp, u32, w, buf, off, size, start, end);
        this.counters.events++;
        if (part === this.cur) {
          // the size trigger counts open blocks too: they are sealed into this partition
          this.curOpen += bb.len - len0;
          if (this.splitBytes > 0 && this.curBytes + this.curOpen >= this.splitBytes) this.splitDue = true;
        }
        // seal while the value fits the page budget: the next event is taken to be up to twice this one
        if (bb.len + Math.max(2 * (bb.len - len0), 64) + BlockBuilder.HEADER_MAX > this.o.blockBytes) this.sealThread(bb);
        // its switch-in: a snapshot's open interval of this thread has ended
        if (kind === Kind.OFFCPU && this.openIv.size !== 0) this.closeOpen(tid, end);
        if (kind === Kind.FUTEX_WAIT || kind === Kind.FUTEX_WAKE) {
          const uaddr = u32[w + W.uaddrHi] * TWO32 + u32[w + W.uaddr];
          this.futexAppend(u32[w + W.pid], uaddr, kind, tid, start, end, part);
        } else if (kind === Kind.TASK) {
          this.onTask(u32, w, buf, off, end);
        }
        if (end > this.maxTs) this.maxTs = end;
        continue;
      }
      switch (kind) {
        case Kind.ACK: break;
        case Kind.HELLO: this.onHello(batch, i); break;
        case Kind.BLOCKED: {
          const ts = relTime(u32[w + W.tsHi], u32[w + W.ts], this.originOf(u32[w + W.tsHi]));
          if (size < MIN_SIZE[kind] || !(ts >= 0)) {
            this.counters.badValue++;
            break;
          }
          this.onBlocked(u32, w, ts);
          break;
        }
        case Kind.CLOCK: case Kind.DROPS: case Kind.STATUS: case Kind.DRAINED: {
          const ts = relTime(u32[w + W.tsHi], u32[w + W.ts], this.originOf(u32[w + W.tsHi]));
          if (!(ts >= 0)) {
            this.counters.outOfRange++;
            break;
          }
          if (kind === Kind.CLOCK) this.onClock(u32, w, ts);
          else if (kind === Kind.DROPS) this.onDrops(u32, w, ts);
          else if (kind === Kind.STATUS) this.onStatus(buf, u32, w, off, ts);
          else this.onDrained(u32, w, ts, size);
          break;
        }
        default: this.counters.unknownKind++;
      }
    }
    if (this.maxTs - this.lastSweepTs >= this.o.maxAgeMs * 250_000) this.sweep(false);
    if (this.pendingBytes >= this.o.roundBytes || Date.now() - this.lastRoundWall >= this.o.roundMs) this.commitRound();
    // metadata (clock samples, sessions, probe status) is committed at once, blocks by rounds
    else if (this.metaPuts.size) this.commitRound(false, true);
    if (this.fail !== null && this.discarding === null && this.retainedBytes > this.o.maxRetainedBytes) this.startDiscarding();
    this.maybeRetention();
    if (this.outstandingBytes > this.o.maxOutstandingBytes) return this.lastRound;
  }

  private maybeRetention(): void {
    if (!(this.o.maxAgeNs || this.o.maxBytes || this.capBytes || this.zombies.size)) return;
    const timed = this.o.retentionEveryMs > 0 && Date.now() - this.lastRetentionWall >= this.o.retentionEveryMs;
    if (!timed && !this.retentionDue) return;
    // one check at a time; one asked for meanwhile runs when it ends
    if (this.retentionRunning || this.closing) {
      this.retentionDue = true;
      return;
    }
    this.retentionDue = false;
    this.lastRetentionWall = Date.now();
    this.enforceRetention().catch((e: unknown) => {
      this.lastRetentionError = e as Error;
    });
  }

  // ------------------------------------------------------------------
  // partitions

  private setCurrent(pm: PartitionMeta): void {
    const P = this.partitionNs;
    this.cur = pm.idx;
    this.curFrom = partitionFromNs(pm, P);
    this.curSlotEnd = (Math.floor(this.curFrom / P) + 1) * P;
  }

  /** Start a partition for an event ending at `end`: at its time slot, or (size trigger) at `end`. */
  private newPartition(end: number): number {
    const P = this.partitionNs;
    const from = this.cur < 0 || end >= this.curSlotEnd ? Math.floor(end / P) * P : Math.max(end, this.curFrom + 1);
    const idx = this.nextIdx++;
    const pm: PartitionMeta = {
      idx, fromNs: from, minEnd: Infinity, maxEnd: 0, maxDur: 0, events: 0, blocks: 0, valueBytes: 0, byKind: new Array(KIND_MAX + 1).fill(0),
    };
    this.partMeta.set(idx, pm);
    this.order.push(idx);
    this.setCurrent(pm);
    this.curBytes = 0;
    this.curOpen = 0;
    this.splitDue = false;
    // the previous partition is complete: a size limit may drop the oldest now
    this.retentionDue = true;
    return idx;
  }

  /** The partition of an event that ends before the current partition starts (late, out of order). */
  private routeOld(end: number): number {
    const P = this.partitionNs;
    const o = this.order;
    if (!o.length) return this.newPartition(end);
    let lo = 0;
    let hi = o.length - 1;
    if (end < partitionFromNs(this.partMeta.get(o[0])!, P)) return o[0];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (partitionFromNs(this.partMeta.get(o[mid])!, P) <= end) lo = mid;
      else hi = mid - 1;
    }
    return o[lo];
  }

  private futexAppend(pid: number, uaddr: number, kind: number, tid: number, start: number, end: number, part: number): void {
    let m = this.futex.get(pid);
    if (!m) this.futex.set(pid, (m = new Map()));
    let fb = m.get(uaddr);
    if (!fb) m.set(uaddr, (fb = new FutexBuilder(pid, uaddr, part)));
    else if (fb.count > 0 && fb.partition !== part) this.sealFutex(fb);
    if (fb.count === 0) {
      fb.reset(part);
      fb.openedAt = end;
      fb.openedWall = Date.now();
    }
    const len0 = fb.len;
    fb.append(kind, tid, start, end);
    if (fb.len + Math.max(2 * (fb.len - len0), 64) + 19 > this.o.blockBytes) this.sealFutex(fb);
  }

  private slabAlloc(n: number): Buffer {
    if (this.slabUsed + n > this.slab.length) {
      this.slab = Buffer.allocUnsafe(Math.max(4 << 20, n));
      this.slabUsed = 0;
    }
    const b = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    this.slabUsed += n;
    return b;
  }

  private part(idx: number): PartitionMeta {
    let pm = this.partMeta.get(idx);
    if (!pm) {
      // not reached: builders of a dropped partition are discarded with it
      pm = { idx, fromNs: this.horizonNs, minEnd: Infinity, maxEnd: 0, maxDur: 0, events: 0, blocks: 0, valueBytes: 0, byKind: new Array(KIND_MAX + 1).fill(0) };
      this.partMeta.set(idx, pm);
      this.order.push(idx);
      this.order.sort((a, b) => a - b);
    }
    this.dirtyParts.add(idx);
    return pm;
  }

  /** A block of `open` encoded bytes was sealed into partition idx as `n` bytes. */
  private grew(idx: number, n: number, open: number): void {
    if (idx !== this.cur) return;
    this.curBytes += pageBytes(n);
    this.curOpen = Math.max(0, this.curOpen - open);
    if (this.splitBytes > 0 && this.curBytes + this.curOpen >= this.splitBytes) this.splitDue = true;
  }

  private sealThread(bb: BlockBuilder): void {
    if (bb.count === 0) return;
    const v = this.slabAlloc(bb.len + BlockBuilder.HEADER_MAX);
    const n = bb.sealInto(v, 0);
    const value = v.subarray(0, n);
    const idx = bb.partition;
    const pm = this.part(idx);
    pm.events += bb.count;
    pm.blocks++;
    pm.valueBytes += n;
    if (bb.minEnd < pm.minEnd) pm.minEnd = bb.minEnd;
    if (bb.maxEnd > pm.maxEnd) pm.maxEnd = bb.maxEnd;
    if (bb.maxDur > pm.maxDur) pm.maxDur = bb.maxDur;
    for (let k = 0; k < 16; k++) if (bb.kinds & (1 << k)) pm.byKind[k] = (pm.byKind[k] ?? 0) + bb.kindCounts[k];
    this.grew(idx, n, bb.len);
    // extent of this tid's blocks in the partition
    let ex = this.extents.get(idx);
    if (!ex) this.extents.set(idx, (ex = new Map()));
    const extent = bb.maxEnd - bb.minStart;
    let known = ex.get(bb.tid);
    // first block of this tid in this partition since the writer opened: an earlier writer may have stored a larger extent
    if (known === undefined) ex.set(bb.tid, (known = this.storedExtent(idx, tidKey(bb.tid))));
    if (known < extent) {
      ex.set(bb.tid, extent);
      this.partPuts.push({ part: idx, key: tidKey(bb.tid), ext: true, tid: bb.tid, fx: null });
    }
    let pt = this.pidTids.get(idx);
    if (!pt) this.pidTids.set(idx, (pt = new Set()));
    const pk = bb.pid * 4194304 + bb.tid;
    if (!pt.has(pk)) {
      pt.add(pk);
      this.partPuts.push({ part: idx, key: pidMapKey(bb.pid, bb.tid), ext: false, tid: bb.tid, fx: null });
    }
    const seq = this.seq++ >>> 0;
    const head: HeadBlock = { seq, part: idx, pid: bb.pid, value };
    pushTo(this.sealedThread, bb.tid, head);
    this.pending.push({ part: idx, key: blockKey(bb.tid, bb.minStart, seq), value, events: bb.count, head, tid: bb.tid, fx: null });
    this.pendingBytes += n;
    this.counters.blocks++;
    this.counters.valueBytes += n;
    bb.count = 0;
    bb.len = 0;
  }

  private sealFutex(fb: FutexBuilder): void {
    if (fb.count === 0) return;
    const v = this.slabAlloc(fb.len + 19);
    const n = fb.sealInto(v, 0);
    const idx = fb.partition;
    const pm = this.part(idx);
    if (fb.maxDur > pm.maxDur) pm.maxDur = fb.maxDur;
    // readers skip partitions by their end range: it covers the lock-word index too
    if (fb.minEnd < pm.minEnd) pm.minEnd = fb.minEnd;
    if (fb.maxEnd > pm.maxEnd) pm.maxEnd = fb.maxEnd;
    this.grew(idx, n, 0);
    let ex = this.fxExtents.get(idx);
    if (!ex) this.fxExtents.set(idx, (ex = new Map()));
    const ek = `${fb.pid}:${fb.uaddr}`;
    const extent = fb.maxEnd - fb.minStart;
    let known = ex.get(ek);
    if (known === undefined) ex.set(ek, (known = this.storedExtent(idx, futexPrefix(fb.pid, fb.uaddr))));
    if (known < extent) {
      ex.set(ek, extent);
      this.partPuts.push({ part: idx, key: futexPrefix(fb.pid, fb.uaddr), ext: true, tid: -1, fx: ek });
    }
    const seq = this.seq++ >>> 0;
    const head: HeadBlock = { seq, part: idx, pid: fb.pid, value: v.subarray(0, n) };
    pushTo(this.sealedFutex, ek, head);
    this.pending.push({ part: idx, key: futexBlockKey(fb.pid, fb.uaddr, fb.minStart, seq), value: head.value as Buffer, events: 0, head, tid: -1, fx: ek });
    this.pendingBytes += n;
    this.counters.futexBlocks++;
    fb.count = 0;
    fb.len = 0;
  }

  /** Extent committed for `key` in partition idx by an earlier writer process (-1: none). */
  private storedExtent(idx: number, key: Buffer): number {
    const db = this.openedParts.has(idx) ? this.reader.partitionDb(idx) : null;
    if (!db) return -1;
    try {
      const v = db.getBinary(key) as Buffer | undefined;
      return v && v.length === 8 ? v.readDoubleLE(0) : -1;
    } catch {
      return -1;
    }
  }

  /** Seal blocks whose first event is older than maxAge (capture time; wall time too when `wall`). */
  private sweep(all: boolean): void {
    const limit = this.maxTs - this.o.maxAgeMs * 1e6;
    this.lastSweepTs = this.maxTs;
    for (const bb of this.threads.values()) {
      if (bb.count > 0 && (all || bb.openedAt <= limit)) this.sealThread(bb);
    }
    for (const m of this.futex.values()) {
      for (const fb of m.values()) if (fb.count > 0 && (all || fb.openedAt <= limit)) this.sealFutex(fb);
    }
    // forget idle builders so a long capture with thread churn stays bounded
    if (this.threads.size > 4096) for (const [t, bb] of this.threads) if (bb.count === 0) this.threads.delete(t);
    if (this.futex.size > 1024) for (const [p, m] of this.futex) { for (const [u, fb] of m) if (fb.count === 0) m.delete(u); if (m.size === 0) this.futex.delete(p); }
  }

  /** Wall-clock driven: seal blocks and commit even when no records arrive. */
  tick(): void {
    if (this.closed) return;
    this.sweep(false);
    if (this.pending.length || this.partPuts.length || this.metaPuts.size || this.dirtyParts.size || this.dirtyThreads.size || this.fail) this.commitRound();
    if (this.fail !== null && this.discarding === null && this.retainedBytes > this.o.maxRetainedBytes) this.startDiscarding();
    this.maybeRetention();
  }

  // ------------------------------------------------------------------
  // commit rounds

  /** Queue a metadata put for the next round (the latest value per key wins). */
  private putMeta(key: Buffer, value: unknown): void {
    this.metaPuts.set(key.toString('hex'), [key, value]);
  }

  /**
   * Run `fn` inside one LMDB write transaction (lmdb-js `transaction()`): its
   * puts and drops are in that transaction, partitions may be opened inside.
   * Rejects when the transaction does not commit.
   */
  private txn(fn: () => void): Promise<unknown> {
    return this.root.transaction(() => {
      this.inTxn = true;
      try {
        fn();
      } finally {
        this.inTxn = false;
      }
    });
  }

  /** A partition's handle inside a transaction (opening it there; noted in `opened`). */
  private txnPartition(idx: number, opened: number[]): Database | null {
    const had = this.reader.hasPartitionHandle(idx);
    const db = this.reader.partitionDb(idx, true);
    if (db && !had) {
      opened.push(idx);
      this.reader.setUncommitted(idx, true);
    }
    return db;
  }

  /**
   * Issue what is pending as one transaction. Never rejects: a round that
   * does not commit is queued again (see `fail`). While commits fail, rounds
   * wait for the retry time unless `force`.
   */
  private commitRound(force = false, metaOnly = false): Promise<void> {
    if (this.closed) return this.lastRound;
    if (this.fail !== null && !force && Date.now() < this.fail.retryAt) return this.lastRound;
    if (metaOnly) {
      const rd: Round = {
        pend: [], bytes: 0, events: 0, partPuts: [], metaPuts: [...this.metaPuts].map(([h, [k, v]]) => [h, k, v]),
        parts: [], threads: [], newThreads: null, opened: [], openDeletes: [],
      };
      this.metaPuts = new Map();
      return this.issue(rd);
    }
    // how far the rings' losses are known, committed with the session's end (which is not later)
    for (const l of this.lossLatest) {
      if (l && !l.stored) {
        this.putDrops(l.s);
        l.stored = true;
      }
    }
    this.lastRoundWall = Date.now();
    if (!this.pending.length && !this.partPuts.length && !this.metaPuts.size && !this.dirtyParts.size && !this.dirtyThreads.size && !this.session && !this.fail && !this.openPuts.size && !this.openClears.length) {
      return this.lastRound;
    }
    // A round takes the oldest blocks up to a bound (1 MiB while retrying after failures, so that what
    // fits on a nearly full disk goes in; 4 MiB otherwise); the rest follows in the next round.
    const limit = this.fail !== null ? this.o.roundBytes : Math.max(4 << 20, this.o.roundBytes);
    let take = this.pending.length;
    let bytes = this.pendingBytes;
    if (bytes > limit) {
      take = 0;
      bytes = 0;
      for (const p of this.pending) {
        if (take > 0 && bytes + p.value.length > limit) break;
        bytes += p.value.length;
        take++;
      }
    }
    const rd: Round = {
      pend: this.pending.slice(0, take), bytes, events: 0, partPuts: this.partPuts,
      metaPuts: [...this.metaPuts].map(([h, [k, v]]) => [h, k, v]), parts: [...this.dirtyParts], threads: [...this.dirtyThreads],
      newThreads: this.newByTid.size ? [...this.newByTid.values()].flat() : null, opened: [], openDeletes: [],
    };
    for (const [h, [k, v]] of this.openPuts) rd.metaPuts.push([h, k, v]);
    this.openPuts = new Map();
    for (const p of rd.pend) rd.events += p.events;
    this.pending = take === this.pending.length ? [] : this.pending.slice(take);
    this.pendingBytes -= bytes;
    this.partPuts = [];
    this.metaPuts = new Map();
    this.dirtyParts.clear();
    this.dirtyThreads.clear();
    // (the session's committed-through time holds only when every sealed block is in this round)
    if (this.session && this.sessionKey && this.pending.length === 0) {
      // other processes read the session's end as "captured and committed up to here"
      const through = this.committedThroughNs;
      if (through > this.session.endNs) this.session.endNs = through;
      rd.metaPuts.push([this.sessionKey.toString('hex'), this.sessionKey, { ...this.session }]);
    }
    // an open interval's row is deleted by the commit that holds its end (until then it is what readers have)
    if (this.openClears.length && this.pending.length === 0) {
      const through = this.committedThroughNs;
      const keep: OpenClear[] = [];
      for (const c of this.openClears) (c.end <= through ? rd.openDeletes : keep).push(c);
      this.openClears = keep;
    }
    rd.metaPuts.push(['counters', metaKey(M.COUNTERS), {
      unknownKind: this.counters.unknownKind, badValue: this.counters.badValue, outOfRange: this.counters.outOfRange, expired: this.counters.expired,
      storeFull: this.counters.storeFull,
    }]);
    rd.metaPuts.push(['next', metaKey(M.NEXT_PARTITION), this.nextIdx]);
    // the current slab stays referenced by `pend` until committed; start a fresh one
    if (this.slabUsed > 0) {
      this.slab = Buffer.allocUnsafe(this.slab.length);
      this.slabUsed = 0;
    }
    this.counters.commitRounds++;
    return this.issue(rd);
  }

  /** Start the transaction of round W; the promise settles after its outcome is handled (never rejects). */
  private issue(rd: Round): Promise<void> {
    this.outstandingBytes += rd.bytes;
    const meta = this.reader.meta;
    let txn: Promise<unknown>;
    try {
      txn = this.txn(() => {
        for (const p of rd.pend) {
          if (!this.partMeta.has(p.part)) continue; // dropped meanwhile
          this.txnPartition(p.part, rd.opened)?.put(p.key, p.value);
        }
        for (const q of rd.partPuts) {
          if (!this.partMeta.has(q.part)) continue;
          const db = this.txnPartition(q.part, rd.opened);
          if (!db) continue;
          if (!q.ext) db.put(q.key, EMPTY);
          else db.put(q.key, f64((q.fx === null ? this.extents.get(q.part)?.get(q.tid) : this.fxExtents.get(q.part)?.get(q.fx)) ?? 0));
        }
        for (const idx of rd.parts) {
          const pm = this.partMeta.get(idx);
          if (pm) meta.put(metaKey(M.PARTITION, [idx, 4]), pm);
        }
        for (const k of rd.threads) {
          const t = this.threadMeta.get(k);
          if (t) meta.put(threadKey(t.tid, t.startTime, this.originHi ?? 0), t);
        }
        for (const [, k, v] of rd.metaPuts) meta.put(k, v);
        for (const c of rd.openDeletes) meta.remove(c.key);
      });
    } catch (e) {
      txn = Promise.reject(e);
    }
    const round = txn.then(() => this.roundDone(rd), (e: unknown) => this.roundFailed(rd, e));
    this.lastRound = round;
    return round;
  }

  private roundDone(rd: Round): void {
    this.outstandingBytes -= rd.bytes;
    for (const idx of rd.opened) this.reader.setUncommitted(idx, false);
    this.counters.committedEvents += rd.events;
    // committed: LMDB answers for these now (pend also keeps the slab alive until here)
    for (const p of rd.pend) {
      if (p.fx === null) removeFrom(this.sealedThread, p.tid, p.head);
      else removeFrom(this.sealedFutex, p.fx, p.head);
    }
    if (rd.newThreads) for (const t of rd.newThreads) {
      removeFrom(this.newByTid, t.tid, t);
      removeFrom(this.newByPid, t.pid, t);
    }
    if (this.fail !== null) {
      // a small transaction may fit where the retained blocks did not: recovered once those commit
      if (rd.pend.length > 0 || this.pending.length === 0) this.recovered();
      else this.fail.retryAt = Date.now();
    }
    // blocks left over by the round's bound go next
    if (this.pending.length && !this.closed && this.fail === null) setImmediate(() => this.commitRound());
  }

  private async roundFailed(rd: Round, e: unknown): Promise<void> {
    this.outstandingBytes -= rd.bytes;
    // handles opened in a transaction that aborted are closed by LMDB: open them again next time
    for (const idx of rd.opened) this.reader.forgetPartition(idx);
    // queue it all again, ahead of what came since (sealed blocks stay readable in the head)
    const keep = rd.pend.filter((p) => this.partMeta.has(p.part));
    for (const p of keep) this.pendingBytes += p.value.length;
    this.pending = keep.concat(this.pending);
    this.partPuts = rd.partPuts.filter((q) => this.partMeta.has(q.part)).concat(this.partPuts);
    for (const [h, k, v] of rd.metaPuts) if (!this.metaPuts.has(h) && h !== 'counters' && h !== 'next' && !(this.sessionKey && h === this.sessionKey.toString('hex'))) this.metaPuts.set(h, [k, v]);
    for (const idx of rd.parts) this.dirtyParts.add(idx);
    for (const k of rd.threads) this.dirtyThreads.add(k);
    this.openClears = rd.openDeletes.concat(this.openClears);
    await this.noteFailure(e);
  }

  /** A transaction did not commit: enter (or stay in) the failing state; with limits, make room. */
  private async noteFailure(e: unknown): Promise<void> {
    const d = await describeCommitError(e);
    this.counters.commitFailures++;
    const now = Date.now();
    if (this.fail === null) {
      this.episodes++;
      this.fail = { since: now, error: d.message, space: d.space, backoffMs: this.o.retryMinMs, retryAt: now + this.o.retryMinMs };
      this.onStoreState?.(this.health);
    } else {
      this.fail.error = d.message;
      this.fail.space ||= d.space;
      this.fail.backoffMs = Math.min(this.fail.backoffMs * 2, this.o.retryMaxMs);
      this.fail.retryAt = now + this.fail.backoffMs;
    }
    if (d.space && (this.o.maxBytes || this.o.maxAgeNs) && !this.emergency && !this.closing) {
      const em = this.emergencyRetention(false).then((dropped) => {
        // room was made: try again at once
        if (dropped.length && this.fail) this.fail.retryAt = Date.now();
      }, () => undefined).finally(() => {
        this.emergency = null;
      });
      this.emergency = em;
    }
    if (this.discarding === null && this.retainedBytes > this.o.maxRetainedBytes) this.startDiscarding();
  }

  /** A commit went through after failures. */
  private recovered(): void {
    this.fail = null;
    if (this.discarding) {
      const at = Math.max(this.ingestWatermarkNs, this.maxTs);
      this.discarding = null;
      const r = this.resume;
      this.resume = null;
      if (r) {
        this.beginSession(at, r.info);
        for (const [name, g] of Object.entries(r.groups)) {
          const open = g.ranges.filter((x) => x.to === null && x.err === 0);
          if (open.length) this.session!.groups[name] = { ranges: open.map((x) => ({ ...x, from: at })) };
        }
      }
    }
    this.onStoreState?.(this.health);
  }

  /** The retry buffer is full: stop storing new events; the session ends here (the gap is not covered). */
  private startDiscarding(): void {
    const f = this.fail!;
    const at = this.ingestWatermarkNs;
    const reason = `store full: ${f.error}`;
    this.discarding = { sinceNs: at, reason };
    const s = this.session;
    this.resume = null;
    if (s) {
      const groups: Record<string, GroupCoverage> = {};
      for (const [name, g] of Object.entries(s.groups)) groups[name] = { ranges: g.ranges.filter((r) => r.to === null).map((r) => ({ ...r })) };
      this.resume = {
        info: { bootId: s.bootId, probePid: s.probePid, offcpuMinNs: s.offcpuMinNs, observerPids: s.observerPids },
        groups,
      };
      this.endSession({ atNs: Math.max(s.startNs, at), reason });
    }
    this.onStoreState?.(this.health);
  }

  /** Seal every open block and commit; resolves when everything ingested so far is committed. Throws StoreCommitError while the store cannot commit. */
  async flush(): Promise<void> {
    this.sweep(true);
    await this.commitAll();
    if (this.fail) {
      const h = this.health;
      throw new StoreCommitError(`the store in ${this.dir} cannot commit: ${h.error}`, h);
    }
  }

  /** Commit rounds until nothing is pending, or one fails (one attempt, whatever the retry time). */
  private async commitAll(): Promise<void> {
    for (;;) {
      await this.commitRound(true);
      await this.lastRound;
      if (this.fail !== null || this.closed || !this.pending.length) return;
    }
  }

  /**
   * The store cannot commit (disk full): wait for the room the writer makes
   * by itself (with a limit), commit what is held; still failing, drop the
   * oldest partitions (`includeNewest`: even the one being written) and
   * commit again. Resolves with the partitions dropped here; `health` says
   * whether it commits now.
   */
  async makeRoom(includeNewest: boolean): Promise<number[]> {
    if (this.emergency) await this.emergency;
    if (this.fail === null) return [];
    await this.commitAll();
    if (this.fail === null) return [];
    const dropped = await this.emergencyRetention(includeNewest).catch(() => [] as number[]);
    await this.commitAll();
    return dropped;
  }

  /** Events in the live partitions (committed or about to be). */
  get liveEvents(): number {
    let n = 0;
    for (const pm of this.partMeta.values()) n += pm.events;
    return n;
  }

  /** Where the store stands (see StoreHealth). */
  get health(): StoreHealth {
    const f = this.fail;
    return {
      ok: f === null, failingSince: f?.since ?? null, error: f?.error ?? null, space: f?.space ?? false,
      retainedBytes: this.retainedBytes, discarding: this.discarding !== null, retryAt: f?.retryAt ?? null,
      episodes: this.episodes, commitFailures: this.counters.commitFailures, notStoredEvents: this.counters.storeFull,
      emergencyDropped: this.counters.emergencyDropped, capBytes: this.capBytes,
    };
  }

  /** What waits for a commit, bytes: sealed blocks, and the open-interval rows to put or delete (they pile up while commits fail). */
  private get retainedBytes(): number {
    return this.pendingBytes + (this.openPuts.size + this.openClears.length) * OPEN_ROW_BYTES;
  }

  /**
   * Capture time before which every event has been ingested (readable through
   * this writer's reader, the head included): the probe's latest DRAINED
   * marker; for streams without markers (files, tests), the latest event time.
   */
  get ingestWatermarkNs(): number {
    return this.drainedNs > 0 ? Math.max(0, this.drainedNs - DRAIN_SLOP_NS) : this.maxTs;
  }

  /** A store time (e.g. ingestWatermarkNs) as epoch ns, with the clock samples ingested so far (null: none yet). */
  toUnixNano(ns: number): bigint | null {
    return this.clock.size ? this.clock.toEpochNs(ns) : null;
  }

  /** Capture time up to which every ingested event is in a sealed block (committed by the round under way). */
  get committedThroughNs(): number {
    let w = this.ingestWatermarkNs;
    for (const bb of this.threads.values()) if (bb.count > 0 && bb.minEnd - 1 < w) w = bb.minEnd - 1;
    for (const m of this.futex.values()) for (const fb of m.values()) if (fb.count > 0 && fb.minEnd - 1 < w) w = fb.minEnd - 1;
    return w;
  }

  // ------------------------------------------------------------------
  // StoreHead: what this writer holds that LMDB has not committed (see head.ts)

  private headView(): StoreHead {
    return {
      sealedSeqs: (tid) => seqsOf(this.sealedThread.get(tid)),
      threadBlocks: (tid, visit) => {
        const l = this.sealedThread.get(tid);
        if (l) for (const h of l) visit(h);
        const bb = this.threads.get(tid);
        if (bb && bb.count > 0) {
          visit({ seq: -1, part: bb.partition, pid: bb.pid, value: this.sealScratch(bb.len + BlockBuilder.HEADER_MAX, (o) => bb.sealInto(o, 0)) });
        }
      },
      futexSealedSeqs: (pid, uaddr) => seqsOf(this.sealedFutex.get(`${pid}:${uaddr}`)),
      futexBlocks: (pid, uaddr, visit) => {
        const l = this.sealedFutex.get(`${pid}:${uaddr}`);
        if (l) for (const h of l) visit(h);
        const fb = this.futex.get(pid)?.get(uaddr);
        if (fb && fb.count > 0) visit({ seq: -1, part: fb.partition, pid, value: this.sealScratch(fb.len + 19, (o) => fb.sealInto(o, 0)) });
      },
      threads: (a, b, visit) => {
        // sealed head blocks: the committed pid map's rule (their partition's end range); open blocks: their own range
        for (const [tid, l] of this.sealedThread) {
          for (const h of l) {
            const pm = this.partMeta.get(h.part);
            if (pm && partitionMayOverlap(pm, a, b) && !visit(h.pid, tid)) return;
          }
        }
        for (const bb of this.threads.values()) if (bb.count > 0 && bb.maxEnd >= a && bb.minStart <= b && !visit(bb.pid, bb.tid)) return;
      },
      threadMeta: (tid, startTime) => this.threadMeta.get(`${tid}:${startTime}`),
      newIncarnations: (tid) => this.newByTid.get(tid) ?? NONE,
      newThreadsOf: (pid) => this.newByPid.get(pid) ?? NONE,
      session: () => {
        const s = this.session;
        return s ? { ...s, endNs: Math.max(s.startNs, s.endNs, this.ingestWatermarkNs) } : null;
      },
      ingestWatermarkNs: () => this.ingestWatermarkNs,
      dropsLatest: (ring) => this.lossLatest[ring]?.s ?? null,
      openInterval: (tid) => this.openIv.get(tid) ?? null,
    };
  }

  /** A head block encoded into a reused scratch buffer (valid until the next call). */
  private sealScratch(max: number, seal: (out: Uint8Array) => number): Uint8Array {
    if (this.scratch.buf.length < max) this.scratch.buf = new Uint8Array(Math.max(max, 2 * this.scratch.buf.length));
    const n = seal(this.scratch.buf);
    return this.scratch.buf.subarray(0, n);
  }

  /** Latest capture time seen. */
  get maxTimeNs(): number {
    return this.maxTs;
  }

  // ------------------------------------------------------------------
  // metadata records

  /** Start a capture session (coverage). Called on HELLO; call it yourself for streams without one. */
  beginSession(startNs: number, info: Partial<SessionMeta> = {}): void {
    if (this.session) this.endSession();
    this.session = {
      startNs, endNs: Math.max(startNs, this.maxTs), closed: false, bootId: info.bootId ?? this.host.bootId, probePid: info.probePid ?? null,
      hostName: info.hostName ?? this.host.name, ...(this.cgroups ? { cgroups: this.cgroups } : {}),
      observerPids: info.observerPids ?? [process.pid],
      offcpuMinNs: info.offcpuMinNs ?? null, startedAt: new Date().toISOString(), stoppedAt: null, groups: {}, endReason: null,
    };
    this.sessionKey = metaKey(M.SESSION, [startNs, 8], [this.seq++, 4]);
    this.putMeta(this.sessionKey, { ...this.session });
  }

  /**
   * Mark the current session ended: at the latest capture time, or at `atNs`
   * (what was captured after it is not covered), with the reason when it
   * ended because something failed (the probe died, the store filled).
   */
  endSession(o: { atNs?: number; reason?: string } = {}): void {
    if (this.discarding && !this.session) this.resume = null; // stopped while the store was full: nothing to resume
    if (!this.session || !this.sessionKey) return;
    const s = this.session;
    if (o.atNs !== undefined) s.endNs = Math.max(s.startNs, o.atNs);
    else if (this.maxTs > s.endNs) s.endNs = this.maxTs;
    s.closed = true;
    s.stoppedAt = new Date().toISOString();
    s.endReason = o.reason ?? null;
    for (const g of Object.values(s.groups)) for (const r of g.ranges) if (r.to === null || r.to > s.endNs) r.to = Math.max(r.from, s.endNs);
    this.putMeta(this.sessionKey, { ...s, groups: structuredClone(s.groups) });
    this.session = null;
    this.sessionKey = null;
    // intervals still open stay stored: readers end them with this session
    this.openIv.clear();
  }

  /** The running session (null: none): its start, probe, groups. */
  get currentSession(): Readonly<SessionMeta> | null {
    return this.session;
  }

  private onHello(batch: RecordBatch, i: number): void {
    const v = this.hv.set(batch, i);
    // mono_ns: the monotonic half of the (monotonic, realtime) pair; a new store's origin is fixed from it
    const w = batch.offsets[i] >>> 2;
    const hi = batch.u32[w + W.helloMonoHi];
    const mono = relTime(hi, batch.u32[w + W.helloMono], this.originOf(hi));
    if (!(mono >= 0)) {
      this.counters.outOfRange++;
      return;
    }
    this.putMeta(metaKey(M.CLOCK, [mono, 8]), { monoNs: mono, realtimeNs: v.realtimeNs.toString(), errorNs: 0, stepped: false });
    this.clock.add(mono, v.realtimeNs);
    if (mono > this.maxTs) this.maxTs = mono;
    const info = { bootId: v.bootId, probePid: v.probePid, offcpuMinNs: v.offcpuMinNs };
    if (this.discarding) {
      // a new probe while the store is full: its session starts when commits work again
      this.resume = { info, groups: {} };
      return;
    }
    this.beginSession(mono, info);
  }

  private onClock(u32: Uint32Array, w: number, mono: number): void {
    const rt = (BigInt(u32[w + W.clockRealHi]) << 32n) | BigInt(u32[w + W.clockReal]);
    const err = u32[w + W.clockErrHi] * TWO32 + u32[w + W.clockErr];
    this.putMeta(metaKey(M.CLOCK, [mono, 8]), { monoNs: mono, realtimeNs: rt.toString(), errorNs: err, stepped: u32[w + W.clockStepped] !== 0 });
    this.clock.add(mono, rt, err);
    if (mono > this.maxTs) this.maxTs = mono;
  }

  private onDrops(u32: Uint32Array, w: number, ts: number): void {
    const ring = u32[w + W.dropsRing];
    if (ring > 255) {
      this.counters.badValue++;
      return;
    }
    this.onLoss({
      ring, ts, lost: u32[w + W.dropsLostHi] * TWO32 + u32[w + W.dropsLost], records: u32[w + W.dropsRecordsHi] * TWO32 + u32[w + W.dropsRecords], bytes: u32[w + W.dropsBytesHi] * TWO32 + u32[w + W.dropsBytes],
    });
  }

  /** DRAINED: the watermark, and (ABI >= 4) the rings' loss counters read right after that drain. */
  private onDrained(u32: Uint32Array, w: number, ts: number, size: number): void {
    if (ts > this.drainedNs) this.drainedNs = ts;
    if (size < DRAINED.SIZE || (u32[w + W.drainedLostTsHi] | u32[w + W.drainedLostTs]) === 0) return;
    const lostTs = relTime(u32[w + W.drainedLostTsHi], u32[w + W.drainedLostTs], this.originOf(u32[w + W.drainedLostTsHi]));
    if (!(lostTs >= 0)) return;
    for (let ring = 0; ring < RING_NAMES.length; ring++) {
      const k = w + W.drainedLost + 2 * ring;
      const prev = this.lossLatest[ring]?.s;
      this.onLoss({ ring, ts: lostTs, lost: u32[k + 1] * TWO32 + u32[k], records: prev?.records ?? 0, bytes: prev?.bytes ?? 0 });
    }
  }

  /**
   * A ring's loss counter reading. Readers find losses between stored
   * samples (store/drops.ts), so where the counter moved both the reading
   * before and this one are stored (the loss happened between them, a drain
   * period apart); unchanged readings stay in memory (the head's
   * dropsLatest) and the latest is stored with each commit round, so that
   * what is committed says how far losses are known.
   */
  private onLoss(s: DropsSample): void {
    const ring = s.ring;
    if (ring >= RING_NAMES.length) {
      // a ring this version does not know: kept as reported
      this.putDrops(s);
      return;
    }
    const prev = this.lossLatest[ring];
    if (prev && s.ts < prev.s.ts) return;
    const moved = prev === null || prev.s.lost !== s.lost;
    if (moved && prev && !prev.stored) this.putDrops(prev.s);
    if (moved) this.putDrops(s);
    this.lossLatest[ring] = { s, stored: moved };
  }

  private putDrops(s: DropsSample): void {
    this.putMeta(metaKey(M.DROPS, [s.ring, 1], [s.ts, 8]), s);
  }

  /**
   * BLOCKED: thread tid was still off CPU at the snapshot `ts` (since its
   * start; woken at runnable, or not yet). The probe reports an interval once
   * when it becomes long, again while it is woken but waiting for a CPU, and
   * all open ones again after the ring lost records (asOf: the latest report;
   * readers do not trust a row past a loss after it). It ends at the
   * thread's next switch-in record (closeOpen). A snapshot runs after the
   * drain that precedes it, so an interval's report comes before its
   * switch-in record.
   */
  private onBlocked(u32: Uint32Array, w: number, ts: number): void {
    const tid = u32[w + W.tid];
    const oh = this.originOf(u32[w + W.tsHi]);
    const start = relTime(u32[w + W.startHi], u32[w + W.start], oh);
    const rnHi = u32[w + W.blockedRunnableHi];
    const rnLo = u32[w + W.blockedRunnable];
    const runnable = (rnHi | rnLo) === 0 ? 0 : relTime(rnHi, rnLo, oh);
    if (!(start >= 0) || start > ts || !(runnable >= 0) || (runnable !== 0 && runnable < start)) {
      this.counters.badValue++;
      return;
    }
    if (this.discarding !== null || !this.session) return;
    const flags = u32[w + W.blockedFlags];
    let o = this.openIv.get(tid);
    if (o !== undefined && o.start === start) {
      if (ts <= o.asOf) return;
      o.asOf = ts;
      if (runnable !== 0 && o.runnable === 0) {
        o.runnable = runnable;
        o.flags = flags;
        o.wakerPid = u32[w + W.blockedWakerPid];
        o.wakerTid = u32[w + W.blockedWakerTid];
      }
    } else {
      if (o !== undefined) {
        if (start < o.start) return; // older than what is known
        this.closeOpen(tid, start); // the earlier one ended before this began (its switch-in record was lost)
      }
      if (this.openIv.size >= OPEN_INTERVALS_MAX) {
        this.counters.openDropped++;
        return;
      }
      o = {
        tid, pid: u32[w + W.pid], start, runnable, asOf: ts, prevState: u32[w + W.blockedPrevState], flags,
        wakerPid: u32[w + W.blockedWakerPid], wakerTid: u32[w + W.blockedWakerTid],
        preemptPid: u32[w + W.blockedPreemptPid], preemptTid: u32[w + W.blockedPreemptTid], cpu: u32[w + W.cpu],
        uaddr: u32[w + W.blockedUaddrHi] * TWO32 + u32[w + W.blockedUaddr], op: u32[w + W.blockedOp], val: u32[w + W.blockedVal],
        ownerTid: u32[w + W.blockedOwnerTid], ownerSrc: u32[w + W.blockedOwnerSrc],
      };
      this.openIv.set(tid, o);
    }
    const key = openIntervalKey(tid, start);
    this.openPuts.set(key.toString('hex'), [key, o]);
  }

  /** Thread tid ran at `end` (a switch-in, an exit): its open interval, if it began before, has ended. */
  private closeOpen(tid: number, end: number): void {
    const o = this.openIv.get(tid);
    if (o === undefined || end <= o.start) return;
    this.openIv.delete(tid);
    this.openClears.push({ key: openIntervalKey(tid, o.start), end });
  }

  private onStatus(buf: Buffer, u32: Uint32Array, w: number, off: number, ts: number): void {
    const group = u32[w + W.statusGroup];
    const err = u32[w + W.statusErr] | 0;
    let e = off + STATUS.detail;
    while (e < off + STATUS.detail + STATUS_DETAIL_LEN && buf[e] !== 0) e++;
    const detail = buf.toString('utf8', off + STATUS.detail, e);
    const name = groupName(group);
    const st = { ts, group, name, err, nAttached: u32[w + W.statusAttached], nFailed: u32[w + W.statusFailed], detail };
    this.putMeta(metaKey(M.STATUS, [ts, 8], [this.statusSeq++, 4]), st);
    let groups: Record<string, GroupCoverage>;
    if (this.discarding) {
      // the store is full: the session that resumes later gets the groups attached then
      this.resume ??= { info: {}, groups: {} };
      groups = this.resume.groups;
    } else {
      if (!this.session) this.beginSession(ts);
      groups = this.session!.groups;
    }
    const g = (groups[name] ??= { ranges: [] });
    const open = g.ranges.find((r) => r.to === null && r.detail === detail) ?? (name !== 'cuda' ? g.ranges.find((r) => r.to === null) : undefined);
    if (err === 0) {
      if (!open) g.ranges.push({ from: ts, to: null, err: 0, detail });
    } else if (open) {
      open.to = ts; // detached (1) or failed after attach
    } else if (err < 0) {
      g.ranges.push({ from: ts, to: ts, err, detail });
    }
  }

  private onTask(u32: Uint32Array, w: number, buf: Buffer, off: number, ts: number): void {
    const tid = u32[w + W.tid];
    const pid = u32[w + W.pid];
    // may precede the origin (a process started before the store): negative, exact down to -2^53
    const startTime = relTimeSigned(u32[w + W.taskStartHi], u32[w + W.taskStart], this.originHi ?? 0);
    const event = u32[w + W.taskEvent];
    const comm = cstr(buf, off + TASK.comm);
    const pcomm = cstr(buf, off + TASK.pcomm);
    const k = `${tid}:${startTime}`;
    let t = this.threadMeta.get(k);
    if (!t) {
      t = this.reader.meta.get(threadKey(tid, startTime, this.originHi ?? 0)) as ThreadMeta | undefined;
      if (!t) {
        t = {
          tid, pid, startTime, comm, pcomm, names: [[ts, comm]], firstSeen: ts, lastSeen: ts,
          forkTs: null, parentPid: null, parentTid: null, execTs: null, exitTs: null, exitCode: null,
        };
        // not in the store yet: the head serves it until the next commit round
        pushTo(this.newByTid, tid, t);
        pushTo(this.newByPid, pid, t);
      }
      this.threadMeta.set(k, t);
      this.putMeta(procKey(pid, tid, startTime, this.originHi ?? 0), null);
      if (this.threadMeta.size > 100_000) {
        for (const key of this.threadMeta.keys()) {
          if (!this.dirtyThreads.has(key)) this.threadMeta.delete(key);
          if (this.threadMeta.size < 50_000) break;
        }
      }
    }
    if (ts < t.firstSeen) t.firstSeen = ts;
    if (ts > t.lastSeen) t.lastSeen = ts;
    if (pcomm) t.pcomm = pcomm;
    switch (event) {
      case 2: // FORK
        t.forkTs = ts;
        t.parentPid = u32[w + W.taskOtherPid];
        t.parentTid = u32[w + W.taskOtherTid];
        break;
      case 3: // EXEC
        t.execTs = ts;
        break;
      case 4: // EXIT
        if (this.openIv.size !== 0) this.closeOpen(tid, ts);
        t.exitTs = ts;
        t.exitCode = u32[w + W.taskExitCode] | 0;
        break;
    }
    if (comm && comm !== t.comm) {
      t.comm = comm;
      t.names.push([ts, comm]);
      if (t.names.length > 32) t.names.splice(1, t.names.length - 32);
    }
    this.dirtyThreads.add(k);
  }

  // ------------------------------------------------------------------
  // retention

  /**
   * Drop whole partitions (never the one being written): those whose events
   * all ended more than maxAgeNs before the latest capture time, then the
   * oldest while pages in use exceed maxBytes less 1.25 partitions' worth
   * (`partitionBytes`: room for the current one to grow until it is
   * complete and the next check runs, so pages in use stay under maxBytes).
   */
  enforceRetention(o: { maxAgeNs?: number; maxBytes?: number } = {}): Promise<RetentionResult> {
    if (this.retentionRunning) return this.retentionRunning;
    const run = async (): Promise<RetentionResult> => {
      const t0 = performance.now();
      await this.dropZombies();
      const maxAge = o.maxAgeNs ?? this.o.maxAgeNs;
      let maxBytes = o.maxBytes ?? this.o.maxBytes;
      if (this.capBytes > 0 && (maxBytes === 0 || this.capBytes < maxBytes)) maxBytes = this.capBytes;
      const live = this.order.filter((i) => i !== this.cur);
      const victims: number[] = [];
      if (maxAge > 0) {
        for (const idx of live) {
          if (this.partMeta.get(idx)!.maxEnd > this.maxTs - maxAge) break;
          victims.push(idx);
        }
      }
      let used = usedBytes(this);
      // room for the partition being written (it passes partitionBytes by up to a block per thread) and metadata growth
      const target = Math.max(0, maxBytes - (o.maxBytes !== undefined ? 0 : Math.ceil(1.25 * this.splitBytes)));
      if (maxBytes > 0 && used > target) {
        // decide from the partitions' own page counts, measured before dropping (stats read right
        // after a drop can lag behind it, which would drop everything)
        let est = used;
        for (const idx of victims) est -= partitionBytes(this.reader, idx);
        for (const idx of live) {
          if (est <= target) break;
          if (victims.includes(idx)) continue;
          est -= partitionBytes(this.reader, idx);
          victims.push(idx);
        }
      }
      await this.dropPartitions(victims);
      this.counters.droppedPartitions += victims.length;
      // then the rows the horizon leaves without data (their failure, e.g. a full disk, fails this check: retried at the next)
      await this.pruneThreads();
      const expiredSpans = await this.expireSpans(maxAge);
      if (victims.length || expiredSpans) used = usedBytes(this);
      return { dropped: victims, usedBytes: used, ms: performance.now() - t0, expiredSpans };
    };
    this.retentionRunning = run().finally(() => {
      this.retentionRunning = null;
      if (this.retentionDue && !this.closing) setImmediate(() => this.maybeRetention());
    });
    return this.retentionRunning;
  }

  /**
   * Thread and process rows of incarnations that exited before the retention
   * horizon (all their events are gone): swept after each move of the horizon,
   * THREAD_SWEEP_ROWS rows a check (the rows are keyed by thread, not time),
   * resuming where the last check stopped. A thread with no exit seen (alive,
   * or its exit lost) keeps its row: it may still be named by later events.
   */
  private async pruneThreads(): Promise<number> {
    const horizon = this.horizonNs;
    if (horizon <= 0) return 0;
    if (this.threadSweep === null) {
      if (horizon <= this.sweptHorizon) return 0;
      this.threadSweep = { from: metaKey(M.THREAD), horizon };
    }
    const sw = this.threadSweep;
    const from = sw.from;
    const swept = this.sweptHorizon;
    const meta = this.reader.meta;
    this.root.resetReadTxn();
    const dels: Buffer[] = [];
    const forget: string[] = [];
    let last: Buffer | null = null;
    let rows = 0;
    for (const { key, value } of meta.getRange({ start: sw.from, end: metaKey(M.THREAD + 1), limit: THREAD_SWEEP_ROWS })) {
      last = Buffer.from(key as Buffer);
      rows++;
      const t = value as ThreadMeta;
      if (t.exitTs === null || t.exitTs === undefined || t.exitTs >= sw.horizon) continue;
      const k = `${t.tid}:${t.startTime}`;
      if (this.dirtyThreads.has(k)) continue;
      dels.push(last, procKey(t.pid, t.tid, t.startTime, this.originHi ?? 0));
      forget.push(k);
    }
    if (rows < THREAD_SWEEP_ROWS || last === null) {
      this.sweptHorizon = sw.horizon;
      this.threadSweep = null;
    } else {
      sw.from = Buffer.concat([last, ZERO_BYTE]); // the next key after it
    }
    if (!dels.length) return 0;
    try {
      await this.txn(() => {
        for (const k of dels) meta.remove(k);
      });
    } catch (e) {
      // not deleted (disk full): the next check looks at these rows again
      this.threadSweep = { from, horizon: sw.horizon };
      this.sweptHorizon = swept;
      throw e;
    }
    for (const k of forget) this.threadMeta.delete(k);
    this.counters.prunedThreads += forget.length;
    return forget.length;
  }

  /**
   * The span index's retention (it is not partitioned): spans that started
   * before the kernel data's horizon (nothing is left there to explain them)
   * or, with maxAgeNs, more than that before the latest capture time, as
   * the partitions are (by the wall clock in a store of spans only, `kspan
   * run --no-capture`: no capture time). A batch per check
   * (SPAN_EXPIRE_BATCH); while more remain, the next check follows at once.
   */
  private async expireSpans(maxAgeNs: number): Promise<number> {
    let cut = this.horizonNs > 0 ? this.toUnixNano(this.horizonNs) ?? 0n : 0n;
    if (maxAgeNs > 0) {
      const latest = this.maxTs > 0 ? this.toUnixNano(this.maxTs) : null;
      const byAge = (latest ?? BigInt(Date.now()) * 1_000_000n) - BigInt(Math.round(maxAgeNs));
      if (byAge > cut) cut = byAge;
    }
    if (cut <= 0n) return 0;
    const r = await this.reader.spans.expireBefore(cut);
    this.counters.expiredSpans += r.deleted;
    if (r.more) this.retentionDue = true;
    return r.deleted;
  }

  /**
   * A commit failed for space: drop the oldest partitions (a quarter of the
   * pages in use at least, one partition at least; the one being written
   * only with `includeNewest`) and hold the store below 85 % of the size at
   * which the disk filled from now on. Returns what was dropped.
   */
  emergencyRetention(includeNewest: boolean): Promise<number[]> {
    const run = async (): Promise<RetentionResult> => {
      const t0 = performance.now();
      const used = usedBytes(this);
      // the disk filled at about this size: learned once per episode (later failures of the same
      // episode come after drops, at a smaller size)
      if (this.capEpisode !== this.episodes) {
        this.capEpisode = this.episodes;
        const cap = Math.floor(used * 0.85);
        if (cap > 0 && (this.capBytes === 0 || cap < this.capBytes)) this.capTo(cap);
      }
      if (this.cur >= 0 && this.curBytes >= this.splitBytes) this.splitDue = true;
      const victims: number[] = [];
      let freed = 0;
      for (const idx of this.order) {
        if (idx === this.cur && !includeNewest) continue;
        if (victims.length && freed >= used / 4) break;
        freed += partitionBytes(this.reader, idx);
        victims.push(idx);
      }
      await this.dropPartitions(victims);
      this.counters.droppedPartitions += victims.length;
      this.counters.emergencyDropped += victims.length;
      return { dropped: victims, usedBytes: usedBytes(this), ms: performance.now() - t0 };
    };
    const prev = this.retentionRunning ?? Promise.resolve();
    const p = prev.catch(() => undefined).then(run);
    const mine: Promise<RetentionResult> = p.finally(() => {
      if (this.retentionRunning === mine) this.retentionRunning = null;
    });
    this.retentionRunning = mine;
    return mine.then((r) => r.dropped);
  }

  /** Hold the store under `cap` bytes (learned from a full disk); partitions become small against it (cap / 16). */
  private capTo(cap: number): void {
    this.capBytes = cap;
    const small = Math.max(256 << 10, Math.floor(cap / 16));
    if (this.splitBytes === 0 || this.splitBytes > small) this.splitBytes = small;
  }

  /** Indexes of the live partitions this writer knows (committed or about to be), oldest first. */
  partitionIndexes(): number[] {
    return [...this.order];
  }

  /** The partition being written (-1: none yet). */
  get currentPartition(): number {
    return this.cur;
  }

  private async dropPartitions(idxs: number[]): Promise<void> {
    if (!idxs.length) return;
    const P = this.partitionNs;
    const maxIdx = Math.max(...idxs);
    const rest = this.order.filter((i) => i > maxIdx);
    // horizon: where the first partition after the dropped ones starts (nothing dropped ends after it)
    const horizon = Math.max(this.horizonNs, rest.length ? partitionFromNs(this.partMeta.get(rest[0])!, P) : this.maxTs + 1);
    // commit what is outstanding first (rounds issued from here on skip the dropped partitions)
    await this.lastRound;
    // discard open builders and pending puts for those partitions
    for (const bb of this.threads.values()) if (bb.count > 0 && bb.partition <= maxIdx) { bb.count = 0; bb.len = 0; }
    for (const m of this.futex.values()) for (const fb of m.values()) if (fb.count > 0 && fb.partition <= maxIdx) { fb.count = 0; fb.len = 0; }
    this.pending = this.pending.filter((p) => p.part > maxIdx);
    this.pendingBytes = this.pending.reduce((n, p) => n + p.value.length, 0);
    this.partPuts = this.partPuts.filter((q) => q.part > maxIdx);
    for (const m of [this.sealedThread, this.sealedFutex] as Map<unknown, HeadBlock[]>[]) {
      for (const [k, l] of m) {
        const keep = l.filter((h) => h.part > maxIdx);
        if (keep.length) m.set(k, keep);
        else m.delete(k);
      }
    }
    for (const idx of idxs) {
      this.partMeta.delete(idx);
      this.dirtyParts.delete(idx);
      this.extents.delete(idx);
      this.fxExtents.delete(idx);
      this.pidTids.delete(idx);
      const i = this.order.indexOf(idx);
      if (i >= 0) this.order.splice(i, 1);
    }
    if (this.cur >= 0 && !this.partMeta.has(this.cur)) {
      const last = this.order[this.order.length - 1];
      if (last !== undefined) this.setCurrent(this.partMeta.get(last)!);
      else {
        this.cur = -1;
        this.curFrom = Infinity;
        this.curSlotEnd = Infinity;
      }
      this.curBytes = 0;
      this.curOpen = 0;
    }
    this.horizonNs = horizon;
    await this.dropInStore(idxs);
  }

  /** One transaction: drop the sub-databases, their metadata, old clock and drop rows; the retention horizon. */
  private async dropInStore(idxs: number[]): Promise<void> {
    const horizon = this.horizonNs;
    const old = this.oldMetaKeys(horizon);
    const opened: number[] = [];
    const meta = this.reader.meta;
    const retained = { fromNs: horizon, ...(this.capBytes ? { capBytes: this.capBytes, capFor: this.o.maxBytes } : {}) };
    try {
      await this.txn(() => {
        for (const idx of idxs) {
          this.txnPartition(idx, opened)?.drop();
          meta.remove(metaKey(M.PARTITION, [idx, 4]));
        }
        meta.put(metaKey(M.RETAINED), retained);
        for (const k of old) meta.remove(k);
      });
      for (const idx of idxs) this.zombies.delete(idx);
      // LMDB reuses the pages a transaction freed only after a later one commits: on a full disk,
      // commit a small one now, so the retried blocks can go where the dropped partitions were
      if (this.fail !== null) await this.txn(() => meta.put(metaKey(M.RETAINED), retained)).catch((e: unknown) => describeCommitError(e));
    } catch (e) {
      // dropped here, not in the store: dropped again at the next retention run
      for (const idx of idxs) this.zombies.add(idx);
      await this.noteFailure(e);
    } finally {
      // LMDB closes a dropped handle even when its transaction aborts
      for (const idx of idxs) this.reader.forgetPartition(idx);
    }
  }

  private async dropZombies(): Promise<void> {
    if (this.zombies.size) await this.dropInStore([...this.zombies]);
  }

  /**
   * Time-keyed metadata before the horizon: clock samples and drop counters
   * (the last one before the horizon is kept, it is the baseline for the
   * first live window). A few rows per second of capture, so row deletes are fine.
   */
  private oldMetaKeys(horizon: number): Buffer[] {
    const meta = this.reader.meta;
    this.root.resetReadTxn();
    const old: Buffer[] = [];
    for (const k of meta.getKeys({ start: metaKey(M.CLOCK), end: metaKey(M.CLOCK, [horizon, 8]) })) old.push(k as Buffer);
    old.pop();
    const lastPerRing = new Map<number, Buffer>();
    for (const k of meta.getKeys({ start: metaKey(M.DROPS), end: metaKey(M.DROPS + 1) })) {
      const key = k as Buffer;
      if (getU64(key, 2) >= horizon) continue;
      const prev = lastPerRing.get(key[1]);
      if (prev) old.push(prev);
      lastPerRing.set(key[1], key);
    }
    return old;
  }

  // ------------------------------------------------------------------

  /**
   * Seal, end the session, commit and close the environment. Resolves even
   * when the store cannot commit (what was not committed is lost; `health`
   * and the counters say how much).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    if (this.retentionRunning) await this.retentionRunning.catch(() => undefined);
    if (this.emergency) await this.emergency;
    this.closing = true;
    this.sweep(true);
    this.endSession();
    await this.commitAll();
    await this.emergency;
    this.closed = true;
    // lmdb-js's close waits for the last commit's flush, which never comes when that commit failed
    // (this writer's, or the span index's)
    const closing = this.root.close();
    if (this.fail === null && !this.reader.spans.lastCommitFailed) await closing;
    else await Promise.race([closing.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
  }
}

const NONE: readonly ThreadMeta[] = Object.freeze([]);

function seqsOf(l: HeadBlock[] | undefined): readonly number[] | null {
  return l && l.length ? l.map((h) => h.seq) : null;
}

function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}

function removeFrom<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (!l) return;
  const i = l.indexOf(v);
  if (i >= 0) l.splice(i, 1);
  if (!l.length) m.delete(k);
}

function cstr(buf: Buffer, at: number): string {
  let e = at;
  while (e < at + 16 && buf[e] !== 0) e++;
  return buf.toString('utf8', at, e);
}

/**
 * LMDB bytes a value of n bytes takes, roughly: a large one (over ~2 KB with a
 * 4 KiB page) whole overflow pages (16-byte header); a small one its share of
 * a leaf page (node header, key, half-full pages).
 */
function pageBytes(n: number): number {
  return n > 2000 ? Math.ceil((n + 16) / 4096) * 4096 : Math.ceil((n + 40) * 1.5);
}

/** Bytes of LMDB pages in use (all sub-databases + the main and free-list trees): what retention limits. */
export function usedBytes(w: StoreWriter | StoreReader): number {
  const r = w instanceof StoreWriter ? w.reader : w;
  const root = r.root;
  // fresh read transaction: the stats of the latest commit (a drop just committed must not count)
  root.resetReadTxn();
  type S = { treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; pageSize: number };
  // (a sub-database's stats are read in a read transaction; one it does not know yet would answer garbage)
  const pages = (s: S): number => {
    const n = s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
    return Number.isFinite(n) && n >= 0 && n < 2 ** 40 ? n : 0;
  };
  const rs = root.getStats() as S & { root: S; free: S };
  let n = pages(rs.root ?? rs) + pages(rs.free) + 2;
  const dbs: Database[] = [r.meta, r.spans.byId, r.spans.byTime, r.spans.byDur];
  const idxs = w instanceof StoreWriter ? w.partitionIndexes() : r.partitions().map((p) => p.idx);
  for (const idx of idxs) {
    const db = r.partitionDb(idx);
    if (db) dbs.push(db);
  }
  for (const db of dbs) {
    try {
      n += pages(db.getStats() as S);
    } catch {
      /* dropped meanwhile */
    }
  }
  return n * (rs.pageSize || 4096);
}

/** Bytes of LMDB pages of one partition (0 when it does not exist). */
function partitionBytes(r: StoreReader, idx: number): number {
  const db = r.partitionDb(idx);
  if (!db) return 0;
  try {
    const s = db.getStats() as { treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; pageSize: number };
    return (s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages) * (s.pageSize || 4096);
  } catch {
    return 0;
  }
}

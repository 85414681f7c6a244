// StoreWriter: the ingest side (one per store: the daemon). It is a
// CaptureSink: `ProbeProcess.start(opts, writer)` / `replayFile(path, writer)`.
//
// Kernel events are buffered per thread (BlockBuilder, delta/varint coded as
// they arrive, no object per event) and flushed as one LMDB value per block
// when a block reaches `blockBytes`, when its oldest event is `maxAgeMs` of
// capture time (or wall time) old, when the event's time partition changes,
// and on flush()/close(). Sealed blocks are put in commit rounds (one LMDB
// transaction per round, on lmdb-js's write thread); onBatch returns a
// promise (backpressure) while too many bytes are uncommitted.

import { existsSync, mkdirSync } from 'node:fs';
import type { Database } from 'lmdb';
import {
  BLOCK_IO, CLOCK, CUDA_CALL, DROPS, FUTEX_WAIT, FUTEX_WAKE, HDR, HelloView, Kind, KIND_MAX, MIN_SIZE, OFFCPU, STATUS, STATUS_DETAIL_LEN, TASK,
  groupName, type ClockHistory, type CaptureSink, type RecordBatch,
} from '../capture/index.js';
import { BlockBuilder, FutexBuilder, KIND_SPECS } from './codec.js';
import type { HeadBlock, StoreHead } from './head.js';
import { localHost, type HostIdentity, type HostMeta } from './host.js';
import { StoreReader, openEnv, type OpenOptions } from './reader.js';
import {
  DEFAULT_PARTITION_NS, M, SCHEMA_VERSION, blockKey, f64, futexBlockKey, futexPrefix, getU64, metaKey, pidMapKey,
  tidKey, type PartitionMeta, type SessionMeta, type SkipCounters, type StoreConfig, type ThreadMeta,
} from './schema.js';

const TWO32 = 4294967296;

export interface WriterOptions extends OpenOptions {
  /** time partition width, ns (fixed when the store is created). Default 10 min. */
  partitionNs?: number;
  /** flush a thread's block at this many encoded bytes. Default 8150 (fits 2 LMDB overflow pages). */
  blockBytes?: number;
  /** flush a block whose first event is this old (capture time, and wall time). Default 1000 ms. */
  maxAgeMs?: number;
  /** start a commit round when this many sealed bytes are pending. Default 1 MiB. */
  roundBytes?: number;
  /** ... or when the last round is this old (wall ms). Default 200. */
  roundMs?: number;
  /** onBatch returns a promise while more than this many bytes are uncommitted. Default 64 MiB. */
  maxOutstandingBytes?: number;
  /** retention: drop partitions older than this (capture time, ns); 0 = keep. */
  maxAgeNs?: number;
  /** retention: drop oldest partitions while pages in use exceed this (bytes); 0 = no limit. */
  maxBytes?: number;
  /** check retention every this many ms of wall time (default 5000; 0 = only when enforceRetention() is called). */
  retentionEveryMs?: number;
  /** the host this writer runs on (default: os.hostname() and the kernel's boot id): recorded per session and in a host record */
  host?: HostIdentity;
  /** cgroup v2 paths capture is scoped to, recorded per session */
  cgroups?: string[];
}

export interface WriterCounters extends SkipCounters {
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
}

export interface RetentionResult {
  dropped: number[];
  usedBytes: number;
  ms: number;
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
  statusGroup: w32(STATUS.group), statusErr: w32(STATUS.err), statusAttached: w32(STATUS.n_attached), statusFailed: w32(STATUS.n_failed),
  taskStart: w32(TASK.start_time), taskStartHi: w32(TASK.start_time) + 1, taskEvent: w32(TASK.event),
  taskOtherPid: w32(TASK.other_pid), taskOtherTid: w32(TASK.other_tid), taskExitCode: w32(TASK.exit_code),
} as const;
for (const off of [FUTEX_WAIT.start_ns, FUTEX_WAKE.start_ns, BLOCK_IO.start_ns, CUDA_CALL.start_ns]) {
  if (off !== OFFCPU.start_ns) throw new Error('record ABI: interval kinds disagree on start_ns offset');
}
if (FUTEX_WAKE.uaddr !== FUTEX_WAIT.uaddr) throw new Error('record ABI: futex records disagree on uaddr offset');

/** Events are ingested through the probe's DRAINED time less this (a record is reserved right after its time is read). */
const DRAIN_SLOP_NS = 1_000_000;

export class StoreWriter implements CaptureSink {
  readonly reader: StoreReader;
  readonly counters: WriterCounters = {
    events: 0, committedEvents: 0, blocks: 0, futexBlocks: 0, commitRounds: 0, valueBytes: 0,
    byKind: new Array(KIND_MAX + 1).fill(0), unknownKind: 0, badValue: 0, expired: 0, droppedPartitions: 0,
  };
  readonly partitionNs: number;
  private readonly o: Required<Omit<WriterOptions, keyof OpenOptions | 'host' | 'cgroups'>>;
  /** the host recorded for this writer's sessions */
  readonly host: HostIdentity;
  private readonly cgroups: string[] | undefined;
  private readonly threads = new Map<number, BlockBuilder>();
  private readonly futex = new Map<number, Map<number, FutexBuilder>>();
  private readonly partMeta = new Map<number, PartitionMeta>();
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
  private readonly scratch = { buf: new Uint8Array(16384) };
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private pendingMeta: [Buffer, unknown][] = [];
  private slab = Buffer.allocUnsafe(4 << 20);
  private slabUsed = 0;
  private outstandingBytes = 0;
  private lastRound: Promise<unknown> = Promise.resolve();
  private lastRoundWall = Date.now();
  private lastSweepTs = 0;
  private lastRetentionWall = Date.now();
  private seq = (Math.random() * TWO32) >>> 0;
  private maxTs = 0;
  /** partitions below this are expired: events for them are skipped */
  private minLivePartition = 0;
  private session: SessionMeta | null = null;
  private sessionKey: Buffer | null = null;
  private readonly hv = new HelloView();
  private statusSeq = 0;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private retentionRunning: Promise<RetentionResult> | null = null;
  /** error of the last timer-driven retention check (null: none) */
  lastRetentionError: Error | null = null;

  constructor(readonly dir: string, opts: WriterOptions = {}) {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    const root = openEnv(dir, false, opts);
    this.reader = new StoreReader(root, false);
    this.reader.attachHead(this.headView());
    const meta = this.reader.meta;
    let cfg = meta.get(metaKey(M.CONFIG)) as StoreConfig | undefined;
    if (!cfg) {
      cfg = { schema: SCHEMA_VERSION, partitionNs: opts.partitionNs ?? DEFAULT_PARTITION_NS, createdAt: new Date().toISOString() };
      meta.putSync(metaKey(M.CONFIG), cfg);
    }
    if (cfg.schema !== SCHEMA_VERSION) throw new Error(`store schema ${cfg.schema}, this kspan writes ${SCHEMA_VERSION}`);
    this.reader.config = cfg;
    this.partitionNs = cfg.partitionNs;
    this.o = {
      partitionNs: cfg.partitionNs,
      blockBytes: opts.blockBytes ?? 8150,
      maxAgeMs: opts.maxAgeMs ?? 1000,
      roundBytes: opts.roundBytes ?? 1 << 20,
      roundMs: opts.roundMs ?? 200,
      maxOutstandingBytes: opts.maxOutstandingBytes ?? 64 << 20,
      maxAgeNs: opts.maxAgeNs ?? 0,
      maxBytes: opts.maxBytes ?? 0,
      retentionEveryMs: opts.retentionEveryMs ?? 5000,
    };
    this.host = opts.host ?? localHost();
    this.cgroups = opts.cgroups?.length ? [...opts.cgroups] : undefined;
    // the host of the data written from now on (a store moved between hosts, or renamed, keeps its history)
    const sinceMs = Date.now();
    const hm: HostMeta = { name: this.host.name, bootId: this.host.bootId, since: new Date(sinceMs).toISOString(), sinceMs };
    meta.putSync(metaKey(M.HOST, [sinceMs, 8]), hm);
    for (const pm of this.reader.partitions()) {
      this.partMeta.set(pm.idx, pm);
      this.openedParts.add(pm.idx);
      if (pm.maxEnd > this.maxTs) this.maxTs = pm.maxEnd;
    }
    const ret = meta.get(metaKey(M.RETAINED)) as { fromNs: number } | undefined;
    if (ret) this.minLivePartition = Math.floor(ret.fromNs / this.partitionNs);
    const c = meta.get(metaKey(M.COUNTERS)) as Partial<SkipCounters> | undefined;
    if (c) {
      this.counters.unknownKind = c.unknownKind ?? 0;
      this.counters.badValue = c.badValue ?? 0;
      this.counters.expired = c.expired ?? 0;
    }
  }

  get root() {
    return this.reader.root;
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
    const P = this.partitionNs;
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
        if (size < MIN_SIZE[kind] || u32[w + W.tsHi] >= 0x200000) {
          this.counters.badValue++;
          continue;
        }
        const end = u32[w + W.tsHi] * TWO32 + u32[w + W.ts];
        let start = end;
        if (sp.interval) {
          if (u32[w + W.startHi] >= 0x200000) {
            this.counters.badValue++;
            continue;
          }
          start = u32[w + W.startHi] * TWO32 + u32[w + W.start];
          if (start > end || start === 0) {
            this.counters.badValue++;
            continue;
          }
        }
        if (end === 0) {
          this.counters.badValue++;
          continue;
        }
        const part = Math.floor(end / P);
        if (part < this.minLivePartition) {
          this.counters.expired++;
          continue;
        }
        const tid = u32[w + W.tid];
        let bb = this.threads.get(tid);
        if (bb === undefined) {
          bb = new BlockBuilder(tid, part);
          this.threads.set(tid, bb);
        } else if (bb.count > 0 && bb.partition !== part) {
          this.sealThread(bb);
        }
        if (bb.count === 0) {
          bb.reset(part);
          bb.openedAt = end;
        }
        bb.append(sp, u32, w, buf, off, size, start, end);
        this.counters.events++;
        if (bb.len >= this.o.blockBytes) this.sealThread(bb);
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
        case Kind.HELLO: this.onHello(batch, i); break;
        case Kind.CLOCK: this.onClock(u32, w); break;
        case Kind.DROPS: this.onDrops(u32, w); break;
        case Kind.STATUS: this.onStatus(buf, u32, w, off); break;
        case Kind.ACK: break;
        case Kind.DRAINED: {
          const ts = u32[w + W.tsHi] * TWO32 + u32[w + W.ts];
          if (ts > this.drainedNs) this.drainedNs = ts;
          break;
        }
        default: this.counters.unknownKind++;
      }
    }
    if (this.maxTs - this.lastSweepTs >= this.o.maxAgeMs * 250_000) this.sweep(false);
    if (this.pendingBytes >= this.o.roundBytes || Date.now() - this.lastRoundWall >= this.o.roundMs) this.commitRound();
    if (this.o.retentionEveryMs > 0 && Date.now() - this.lastRetentionWall >= this.o.retentionEveryMs && (this.o.maxAgeNs || this.o.maxBytes)) {
      this.lastRetentionWall = Date.now();
      this.enforceRetention().catch((e: unknown) => {
        this.lastRetentionError = e as Error;
      });
    }
    if (this.outstandingBytes > this.o.maxOutstandingBytes) return this.lastRound.then(() => undefined);
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
    fb.append(kind, tid, start, end);
    if (fb.len >= this.o.blockBytes) this.sealFutex(fb);
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
      pm = { idx, minEnd: Infinity, maxEnd: 0, maxDur: 0, events: 0, blocks: 0, valueBytes: 0, byKind: new Array(KIND_MAX + 1).fill(0) };
      this.partMeta.set(idx, pm);
    }
    this.dirtyParts.add(idx);
    return pm;
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
    // extent of this tid's blocks in the partition
    let ex = this.extents.get(idx);
    if (!ex) this.extents.set(idx, (ex = new Map()));
    const extent = bb.maxEnd - bb.minStart;
    let known = ex.get(bb.tid);
    // first block of this tid in this partition since the writer opened: an earlier writer may have stored a larger extent
    if (known === undefined) ex.set(bb.tid, (known = this.storedExtent(idx, tidKey(bb.tid))));
    if (known < extent) {
      ex.set(bb.tid, extent);
      this.pendingMeta.push([Buffer.concat([Buffer.from([0xee]), partKey(idx), tidKey(bb.tid)]), extent]);
    }
    let pt = this.pidTids.get(idx);
    if (!pt) this.pidTids.set(idx, (pt = new Set()));
    const pk = bb.pid * 4194304 + bb.tid;
    if (!pt.has(pk)) {
      pt.add(pk);
      this.pendingMeta.push([Buffer.concat([Buffer.from([0xef]), partKey(idx), pidMapKey(bb.pid, bb.tid)]), null]);
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
    let ex = this.fxExtents.get(idx);
    if (!ex) this.fxExtents.set(idx, (ex = new Map()));
    const ek = `${fb.pid}:${fb.uaddr}`;
    const extent = fb.maxEnd - fb.minStart;
    let known = ex.get(ek);
    if (known === undefined) ex.set(ek, (known = this.storedExtent(idx, futexPrefix(fb.pid, fb.uaddr))));
    if (known < extent) {
      ex.set(ek, extent);
      this.pendingMeta.push([Buffer.concat([Buffer.from([0xee]), partKey(idx), futexPrefix(fb.pid, fb.uaddr)]), extent]);
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
    if (this.pending.length || this.pendingMeta.length || this.dirtyParts.size || this.dirtyThreads.size) this.commitRound();
  }

  /** Issue the pending puts as one transaction (all puts of one event turn commit together). */
  private commitRound(): Promise<unknown> {
    this.lastRoundWall = Date.now();
    const pend = this.pending;
    const metaPend = this.pendingMeta;
    if (!pend.length && !metaPend.length && !this.dirtyParts.size && !this.dirtyThreads.size && !this.session) return this.lastRound;
    this.pending = [];
    this.pendingMeta = [];
    const bytes = this.pendingBytes;
    this.pendingBytes = 0;
    // the current slab stays referenced by `pend` until committed; start a fresh one
    if (this.slabUsed > 0) {
      this.slab = Buffer.allocUnsafe(this.slab.length);
      this.slabUsed = 0;
    }
    let events = 0;
    let last: Promise<unknown> = Promise.resolve();
    for (const p of pend) {
      const db = this.reader.partitionDb(p.part, true);
      if (!db) continue;
      last = db.put(p.key, p.value);
      events += p.events;
    }
    for (const [k, v] of metaPend) {
      // 0xee/0xef tagged: [tag][u32 part][key] -> goes to the partition db
      const idx = k.readUInt32BE(1);
      const db = this.reader.partitionDb(idx, true);
      if (!db) continue;
      const key = k.subarray(5);
      last = db.put(key, k[0] === 0xee ? f64(v as number) : Buffer.alloc(0));
    }
    const meta = this.reader.meta;
    for (const idx of this.dirtyParts) {
      const pm = this.partMeta.get(idx);
      if (pm && idx >= this.minLivePartition) last = meta.put(metaKey(M.PARTITION, [idx, 4]), pm);
    }
    this.dirtyParts.clear();
    for (const k of this.dirtyThreads) {
      const t = this.threadMeta.get(k);
      if (t) last = meta.put(metaKey(M.THREAD, [t.tid, 4], [t.startTime, 8]), t);
    }
    this.dirtyThreads.clear();
    if (this.session && this.sessionKey) {
      // other processes read the session's end as "captured and committed up to here"
      const through = this.committedThroughNs;
      if (through > this.session.endNs) this.session.endNs = through;
      last = meta.put(this.sessionKey, this.session);
    }
    const newThreads = this.newByTid.size ? [...this.newByTid.values()].flat() : null;
    last = meta.put(metaKey(M.COUNTERS), { unknownKind: this.counters.unknownKind, badValue: this.counters.badValue, expired: this.counters.expired });
    this.outstandingBytes += bytes;
    this.counters.commitRounds++;
    const round = last.then(() => {
      this.outstandingBytes -= bytes;
      this.counters.committedEvents += events;
      // committed: LMDB answers for these now (pend also keeps the slab alive until here)
      for (const p of pend) {
        if (p.fx === null) removeFrom(this.sealedThread, p.tid, p.head);
        else removeFrom(this.sealedFutex, p.fx, p.head);
      }
      if (newThreads) for (const t of newThreads) {
        removeFrom(this.newByTid, t.tid, t);
        removeFrom(this.newByPid, t.pid, t);
      }
    });
    this.lastRound = round;
    return round;
  }

  /** Seal every open block and commit; resolves when everything ingested so far is committed. */
  async flush(): Promise<void> {
    this.sweep(true);
    await this.commitRound();
    await this.lastRound;
  }

  /**
   * Capture time before which every event has been ingested (readable through
   * this writer's reader, the head included): the probe's latest DRAINED
   * marker; for streams without markers (files, tests), the latest event time.
   */
  get ingestWatermarkNs(): number {
    return this.drainedNs > 0 ? Math.max(0, this.drainedNs - DRAIN_SLOP_NS) : this.maxTs;
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
    const P = this.partitionNs;
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
        const first = Math.floor(a / P);
        // the committed pid map's rule (reader.scanPidMap): partitions from a's on, not starting after b by more than their longest event
        const can = (part: number, maxDur: number): boolean =>
          part >= first && !(part * P > b && part * P - b > Math.max(maxDur, this.partMeta.get(part)?.maxDur ?? 0));
        for (const [tid, l] of this.sealedThread) for (const h of l) if (can(h.part, 0) && !visit(h.pid, tid)) return;
        for (const bb of this.threads.values()) if (bb.count > 0 && can(bb.partition, bb.maxDur) && !visit(bb.pid, bb.tid)) return;
      },
      threadMeta: (tid, startTime) => this.threadMeta.get(`${tid}:${startTime}`),
      newIncarnations: (tid) => this.newByTid.get(tid) ?? NONE,
      newThreadsOf: (pid) => this.newByPid.get(pid) ?? NONE,
      session: () => {
        const s = this.session;
        return s ? { ...s, endNs: Math.max(s.startNs, s.endNs, this.ingestWatermarkNs) } : null;
      },
      ingestWatermarkNs: () => this.ingestWatermarkNs,
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
      offcpuMinNs: info.offcpuMinNs ?? null, startedAt: new Date().toISOString(), stoppedAt: null, groups: {},
    };
    this.sessionKey = metaKey(M.SESSION, [startNs, 8], [this.seq++, 4]);
    this.reader.meta.put(this.sessionKey, this.session);
  }

  /** Mark the current session ended at the latest capture time. */
  endSession(): void {
    if (!this.session || !this.sessionKey) return;
    if (this.maxTs > this.session.endNs) this.session.endNs = this.maxTs;
    this.session.closed = true;
    this.session.stoppedAt = new Date().toISOString();
    for (const g of Object.values(this.session.groups)) for (const r of g.ranges) if (r.to === null) r.to = this.session.endNs;
    this.reader.meta.put(this.sessionKey, this.session);
    this.session = null;
    this.sessionKey = null;
  }

  private onHello(batch: RecordBatch, i: number): void {
    const v = this.hv.set(batch, i);
    const mono = v.monoNs;
    this.reader.meta.put(metaKey(M.CLOCK, [mono, 8]), { monoNs: mono, realtimeNs: v.realtimeNs.toString(), errorNs: 0, stepped: false });
    if (mono > this.maxTs) this.maxTs = mono;
    this.beginSession(mono, { bootId: v.bootId, probePid: v.probePid, offcpuMinNs: v.offcpuMinNs });
  }

  private onClock(u32: Uint32Array, w: number): void {
    const mono = u32[w + W.tsHi] * TWO32 + u32[w + W.ts];
    const rt = (BigInt(u32[w + W.clockRealHi]) << 32n) | BigInt(u32[w + W.clockReal]);
    const err = u32[w + W.clockErrHi] * TWO32 + u32[w + W.clockErr];
    this.reader.meta.put(metaKey(M.CLOCK, [mono, 8]), { monoNs: mono, realtimeNs: rt.toString(), errorNs: err, stepped: u32[w + W.clockStepped] !== 0 });
    if (mono > this.maxTs) this.maxTs = mono;
  }

  private onDrops(u32: Uint32Array, w: number): void {
    const ts = u32[w + W.tsHi] * TWO32 + u32[w + W.ts];
    const ring = u32[w + W.dropsRing];
    if (ring > 255) {
      this.counters.badValue++;
      return;
    }
    this.reader.meta.put(metaKey(M.DROPS, [ring, 1], [ts, 8]), {
      ring, ts, lost: u32[w + W.dropsLostHi] * TWO32 + u32[w + W.dropsLost], records: u32[w + W.dropsRecordsHi] * TWO32 + u32[w + W.dropsRecords], bytes: u32[w + W.dropsBytesHi] * TWO32 + u32[w + W.dropsBytes],
    });
  }

  private onStatus(buf: Buffer, u32: Uint32Array, w: number, off: number): void {
    const ts = u32[w + W.tsHi] * TWO32 + u32[w + W.ts];
    const group = u32[w + W.statusGroup];
    const err = u32[w + W.statusErr] | 0;
    let e = off + STATUS.detail;
    while (e < off + STATUS.detail + STATUS_DETAIL_LEN && buf[e] !== 0) e++;
    const detail = buf.toString('utf8', off + STATUS.detail, e);
    const name = groupName(group);
    const st = { ts, group, name, err, nAttached: u32[w + W.statusAttached], nFailed: u32[w + W.statusFailed], detail };
    this.reader.meta.put(metaKey(M.STATUS, [ts, 8], [this.statusSeq++, 4]), st);
    if (!this.session) this.beginSession(ts);
    const s = this.session!;
    const g = (s.groups[name] ??= { ranges: [] });
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
    const startTime = u32[w + W.taskStartHi] * TWO32 + u32[w + W.taskStart];
    const event = u32[w + W.taskEvent];
    const comm = cstr(buf, off + TASK.comm);
    const pcomm = cstr(buf, off + TASK.pcomm);
    const k = `${tid}:${startTime}`;
    let t = this.threadMeta.get(k);
    if (!t) {
      t = this.reader.meta.get(metaKey(M.THREAD, [tid, 4], [startTime, 8])) as ThreadMeta | undefined;
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
      this.reader.meta.put(metaKey(M.PROC, [pid, 4], [tid, 4], [startTime, 8]), null);
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
   * Drop whole partitions: those entirely older than maxAgeNs before the
   * latest capture time, then the oldest while pages in use exceed maxBytes
   * (never the partition currently being written).
   */
  enforceRetention(o: { maxAgeNs?: number; maxBytes?: number } = {}): Promise<RetentionResult> {
    if (this.retentionRunning) return this.retentionRunning;
    const run = async (): Promise<RetentionResult> => {
      const t0 = performance.now();
      const maxAge = o.maxAgeNs ?? this.o.maxAgeNs;
      const maxBytes = o.maxBytes ?? this.o.maxBytes;
      const P = this.partitionNs;
      const current = Math.floor(this.maxTs / P);
      const live = [...this.partMeta.keys()].filter((i) => i >= this.minLivePartition && i < current).sort((a, b) => a - b);
      const victims: number[] = [];
      if (maxAge > 0) for (const idx of live) if ((idx + 1) * P <= this.maxTs - maxAge) victims.push(idx);
      let used = usedBytes(this);
      if (maxBytes > 0 && used > maxBytes) {
        // decide from the partitions' own page counts, measured before dropping (stats read right
        // after a drop can lag behind it, which would drop everything)
        let est = used;
        for (const idx of victims) est -= partitionBytes(this.reader, idx);
        for (const idx of live) {
          if (est <= maxBytes) break;
          if (victims.includes(idx)) continue;
          est -= partitionBytes(this.reader, idx);
          victims.push(idx);
        }
      }
      await this.dropPartitions(victims);
      if (victims.length) used = usedBytes(this);
      this.counters.droppedPartitions += victims.length;
      return { dropped: victims, usedBytes: used, ms: performance.now() - t0 };
    };
    this.retentionRunning = run().finally(() => {
      this.retentionRunning = null;
    });
    return this.retentionRunning;
  }

  /** Indexes of the live partitions this writer knows (committed or about to be), oldest first. */
  partitionIndexes(): number[] {
    return [...this.partMeta.keys()].filter((i) => i >= this.minLivePartition).sort((a, b) => a - b);
  }

  private async dropPartitions(idxs: number[]): Promise<void> {
    if (!idxs.length) return;
    const maxIdx = Math.max(...idxs);
    if (maxIdx + 1 > this.minLivePartition) this.minLivePartition = maxIdx + 1;
    // discard open builders and pending puts for those partitions
    for (const bb of this.threads.values()) if (bb.count > 0 && bb.partition <= maxIdx) { bb.count = 0; bb.len = 0; }
    for (const m of this.futex.values()) for (const fb of m.values()) if (fb.count > 0 && fb.partition <= maxIdx) { fb.count = 0; fb.len = 0; }
    this.pending = this.pending.filter((p) => p.part > maxIdx);
    for (const m of [this.sealedThread, this.sealedFutex] as Map<unknown, HeadBlock[]>[]) {
      for (const [k, l] of m) {
        const keep = l.filter((h) => h.part > maxIdx);
        if (keep.length) m.set(k, keep);
        else m.delete(k);
      }
    }
    this.pendingMeta = this.pendingMeta.filter(([k]) => k.readUInt32BE(1) > maxIdx);
    // commit what is outstanding first, so nothing re-creates a dropped db
    await this.lastRound;
    const meta = this.reader.meta;
    const ps: Promise<unknown>[] = [];
    for (const idx of idxs) {
      const db = this.reader.partitionDb(idx);
      if (db) ps.push(db.drop());
      ps.push(meta.remove(metaKey(M.PARTITION, [idx, 4])));
      this.reader.forgetPartition(idx);
      this.partMeta.delete(idx);
      this.dirtyParts.delete(idx);
      this.extents.delete(idx);
      this.fxExtents.delete(idx);
      this.pidTids.delete(idx);
    }
    // retention horizon: coverage stops reporting the dropped range as captured; a reopened writer skips it
    const horizon = this.minLivePartition * this.partitionNs;
    ps.push(meta.put(metaKey(M.RETAINED), { fromNs: horizon }));
    this.pruneMeta(horizon, ps);
    await Promise.all(ps);
  }

  /**
   * Time-keyed metadata before the horizon: clock samples and drop counters
   * (the last one before the horizon is kept, it is the baseline for the
   * first live window). A few rows per second of capture, so row deletes are fine.
   */
  private pruneMeta(horizon: number, ps: Promise<unknown>[]): void {
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
    for (const k of old) ps.push(meta.remove(k));
  }

  // ------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    if (this.retentionRunning) await this.retentionRunning;
    await this.flush();
    this.endSession();
    await this.commitRound();
    await this.lastRound;
    this.closed = true;
    await this.root.close();
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

function partKey(idx: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(idx, 0);
  return b;
}

function cstr(buf: Buffer, at: number): string {
  let e = at;
  while (e < at + 16 && buf[e] !== 0) e++;
  return buf.toString('utf8', at, e);
}

/** Bytes of LMDB pages in use (all sub-databases + the main and free-list trees): what retention limits. */
export function usedBytes(w: StoreWriter | StoreReader): number {
  const r = w instanceof StoreWriter ? w.reader : w;
  const root = r.root;
  // fresh read transaction: the stats of the latest commit (a drop just committed must not count)
  root.resetReadTxn();
  type S = { treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number; pageSize: number };
  const pages = (s: S): number => s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
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

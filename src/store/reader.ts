// StoreReader: queries over a kspan store. Works in any process, read-only
// (`openStoreReader(dir)`) or on the writer's own environment, where it also
// reads the writer's head (ingested, not yet committed: head.ts).
//
// Every query method sees the latest commits (it renews the LMDB read
// transaction) unless it runs inside `snapshot(fn)`, where all queries see
// the one view taken when the snapshot began.

import { open, type Database, type RootDatabase } from 'lmdb';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Kind, groupName, type ClockHistory } from '../capture/index.js';
import { DecodedBlockCache, appendOverlapping, decodeCachedBlock, type BlockId } from './block-cache.js';
import { ByteReader, EventList, decodeBlock, decodeFutexBlock, readBlockHeader, type BlockHeader } from './codec.js';
import {
  DEFAULT_PARTITION_NS, M, clockSampleRange, futexPrefix, futexRangeKey, getU64, metaKey, partitionDbName, partitionMayOverlap, pidMapKey, threadKey,
  tidKey, type ClockSampleMeta, type DropsSample, type OpenInterval, type PartitionMeta, type SessionMeta, type StatusMeta,
  type StoreConfig, type ThreadMeta,
} from './schema.js';
import { storeClock } from './clock.js';
import { DropsIndex, RING_NAMES } from './drops.js';
import type { HostIdentity, HostMeta } from './host.js';
import type { StoreHead } from './head.js';
import { incarnationAt } from './threads.js';
import { SpanIndex } from './spans.js';
import { getAbsU64 } from './time.js';

export interface OpenOptions {
  /** max named sub-databases (time partitions + 4). Default 1024. */
  maxDbs?: number;
}

export interface Coverage {
  /** the whole [a, b] was being captured (by the group, when given) */
  covered: boolean;
  /** fraction of [a, b] covered, 0..1 */
  fraction: number;
  /** covered sub-ranges of [a, b] */
  ranges: [number, number][];
}

export interface DropsInWindow {
  /** records lost in the kernel (ring reserve failures) during the window, per ring name */
  byRing: Record<string, number>;
  total: number;
  /** drop counters were seen covering the window (false: unknown) */
  known: boolean;
}

export const MAX_DBS_DEFAULT = 1024;

/** Default bound of a reader's decoded-block cache (enableBlockCache), bytes. */
export const DEFAULT_BLOCK_CACHE_BYTES = 32 * 1024 * 1024;

export function openEnv(dir: string, readOnly: boolean, o: OpenOptions = {}): RootDatabase {
  return open({
    path: dir,
    maxDbs: o.maxDbs ?? MAX_DBS_DEFAULT,
    readOnly,
    keyEncoding: 'binary',
    // every write goes through transaction(); lmdb-js's event-turn batches add a
    // promise of their own that nobody can handle when a commit fails (disk full)
    ...(readOnly ? {} : { eventTurnBatching: false }),
  });
}

export class StoreReader {
  readonly meta: Database;
  readonly spans: SpanIndex;
  config: StoreConfig;
  private snapshotDepth = 0;
  private head: StoreHead | null = null;
  private readonly parts = new Map<number, Database>();
  private readonly r = new ByteReader();
  private readonly h: BlockHeader = { count: 0, pid: 0, extent: 0, body: 0 };
  private blockCache: DecodedBlockCache | null = null;
  /** the block being looked up in blockCache (one object, filled per block) */
  private readonly blockId: BlockId = { part: 0, tid: 0, start: 0, seq: 0 };
  private hostsCache: { last: string; count: number; rows: readonly HostMeta[] } | null = null;

  constructor(readonly root: RootDatabase, readonly readOnly: boolean) {
    this.meta = root.openDB('meta', { keyEncoding: 'binary', encoding: 'msgpack' });
    this.spans = new SpanIndex(root, this);
    this.config = (this.meta?.get(metaKey(M.CONFIG)) as StoreConfig | undefined) ?? {
      schema: 1, partitionNs: DEFAULT_PARTITION_NS, createdAt: '',
    };
    this.loadOrigin();
  }

  private originKnown = false;
  private originHiValue = 0;

  /**
   * The store's time origin (time.ts), as its high word: every monotonic time
   * this reader returns counts from originHi * 2^32 ns. 0 until the store has
   * one (a store written before origins, or one that saw no time yet).
   */
  get originHi(): number {
    if (!this.originKnown) this.loadOrigin();
    return this.originHiValue;
  }

  /** The store's origin in absolute monotonic ns. */
  get originNs(): bigint {
    return BigInt(this.originHi) << 32n;
  }

  /** Set by the writer when it fixes the origin of a new store (its reader sees it before the commit). */
  setOrigin(hi: number): void {
    this.originHiValue = hi;
    this.originKnown = true;
  }

  private loadOrigin(): void {
    const o = this.meta?.get(metaKey(M.ORIGIN)) as { hi: number } | undefined;
    if (o) this.setOrigin(o.hi);
  }

  get partitionNs(): number {
    return this.config.partitionNs;
  }

  /** See the latest commits (of this or another process). No effect inside a snapshot. */
  refresh(): void {
    if (this.snapshotDepth === 0) this.root.resetReadTxn();
  }

  /**
   * Run `fn` on one consistent view of the store: the latest commits when it
   * starts (plus, on the writer's reader, its head), the same for every query
   * inside. Snapshots nest (the inner one joins the outer).
   */
  snapshot<T>(fn: () => T): T {
    this.refresh();
    this.snapshotDepth++;
    try {
      return fn();
    } finally {
      this.snapshotDepth--;
    }
  }

  /** The writer's reader only: merge the writer's uncommitted data into every answer. */
  attachHead(head: StoreHead): void {
    if (this.readOnly) throw new Error('a read-only reader has no head');
    this.head = head;
  }

  /** True when this reader merges a writer's head (the daemon's reader). */
  get hasHead(): boolean {
    return this.head !== null;
  }

  private auto(): void {
    this.refresh();
  }

  /**
   * Set by the writer on its own reader: opening a sub-database on a writable
   * environment is a synchronous LMDB transaction, which lmdb-js runs by
   * interrupting its write thread; when that thread's commit then fails (disk
   * full) lmdb-js 3.5 crashes. So the writer opens partitions only inside its
   * own transactions (and all existing ones when it starts), and its reader
   * uses only the handles it has.
   */
  mayOpen: (() => boolean) | null = null;

  /** partitions the writer opened inside a transaction that has not committed yet: not readable (their stats are garbage) */
  private readonly uncommitted = new Set<number>();

  /** Partition handle, or null when it does not exist (yet, or any more). */
  partitionDb(idx: number, create = false): Database | null {
    let db = this.parts.get(idx);
    if (db) return this.uncommitted.has(idx) && !this.mayOpen?.() ? null : db;
    if (this.mayOpen && !this.mayOpen()) return null;
    try {
      if (!create && this.readOnly) {
        db = this.root.openDB(partitionDbName(idx), { keyEncoding: 'binary', encoding: 'binary' }) as Database | undefined;
      } else {
        db = this.root.openDB(partitionDbName(idx), { keyEncoding: 'binary', encoding: 'binary', create } as never) as Database | undefined;
      }
    } catch {
      db = undefined;
    }
    if (!db) {
      if (!create && this.readOnly) this.partitionMisses++;
      return null;
    }
    this.parts.set(idx, db);
    return db;
  }

  /**
   * Partitions a read-only reader was asked for and could not open (lmdb-js
   * opens a sub-database by renewing the read transaction: a partition listed
   * in one snapshot may be gone, or the open may race). Their events read as
   * none: a caller that must not take that for "nothing happened" (an explain
   * worker) checks this before and after.
   */
  partitionMisses = 0;

  /** True when this reader holds a handle on partition idx. */
  hasPartitionHandle(idx: number): boolean {
    return this.parts.has(idx);
  }

  /** The writer: partition idx was opened in a transaction not committed yet (true) / that committed (false). */
  setUncommitted(idx: number, yes: boolean): void {
    if (yes) this.uncommitted.add(idx);
    else this.uncommitted.delete(idx);
  }

  forgetPartition(idx: number): void {
    this.parts.delete(idx);
    this.uncommitted.delete(idx);
    this.blockCache?.dropPartition(idx);
  }

  /**
   * Keep recently read thread blocks decoded in memory, up to `maxBytes`
   * (an LRU; committed blocks never change). For a long-lived reader that
   * explains recent windows again and again (the OTel pipeline). The default,
   * 32 MiB (~240,000 events), holds the current block of a few hundred busy
   * threads; a cache smaller than the threads' working set thrashes.
   */
  enableBlockCache(maxBytes = DEFAULT_BLOCK_CACHE_BYTES): DecodedBlockCache {
    this.blockCache ??= new DecodedBlockCache(maxBytes);
    return this.blockCache;
  }

  /** Live partitions, oldest first. */
  partitions(): PartitionMeta[] {
    this.auto();
    const out: PartitionMeta[] = [];
    for (const { value } of this.meta.getRange({ start: metaKey(M.PARTITION), end: metaKey(M.PARTITION + 1) })) {
      out.push(value as PartitionMeta);
    }
    return out;
  }

  private scanBlocks(db: Database, start: Buffer, end: Buffer, visit: (k: Buffer, v: Buffer) => void): void {
    try {
      for (const { key, value } of db.getRange({ start, end })) visit(key as Buffer, value as Buffer);
    } catch (e) {
      // a partition dropped by retention between listing and scanning: nothing there
      if (!/MDB_BAD_DBI|NOTFOUND|Invalid|dropped/i.test(String((e as Error).message))) throw e;
    }
  }

  private scanKeys(db: Database, start: Buffer, end: Buffer, visit: (k: Buffer) => void): void {
    try {
      for (const key of db.getKeys({ start, end })) visit(key as Buffer);
    } catch (e) {
      // a partition dropped by retention between listing and scanning: nothing there
      if (!/MDB_BAD_DBI|NOTFOUND|Invalid|dropped/i.test(String((e as Error).message))) throw e;
    }
  }

  private extent(db: Database, key: Buffer): number {
    try {
      // (lmdb-js's shared buffer, read at once: no copy)
      const v = db.getBinaryFast(key) as Buffer | undefined;
      return v && v.length === 8 ? v.readDoubleLE(0) : 0;
    } catch {
      return 0;
    }
  }

  /**
   * Every event of thread `tid` whose interval [start, end] overlaps [a, b]
   * (point events: a <= ts <= b), including intervals that began before a,
   * sorted by (start, end). Appends to `out` (cleared first unless `append`).
   * kindMask: bit (1 << Kind.X) per wanted kind; 0 = all.
   */
  eventsOnThread(tid: number, a: number, b: number, out = new EventList(), kindMask = 0, parts?: PartitionMeta[], append = false): EventList {
    if (!append) out.clear();
    const list = parts ?? this.partitions();
    const prefix = tidKey(tid);
    const endKey = tidKey(tid, b + 1);
    const head = this.head;
    // head blocks that LMDB already shows (committed, callback not yet run) are read from LMDB only
    const headSeqs = head?.sealedSeqs(tid) ?? null;
    let seenSeqs: number[] | null = null;
    for (const pm of list) {
      // every end there is < a, or nothing there started by b
      if (!partitionMayOverlap(pm, a, b)) continue;
      const db = this.partitionDb(pm.idx);
      if (!db) continue;
      const ext = this.extent(db, prefix);
      const lo = Math.max(0, a - ext);
      const startKey = tidKey(tid, lo);
      const h = this.h;
      const r = this.r;
      const cache = this.blockCache;
      if (cache) {
        // keys only: a cached block's value is not read (nor copied) again
        const id = this.blockId;
        id.part = pm.idx;
        id.tid = tid;
        this.scanKeys(db, startKey, endKey, (k) => {
          const seq = k.readUInt32BE(12);
          if (headSeqs !== null && headSeqs.includes(seq)) (seenSeqs ??= []).push(seq);
          id.start = getU64(k, 4);
          id.seq = seq;
          let c = cache.get(id);
          if (!c) {
            const v = db.getBinaryFast(k);
            // header: skip blocks that end before a without decoding them
            if (!v || !readBlockHeader(v, r, h) || id.start + h.extent < a) return;
            cache.set(id, (c = decodeCachedBlock(v, tid, r, h, cache)));
          }
          if (id.start + c.extent < a) return;
          appendOverlapping(c, a, b, kindMask, out);
        });
        continue;
      }
      this.scanBlocks(db, startKey, endKey, (k, v) => {
        if (headSeqs !== null && headSeqs.includes(k.readUInt32BE(12))) (seenSeqs ??= []).push(k.readUInt32BE(12));
        // header: skip blocks that end before a without decoding them
        if (!readBlockHeader(v, r, h) || getU64(k, 4) + h.extent < a) return;
        decodeBlock(v, tid, a, b, kindMask, out, r, h);
      });
    }
    if (head) {
      head.threadBlocks(tid, (hb) => {
        if (seenSeqs !== null && seenSeqs.includes(hb.seq)) return;
        decodeBlock(hb.value, tid, a, b, kindMask, out, this.r, this.h);
      });
    }
    if (!append) out.sortByStart();
    return out;
  }

  /** Threads that had events of process `pid` in partitions overlapping [a, b]. */
  threadsOfProcess(pid: number, a: number, b: number, parts?: PartitionMeta[]): number[] {
    const tids = new Set<number>();
    this.scanPidMap(a, b, pidMapKey(pid, 0), pidMapKey(pid + 1, 0), (_p, tid) => {
      tids.add(tid);
      return true;
    }, parts);
    this.head?.threads(a, b, (p, tid) => {
      if (p === pid) tids.add(tid);
      return true;
    });
    // threads known from TASK records too (a thread may have had no events yet)
    for (const t of this.threadsOf(pid)) tids.add(t.tid);
    return [...tids].sort((x, y) => x - y);
  }

  /** (pid, tid) pairs with events in the partitions that can overlap [a, b], at most `limit`. */
  threadsInWindow(a: number, b: number, limit = Infinity): [number, number][] {
    const seen = new Set<string>();
    const out: [number, number][] = [];
    const visit = (pid: number, tid: number): boolean => {
      const k = `${pid}/${tid}`;
      if (!seen.has(k)) {
        seen.add(k);
        out.push([pid, tid]);
      }
      return out.length < limit;
    };
    this.scanPidMap(a, b, pidMapKey(0, 0), pidMapKey(0xffffffff, 0xffffffff), visit);
    if (out.length < limit) this.head?.threads(a, b, visit);
    return out;
  }

  /** Visit the pid-map keys in [start, end) of every partition that can overlap [a, b]; stop when visit returns false. */
  private scanPidMap(a: number, b: number, start: Buffer, end: Buffer, visit: (pid: number, tid: number) => boolean, parts?: PartitionMeta[]): void {
    for (const pm of parts ?? this.partitions()) {
      if (!partitionMayOverlap(pm, a, b)) continue;
      const db = this.partitionDb(pm.idx);
      if (!db) continue;
      try {
        for (const key of db.getKeys({ start, end })) {
          const k = key as Buffer;
          if (k.length === 12 && !visit(k.readUInt32BE(4), k.readUInt32BE(8))) return;
        }
      } catch {
        /* partition dropped meanwhile */
      }
    }
  }

  /** Events of all threads of process `pid` overlapping [a, b] (only events recorded with that pid). */
  eventsOfProcess(pid: number, a: number, b: number, out = new EventList(), kindMask = 0): EventList {
    out.clear();
    const parts = this.partitions();
    for (const tid of this.threadsOfProcess(pid, a, b, parts)) {
      const before = out.count;
      this.eventsOnThread(tid, a, b, out, kindMask, parts, true);
      // drop events of a previous/next incarnation of the tid under another pid
      let w = before;
      for (let i = before; i < out.count; i++) {
        if (out.pid[i] !== pid) continue;
        if (w !== i) out.moveRow(i, w);
        w++;
      }
      out.count = w;
    }
    out.sortByStart();
    return out;
  }

  /** Futex waits (kind 3) and wakes (kind 4) on lock word (pid, uaddr) overlapping [a, b]; f[0] = uaddr. */
  futexByUaddr(pid: number, uaddr: number, a: number, b: number, out = new EventList(), kindMask = 0): EventList {
    out.clear();
    const prefix = futexPrefix(pid, uaddr);
    const endKey = futexRangeKey(pid, uaddr, b + 1);
    const head = this.head;
    const headSeqs = head?.futexSealedSeqs(pid, uaddr) ?? null;
    let seenSeqs: number[] | null = null;
    for (const pm of this.partitions()) {
      if (!partitionMayOverlap(pm, a, b)) continue;
      const db = this.partitionDb(pm.idx);
      if (!db) continue;
      const ext = this.extent(db, prefix);
      this.scanBlocks(db, futexRangeKey(pid, uaddr, Math.max(0, a - ext)), endKey, (k, v) => {
        if (headSeqs !== null && headSeqs.includes(k.readUInt32BE(24))) (seenSeqs ??= []).push(k.readUInt32BE(24));
        decodeFutexBlock(v, pid, uaddr, a, b, kindMask, out, this.r);
      });
    }
    head?.futexBlocks(pid, uaddr, (hb) => {
      if (seenSeqs !== null && seenSeqs.includes(hb.seq)) return;
      decodeFutexBlock(hb.value, pid, uaddr, a, b, kindMask, out, this.r);
    });
    out.sortByStart();
    return out;
  }

  /** Futex wake calls on (pid, uaddr) in [a, b]: who woke the lock word (tid column), when. */
  futexWakesByUaddr(pid: number, uaddr: number, a: number, b: number, out = new EventList()): EventList {
    return this.futexByUaddr(pid, uaddr, a, b, out, 1 << Kind.FUTEX_WAKE);
  }

  // ---- threads and processes ----

  /**
   * The incarnation of `tid` alive at monotonic time t (safe under tid reuse),
   * or null; `comm` is the name in force at t (renames and execs tracked).
   */
  threadAt(tid: number, t: number): ThreadMeta | null {
    return incarnationAt(this.threadIncarnations(tid), t);
  }

  /** Every known incarnation of tid, oldest first (the head's newer metadata in place of the committed). */
  threadIncarnations(tid: number): ThreadMeta[] {
    this.auto();
    const head = this.head;
    const out: ThreadMeta[] = [];
    for (const { value } of this.meta.getRange({ start: metaKey(M.THREAD, [tid, 4]), end: metaKey(M.THREAD, [tid + 1, 4]) })) {
      const m = value as ThreadMeta;
      out.push(head?.threadMeta(m.tid, m.startTime) ?? m);
    }
    if (head) {
      for (const m of head.newIncarnations(tid)) if (!out.some((o) => o.startTime === m.startTime)) out.push(m);
      out.sort((x, y) => x.startTime - y.startTime);
    }
    return out;
  }

  /**
   * Off-CPU intervals of thread tid that were still open at a snapshot of
   * the probe (schema OpenInterval): the committed rows, and, merging a
   * head, the running session's open interval from the head in place of
   * that session's committed rows (the head is current; a row is deleted
   * only once the switch-in that ended it is committed).
   */
  openIntervals(tid: number): OpenInterval[] {
    this.auto();
    const head = this.head;
    const cur = head?.session() ?? null;
    const out: OpenInterval[] = [];
    for (const { value } of this.meta.getRange({ start: metaKey(M.OPEN, [tid, 4]), end: metaKey(M.OPEN, [tid + 1, 4]) })) {
      const o = value as OpenInterval;
      if (cur && o.start >= cur.startNs) continue;
      out.push(o);
    }
    const h = head?.openInterval(tid);
    if (h) out.push(h);
    return out;
  }

  /** Threads (all incarnations) recorded for process pid. */
  threadsOf(pid: number): ThreadMeta[] {
    const head = this.head;
    const out: ThreadMeta[] = [];
    for (const { key } of this.meta.getRange({ start: metaKey(M.PROC, [pid, 4]), end: metaKey(M.PROC, [pid + 1, 4]) })) {
      const k = key as Buffer;
      const tid = k.readUInt32BE(5);
      const st = getAbsU64(k, 9, this.originHi);
      const m = head?.threadMeta(tid, st) ?? (this.meta.get(threadKey(tid, st, this.originHi)) as ThreadMeta | undefined);
      if (m) out.push(m);
    }
    if (head) for (const m of head.newThreadsOf(pid)) if (!out.some((o) => o.tid === m.tid && o.startTime === m.startTime)) out.push(m);
    return out;
  }

  threadCount(): number {
    return this.meta.getKeysCount({ start: metaKey(M.THREAD), end: metaKey(M.THREAD + 1) });
  }

  // ---- clock, drops, coverage ----

  /** Clock samples in monotonic order; with `afterMono`, only those taken after it (incremental readers). */
  clockSamples(afterMono?: number): ClockSampleMeta[] {
    const out: ClockSampleMeta[] = [];
    this.eachClockSample(afterMono, (s) => { out.push(s); });
    return out;
  }

  /** clockSamples without the array: each sample to `visit` as it is read (a store can hold hundreds of thousands). */
  eachClockSample(afterMono: number | undefined, visit: (s: ClockSampleMeta) => void): void {
    this.auto();
    for (const { value } of this.meta.getRange(clockSampleRange(afterMono))) visit(value as ClockSampleMeta);
  }

  /** The stored clock-offset history (epoch <-> monotonic): this reader's store clock (clock.ts), up to date. */
  clockHistory(): ClockHistory {
    return storeClock(this);
  }

  /** DROPS samples (all rings, or one); with `afterTs` (one ring only), only those after it. */
  dropSamples(ring?: number, afterTs?: number): DropsSample[] {
    this.auto();
    const out: DropsSample[] = [];
    const start = ring === undefined ? metaKey(M.DROPS)
      : afterTs === undefined ? metaKey(M.DROPS, [ring, 1]) : metaKey(M.DROPS, [ring, 1], [afterTs + 1, 8]);
    const end = ring === undefined ? metaKey(M.DROPS + 1) : metaKey(M.DROPS, [ring + 1, 1]);
    for (const { value } of this.meta.getRange({ start, end })) out.push(value as DropsSample);
    return out;
  }

  /** The writer's latest loss sample of `ring`, not committed yet (the daemon's reader; null otherwise). */
  latestDropSample(ring: number): DropsSample | null {
    return this.head?.dropsLatest(ring) ?? null;
  }

  /** Records lost in the kernel during [a, b] (the rule is in drops.ts; readers that ask often keep a DropsIndex). */
  dropsIn(a: number, b: number): DropsInWindow {
    const idx = new DropsIndex();
    for (const s of this.dropSamples()) idx.append(s);
    for (let ring = 0; ring < RING_NAMES.length; ring++) idx.setTail(ring, this.latestDropSample(ring));
    return idx.dropsIn(a, b);
  }

  /**
   * The hosts that wrote this store (a record per writer open that changed the
   * host's name or boot), oldest first. Read again only when the rows changed:
   * every explain call asks, and rows are only ever added.
   */
  hosts(): readonly HostMeta[] {
    this.auto();
    const start = metaKey(M.HOST), end = metaKey(M.HOST + 1);
    let last = '';
    for (const k of this.meta.getKeys({ start: end, end: start, reverse: true, limit: 1 })) last = (k as Buffer).toString('hex');
    // (lmdb-js marks the options object it counts with: each call gets its own)
    const count = last === '' ? 0 : this.meta.getKeysCount({ start, end });
    const c = this.hostsCache;
    if (c !== null && c.last === last && c.count === count) return c.rows;
    const rows: HostMeta[] = [];
    for (const { value } of this.meta.getRange({ start, end })) rows.push(value as HostMeta);
    this.hostsCache = { last, count, rows };
    return rows;
  }

  /**
   * The host whose data this is at epoch ms `atMs`: the latest host record
   * made before it (else the first one); null for stores written before hosts
   * were recorded.
   */
  hostAt(atMs: number, hosts: readonly HostMeta[] = this.hosts()): HostIdentity | null {
    let h: HostMeta | undefined;
    for (const x of hosts) {
      if (x.sinceMs <= atMs || !h) h = x;
      else break;
    }
    return h ? { name: h.name, bootId: h.bootId } : null;
  }

  /**
   * Capture sessions, oldest first. A session's endNs is how far it is known:
   * committed through (other processes) or ingested through (the writer's
   * reader, whose running session comes from the head).
   */
  sessions(): SessionMeta[] {
    this.auto();
    const out: SessionMeta[] = [];
    for (const { value } of this.meta.getRange({ start: metaKey(M.SESSION), end: metaKey(M.SESSION + 1) })) out.push(value as SessionMeta);
    const live = this.head?.session();
    if (live) {
      const i = out.findIndex((s) => s.startNs === live.startNs && s.startedAt === live.startedAt);
      if (i >= 0) out[i] = live;
      else out.push(live);
    }
    return out;
  }

  /**
   * Capture time up to which the running capture is known (ingested: the
   * writer's reader; committed: other processes); null when no session is
   * running. Time after it is not yet seen: unknown, never on-CPU.
   */
  knownThroughNs(): number | null {
    if (this.head) {
      const s = this.head.session();
      return s ? this.head.ingestWatermarkNs() : null;
    }
    let w: number | null = null;
    for (const s of this.sessions()) if (!s.closed && (w === null || s.endNs > w)) w = s.endNs;
    return w;
  }

  statusRecords(): StatusMeta[] {
    this.auto();
    const out: StatusMeta[] = [];
    for (const { value } of this.meta.getRange({ start: metaKey(M.STATUS), end: metaKey(M.STATUS + 1) })) out.push(value as StatusMeta);
    return out;
  }

  /**
   * Which part of [a, b] was being captured: by any session (group omitted)
   * or with probe group `group` attached ("sched", "futex", "block", "tcp",
   * "cuda", "task", or the enum number).
   */
  coverage(a: number, b: number, group?: string | number, known?: { sessions: readonly SessionMeta[]; retainedFromNs: number }): Coverage {
    const gname = typeof group === 'number' ? groupName(group) : group;
    const ranges: [number, number][] = [];
    // known: sessions() and retainedFromNs() of the same snapshot (callers that ask many times)
    for (const s of known?.sessions ?? this.sessions()) {
      if (gname === undefined) {
        ranges.push([s.startNs, s.endNs]);
      } else {
        const g = s.groups[gname];
        if (!g) continue;
        for (const r of g.ranges) if (r.err === 0) ranges.push([Math.max(r.from, s.startNs), r.to ?? s.endNs]);
      }
    }
    // data before the retention horizon was dropped: not reported as captured any more
    const from = known?.retainedFromNs ?? this.retainedFromNs();
    const clipped = ranges
      .map(([x, y]) => [Math.max(x, a, from), Math.min(y, b)] as [number, number])
      .filter(([x, y]) => y >= x)
      .sort((p, q) => p[0] - q[0]);
    const merged: [number, number][] = [];
    for (const r of clipped) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    let len = 0;
    for (const [x, y] of merged) len += y - x;
    const span = b - a;
    const fraction = span <= 0 ? (merged.length ? 1 : 0) : Math.min(1, len / span);
    return { covered: merged.length === 1 && merged[0][0] <= a && merged[0][1] >= b, fraction, ranges: merged };
  }

  /** Retention horizon: events that ended before it were dropped (0: nothing dropped yet). */
  retainedFromNs(): number {
    this.auto();
    return (this.meta.get(metaKey(M.RETAINED)) as { fromNs: number } | undefined)?.fromNs ?? 0;
  }

  /** Writer-side skip counters as last committed. */
  skipCounters(): Record<string, number> {
    this.auto();
    return (this.meta.get(metaKey(M.COUNTERS)) as Record<string, number> | undefined) ?? {};
  }
}

/** Open a store read-only (MCP, CLI, another process). Throws if the directory holds no store. */
export function openStoreReader(dir: string, o: OpenOptions = {}): StoreReader {
  if (!existsSync(join(dir, 'data.mdb'))) throw new Error(`no kspan store in ${dir}`);
  return new StoreReader(openEnv(dir, true, o), true);
}

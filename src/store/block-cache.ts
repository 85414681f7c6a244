// An LRU of decoded per-thread blocks, for readers that query the same recent
// windows over and over (the OTel pipeline explains every span shortly after
// its kernel data was committed, mostly on a service's few threads).
// Committed blocks never change, so a block is cached by (partition, key)
// until evicted or its partition is dropped. The map is keyed by the low 30
// bits of the block's sequence number (a small integer: no string built and
// hashed, no number boxed, per block visit); the rest of its identity (the
// whole sequence number, partition, thread, start) is checked on every hit,
// so two blocks with one key (e.g. from different writer opens) only replace
// each other. Bounded by the bytes its decoded
// blocks hold (columns and byte fields: ~138 B an event), so the bound is the
// memory whatever the blocks hold.
//
// A cached block is kept sorted by (start, end) (stable: ties keep the
// block's order) with its longest event, so a window [a, b] is found by
// binary search instead of a pass over the whole block. The lists of evicted
// blocks are decoded into again (by size class), not allocated per block.

import { EventList, decodeBlock, type BlockHeader, type ByteReader } from './codec.js';

export interface CachedBlock {
  /** the block's events, sorted by (start, end), stable */
  list: EventList;
  /** longest event (end - start): events overlapping [a, b] start at or after a - maxDur */
  maxDur: number;
  /** the block header's extent (its events end by key minStart + extent) */
  extent: number;
  /** the block's identity (the cache's key is its seq's low 30 bits): set by DecodedBlockCache.set */
  seq: number;
  part: number;
  tid: number;
  keyStart: number;
}

/** A block's identity: its partition, and its key [u32 tid][u64 minStart][u32 seq] read as numbers. */
export interface BlockId {
  part: number;
  tid: number;
  start: number;
  seq: number;
}

/**
 * A block whose header `h` was read (readBlockHeader), decoded whole for the
 * cache: the events of thread `tid`, sorted. Into the list of a block the
 * cache let go (`cache`) when one of the size class is there: a new list is
 * ~140 B of zeroed memory per event and 22 typed-array views.
 */
export function decodeCachedBlock(v: Uint8Array, tid: number, r: ByteReader, h: BlockHeader, cache?: DecodedBlockCache): CachedBlock {
  const cap = listCapacity(h.count);
  const reused = cache?.spareList(cap);
  const all = reused ?? new EventList(cap);
  // (a new list's columns are zero: decodeBlock need not clear the unused ones)
  decodeBlock(v, tid, -Infinity, Infinity, 0, all, r, h, !reused);
  return cachedBlock(all, h.extent);
}

/** A decoded block (events in block order) as the cache keeps it: sorted, with its longest event. */
export function cachedBlock(list: EventList, extent: number): CachedBlock {
  list.sortByStart();
  let maxDur = 0;
  for (let i = 0; i < list.count; i++) if (list.end[i] - list.start[i] > maxDur) maxDur = list.end[i] - list.start[i];
  return { list, maxDur, extent, seq: -1, part: -1, tid: -1, keyStart: -1 };
}

/**
 * Append the events of `c` overlapping [a, b] (start <= b && end >= a) whose
 * kind bit is in kindMask (0: all) to `out`, in the cached (start, end) order.
 */
export function appendOverlapping(c: CachedBlock, a: number, b: number, kindMask: number, out: EventList): void {
  const l = c.list;
  const st = l.start;
  const from = a - c.maxDur;
  let lo = 0;
  let hi = l.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (st[mid] < from) lo = mid + 1;
    else hi = mid;
  }
  const en = l.end;
  const kind = l.kind;
  for (let i = lo; i < l.count; i++) {
    if (st[i] > b) break;
    if (en[i] < a) continue;
    if (kindMask !== 0 && (kindMask & (1 << kind[i])) === 0) continue;
    out.appendFrom(l, i);
  }
}

/** The map's key: a block's seq, low 30 bits (a V8 small integer) */
const KEY_MASK = 0x3fffffff;

/** Lists of evicted blocks kept for reuse per size class, at most (counted in the cache's bound; ~100 KB each). */
const SPARE_PER_CLASS = 4;
/**
 * A cached block's list capacity: its event count rounded up to 128 (blocks
 * hold a few hundred to ~1,300 events: about ten size classes), so an evicted
 * block's list fits the next block of its class exactly; ~10% more memory a
 * block than exact.
 */
function listCapacity(count: number): number {
  return Math.max(128, Math.ceil(count / 128) * 128);
}

export class DecodedBlockCache {
  hits = 0;
  misses = 0;
  private readonly map = new Map<number, CachedBlock>();
  private held = 0;
  private heldEvents = 0;
  /** lists of evicted blocks by capacity, for the next decodes (nothing else holds a cached list: eventsOnThread copies rows out) */
  private readonly spare = new Map<number, EventList[]>();
  /** their memory: within maxBytes with the blocks held */
  private spareHeld = 0;
  /** lists reused (spareList) */
  reused = 0;

  /** `maxBytes`: memory of the decoded blocks held and of the spare lists, at most (one block is kept whatever its size) */
  constructor(readonly maxBytes: number) {}

  get size(): number {
    return this.map.size;
  }

  /** events held */
  get events(): number {
    return this.heldEvents;
  }

  /** bytes of the blocks held */
  get bytes(): number {
    return this.held;
  }

  /** bytes of the spare lists (bytes + spareBytes: what maxBytes bounds) */
  get spareBytes(): number {
    return this.spareHeld;
  }

  get(id: BlockId): CachedBlock | undefined {
    const k = id.seq & KEY_MASK;
    const l = this.map.get(k);
    if (!l || l.seq !== id.seq || l.part !== id.part || l.tid !== id.tid || l.keyStart !== id.start) { this.misses++; return undefined; }
    this.hits++;
    this.map.delete(k); // most recently used last
    this.map.set(k, l);
    return l;
  }

  set(id: BlockId, c: CachedBlock): void {
    const k = id.seq & KEY_MASK;
    const old = this.map.get(k);
    if (old) this.forget(k, old);
    c.seq = id.seq;
    c.part = id.part;
    c.tid = id.tid;
    c.keyStart = id.start;
    this.map.set(k, c);
    this.held += c.list.byteSize; // a cached list is never changed: the same figure when it leaves
    this.heldEvents += c.list.count;
    for (const [k, v] of this.map) {
      if (this.held + this.spareHeld <= this.maxBytes || this.map.size <= 1) break;
      this.forget(k, v);
    }
    // one block left and still over: the spares go
    if (this.held + this.spareHeld > this.maxBytes) this.dropSpares();
  }

  private dropSpares(): void {
    this.spare.clear();
    this.spareHeld = 0;
  }

  private forget(k: number, v: CachedBlock): void {
    this.map.delete(k);
    this.held -= v.list.byteSize;
    this.heldEvents -= v.list.count;
    let l = this.spare.get(v.list.capacity);
    if (!l) this.spare.set(v.list.capacity, (l = []));
    if (l.length < SPARE_PER_CLASS) {
      l.push(v.list);
      this.spareHeld += v.list.byteSize;
    }
  }

  /** An evicted block's list of capacity `cap` (a size class: listCapacity), cleared (undefined: none). */
  spareList(cap: number): EventList | undefined {
    const l = this.spare.get(cap)?.pop();
    if (!l) return undefined;
    this.reused++;
    this.spareHeld -= l.byteSize;
    return l.clear();
  }

  /** Forget the blocks of a dropped partition. */
  dropPartition(idx: number): void {
    for (const [k, v] of this.map) if (v.part === idx) this.forget(k, v);
  }
}

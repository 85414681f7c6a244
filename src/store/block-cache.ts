// An LRU of decoded per-thread blocks, for readers that query the same recent
// windows over and over (the OTel pipeline explains every span shortly after
// its kernel data was committed, mostly on a service's few threads).
// Committed blocks never change, so a block is cached by (partition, key)
// until evicted or its partition is dropped. Bounded by events held.

import { EventList } from './codec.js';

export class DecodedBlockCache {
  hits = 0;
  misses = 0;
  private readonly map = new Map<string, EventList>();
  private events = 0;

  constructor(readonly maxEvents: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string): EventList | undefined {
    const l = this.map.get(key);
    if (!l) { this.misses++; return undefined; }
    this.hits++;
    this.map.delete(key); // most recently used last
    this.map.set(key, l);
    return l;
  }

  set(key: string, l: EventList): void {
    this.map.set(key, l);
    this.events += l.count;
    for (const [k, v] of this.map) {
      if (this.events <= this.maxEvents || this.map.size <= 1) break;
      this.map.delete(k);
      this.events -= v.count;
    }
  }

  /** Forget the blocks of a dropped partition. */
  dropPartition(idx: number): void {
    const prefix = `${idx}:`;
    for (const [k, v] of this.map) {
      if (!k.startsWith(prefix)) continue;
      this.map.delete(k);
      this.events -= v.count;
    }
  }
}

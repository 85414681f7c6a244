// Per-reader caches of the time-keyed metadata the correlator needs on every
// call: the store's clock (store/clock.ts) and the kernel drop counters. A
// busy capture writes one drops sample per ring per second: they are loaded
// once per reader and then incrementally (StoreReader.dropSamples(ring,
// afterTs)), and lookups are binary searches.

import type { ClockHistory } from '../capture/index.js';
import { storeClock, type StoreReader } from '../store/index.js';

const RINGS = 3;
const RING_NAMES = ['sched', 'task', 'cuda'];

export class DropsCache {
  ts: number[][] = [];
  lost: number[][] = [];
  private last: number[] = [];

  constructor() {
    for (let r = 0; r < RINGS; r++) {
      this.ts.push([]);
      this.lost.push([]);
      this.last.push(-1);
    }
  }

  refresh(r: StoreReader): void {
    for (let ring = 0; ring < RINGS; ring++) {
      for (const s of r.dropSamples(ring, this.last[ring] < 0 ? undefined : this.last[ring])) {
        this.ts[ring].push(s.ts);
        this.lost[ring].push(s.lost);
        this.last[ring] = s.ts;
      }
    }
  }

  /** Same rule as StoreReader.dropsIn (increase of the cumulative counter over [a, b], plus the first sample after b). */
  dropsIn(a: number, b: number): { total: number; known: boolean; byRing: Record<string, number> } {
    let total = 0;
    let known = false;
    const byRing: Record<string, number> = {};
    for (let ring = 0; ring < RINGS; ring++) {
      const ts = this.ts[ring];
      const lost = this.lost[ring];
      if (!ts.length) continue;
      // first sample with ts >= a
      let lo = 0;
      let hi = ts.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (ts[mid] < a) lo = mid + 1;
        else hi = mid;
      }
      let prev = lo > 0 ? lost[lo - 1] : 0;
      let n = 0;
      for (let k = lo; k < ts.length; k++) {
        n += lost[k] >= prev ? lost[k] - prev : lost[k];
        prev = lost[k];
        known = true;
        if (ts[k] > b) break;
      }
      byRing[RING_NAMES[ring]] = n;
      total += n;
    }
    return { total, known, byRing };
  }
}

interface ReaderCaches {
  clock: ClockHistory;
  drops: DropsCache;
}
const caches = new WeakMap<StoreReader, ReaderCaches>();

/** The reader's caches, brought up to date with the store. */
export function readerCaches(r: StoreReader): ReaderCaches {
  let c = caches.get(r);
  if (!c) {
    c = { clock: storeClock(r), drops: new DropsCache() };
    caches.set(r, c);
  }
  r.refresh();
  c.clock = storeClock(r);
  c.drops.refresh(r);
  return c;
}

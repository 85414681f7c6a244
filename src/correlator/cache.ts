// Per-reader caches of the time-keyed metadata the correlator needs on every
// call. StoreReader.clockHistory() and dropsIn() read the whole history each
// time (a busy capture writes a clock sample per drain and one drops sample per
// ring per drain: hundreds of thousands per day), and ClockHistory.toMonoNs is
// a linear scan. Here the samples are loaded once per reader and then
// incrementally (StoreReader.clockSamples(afterMono) / dropSamples(ring,
// afterTs)), and lookups are binary searches.

import type { StoreReader } from '../store/index.js';

export class ClockCache {
  monos: number[] = [];
  offsets: bigint[] = [];
  /** realtime of each sample; sorted unless the clock was stepped back */
  reals: bigint[] = [];
  realSorted = true;
  private lastMono = -1;

  refresh(r: StoreReader): void {
    for (const s of r.clockSamples(this.lastMono < 0 ? undefined : this.lastMono)) {
      const mono = Math.trunc(s.monoNs);
      const real = BigInt(s.realtimeNs);
      if (this.monos.length && mono <= this.monos[this.monos.length - 1]) continue;
      if (this.reals.length && real < this.reals[this.reals.length - 1]) this.realSorted = false;
      this.monos.push(mono);
      this.reals.push(real);
      this.offsets.push(real - BigInt(mono));
      this.lastMono = mono;
    }
  }

  /** Same rule as ClockHistory.toEpochNs: the latest sample at or before mono, else the first. */
  toEpoch(mono: number): bigint {
    const m = this.monos;
    if (!m.length) return BigInt(Math.trunc(mono));
    let lo = 0;
    let hi = m.length - 1;
    if (mono < m[0]) return BigInt(Math.trunc(mono)) + this.offsets[0];
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (m[mid] <= mono) lo = mid;
      else hi = mid - 1;
    }
    return BigInt(Math.trunc(mono)) + this.offsets[lo];
  }

  /** Same rule as ClockHistory.toMonoNs: the latest sample whose own realtime is <= epoch. */
  toMono(epoch: bigint): number {
    const n = this.monos.length;
    if (!n) return Number(epoch);
    let best = 0;
    if (this.realSorted) {
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (this.reals[mid] <= epoch) lo = mid;
        else hi = mid - 1;
      }
      best = this.reals[lo] <= epoch ? lo : 0;
    } else {
      for (let i = 0; i < n; i++) if (this.reals[i] <= epoch) best = i;
    }
    return Number(epoch - this.offsets[best]);
  }
}

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
  clock: ClockCache;
  drops: DropsCache;
}
const caches = new WeakMap<StoreReader, ReaderCaches>();

/** The reader's caches, brought up to date with the store. */
export function readerCaches(r: StoreReader): ReaderCaches {
  let c = caches.get(r);
  if (!c) {
    c = { clock: new ClockCache(), drops: new DropsCache() };
    caches.set(r, c);
  }
  r.refresh();
  c.clock.refresh(r);
  c.drops.refresh(r);
  return c;
}

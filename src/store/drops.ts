// Kernel record losses over time, from the rings' cumulative loss counters
// (DROPS samples: the probe's own once a second, and the ones the writer keeps
// from the DRAINED markers wherever the counter moved, and at each commit).
//
// A sample (ts, lost) says: `lost` records of that ring were lost before ts.
// Between two samples whose counters differ, records were lost in (ts0, ts1];
// a counter that goes down is a new probe run (counting from 0 again). Past a
// ring's last sample nothing is known about its losses yet.
//
// Why it matters: a lost off-CPU record leaves no trace of its interval, and
// the timeline reads time without records as "on CPU" (correlator/timeline.ts).
// lossWindows() tells it where that reading cannot be trusted.

import type { DropsInWindow } from './reader.js';
import type { DropsSample } from './schema.js';

export const RING_NAMES = ['sched', 'task', 'cuda'] as const;
const RINGS = RING_NAMES.length;
/** the ring of off-CPU intervals (and the futex records written with them) */
export const SCHED_RING = 0;
/** the ring of CUDA calls */
export const CUDA_RING = 2;

const NO_WINDOWS: readonly [number, number][] = Object.freeze([]) as readonly [number, number][];

export class DropsIndex {
  private readonly ts: number[][] = [];
  private readonly lost: number[][] = [];
  /** per ring: a newer sample not in ts/lost yet (the writer's latest, uncommitted), or null */
  private readonly tail: (DropsSample | null)[] = [];

  constructor() {
    for (let r = 0; r < RINGS; r++) {
      this.ts.push([]);
      this.lost.push([]);
      this.tail.push(null);
    }
  }

  /** Append a stored sample (per ring in time order; older or equal times are ignored). */
  append(s: DropsSample): void {
    if (s.ring >= RINGS) return;
    const ts = this.ts[s.ring];
    if (ts.length && s.ts <= ts[ts.length - 1]) return;
    ts.push(s.ts);
    this.lost[s.ring].push(s.lost);
  }

  /** Time of ring's last stored sample (-1: none). */
  lastTs(ring: number): number {
    const ts = this.ts[ring];
    return ts.length ? ts[ts.length - 1] : -1;
  }

  /** The writer's latest sample of a ring, not committed yet (null: none); used where newer than the stored ones. */
  setTail(ring: number, s: DropsSample | null): void {
    if (ring < RINGS) this.tail[ring] = s;
  }

  private count(ring: number): number {
    const t = this.tail[ring];
    return this.ts[ring].length + (t && t.ts > this.lastTs(ring) ? 1 : 0);
  }

  private tsAt(ring: number, k: number): number {
    const ts = this.ts[ring];
    return k < ts.length ? ts[k] : this.tail[ring]!.ts;
  }

  private lostAt(ring: number, k: number): number {
    const lost = this.lost[ring];
    return k < lost.length ? lost[k] : this.tail[ring]!.lost;
  }

  /** First sample index with ts >= a. */
  private firstAtOrAfter(ring: number, a: number, n: number): number {
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.tsAt(ring, mid) < a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Records lost by ring `ring` between samples k-1 and k. */
  private rise(ring: number, k: number): number {
    const l = this.lostAt(ring, k);
    if (k === 0) return l;
    const p = this.lostAt(ring, k - 1);
    return l >= p ? l - p : l;
  }

  /**
   * Records lost during [a, b]: the counters' rises from the last sample
   * before a through the first sample at or after b. `known` when every ring
   * that reports has a sample at or after b (else losses up to b may not be
   * reported yet).
   */
  dropsIn(a: number, b: number): DropsInWindow {
    const byRing: Record<string, number> = {};
    let total = 0;
    let known = true;
    let any = false;
    for (let ring = 0; ring < RINGS; ring++) {
      const n = this.count(ring);
      if (!n) continue;
      any = true;
      let lost = 0;
      let reached = false;
      for (let k = this.firstAtOrAfter(ring, a, n); k < n; k++) {
        lost += this.rise(ring, k);
        if (this.tsAt(ring, k) >= b) {
          reached = true;
          break;
        }
      }
      if (!reached) known = false;
      byRing[RING_NAMES[ring]] = lost;
      total += lost;
    }
    return { byRing, total, known: any && known };
  }

  /**
   * Intervals (p, q] overlapping [a, b] in which ring `ring` lost records,
   * in time order; past its last sample, (last, +Infinity): not known yet.
   * A ring with no samples at all gives none (the store has no loss counters).
   */
  lossWindows(ring: number, a: number, b: number): readonly [number, number][] {
    const n = this.count(ring);
    if (!n) return NO_WINDOWS;
    let out: [number, number][] | null = null;
    for (let k = this.firstAtOrAfter(ring, a, n); k < n; k++) {
      const q = this.tsAt(ring, k);
      const p = k > 0 ? this.tsAt(ring, k - 1) : -Infinity;
      if (p >= b) break;
      if (this.rise(ring, k) > 0) (out ??= []).push([p, q]);
    }
    const last = this.tsAt(ring, n - 1);
    if (last < b) (out ??= []).push([last, Infinity]);
    return out ?? NO_WINDOWS;
  }
}

// ClockHistory: maps CLOCK_MONOTONIC ns (what BPF records carry) to epoch ns
// (what spans carry) with the (realtime - monotonic) sample in force at that
// time. A realtime step (NTP slew is gradual; `date -s` is not) is just a new
// sample: times before it keep converting with the old offset.
//
// Monotonic ns fit a JS number exactly (< 2^53 ns = ~104 days of uptime);
// epoch ns do not, so they are BigInt.

const NS_PER_S = 1_000_000_000n;

export interface ClockSample {
  /** CLOCK_MONOTONIC ns of the sample */
  monoNs: number;
  /** CLOCK_REALTIME ns at the same instant */
  realtimeNs: bigint;
  /** realtime - monotonic */
  offsetNs: bigint;
  /** uncertainty of the pair (half the read window), ns */
  errorNs: number;
}

export class ClockHistory {
  // Parallel arrays sorted by mono; offsets split into whole seconds and a
  // ns remainder so toEpochMs() works in doubles without losing precision.
  private monos: number[] = [];
  private offsets: bigint[] = [];
  private errors: number[] = [];
  private offSecMs: number[] = [];
  private offRemNs: number[] = [];
  /** realtime of each sample (mono + offset); sorted unless the realtime clock was stepped back */
  private reals: bigint[] = [];
  private realSorted = true;
  /** index of the last lookup: conversions mostly move forward in time */
  private last = 0;

  get size(): number {
    return this.monos.length;
  }

  /** Add a (monotonic, realtime) pair, e.g. from KSPAN_HELLO or KSPAN_CLOCK. */
  add(monoNs: number, realtimeNs: bigint, errorNs = 0): void {
    const offset = realtimeNs - BigInt(Math.trunc(monoNs));
    let i = this.monos.length;
    while (i > 0 && this.monos[i - 1] > monoNs) i--;
    if (i > 0 && this.monos[i - 1] === monoNs) {
      // same instant sampled twice: keep the more precise one
      if (errorNs <= this.errors[i - 1]) this.setAt(i - 1, offset, errorNs);
      return;
    }
    this.monos.splice(i, 0, monoNs);
    this.offsets.splice(i, 0, offset);
    this.errors.splice(i, 0, errorNs);
    this.offSecMs.splice(i, 0, 0);
    this.offRemNs.splice(i, 0, 0);
    this.reals.splice(i, 0, 0n);
    this.setAt(i, offset, errorNs);
  }

  private setAt(i: number, offset: bigint, errorNs: number): void {
    this.offsets[i] = offset;
    this.errors[i] = errorNs;
    this.reals[i] = BigInt(Math.trunc(this.monos[i])) + offset;
    if ((i > 0 && this.reals[i] < this.reals[i - 1]) || (i + 1 < this.reals.length && this.reals[i + 1] < this.reals[i])) this.realSorted = false;
    // floor division so the remainder is in [0, 1e9)
    let sec = offset / NS_PER_S;
    let rem = offset - sec * NS_PER_S;
    if (rem < 0n) {
      sec -= 1n;
      rem += NS_PER_S;
    }
    this.offSecMs[i] = Number(sec) * 1000;
    this.offRemNs[i] = Number(rem);
  }

  /** Index of the sample in force at `mono`: the latest with monoNs <= mono, else the first. */
  private indexAt(mono: number): number {
    const m = this.monos;
    const n = m.length;
    if (n === 0) return -1;
    let i = this.last < n ? this.last : n - 1;
    // fast path: same interval as the previous lookup
    if (m[i] <= mono && (i + 1 === n || m[i + 1] > mono)) return i;
    let lo = 0;
    let hi = n - 1;
    if (mono < m[0]) return (this.last = 0);
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (m[mid] <= mono) lo = mid;
      else hi = mid - 1;
    }
    i = lo;
    this.last = i;
    return i;
  }

  /** realtime - monotonic in force at `mono` (0n when no sample was seen). */
  offsetAt(mono: number): bigint {
    const i = this.indexAt(mono);
    return i < 0 ? 0n : this.offsets[i];
  }

  /** Uncertainty of the sample in force at `mono`, ns. */
  errorAt(mono: number): number {
    const i = this.indexAt(mono);
    return i < 0 ? 0 : this.errors[i];
  }

  /** Monotonic ns -> epoch ns (exact). */
  toEpochNs(mono: number): bigint {
    return BigInt(Math.trunc(mono)) + this.offsetAt(mono);
  }

  /** Monotonic ns -> epoch ms as a double (sub-µs precision for current dates). */
  toEpochMs(mono: number): number {
    const i = this.indexAt(mono);
    if (i < 0) return mono / 1e6;
    return this.offSecMs[i] + (this.offRemNs[i] + mono) / 1e6;
  }

  /** Epoch ns -> monotonic ns, with the sample whose interval contains it. */
  toMonoNs(epochNs: bigint): number {
    const n = this.monos.length;
    if (n === 0) return Number(epochNs);
    // realtime of each sample is increasing unless the clock was stepped back;
    // pick the latest sample whose own realtime is <= epochNs.
    let best = 0;
    const r = this.reals;
    if (this.realSorted) {
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (r[mid] <= epochNs) lo = mid;
        else hi = mid - 1;
      }
      best = r[lo] <= epochNs ? lo : 0;
    } else {
      for (let i = 0; i < n; i++) if (r[i] <= epochNs) best = i;
    }
    return Number(epochNs - this.offsets[best]);
  }

  /** monotonic ns of the latest sample (-1: none) */
  get lastMonoNs(): number {
    return this.monos.length ? this.monos[this.monos.length - 1] : -1;
  }

  samples(): ClockSample[] {
    return this.monos.map((monoNs, i) => ({
      monoNs,
      realtimeNs: this.reals[i],
      offsetNs: this.offsets[i],
      errorNs: this.errors[i],
    }));
  }
}

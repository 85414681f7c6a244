// Monotonic <-> epoch for the export, from the store clock's samples with the
// same rule as ClockHistory (store/clock.ts): the sample in force
// at a monotonic time is the latest one at or before it, else the first.
// Output is trace-event microseconds as exact decimal text (epoch µs do not fit
// a double with ns precision), computed without BigInt per event.

import { storeClock, type StoreReader } from '../store/index.js';

const pad3 = (r: number): string => (r < 10 ? '00' + r : r < 100 ? '0' + r : String(r));
/**
 * Fraction digits of a time with a sub-µs part: the ns, then a '5' (+0.5 ns).
 * Perfetto's JSON importer turns a fractional µs value into ns as
 * (int64)(double * 1000), which truncates: 762.763 µs can come out as
 * 762762 ns, and adjacent slices then overlap by 1 ns and are rejected as
 * misnested. With the half-ns bias the truncation lands on the exact ns
 * (the double's error is far below 0.5 ns for times under a few days in µs).
 * Whole µs are written as integers (exact).
 */
const frac = (r: number): string => pad3(r) + '5';

/** Non-negative ns -> µs text ("12.3455" = 12.345 µs + 0.5 ns, see frac(); "7"). */
export function usText(ns: number): string {
  const d = ns > 0 ? Math.round(ns) : 0;
  const q = Math.floor(d / 1000);
  const r = d - q * 1000;
  return r ? `${q}.${frac(r)}` : String(q);
}

/** Epoch ns (decimal string or bigint) -> µs text, minus `baseNs`. */
export function epochNsToUs(epochNs: string | bigint, baseNs = 0n): string {
  const d = BigInt(epochNs) - baseNs;
  if (d < 0n) return '-' + epochNsToUs(-d);
  const s = d.toString();
  if (s.length <= 3) return usText(Number(s));
  const f = s.slice(-3);
  const int = s.slice(0, -3);
  return f === '000' ? int : `${int}.${f}5`;
}

const DAY_NS = 86_400_000_000_000n;
/** Midnight UTC of the day of `epochNs`: the export's time base. */
export function dayBaseNs(epochNs: bigint): bigint {
  return epochNs - (((epochNs % DAY_NS) + DAY_NS) % DAY_NS);
}

export class ExportClock {
  private monos: number[] = [];
  /** floor(offset / 1e9) * 1e6: whole seconds of the offset, in µs */
  private secUs: number[] = [];
  /** offset - floor(offset / 1e9) * 1e9, in [0, 1e9) */
  private remNs: number[] = [];
  private offsets: bigint[] = [];
  /** offset - the first sample's offset, ns (small: clock drift and steps) */
  private offDelta: number[] = [];
  private reals: bigint[] = [];
  /** output times are µs since this epoch (ns; a whole second) */
  private baseNs = 0n;
  private baseUs = 0;

  constructor(reader: StoreReader) {
    // the store clock's samples (one rule for which samples count: store/clock.ts)
    for (const s of storeClock(reader).samples()) {
      const mono = Math.trunc(s.monoNs);
      if (this.monos.length && mono <= this.monos[this.monos.length - 1]) continue;
      const real = s.realtimeNs;
      const off = real - BigInt(mono);
      let sec = off / 1_000_000_000n;
      let rem = off - sec * 1_000_000_000n;
      if (rem < 0n) {
        sec -= 1n;
        rem += 1_000_000_000n;
      }
      this.monos.push(mono);
      this.offDelta.push(this.offsets.length ? Number(off - this.offsets[0]) : 0);
      this.offsets.push(off);
      this.reals.push(real);
      this.secUs.push(Number(sec) * 1e6);
      this.remNs.push(Number(rem));
    }
  }

  /**
   * Write times relative to `epochNs` (a whole second; e.g. dayBaseNs()):
   * epoch µs (~1.8e15) do not keep sub-µs precision in a JSON reader's double,
   * µs since midnight do.
   */
  setBase(epochNs: bigint): void {
    if (epochNs % 1_000_000_000n !== 0n) throw new Error('base must be a whole second');
    this.baseNs = epochNs;
    this.baseUs = Number(epochNs / 1000n);
  }

  get base(): bigint {
    return this.baseNs;
  }

  get size(): number {
    return this.monos.length;
  }

  private at(mono: number): number {
    const m = this.monos;
    if (!m.length) return -1;
    if (mono < m[0]) return 0;
    let lo = 0;
    let hi = m.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (m[mid] <= mono) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Monotonic ns -> epoch µs (minus the base) as exact decimal text. */
  us(mono: number): string {
    const i = this.at(mono);
    if (i < 0) return epochNsToUs(BigInt(Math.trunc(mono)), this.baseNs);
    const x = this.remNs[i] + Math.trunc(mono);
    const q = Math.floor(x / 1000);
    const r = x - q * 1000;
    const int = this.secUs[i] - this.baseUs + q;
    if (int < 0) return epochNsToUs(this.toEpoch(mono), this.baseNs);
    return r ? `${int}.${frac(r)}` : String(int);
  }

  /**
   * Duration text of the slice [a, b] (monotonic ns) as it lands in epoch time: b - a plus the change of
   * offset between the samples in force at a and at b. A slice then ends exactly where the next one (us(b))
   * starts even when a clock sample with a slightly different offset falls between them; with b - a alone,
   * adjacent slices overlapped by that difference (a few ns) and Perfetto rejects them as misnested.
   */
  dur(a: number, b: number): string {
    const ia = this.at(a);
    const ib = this.at(b);
    return usText(b - a + (ib < 0 || ia < 0 ? 0 : this.offDelta[ib] - this.offDelta[ia]));
  }

  /** Monotonic ns -> epoch ns. */
  toEpoch(mono: number): bigint {
    const i = this.at(mono);
    return BigInt(Math.trunc(mono)) + (i < 0 ? 0n : this.offsets[i]);
  }

  /** Epoch ns -> monotonic ns: the latest sample whose own realtime is <= epoch (ClockHistory.toMonoNs). */
  toMono(epoch: bigint): number {
    const n = this.monos.length;
    if (!n) return Number(epoch);
    let best = 0;
    for (let i = 0; i < n; i++) if (this.reals[i] <= epoch) best = i;
    return Number(epoch - this.offsets[best]);
  }
}

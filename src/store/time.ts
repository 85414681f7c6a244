// Store time: how a store keeps CLOCK_MONOTONIC nanoseconds exact in JS numbers.
//
// The kernel's monotonic clock is a u64 of ns since boot; a double holds
// integers exactly only below 2^53 ns (104.25 days). So every time a store
// holds (event start/end, keys, partition ranges, sessions, clock samples,
// thread metadata) counts from the store's *origin*: a multiple of 2^32 ns
// fixed when the store sees its first time, kept in meta 'O' and never
// changed. Relative times are exact while they stay below 2^53, i.e. for
// 104 days of capture less the margin, at any uptime. Converting a record's
// (hi, lo) words is one subtraction: (hi - originHi) * 2^32 + lo.
//
// The origin is 0 (times are plain monotonic ns, as every store written
// before 2026-12) unless the first time is past ORIGIN_MARGIN_NS; otherwise it
// is that margin before the first time, so intervals that began before
// capture (a thread asleep for hours) still have a start >= 0. Thread start
// times may be negative (a process started days before the store): they are
// exact down to -2^53, and keys carry them as absolute u64.

export const TWO32 = 4294967296;
/** 2^47 ns (39 h): how far before the store's first time its origin lies */
export const ORIGIN_MARGIN_NS = 2 ** 47;
const MARGIN_HI = ORIGIN_MARGIN_NS / TWO32;
/** relative times must have hi word below this (2^53 / 2^32) */
export const REL_HI_LIMIT = 0x200000;

/** The origin (its high word: origin = hi * 2^32) for a store whose first time is hi * 2^32 + lo. */
export function originHiFor(hi: number): number {
  return hi < MARGIN_HI ? 0 : hi - MARGIN_HI;
}

/** The relative time of absolute (hi, lo), or NaN when it is outside [origin, origin + 2^53). */
export function relTime(hi: number, lo: number, originHi: number): number {
  const rh = hi - originHi;
  return rh >= 0 && rh < REL_HI_LIMIT ? rh * TWO32 + lo : NaN;
}

/** Relative time of absolute (hi, lo) without the range check (thread start times: negative allowed). */
export function relTimeSigned(hi: number, lo: number, originHi: number): number {
  return (hi - originHi) * TWO32 + lo;
}

/** Absolute monotonic ns (exact, as a bigint) of relative time `rel`. */
export function absTime(rel: number, originHi: number): bigint {
  return (BigInt(originHi) << 32n) + BigInt(Math.trunc(rel));
}

/** Write relative time `rel` as the absolute u64 big-endian at `at` (negative relative times stay ordered). */
export function putAbsU64(b: Buffer, at: number, rel: number, originHi: number): void {
  const q = Math.floor(rel / TWO32);
  let hi = originHi + q;
  let lo = rel - q * TWO32;
  if (hi < 0) hi = lo = 0;
  b.writeUInt32BE(hi >>> 0, at);
  b.writeUInt32BE(lo >>> 0, at + 4);
}

/** Read an absolute u64 big-endian at `at` as a relative time. */
export function getAbsU64(b: Uint8Array, at: number, originHi: number): number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return (dv.getUint32(at) - originHi) * TWO32 + dv.getUint32(at + 4);
}

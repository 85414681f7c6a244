// The store's clock: epoch <-> monotonic conversion from the clock samples the
// writer stored (HELLO and CLOCK records), with one rule everywhere
// (capture/clock.ts ClockHistory: the sample in force at a monotonic time is
// the latest one at or before it, else the first). One ClockHistory per
// reader, loaded once and then brought up to date incrementally: a busy
// capture stores a sample a second, months of them are many.

import { ClockHistory } from '../capture/index.js';
import type { StoreReader } from './reader.js';

const clocks = new WeakMap<StoreReader, ClockHistory>();

/** The reader's clock, with every sample the store holds now. */
export function storeClock(r: StoreReader): ClockHistory {
  let c = clocks.get(r);
  if (!c) clocks.set(r, (c = new ClockHistory()));
  const last = c.lastMonoNs;
  for (const s of r.clockSamples(last < 0 ? undefined : last)) c.add(s.monoNs, BigInt(s.realtimeNs), s.errorNs);
  return c;
}

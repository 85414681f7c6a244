// The store's clock: epoch <-> monotonic conversion from the clock samples the
// writer stored (HELLO and CLOCK records), with one rule everywhere
// (capture/clock.ts ClockHistory: the sample in force at a monotonic time is
// the latest one at or before it, else the first). One ClockHistory per
// reader, loaded once and then brought up to date incrementally: a busy
// capture stores a sample a second, months of them are many.
//
// storeClock() brings it up to date in one read; loadStoreClock() does the
// same in slices under a ScanControl (a server under a time budget: a day of
// capture holds ~86,000 samples, one read would stall the event loop), and
// a later storeClock() then only reads the few samples written since.

import { ClockHistory } from '../capture/index.js';
import { clockSamplesSliced, type ScanControl } from './queries.js';
import type { StoreReader } from './reader.js';
import type { ClockSampleMeta } from './schema.js';

interface StoreClock {
  clock: ClockHistory;
  /** the sliced load running now (one at a time per reader) */
  loading: Promise<void> | null;
}

const clocks = new WeakMap<StoreReader, StoreClock>();

function storeClockOf(r: StoreReader): StoreClock {
  let c = clocks.get(r);
  if (!c) clocks.set(r, (c = { clock: new ClockHistory(), loading: null }));
  return c;
}

/** Monotonic ns of the clock's latest sample, as a resume point for the store's reads (undefined: none yet). */
function resumeAfter(c: ClockHistory): number | undefined {
  const last = c.lastMonoNs;
  return last < 0 ? undefined : last;
}

/** Add a sample read from the store unless the clock has it (a storeClock() may have read on between two slices). */
function addNew(c: ClockHistory, s: ClockSampleMeta): void {
  if (s.monoNs > c.lastMonoNs) c.add(s.monoNs, BigInt(s.realtimeNs), s.errorNs);
}

/** The reader's clock, with every sample the store holds now. */
export function storeClock(r: StoreReader): ClockHistory {
  const { clock } = storeClockOf(r);
  r.eachClockSample(resumeAfter(clock), (s) => addNew(clock, s));
  return clock;
}

/**
 * Bring the reader's clock up to date in slices, ctl.tick() between them;
 * one load per reader at a time (the others wait for it, then read what is
 * left). What was read is kept when ctl stops the load. Clock samples do not
 * count against ctl's row budget (it counts events). `complete`: every
 * sample the store holds is in `clock`.
 */
export async function loadStoreClock(r: StoreReader, ctl: ScanControl): Promise<{ clock: ClockHistory; complete: boolean }> {
  const c = storeClockOf(r);
  while (c.loading) await c.loading;
  let complete = false;
  const slices: ScanControl = { tick: () => ctl.tick(), due: () => ctl.due?.() ?? false };
  c.loading = (async () => {
    complete = await clockSamplesSliced(r, resumeAfter(c.clock), (s) => addNew(c.clock, s), slices);
  })();
  try {
    await c.loading;
  } finally {
    c.loading = null;
  }
  return { clock: c.clock, complete };
}

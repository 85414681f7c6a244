// Per-reader caches of the time-keyed metadata the correlator needs on every
// call: the store's clock (store/clock.ts) and the kernel loss counters
// (store/drops.ts). Loss samples are loaded once per reader and then
// incrementally (StoreReader.dropSamples(ring, afterTs)); the writer's latest,
// uncommitted sample is taken at each refresh; lookups are binary searches.

import type { ClockHistory } from '../capture/index.js';
import { DropsIndex, RING_NAMES, storeClock, type StoreReader } from '../store/index.js';

/** A DropsIndex kept up to date with one reader. */
export class DropsCache extends DropsIndex {
  refresh(r: StoreReader): void {
    for (let ring = 0; ring < RING_NAMES.length; ring++) {
      const last = this.lastTs(ring);
      for (const s of r.dropSamples(ring, last < 0 ? undefined : last)) this.append(s);
      this.setTail(ring, r.latestDropSample(ring));
    }
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

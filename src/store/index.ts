// Public interface of the store module.
//
// Writer (the daemon, one per store):
//   const w = openStoreWriter(dir, { maxAgeNs, maxBytes });
//   const probe = ProbeProcess.start(opts, w);   // StoreWriter is a CaptureSink
//   ... await w.flush(); await w.close();
// Readers (any process):
//   const r = openStoreReader(dir);
//   const ev = r.eventsOnThread(tid, a, b);      // EventList: columns, ev.count, ev.toObjects()

export {
  BLOCK_VERSION, Col, EventList, F, KIND_SPECS, NUM_FIELDS,
  type EventObject, type KindSpec,
} from './codec.js';
export {
  DEFAULT_PARTITION_NS, SCHEMA_VERSION,
  type ClockSampleMeta, type DropsSample, type OpenInterval, type PartitionMeta, type SessionMeta, type SkipCounters, type StatusMeta,
  type StoreConfig, type ThreadMeta,
} from './schema.js';
export { DEFAULT_BLOCK_CACHE_BYTES, MAX_DBS_DEFAULT, StoreReader, openStoreReader, type Coverage, type DropsInWindow, type OpenOptions } from './reader.js';
export { ThreadDirectory, incarnationAt, incarnationNear } from './threads.js';
export { KEPT_ATTRIBUTES, PROCESS_ID_ATTRIBUTES, REQUEST_ID_ATTRIBUTES, SERVICE_ATTRIBUTES, type ServiceAttributes } from './service-attributes.js';
export { loadStoreClock, storeClock } from './clock.js';
export { CUDA_RING, DropsIndex, RING_NAMES, SCHED_RING } from './drops.js';
export { addOpenIntervals } from './open-intervals.js';
export type { HeadBlock, StoreHead } from './head.js';
export { StoreCommitError, StoreWriter, usedBytes, type RetentionResult, type StoreHealth, type WriterCounters, type WriterOptions } from './writer.js';
export { SpanIndex, storedSpan, type SlowSpanQuery, type SpanInput, type StoredSpan } from './spans.js';
export { formatStats, statsOf, storeStats, type StoreStats } from './stats.js';
export { recordIntoStore, type RecordIntoStore } from './ingest.js';
export { bootId, checkHostName, localHost, type HostIdentity, type HostMeta } from './host.js';
export {
  findSlowSpansAny, spanServices, spansByRequestId,
  type RequestIdMatch, type SlowSpansAnyQuery, type SlowSpansResult,
} from './queries.js';

import { StoreWriter, type WriterOptions } from './writer.js';
/** Open (creating if needed) the store in `dir` for writing. One writer per store. */
export function openStoreWriter(dir: string, o: WriterOptions = {}): StoreWriter {
  return new StoreWriter(dir, o);
}

// recordIntoStore(): the sink `kspan record --data DIR` hands to ProbeProcess.

import type { RecordBatch } from '../capture/decoder.js';
import type { ClockHistory } from '../capture/clock.js';
import type { CaptureSink } from '../capture/state.js';
import { StoreWriter, usedBytes, type WriterOptions } from './writer.js';

export interface RecordIntoStore {
  /** pass to ProbeProcess.start(opts, sink) / replayFile(path, sink) */
  sink: CaptureSink;
  writer: StoreWriter;
  /** live numbers for a progress line */
  progress(): { events: number; committedEvents: number; usedBytes: number; skipped: number; watermarkNs: number };
  /** flush, end the coverage session, close the environment */
  close(): Promise<void>;
}

/**
 * Open `dir` for writing and return a capture sink that stores every batch.
 * A coverage session starts at the stream's HELLO (or at the first batch,
 * for streams without one) and ends at close().
 */
export function recordIntoStore(dir: string, o: WriterOptions = {}): RecordIntoStore {
  const writer = new StoreWriter(dir, o);
  writer.startTimer();
  let first = true;
  const sink: CaptureSink = {
    onBatch(batch: RecordBatch, clock: ClockHistory) {
      if (first) {
        first = false;
        // HELLO (kind 1) is the first record of a probe stream; otherwise start the session at the first record
        const w0 = batch.count ? batch.u32[batch.offsets[0] >>> 2] : 0;
        if (batch.count && ((w0 >>> 16) & 0xff) !== 1) {
          const w = batch.offsets[0] >>> 2;
          writer.beginSession(batch.u32[w + 3] * 4294967296 + batch.u32[w + 2]);
        }
      }
      return writer.onBatch(batch, clock);
    },
  };
  return {
    sink, writer,
    progress: () => ({
      events: writer.counters.events, committedEvents: writer.counters.committedEvents, usedBytes: usedBytes(writer),
      skipped: writer.counters.unknownKind + writer.counters.badValue + writer.counters.expired, watermarkNs: writer.watermarkNs,
    }),
    close: () => writer.close(),
  };
}

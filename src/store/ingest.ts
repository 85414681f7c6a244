// recordIntoStore(): the sink `kspan record --data DIR` hands to ProbeProcess.

import { Kind, RecordView, type RecordBatch, type ClockHistory, type CaptureSink } from '../capture/index.js';
import { StoreWriter, usedBytes, type WriterOptions } from './writer.js';

export interface RecordIntoStore {
  /** pass to ProbeProcess.start(opts, sink) / replayFile(path, sink) */
  sink: CaptureSink;
  writer: StoreWriter;
  /** live numbers for a progress line */
  progress(): { events: number; committedEvents: number; liveEvents: number; usedBytes: number; skipped: number; watermarkNs: number };
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
  const first0 = new RecordView();
  const sink: CaptureSink = {
    onBatch(batch: RecordBatch, clock: ClockHistory) {
      if (first && batch.count) {
        first = false;
        // HELLO is the first record of a probe stream (the writer starts the
        // session there); otherwise start the session at the first record.
        first0.set(batch, 0);
        if (first0.kind !== Kind.HELLO) writer.beginSession(first0.ts);
      }
      return writer.onBatch(batch, clock);
    },
  };
  return {
    sink, writer,
    progress: () => ({
      events: writer.counters.events, committedEvents: writer.counters.committedEvents, liveEvents: writer.liveEvents, usedBytes: usedBytes(writer),
      skipped: writer.counters.unknownKind + writer.counters.badValue + writer.counters.outOfRange + writer.counters.expired, watermarkNs: writer.committedThroughNs,
    }),
    close: () => writer.close(),
  };
}

// pump(): the loop shared by the live probe and file replay. Reads chunks,
// optionally tees the raw bytes, decodes, updates CaptureState and hands each
// batch to the sink, awaiting it (async iteration stops reading meanwhile, so
// a slow sink backs up into the pipe and then into the kernel rings, where
// the probe counts drops instead of kspan growing without bound).

import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { FrameDecoder } from './decoder.js';
import type { AckInfo, CaptureSink, CaptureState } from './state.js';

export interface PumpOptions {
  decoder: FrameDecoder;
  state: CaptureState;
  sink?: CaptureSink | null;
  /** Raw bytes are written here before decoding (record --out). */
  tee?: Writable | null;
  /** ACKs, delivered after the sink has processed the batch that carried them. */
  onAcks?: (acks: AckInfo[]) => void;
  signal?: AbortSignal;
}

export async function pump(source: AsyncIterable<Buffer | string>, o: PumpOptions): Promise<void> {
  const { decoder, state, sink, tee } = o;
  for await (const data of source) {
    if (o.signal?.aborted) break;
    const chunk = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    if (tee && !tee.write(chunk)) await drainOrError(tee);
    const batches = decoder.push(chunk);
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b];
      const acks = state.observe(batch);
      if (sink) {
        const r = sink.onBatch(batch, state.clock);
        if (r !== undefined && r !== null && typeof (r as Promise<void>).then === 'function') await r;
      }
      if (acks && o.onAcks) o.onAcks(acks);
    }
  }
  decoder.finish();
}

async function drainOrError(w: Writable): Promise<void> {
  // `once` rejects if 'error' fires first
  await once(w, 'drain');
}

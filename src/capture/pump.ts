// pump(): the loop shared by the live probe and file replay. Reads chunks,
// optionally tees the raw bytes, decodes, updates CaptureState and hands each
// batch to the sink, awaiting it (reading stops meanwhile: the stream is
// paused, or async iteration waits, so a slow sink backs up into the pipe and
// then into the kernel rings, where the probe counts drops instead of kspan
// growing without bound).

import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
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

export function pump(source: AsyncIterable<Buffer | string> | Readable, o: PumpOptions): Promise<void> {
  return isReadable(source) ? pumpReadable(source, o) : pumpIterable(source, o);
}

function isReadable(s: unknown): s is Readable {
  const r = s as Readable;
  return typeof r.on === 'function' && typeof r.pause === 'function' && typeof r.resume === 'function';
}

async function pumpIterable(source: AsyncIterable<Buffer | string>, o: PumpOptions): Promise<void> {
  for await (const data of source) {
    if (o.signal?.aborted) break;
    const r = onChunk(data, o);
    if (r) await r;
  }
  o.decoder.finish();
}

/**
 * The same loop on a stream, driven by its 'data' events. The live probe's
 * pipe wakes Node at every drain (20 times a second) with a few records;
 * async iteration adds a promise, microtasks and a nextTick to each chunk,
 * ~20% of the consumer's CPU at such rates. A sink that answers with a
 * promise (or a tee that must drain) pauses the stream until it settles, so
 * backpressure reaches the pipe as it does with async iteration.
 */
function pumpReadable(src: Readable, o: PumpOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let busy = false;
    let ended = false;
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', finish);
      if (err !== undefined) { reject(err); return; }
      try {
        o.decoder.finish();
        resolve();
      } catch (e) {
        reject(e);
      }
    };
    const fail = (e: unknown): void => {
      src.destroy();
      finish(e ?? new Error('pump failed'));
    };
    const onEnd = (): void => {
      ended = true;
      if (!busy) finish();
    };
    const onData = (data: Buffer | string): void => {
      if (done) return;
      if (o.signal?.aborted) {
        // as breaking out of async iteration: the stream is destroyed, what was decoded stands
        src.destroy();
        finish();
        return;
      }
      let r: Promise<unknown> | null;
      try {
        r = onChunk(data, o);
      } catch (e) {
        fail(e);
        return;
      }
      if (!r) return;
      busy = true;
      src.pause();
      r.then(() => {
        busy = false;
        if (done) return;
        if (ended) finish();
        else src.resume();
      }, fail);
    };
    src.on('data', onData);
    src.once('end', onEnd);
    src.once('error', finish);
  });
}

/** One chunk: tee, decode, hand each batch to the sink; a promise when a step must be waited for (the rest follows it). */
function onChunk(data: Buffer | string, o: PumpOptions): Promise<unknown> | null {
  const chunk = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  if (o.tee && !o.tee.write(chunk)) return drainOrError(o.tee).then(() => deliver(o.decoder.push(chunk), 0, o));
  return deliver(o.decoder.push(chunk), 0, o);
}

function deliver(batches: ReturnType<FrameDecoder['push']>, from: number, o: PumpOptions): Promise<unknown> | null {
  const { state, sink } = o;
  for (let b = from; b < batches.length; b++) {
    const batch = batches[b];
    const acks = state.observe(batch);
    if (sink) {
      const r = sink.onBatch(batch, state.clock);
      if (r !== undefined && r !== null && typeof (r as Promise<void>).then === 'function') {
        return (r as Promise<void>).then(() => {
          if (acks && o.onAcks) o.onAcks(acks);
          return deliver(batches, b + 1, o);
        });
      }
    }
    if (acks && o.onAcks) o.onAcks(acks);
  }
  return null;
}

async function drainOrError(w: Writable): Promise<void> {
  // `once` rejects if 'error' fires first
  await once(w, 'drain');
}

// Replay a recorded frame file (`kspan record --out`, or a test fixture)
// through the same decoder, state tracking and sink as a live capture.
// Streams the file, so its size does not matter.

import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { FrameDecoder, type DecoderCounters } from './decoder.js';
import { pump } from './pump.js';
import { CaptureState, type CaptureSink } from './state.js';

export interface ReplayOptions {
  /** Read size; 64 KiB matches what a pipe delivers. */
  chunkBytes?: number;
  signal?: AbortSignal;
  /** Supply your own (e.g. to set onHello before the first record). */
  state?: CaptureState;
}

export interface ReplayResult {
  state: CaptureState;
  counters: DecoderCounters;
}

export async function replayFile(path: string, sink: CaptureSink | null, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const stream = createReadStream(path, { highWaterMark: opts.chunkBytes ?? 64 * 1024 });
  try {
    return await replayStream(stream, sink, opts);
  } finally {
    stream.destroy();
  }
}

export async function replayStream(stream: Readable | AsyncIterable<Buffer>, sink: CaptureSink | null, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const decoder = new FrameDecoder();
  const state = opts.state ?? new CaptureState();
  await pump(stream as AsyncIterable<Buffer>, { decoder, state, sink, signal: opts.signal });
  return { state, counters: decoder.counters };
}


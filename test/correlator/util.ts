// Small synthetic stores for correlator tests: frames (FrameWriter) ->
// FrameDecoder -> StoreWriter, then spans through the span index.

import { FrameWriter } from '../helpers/frames.js';
import { openStoreReader, openStoreWriter, type SpanInput, type StoreReader, type WriterOptions } from '../../src/store/index.js';
import { feed, tempDir } from '../store/util.js';

export const MS = 1_000_000;
/** monotonic time of the HELLO */
export const T0 = 10_000_000_000;
/** epoch ns at T0 */
export const EPOCH0 = 1_763_730_000_000_000_000n;
/** a window start used by most tests (1 s after T0) */
export const W0 = T0 + 1_000 * MS;
/** "now" for the explain options: long after every window (no settling flag) */
export const NOW = EPOCH0 + 3_600_000_000_000n;

export const epoch = (mono: number): bigint => EPOCH0 + BigInt(mono - T0);
export const tr = (n: number): string => n.toString(16).padStart(32, '0');
export const sp = (n: number): string => n.toString(16).padStart(16, '0');

export interface Built {
  reader: StoreReader;
  dir: string;
  cleanup: () => void;
}

/**
 * Build a store: HELLO at T0, `fill` writes the records, then a CLOCK record
 * at `endMono` (so capture covers [T0, endMono]), then the spans.
 */
export async function buildStore(name: string, fill: (fw: FrameWriter) => void, spans: SpanInput[], endMono = W0 + 1_000 * MS, wo: WriterOptions = {}): Promise<Built> {
  const { dir, cleanup } = tempDir(`corr-${name}`);
  const fw = new FrameWriter();
  fw.hello({ ts: T0, monoNs: T0, realtimeNs: EPOCH0, offcpuMinNs: 50_000 });
  fill(fw);
  fw.clock({ ts: endMono, realtimeNs: epoch(endMono), errorNs: 10 });
  const w = openStoreWriter(dir, wo);
  await feed(w, fw.toBuffer());
  if (spans.length) await w.reader.spans.putSpans(spans);
  await w.close();
  const reader = openStoreReader(dir);
  return {
    reader, dir,
    cleanup: () => {
      void reader.root.close();
      cleanup();
    },
  };
}

/** A span in monotonic ns. */
export function span(n: number, startMono: number, endMono: number, o: Partial<SpanInput> = {}): SpanInput {
  return { traceId: tr(1), spanId: sp(n), service: 'svc', name: `span${n}`, startUnixNano: epoch(startMono), endUnixNano: epoch(endMono), ...o };
}

export const sum = (b: Record<string, number>): number => Object.values(b).reduce((a, x) => a + x, 0);

import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FrameDecoder } from '../../src/capture/decoder.js';
import type { CaptureSink } from '../../src/capture/state.js';
import { ClockHistory } from '../../src/capture/clock.js';

export const TMP_ROOT = '/var/tmp/kspan-store-tests';

export function tempDir(name: string): { dir: string; cleanup: () => void } {
  mkdirSync(TMP_ROOT, { recursive: true });
  const dir = mkdtempSync(join(TMP_ROOT, `${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Decode `buf` with FrameDecoder (same path as live capture) and feed every batch to the sink. */
export async function feed(sink: CaptureSink, buf: Buffer, chunk = 65536): Promise<FrameDecoder> {
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  for (let i = 0; i < buf.length; i += chunk) {
    for (const b of d.push(buf.subarray(i, i + chunk))) {
      const r = sink.onBatch(b, clock);
      if (r) await r;
    }
  }
  d.finish();
  return d;
}

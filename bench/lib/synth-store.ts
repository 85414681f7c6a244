// The synthetic store shared by bench:query and bench:explain: a realistic
// event mix (test/store/synth.ts) across `threads` threads, built once per
// parameter set under build/bench-store/ and reused by later runs of either
// bench (params.json says what was built).

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClockHistory, FrameDecoder } from '../../src/capture/index.js';
import { openStoreWriter, usedBytes } from '../../src/store/index.js';
import { SynthGen } from '../../test/store/synth.js';

export const SYNTH_SEED = 42;
/** Monotonic time of the first synthetic event. */
export const SYNTH_T0 = 3_600_000_000_000;

export interface SynthStore {
  dir: string;
  events: number;
  minNs: number;
  maxNs: number;
  buildS: number;
  usedBytes: number;
  reused: boolean;
}

/** Build (or reuse) the store of `records` synthetic records across `threads` threads. */
export async function ensureSynthStore(records: number, threads: number, rebuild = false): Promise<SynthStore> {
  const dir = join(process.cwd(), 'build', 'bench-store', `query-${records}-${threads}-${SYNTH_SEED}`);
  const params = JSON.stringify({ N: records, THREADS: threads, SEED: SYNTH_SEED, T0: SYNTH_T0, v: 1 });
  const pf = join(dir, 'params.json');
  if (!rebuild && existsSync(pf)) {
    const j = JSON.parse(readFileSync(pf, 'utf8')) as Omit<SynthStore, 'dir' | 'reused'> & { params: string };
    if (j.params === params) return { ...j, dir, reused: true };
  }
  console.log(`building store ${dir}: ${records.toLocaleString('en-US')} records across ${threads} threads ...`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const w = openStoreWriter(dir);
  const gen = new SynthGen({ threads, seed: SYNTH_SEED, t0: SYNTH_T0 });
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  const STEP = 500_000;
  let lastLog = performance.now();
  for (let done = 0; done < records; done += STEP) {
    for (const c of gen.nextChunks(Math.min(STEP, records - done))) {
      for (let i = 0; i < c.length; i += 65536) {
        for (const b of d.push(c.subarray(i, i + 65536))) {
          const r = w.onBatch(b, clock);
          if (r) await r;
        }
      }
    }
    if (performance.now() - lastLog > 5000) {
      lastLog = performance.now();
      console.log(`  building: ${(done + STEP).toLocaleString('en-US')} / ${records.toLocaleString('en-US')} records`);
    }
  }
  await w.flush();
  const built = {
    events: w.counters.events, minNs: SYNTH_T0, maxNs: gen.lastEnd, buildS: (performance.now() - t0) / 1000, usedBytes: usedBytes(w),
  };
  await w.close();
  writeFileSync(pf, JSON.stringify({ params, ...built }));
  return { ...built, dir, reused: false };
}

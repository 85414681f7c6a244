// Child process for crash.test.ts: ingests a synthetic stream into a store as
// fast as it can, forever (until killed). Not a test file itself.
//
//   node --import tsx test/store/writer-proc.ts DIR SEED T0 [CHUNK] [THREADS]
//
// After each awaited flush() prints `COMMITTED <records generated> <last end ns> <thread events>`:
// everything up to there is committed.

import { openStoreWriter } from '../../src/store/index.js';
import { SynthGen } from './synth.js';
import { feed } from './util.js';

const [dir, seedS, t0S, chunkS, threadsS] = process.argv.slice(2);
const gen = new SynthGen({ seed: Number(seedS), t0: Number(t0S), threads: threadsS ? Number(threadsS) : 1000 });
const chunk = chunkS ? Number(chunkS) : 50_000;
const w = openStoreWriter(dir);
console.log('OPEN');
for (;;) {
  await feed(w, gen.next(chunk));
  await w.flush();
  console.log(`COMMITTED ${gen.records} ${gen.lastEnd} ${gen.events}`);
}

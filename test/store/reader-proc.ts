// Child process for multiprocess.test.ts / retention.test.ts: opens a store
// read-only and polls it. Not a test file itself.
//
//   node --import tsx test/store/reader-proc.ts DIR TID [A B]
//
// Prints `READY`, then every ~20 ms `POLL <events of TID in [A, B]> <events in partitions> <partitions>`.
// stdin commands: `final` -> prints `FINAL ...` (same fields) and exits 0;
// `query A B` -> prints `QUERY <count> <sum of (end - A)>` for TID in [A, B].
// Any exception: prints `ERROR <message>` and exits 1.

import { createInterface } from 'node:readline';
import { openStoreReader, EventList } from '../../src/store/index.js';

const [dir, tidS, aS, bS] = process.argv.slice(2);
const tid = Number(tidS);
const a = aS ? Number(aS) : 0;
const b = bS ? Number(bS) : 2 ** 52;

const fail = (e: unknown): never => {
  console.log(`ERROR ${(e as Error)?.stack ?? e}`.replace(/\n/g, ' | '));
  process.exit(1);
};

try {
  const r = openStoreReader(dir);
  const out = new EventList();
  const sample = (): string => {
    r.eventsOnThread(tid, a, b, out);
    const parts = r.partitions();
    let n = 0;
    for (const p of parts) n += p.events;
    return `${out.count} ${n} ${parts.length}`;
  };
  console.log('READY');
  const timer = setInterval(() => {
    try {
      console.log(`POLL ${sample()}`);
    } catch (e) {
      fail(e);
    }
  }, 20);
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    try {
      const [cmd, x, y] = line.trim().split(/\s+/);
      if (cmd === 'final') {
        clearInterval(timer);
        console.log(`FINAL ${sample()}`);
        process.exit(0);
      } else if (cmd === 'query') {
        const qa = Number(x);
        const ev = r.eventsOnThread(tid, qa, Number(y), new EventList());
        let sum = 0;
        for (let i = 0; i < ev.count; i++) sum += ev.end[i] - qa;
        console.log(`QUERY ${ev.count} ${sum}`);
      }
    } catch (e) {
      fail(e);
    }
  });
} catch (e) {
  fail(e);
}

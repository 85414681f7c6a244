// Golden check for refactors: explains every trace in a store (and every
// thread's window of each trace) and prints one JSON document. Run it on a
// recorded store before and after a change and compare the outputs:
//
//   npx tsx scripts/golden.ts DIR > before.json   # ... change ...
//   npx tsx scripts/golden.ts DIR > after.json && cmp before.json after.json
//
// (Make a store with `node bin/kspan.js demo --data DIR`; keep a copy: the
// store must not change between the two runs.)

import { explainTrace, explainWindow } from '../src/correlator/index.js';
import { openStoreReader } from '../src/store/index.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: tsx scripts/golden.ts STORE_DIR\n');
  process.exit(2);
}
const r = openStoreReader(dir);
const traces = new Set<string>();
for (const { value } of r.spans.byId.getRange({})) traces.add((value as { traceId: string }).traceId);
const out: unknown[] = [];
for (const id of [...traces].sort()) {
  const e = explainTrace(r, id, { serviceProcess: { vllm: 'VLLM::EngineCor' } });
  out.push(e);
  for (const s of e.spans) {
    const tid = s.correlation.tid;
    if (tid === null || tid === undefined) continue;
    const from = BigInt(s.start_unix_nano), to = from + BigInt(s.duration_ns);
    out.push(explainWindow(r, { tid, fromUnixNano: from, toUnixNano: to }));
  }
}
process.stdout.write(JSON.stringify(out) + '\n');


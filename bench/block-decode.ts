// Decoding event blocks as the explain path's block cache does: each block of
// a partition of the synthetic store into a new EventList, then sorted by
// (start, end) (cachedBlock). On a store as dense as bench:query's (20 M
// events, ~1 M/s of capture time) a span's window touches several blocks of
// its thread that no earlier span read, so this is a large part of
// explaining there.
//
//   npm run bench:block-decode [-- --quick] [-- --blocks N] [-- --runs N]

import { parseArgs } from 'node:util';
import { ByteReader, readBlockHeader, type BlockHeader } from '../src/store/codec.js';
import { decodeCachedBlock } from '../src/store/block-cache.js';
import { openStoreReader } from '../src/store/index.js';
import { ensureSynthStore } from './lib/synth-store.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, blocks: { type: 'string' }, runs: { type: 'string' } } });
const built = await ensureSynthStore(values.quick ? 2_000_000 : 20_000_000, 1000);
const reader = openStoreReader(built.dir);
const parts = reader.partitions();
// the event blocks of the middle partition (key: [u32 tid][u64 minStart][u32 seq]; futex index blocks start 0xFFFFFFFE)
const db = reader.partitionDb(parts[Math.floor(parts.length / 2)].idx);
if (!db) throw new Error('no partition');
const want = Number(values.blocks ?? 3000);
const blocks: Uint8Array[] = [];
for (const { key, value } of db.getRange({})) {
  const k = key as Buffer;
  if (k.length !== 16 || k.readUInt32BE(0) >= 0xfffffffe) continue;
  blocks.push(Uint8Array.from(value as Buffer));
  if (blocks.length >= want) break;
}
const r = new ByteReader();
const h: BlockHeader = { count: 0, pid: 0, extent: 0, body: 0 };
const rates: number[] = [];
let events = 0;
for (let run = 0; run < Number(values.runs ?? 7); run++) {
  events = 0;
  const t0 = performance.now();
  for (let rep = 0; rep < 3; rep++) {
    for (const v of blocks) {
      if (!readBlockHeader(v, r, h)) continue;
      events += decodeCachedBlock(v, 1, r, h).list.count;
    }
  }
  rates.push(events / ((performance.now() - t0) / 1000));
}
rates.sort((a, b) => a - b);
const med = rates[Math.floor(rates.length / 2)];
console.log(`${blocks.length} blocks (${(events / 3 / blocks.length).toFixed(0)} events each), ${rates.length} runs: ${(med / 1e6).toFixed(2)} M events/s median (${(rates[0] / 1e6).toFixed(2)}-${(rates[rates.length - 1] / 1e6).toFixed(2)})`);
console.log(`RESULT block_decode_events_per_s ${Math.round(med)} events/s (decoded into a new list and sorted, as the block cache does)`);
process.exit(0);

// Decoding event blocks as the explain path's block cache does: each block of
// a partition of the synthetic store into a new EventList, then sorted by
// (start, end) (cachedBlock). On a store as dense as bench:query's (20 M
// events, ~1 M/s of capture time) a span's window touches several blocks of
// its thread that no earlier span read, so this is a large part of
// explaining there. --cache: through a DecodedBlockCache of the default bound
// (32 MiB), as a reader's is: blocks it evicts lend their lists to the next
// decodes instead of a new list per block; the blocks then come in a shuffled
// order (the explain path reads many threads' blocks interleaved, not one
// thread's after another).
//
// --compare: in one process, rounds alternated (this VM's speed drifts more
// between processes than the changes measured), process CPU per round (GC
// included): a new list per block cleared column by column (before
// 2026-12-02), a new list left as allocated (zero), and lists lent by the
// cache's evicted blocks.
//
//   npm run bench:block-decode [-- --quick] [-- --blocks N] [-- --runs N] [-- --cache] [-- --compare]

import { parseArgs } from 'node:util';
import { ByteReader, EventList, decodeBlock, readBlockHeader, type BlockHeader } from '../src/store/codec.js';
import { DecodedBlockCache, cachedBlock, decodeCachedBlock } from '../src/store/block-cache.js';
import { DEFAULT_BLOCK_CACHE_BYTES, openStoreReader } from '../src/store/index.js';
import { ensureSynthStore } from './lib/synth-store.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, blocks: { type: 'string' }, runs: { type: 'string' }, cache: { type: 'boolean' }, compare: { type: 'boolean' } } });
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
if (values.cache || values.compare) {
  // a fixed shuffle (the same every run)
  let seed = 42;
  for (let i = blocks.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [blocks[i], blocks[j]] = [blocks[j], blocks[i]];
  }
}
const r = new ByteReader();
const h: BlockHeader = { count: 0, pid: 0, extent: 0, body: 0 };
if (values.compare) {
  const events = blocks.reduce((n, v) => (readBlockHeader(v, r, h) ? n + h.count : n), 0);
  const fresh = (zeroed: boolean) => (): void => {
    for (const v of blocks) {
      if (!readBlockHeader(v, r, h)) continue;
      const l = new EventList(Math.max(16, h.count));
      decodeBlock(v, 1, -Infinity, Infinity, 0, l, r, h, zeroed);
      cachedBlock(l, h.extent);
    }
  };
  const cache = new DecodedBlockCache(DEFAULT_BLOCK_CACHE_BYTES);
  let key = 0;
  const variants: [string, () => void][] = [
    ['new_list_cleared', fresh(false)],
    ['new_list', fresh(true)],
    ['pooled', () => { for (const v of blocks) if (readBlockHeader(v, r, h)) cache.set({ part: 0, tid: 1, start: 0, seq: key++ }, decodeCachedBlock(v, 1, r, h, cache)); }],
  ];
  const cpu = new Map<string, number[]>(variants.map(([n]) => [n, []]));
  const rounds = Number(values.runs ?? 12);
  for (let round = 0; round < rounds; round++) {
    for (const [n, f] of variants) {
      const c0 = process.cpuUsage();
      f();
      const c = process.cpuUsage(c0);
      cpu.get(n)!.push((c.user + c.system) / 1e6);
    }
  }
  for (const [n, xs] of cpu) {
    // the first two rounds warm up
    const s = xs.slice(2).sort((a, b) => a - b);
    const m = s[Math.floor(s.length / 2)];
    console.log(`RESULT block_decode_${n}_events_per_cpu_s ${Math.round(events / m)} events/CPU-s (median of ${s.length} rounds, ${blocks.length} blocks each)`);
  }
  console.log(`cache: ${cache.size} blocks held, ${cache.reused} lists reused`);
  process.exit(0);
}
const rates: number[] = [];
let events = 0;
const cache = values.cache ? new DecodedBlockCache(DEFAULT_BLOCK_CACHE_BYTES) : undefined;
let key = 0;
for (let run = 0; run < Number(values.runs ?? 7); run++) {
  events = 0;
  const t0 = performance.now();
  for (let rep = 0; rep < 3; rep++) {
    for (const v of blocks) {
      if (!readBlockHeader(v, r, h)) continue;
      const c = decodeCachedBlock(v, 1, r, h, cache);
      cache?.set({ part: 0, tid: 1, start: 0, seq: key++ }, c);
      events += c.list.count;
    }
  }
  rates.push(events / ((performance.now() - t0) / 1000));
}
rates.sort((a, b) => a - b);
const med = rates[Math.floor(rates.length / 2)];
console.log(`${blocks.length} blocks (${(events / 3 / blocks.length).toFixed(0)} events each), ${rates.length} runs: ${(med / 1e6).toFixed(2)} M events/s median (${(rates[0] / 1e6).toFixed(2)}-${(rates[rates.length - 1] / 1e6).toFixed(2)})`);
if (cache) console.log(`cache: ${cache.size} blocks held, ${cache.reused} lists reused`);
console.log(`RESULT block_decode_events_per_s ${Math.round(med)} events/s (decoded ${cache ? 'through a 32 MiB block cache (evicted blocks\' lists reused)' : 'into a new list'} and sorted, as the block cache does)`);
process.exit(0);

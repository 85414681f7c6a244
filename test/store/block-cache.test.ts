// The decoded-block cache (StoreReader.enableBlockCache) gives exactly the
// answers of a reader without it (blocks decoded into the lists of evicted
// ones included), stays within its bound, and forgets the blocks of a
// dropped partition.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventList, openStoreReader, openStoreWriter } from '../../src/store/index.js';
import { DecodedBlockCache, cachedBlock, type CachedBlock } from '../../src/store/block-cache.js';
import { SynthGen } from './synth.js';
import { feed, tempDir } from './util.js';

// ~20,000 events of decoded blocks
const MAX_BYTES = 20_000 * 138;

test('block cache: same events as an uncached reader over many windows, bounded, partition drops forgotten', async () => {
  const { dir, cleanup } = tempDir('block-cache');
  const T0 = 5_000_000_000_000;
  const gen = new SynthGen({ threads: 20, seed: 11, t0: T0 });
  const w = openStoreWriter(dir, { partitionNs: 100_000_000 });
  try {
    await feed(w, gen.next(200_000));
    await w.close();
    const plain = openStoreReader(dir);
    const cached = openStoreReader(dir);
    const cache = cached.enableBlockCache(MAX_BYTES);
    let s = 99;
    const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    const parts = plain.partitions();
    const lo = parts[0].fromNs!;
    const hi = parts[parts.length - 1].maxEnd;
    let compared = 0;
    let maxHeld = 0;
    for (let q = 0; q < 400; q++) {
      const tid = gen.tidOf(Math.floor(rnd() * 4)); // few threads: the cache gets hits
      const a = lo + Math.floor(rnd() * (hi - lo));
      const b = a + Math.floor(rnd() * 30_000_000);
      const mask = q % 3 === 0 ? 0 : 1 << (1 + (q % 5));
      const x = plain.eventsOnThread(tid, a, b, new EventList(), mask).toObjects();
      const y = cached.eventsOnThread(tid, a, b, new EventList(), mask).toObjects();
      assert.deepEqual(y, x, `tid ${tid} [${a}, ${b}] mask ${mask}`);
      compared += x.length;
      const lists = [...(cache as unknown as { map: Map<string, { list: EventList }> }).map.values()].map((c) => c.list);
      assert.equal(lists.reduce((n, l) => n + l.count, 0), cache.events);
      const held = lists.reduce((n, l) => n + l.byteSize, 0);
      assert.equal(held, cache.bytes, 'the account is the lists\' memory');
      // the bound covers the blocks held and the evicted blocks' lists kept for reuse
      assert.ok(held + cache.spareBytes <= MAX_BYTES || cache.size === 1, `cache holds ${held} bytes + ${cache.spareBytes} spare`);
      maxHeld = Math.max(maxHeld, held);
    }
    assert.ok(compared > 1000, `compared ${compared} events`);
    assert.ok(cache.hits > 100 && cache.misses > 10, `hits ${cache.hits}, misses ${cache.misses}`);
    // evicted blocks lent their lists to later decodes (the answers above include those)
    assert.ok(cache.reused > 10, `lists reused: ${cache.reused}`);
    assert.ok(maxHeld > MAX_BYTES / 2, `the bound was reached (${maxHeld} bytes held at most)`);
    const before = cache.size;
    for (const p of parts) cached.forgetPartition(p.idx);
    assert.ok(before > 0);
    assert.equal(cache.size, 0, 'a dropped partition leaves nothing cached');
    await plain.root.close();
    await cached.root.close();
  } finally {
    cleanup();
  }
});

test('block cache: blocks that share a sequence number (two writer opens) never answer for each other', () => {
  const cache = new DecodedBlockCache(1 << 20);
  const block = (start: number): CachedBlock => {
    const l = new EventList(4);
    l.kind[0] = 0;
    l.start[0] = start;
    l.end[0] = start + 10;
    l.count = 1;
    return cachedBlock(l, 10);
  };
  const a = block(100);
  cache.set({ part: 3, tid: 7, start: 100, seq: 42 }, a);
  assert.equal(cache.get({ part: 3, tid: 7, start: 100, seq: 42 }), a);
  // same seq, another partition / thread / start: a miss, not block a
  assert.equal(cache.get({ part: 4, tid: 7, start: 100, seq: 42 }), undefined);
  assert.equal(cache.get({ part: 3, tid: 8, start: 100, seq: 42 }), undefined);
  assert.equal(cache.get({ part: 3, tid: 7, start: 101, seq: 42 }), undefined);
  // a seq equal in its low 30 bits (the map's key)
  assert.equal(cache.get({ part: 3, tid: 7, start: 100, seq: 42 + 2 ** 30 }), undefined);
  // the other block replaces it; a is then a miss
  const b = block(500);
  cache.set({ part: 4, tid: 9, start: 500, seq: 42 }, b);
  assert.equal(cache.size, 1);
  assert.equal(cache.get({ part: 4, tid: 9, start: 500, seq: 42 }), b);
  assert.equal(cache.get({ part: 3, tid: 7, start: 100, seq: 42 }), undefined);
  cache.dropPartition(4);
  assert.equal(cache.size, 0);
});

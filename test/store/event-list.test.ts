// EventList: columns on one buffer survive growth, and sortByStart orders rows
// by (start, end), stable, like a plain comparator sort — on nearly sorted
// lists (a block in end order: the insertion-sort path) and shuffled ones (the
// full sort past the insertion budget).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventList, NUM_FIELDS } from '../../src/store/codec.js';

let seed = 7;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;

function fill(n: number, shuffled: boolean): EventList {
  const l = new EventList(4); // grows several times on the way
  let end = 1_000_000;
  for (let i = 0; i < n; i++) {
    if (l.count >= l.capacity) l.grow(l.capacity * 2);
    end += Math.floor(rnd() * 3) * 1000; // ties in end
    const dur = rnd() < 0.3 ? 0 : Math.floor(rnd() * 50) * 1000; // ties in start, long intervals out of place
    const start = shuffled ? Math.floor(rnd() * 1e6) : end - dur;
    l.kind[i] = i % 7;
    l.cpu[i] = i;
    l.pid[i] = 100 + (i % 3);
    l.tid[i] = 200 + i;
    l.start[i] = start;
    l.end[i] = shuffled ? start + dur : end;
    for (let j = 0; j < NUM_FIELDS; j++) l.f[j][i] = i * 100 + j;
    l.blobOff[i] = 0;
    l.blobLen[i] = 0;
    l.count = i + 1;
  }
  return l;
}

function rows(l: EventList): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < l.count; i++) out.push([l.start[i], l.end[i], l.kind[i], l.cpu[i], l.pid[i], l.tid[i], ...l.f.map((f) => f[i])]);
  return out;
}

test('EventList: growth keeps every column; sortByStart matches a stable (start, end) sort', () => {
  for (const n of [0, 1, 2, 17, 500, 3000]) {
    for (const shuffled of [false, true]) {
      const l = fill(n, shuffled);
      const before = rows(l);
      // rows carry their index in cpu: growth kept them in place
      for (let i = 0; i < n; i++) assert.equal(l.cpu[i], i);
      const want = before.map((r, i) => ({ r, i })).sort((a, b) => a.r[0] - b.r[0] || a.r[1] - b.r[1] || a.i - b.i).map((x) => x.r);
      l.sortByStart();
      assert.deepEqual(rows(l), want, `n ${n} shuffled ${shuffled}`);
      assert.equal(l.byteSize, l.capacity * (8 * (2 + NUM_FIELDS) + 4 * 5 + 1) + l.blob.byteLength);
    }
  }
});

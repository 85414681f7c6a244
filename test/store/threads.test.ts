// The thread directory's rules (store/threads.ts) on a reused, renamed tid:
// alive at t (incarnationAt), the one to name it by (incarnationNear), and
// ThreadDirectory.nameNear giving incarnationNear's name at every time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ThreadDirectory, incarnationAt, incarnationNear, type ThreadMeta } from '../../src/store/index.js';

function meta(startTime: number, names: [number, string][], exitTs: number | null): ThreadMeta {
  return {
    tid: 4242, pid: 4242, startTime, comm: names[names.length - 1][1], pcomm: names[0][1], names,
    firstSeen: startTime, lastSeen: exitTs ?? startTime, forkTs: startTime, parentPid: 1, parentTid: 1,
    execTs: null, exitTs, exitCode: exitTs === null ? null : 0,
  };
}

// tid 4242: 'old' from 10 s, exec'd as 'old-exec' at 15 s, exited at 20 s; reused at 50 s as 'new', renamed 'new-2' at 60 s
const OLD = meta(10e9, [[10e9, 'old'], [15e9, 'old-exec']], 20e9);
const NEW = meta(50e9, [[50e9, 'new'], [60e9, 'new-2']], null);
const INC = [OLD, NEW];

test('incarnationAt: the incarnation alive at t, named as of t; none before the first start or while the tid is free', () => {
  const at = (t: number): [number, string] | null => {
    const m = incarnationAt(INC, t);
    return m && [m.startTime, m.comm];
  };
  assert.equal(at(5e9), null);
  assert.deepEqual(at(10e9), [10e9, 'old']);
  assert.deepEqual(at(16e9), [10e9, 'old-exec']);
  assert.deepEqual(at(20e9), [10e9, 'old-exec'], 'alive up to its exit');
  assert.equal(at(30e9), null, 'exited, not yet reused');
  assert.deepEqual(at(55e9), [50e9, 'new']);
  assert.deepEqual(at(70e9), [50e9, 'new-2']);
});

test('incarnationNear: alive at t, else the latest started by t (its last name), else the first (its first name)', () => {
  const near = (t: number): [number, string] | null => {
    const m = incarnationNear(INC, t);
    return m && [m.startTime, m.comm];
  };
  assert.deepEqual(near(5e9), [10e9, 'old'], 'before any start: the first, by its first name');
  assert.deepEqual(near(16e9), [10e9, 'old-exec']);
  assert.deepEqual(near(30e9), [10e9, 'old-exec'], 'after its exit: the one that exited, by its last name');
  assert.deepEqual(near(70e9), [50e9, 'new-2']);
  assert.equal(incarnationNear([], 1e9), null);
});

test('ThreadDirectory: incarnations read once per tid; nameNear is near().comm at every time', () => {
  const reads: number[] = [];
  const dir = new ThreadDirectory({ threadIncarnations: (tid) => (reads.push(tid), tid === 4242 ? INC : []) });
  for (let t = 0; t <= 80e9; t += 0.5e9) {
    assert.equal(dir.nameNear(4242, t), dir.near(4242, t)!.comm, `t = ${t}`);
    assert.equal(dir.at(4242, t)?.comm ?? null, incarnationAt(INC, t)?.comm ?? null);
  }
  assert.equal(dir.nameNear(7, 1e9), null);
  assert.equal(dir.near(7, 1e9), null);
  assert.deepEqual(reads, [4242, 7]);
});

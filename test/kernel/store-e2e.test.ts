// End to end: `kspan record --data DIR -- FIXTURE` with the real probe, then
// the fixture's known answers must be found through store queries.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT } from '../../src/capture/index.js';
import { openStoreReader, storeStats } from '../../src/store/index.js';
import { FIXTURE_BIN, assertSyncsMatchApp, ms, requireLiveProbe, run, within } from './harness.js';

before(requireLiveProbe);

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `kspan record --data DIR [...] -- CMD`, returning CMD's JSON line. */
async function recordIntoStore<T>(extra: string[], cmd: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ dir: string; out: T }> {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-e2e-'));
  dirs.push(dir);
  const r = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--quiet', '--data', dir, ...extra, '--', ...cmd], { env, timeoutMs: 120000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  assert.match(r.stderr, /stored [\d,]+ events/);
  // stdout: the fixture's JSON line, then kspan's capture summary
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"fixture"'));
  assert.ok(line, `the fixture's output: ${r.stdout}`);
  return { dir, out: JSON.parse(line) as T };
}

test('mutex scenario through the store: the wait, its waker, the lock word, the names', async () => {
  type Out = { pid: number; tid_a: number; tid_b: number; uaddr: string; rounds: { a_lock_start_ns: number; a_lock_end_ns: number }[] };
  const { dir, out } = await recordIntoStore<Out>([], [join(FIXTURE_BIN, 'mutex_hold'), '50', '3']);
  const r = openStoreReader(dir);
  try {
    const uaddr = Number(out.uaddr);
    for (const round of out.rounds) {
      const ev = r.eventsOnThread(out.tid_a, round.a_lock_start_ns, round.a_lock_end_ns).toObjects();
      const wait = ev.find((e) => e.kind === 'futex_wait' && e.uaddr === uaddr);
      assert.ok(wait, `futex wait in the round's window: ${JSON.stringify(ev.map((e) => e.kind))}`);
      // as long as the waiter's own lock call (which also holds its wait for a CPU after the wake), and ≥ the 50 ms hold
      const measured = round.a_lock_end_ns - round.a_lock_start_ns;
      assert.ok(ms(wait.endNs - wait.startNs) >= 45 && within(wait.endNs - wait.startNs, measured, 0.15), `${ms(wait.endNs - wait.startNs).toFixed(1)} ms vs ${ms(measured).toFixed(1)} ms measured`);
      assert.equal(wait.ownerTid, out.tid_b);
      const off = ev.find((e) => e.kind === 'offcpu' && e.wakerTid === out.tid_b);
      assert.ok(off, 'the off-CPU interval woken by the holder');
      assert.equal(off.wakerUaddr, uaddr);
      // A window strictly inside the wait still finds the interval that began before it.
      const mid = (round.a_lock_start_ns + round.a_lock_end_ns) / 2;
      const inner = r.eventsOnThread(out.tid_a, mid, mid + 1e6).toObjects();
      assert.ok(inner.some((e) => e.kind === 'futex_wait' && e.uaddr === uaddr), 'found from inside the interval');
    }
    const t0 = out.rounds[0].a_lock_start_ns - 1e9, t1 = out.rounds[2].a_lock_end_ns + 1e9;
    const wakes = r.futexWakesByUaddr(out.pid, uaddr, t0, t1).toObjects();
    assert.equal(wakes.filter((w) => w.tid === out.tid_b).length, 3, 'the holder\'s three wakes, by lock word');
    assert.equal(r.threadAt(out.tid_a, out.rounds[0].a_lock_start_ns)?.comm, 'waiter');
    assert.equal(r.threadAt(out.tid_b, out.rounds[0].a_lock_start_ns)?.comm, 'holder');
    const cov = r.coverage(out.rounds[0].a_lock_start_ns, out.rounds[2].a_lock_end_ns);
    assert.ok(cov.covered, 'the window was being captured');
  } finally {
    void r.root.close();
  }
  const s = storeStats(dir);
  assert.ok(s.events > 0);
});

test('CUDA scenario through the store: every call, with its duration', async () => {
  type Out = { pid: number; tid: number; sync_ns: number[]; sync_at_ns: number[]; launch_start_ns: number; end_ns: number };
  const libs = ['libcudart.so.12', 'libcuda.so.1'].flatMap((l) => ['--cuda-lib', join(FIXTURE_BIN, l)]);
  const { dir, out } = await recordIntoStore<Out>(libs, [join(FIXTURE_BIN, 'cuda_app'), '10000', '20', '5000'],
    { ...process.env, KSPAN_STUB_SYNC_US: '5000' });
  const r = openStoreReader(dir);
  try {
    const ev = r.eventsOnThread(out.tid, out.launch_start_ns - 1e6, out.end_ns + 1e6).toObjects().filter((e) => e.kind === 'cuda_call');
    assert.equal(ev.filter((e) => e.api === 1).length, 10001, 'every cudaLaunchKernel (incl. the _ptsz one)');
    const syncs = ev.filter((e) => e.api === 4).sort((a, b) => a.startNs - b.startNs);
    assert.equal(syncs.length, 21);
    assertSyncsMatchApp(syncs.map((e) => ({ start: e.startNs, end: e.endNs })), out, 5e6);
  } finally {
    void r.root.close();
  }
});

// A scripted agent (test/mcp/py_agent.py, the Python `mcp` SDK over stdio)
// follows the investigate_slow_request prompt on a store recorded with the
// real probe, with three injected causes, one service each:
//   render    a worker pinned to CPU 0 with a pinned CPU hog  -> cpu_preemption, culprit cpu_hog
//   checkout  requests waiting on a mutex the holder sleeps in -> lock_contention, culprit the holder
//   trainer   a training step inside cudaStreamSynchronize     -> cuda_sync, cudaStreamSynchronize
// It must name the cause and the culprit in <= 4 tool calls, reading <= 20 KB
// of tool results per investigation.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT } from '../../src/capture/index.js';
import { FIXTURE_BIN, requireLiveProbe, run } from '../kernel/harness.js';
import { CLI, putTrace, recordScenario, type Fixtures } from './scenario.js';

const PYTHON = join(REPO_ROOT, '.venv', 'bin', 'python');
const MAX_CALLS = 4;
const MAX_BYTES = 20_000;

let dir = '';
let fx: Fixtures = {};
const agent: Record<string, any> = {};

before(async () => {
  requireLiveProbe();
  const libs = ['libcudart.so.12', 'libcuda.so.1'].flatMap((l) => ['--cuda-lib', join(FIXTURE_BIN, l)]);
  ({ dir, fx } = await recordScenario(
    './cpu_hog 0 1.6 & sleep 0.1; ./pinned_worker 0 150 2000 1000; wait; ./mutex_hold 50 3; ./cuda_app 300 10 3000',
    ['cpu_hog', 'pinned_worker', 'mutex_hold', 'cuda_app'], libs, { ...process.env, KSPAN_STUB_SYNC_US: '3000' }));
  const wk = fx.pinned_worker, mh = fx.mutex_hold, ca = fx.cuda_app;
  await putTrace(dir, [{ service: 'render', name: 'render frame', startMono: wk.start_ns, endMono: wk.end_ns, tid: wk.tid, pid: wk.pid }]);
  for (const [i, r] of mh.rounds.entries()) {
    await putTrace(dir, [{ service: 'checkout', name: `POST /checkout ${i}`, startMono: r.a_lock_start_ns - 1e6, endMono: r.a_lock_end_ns + 1e6, tid: mh.tid_a, pid: mh.pid }]);
  }
  await putTrace(dir, [{ service: 'trainer', name: 'train step', startMono: ca.sync_start_ns, endMono: ca.sync_end_ns, tid: ca.tid, pid: ca.pid }]);
  const r = await run(PYTHON, [join(REPO_ROOT, 'test', 'mcp', 'py_agent.py'), 'render,checkout,trainer', '--',
    process.execPath, '--import', 'tsx', CLI, 'mcp', '--data', dir], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n'));
  for (const line of r.stdout.trim().split('\n')) {
    const o = JSON.parse(line);
    agent[o.service] = o;
    console.log(`agent ${o.service}: ${o.cause} (${(o.share * 100).toFixed(0)}%) culprit ${o.culprit ? `${o.culprit.comm} pid ${o.culprit.pid} tid ${o.culprit.tid}` : '-'}; ` +
      `confirm ${JSON.stringify(o.confirm)}; ${o.calls.length} calls (${o.calls.map((c: any) => `${c.tool} ${c.bytes} B`).join(', ')}), ${o.bytes} B read`);
  }
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function bounded(o: any): void {
  assert.ok(o.calls.length <= MAX_CALLS, `${o.calls.length} tool calls (max ${MAX_CALLS})`);
  assert.ok(o.bytes <= MAX_BYTES, `${o.bytes} bytes of tool results read (max ${MAX_BYTES})`);
  assert.deepEqual(o.calls.slice(0, 2).map((c: any) => c.tool), ['find_slow_requests', 'explain_request'], 'the prompt\'s steps, in order');
}

test('CPU hog: the agent finds cpu_preemption by cpu_hog', () => {
  const o = agent.render;
  bounded(o);
  assert.equal(o.cause, 'cpu_preemption');
  assert.equal(o.culprit.pid, fx.cpu_hog.pid);
  assert.equal(o.culprit.comm, 'cpu_hog');
  assert.equal(o.span.tid, fx.pinned_worker.tid);
  assert.match(o.confirm.top_group, new RegExp(`^cpu_hog pid ${fx.cpu_hog.pid} `), 'the drill-down: most time lost to the hog');
});

test('mutex holder: the agent finds lock_contention held by the holder thread', () => {
  const o = agent.checkout;
  bounded(o);
  assert.equal(o.cause, 'lock_contention');
  assert.equal(o.culprit.tid, fx.mutex_hold.tid_b);
  assert.equal(o.culprit.comm, 'holder');
  assert.equal(o.confirm.uaddr, '0x' + BigInt(fx.mutex_hold.uaddr_dec).toString(16), 'the drill-down: the mutex word');
  assert.equal(o.confirm.holder.tid, fx.mutex_hold.tid_b);
});

test('CUDA sync: the agent finds cuda_sync in cudaStreamSynchronize', () => {
  const o = agent.trainer;
  bounded(o);
  assert.equal(o.cause, 'cuda_sync');
  assert.equal(o.span.pid, fx.cuda_app.pid);
  assert.equal(o.confirm.top_group, 'cudaStreamSynchronize', 'the drill-down: time per CUDA API');
});

// The probe's filters and its accounting of what it could not keep.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { Ring } from '../../src/capture/index.js';
import { captureDuring, ms, requireLiveProbe, within } from './harness.js';

before(requireLiveProbe);

function cgroup2Mount(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2') return mnt;
  }
  throw new Error('no cgroup2 hierarchy mounted (/proc/mounts)');
}

async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const st = (() => { try { return readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return ''; } })();
    if (/\) T /.test(st)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`process ${pid} did not stop`);
}

test('cgroup filter: only tasks of that cgroup v2 are captured', async () => {
  const dir = join(cgroup2Mount(), `kspan-test-${process.pid}`);
  mkdirSync(dir);
  try {
    // Two identical sleepers; only the one moved into the cgroup may show up.
    const inside = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec sleep 0.2'], { stdio: 'ignore' });
    const outside = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec sleep 0.2'], { stdio: 'ignore' });
    await waitStopped(inside.pid!);
    await waitStopped(outside.pid!);
    writeFileSync(join(dir, 'cgroup.procs'), String(inside.pid));
    const done = Promise.all([new Promise((r) => inside.on('exit', r)), new Promise((r) => outside.on('exit', r))]);
    const cap = await captureDuring({ cgroup: dir }, async () => {
      process.kill(inside.pid!, 'SIGCONT');
      process.kill(outside.pid!, 'SIGCONT');
      await done;
    });
    const pids = new Set(cap.offcpu.map((o) => o.pid));
    assert.ok(pids.has(inside.pid!), 'the process in the cgroup is captured');
    assert.deepEqual([...pids], [inside.pid], `only the cgroup's process: ${[...pids].join(',')}`);
    const sleep = cap.offcpu.find((o) => o.pid === inside.pid && within(ms(o.blocked), 200, 0.3));
    assert.ok(sleep, 'its 200 ms sleep');
  } finally {
    rmdirSync(dir);
  }
});

test('a ring too small for the load: every record is either delivered or counted as lost', async () => {
  // 1 MiB ring, drained only every 2 s, every off-CPU interval kept: a
  // context-switch storm must overflow it, and the counts must add up.
  const cap = await captureDuring({ ringMb: 1, drainMs: 2000, offcpuMinUs: 0, futexMinUs: 0, groups: ['sched', 'task', 'futex'] }, async () => {
    await new Promise<void>((resolve, reject) => {
      const c = spawn(join(process.cwd(), 'bench', 'workloads', 'bin', 'futex_pingpong'), ['1.5'], { stdio: 'ignore' });
      c.on('error', reject);
      c.on('exit', () => resolve());
    });
  });
  const drops = cap.probe.state.drops[Ring.SCHED];
  assert.ok(drops, 'final DROPS record for the sched ring');
  assert.ok(drops.lost > 1000, `records lost to the full ring are counted: ${drops.lost}`);
  const delivered = cap.offcpu.length + cap.futexWait.length + cap.futexWake.length + cap.io.length + cap.tcp.length + cap.stack.length;
  assert.equal(drops.records, delivered, 'every record the probe drained from the ring reached the sink');
  assert.ok(delivered > 10000, `and the ring still delivered ${delivered}`);
});

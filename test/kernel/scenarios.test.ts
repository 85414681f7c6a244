// Known-answer scenarios with the real BPF programs: each fixture creates a
// kernel behaviour whose numbers we know, and the captured records must say
// the same (durations within a tolerance, the right tids/pids/addresses).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { FutexFlag, IoFlag, OffcpuFlag, OwnerSrc, REPO_ROOT } from '../../src/capture/index.js';
import { FIXTURE_BIN, assertSyncsMatchApp, captureDuring, fixture, ms, requireLiveProbe, run, within } from './harness.js';

before(requireLiveProbe);

const TASK_INTERRUPTIBLE = 0x1;

interface MutexOut {
  pid: number; tid_a: number; tid_b: number; uaddr: string; hold_ms: number;
  rounds: { a_lock_start_ns: number; a_lock_end_ns: number; b_unlock_ns: number }[];
}

/**
 * The fixture's round a wait [start, end] belongs to: the waiter's own lock call..return brackets it
 * (what the waiter measured holds the same wait for a CPU after the wake as the record).
 */
function roundOf(out: MutexOut, start: number, end: number): MutexOut['rounds'][number] {
  const r = out.rounds.find((x) => start >= x.a_lock_start_ns - 1e6 && end <= x.a_lock_end_ns + 1e6);
  assert.ok(r, `a round brackets the wait ${start}..${end}: ${JSON.stringify(out.rounds)}`);
  return r;
}

test('mutex held 50 ms: the waiter blocks ~50 ms in futex wait, woken by the holder through the same lock word', async () => {
  let out!: MutexOut;
  const cap = await captureDuring({ stacks: true, stackMinUs: 10000 }, async () => {
    out = await fixture<MutexOut>('mutex_hold', ['50', '3']);
  });
  const uaddr = Number(out.uaddr);
  const mine = <T extends { pid: number }>(xs: T[]) => xs.filter((x) => x.pid === out.pid);

  const waits = mine(cap.futexWait).filter((w) => w.tid === out.tid_a && w.uaddr === uaddr);
  assert.equal(waits.length, 3, `one futex wait per round on the mutex word, got ${waits.length}`);
  for (const w of waits) {
    // ~50 ms, as long as the waiter measured its lock call (±15%; that includes its wait for a CPU after the wake)
    const r = roundOf(out, w.start, w.end);
    assert.ok(ms(w.end - w.start) >= 45, `futex wait ${ms(w.end - w.start).toFixed(1)} ms, the lock was held 50`);
    assert.ok(within(w.end - w.start, r.a_lock_end_ns - r.a_lock_start_ns, 0.15), `futex wait ${ms(w.end - w.start).toFixed(1)} ms vs the waiter's ${ms(r.a_lock_end_ns - r.a_lock_start_ns).toFixed(1)} ms`);
    assert.equal(w.ret, 0);
    assert.equal(w.op & 127, 0, 'FUTEX_WAIT');
    assert.equal(w.ownerTid, out.tid_b, 'lock owner read from the glibc mutex = the holder');
    assert.equal(w.ownerSrc, OwnerSrc.GLIBC_MUTEX);
    assert.equal(w.flags, FutexFlag.FROM_REGS | FutexFlag.RET_INFERRED, 'from registers, ret inferred from the futex waker');
  }

  for (const w of waits) {
    // The off-CPU interval of the waiter inside that futex wait.
    const off = mine(cap.offcpu).find((o) => o.tid === out.tid_a && o.start >= w.start && o.end <= w.end + 1e6);
    assert.ok(off, 'an off-CPU interval of the waiter inside its futex wait');
    // blocked until the holder's unlock woke it
    const r = roundOf(out, off.start, off.end);
    assert.ok(within(off.blocked, r.b_unlock_ns - off.start, 0.15), `blocked ${ms(off.blocked).toFixed(1)} ms vs ${ms(r.b_unlock_ns - off.start).toFixed(1)} ms to the holder's unlock`);
    assert.ok(off.state & TASK_INTERRUPTIBLE, `blocked in S state, prev_state=${off.state.toString(16)}`);
    assert.ok(off.flags & OffcpuFlag.WOKEN);
    assert.ok(off.flags & OffcpuFlag.IN_FUTEX);
    assert.equal(off.wakerTid, out.tid_b, 'waker = the holder thread');
    assert.equal(off.wakerPid, out.pid);
    assert.ok(off.flags & OffcpuFlag.WAKER_FUTEX, 'waker was inside a futex wake');
    assert.equal(off.wakerUaddr, uaddr, 'the wake was on the same lock word');
    // The stack taken at that switch-out: user frames (the fixture) and kernel frames (futex_wait).
    const st = cap.stack.find((s) => s.tid === out.tid_a && s.start === off.start);
    assert.ok(off.flags & OffcpuFlag.HAS_STACK);
    assert.ok(st && st.nUser > 0 && st.nKernel > 0, `stack with user and kernel frames: ${JSON.stringify(st && { u: st.nUser, k: st.nKernel })}`);
  }

  const wakes = mine(cap.futexWake).filter((k) => k.tid === out.tid_b && k.uaddr === uaddr);
  assert.equal(wakes.length, 3, 'the holder woke the waiter once per round');
  for (const [i, k] of wakes.entries()) {
    assert.ok(k.ret >= 1);
    assert.ok(Math.abs(k.start - out.rounds[i].b_unlock_ns) < 2e6, 'wake at the holder\'s unlock');
  }
  // The holder's 50 ms sleep was ended by a timer: an interrupt, not a task.
  const holderSleep = mine(cap.offcpu).filter((o) => o.tid === out.tid_b && within(ms(o.blocked), 50, 0.2));
  assert.ok(holderSleep.length >= 3);
  assert.ok(holderSleep.every((o) => o.flags & OffcpuFlag.WAKER_HARDIRQ), 'nanosleep wakeups come from hard irq');
});

test('futex-syscalls (opt-in): the same mutex waits from the syscall tracepoints, exact ret, no register records', async () => {
  let out!: MutexOut;
  const cap = await captureDuring({ groups: ['sched', 'task', 'futex-syscalls'] }, async () => {
    out = await fixture<MutexOut>('mutex_hold', ['30', '3']);
  });
  const uaddr = Number(out.uaddr);
  const mine = cap.futexWait.filter((w) => w.pid === out.pid);
  assert.deepEqual(mine.filter((w) => w.flags !== 0), [], 'no register-sourced waits while the syscall tracepoints are on');
  const waits = mine.filter((w) => w.tid === out.tid_a && w.uaddr === uaddr);
  assert.equal(waits.length, 3, `one wait per round, got ${waits.length}`);
  for (const w of waits) {
    assert.equal(w.ret, 0, 'the syscall\'s own return value');
    assert.equal(w.ownerTid, out.tid_b);
    assert.ok(ms(w.end - w.start) >= 24 && ms(w.end - w.start) < 500, `${ms(w.end - w.start).toFixed(1)} ms, the holder holds 30`);
    // sys_enter -> sys_exit contains the off-CPU interval of the block
    const off = cap.offcpu.find((o) => o.tid === out.tid_a && o.start >= w.start && o.end <= w.end);
    assert.ok(off && off.flags & OffcpuFlag.IN_FUTEX && off.flags & OffcpuFlag.WAKER_FUTEX && off.wakerUaddr === uaddr, JSON.stringify(off));
  }
  const wakes = cap.futexWake.filter((k) => k.tid === out.tid_b && k.uaddr === uaddr);
  assert.equal(wakes.length, 3, 'one wake call per round');
  assert.ok(wakes.every((k) => k.ret === 1 && k.end >= k.start), 'the call woke one waiter');
});

test('a futex wait that times out: ETIMEDOUT inferred from the timer (registers), exact with futex-syscalls', async () => {
  // a Python lock acquire with a timeout: sem_clockwait -> FUTEX_WAIT_BITSET with an absolute timeout
  const script = 'import json,os,threading\nl=threading.Lock(); l.acquire()\nfor _ in range(3): l.acquire(timeout=0.04)\nprint(json.dumps({"pid": os.getpid()}))';
  for (const groups of [undefined, ['sched', 'task', 'futex-syscalls']]) {
    let pid = 0;
    const cap = await captureDuring(groups ? { groups } : {}, async () => {
      const r = await run('python3', ['-c', script]);
      assert.equal(r.code, 0, r.stderr);
      pid = JSON.parse(r.stdout).pid;
    });
    const waits = cap.futexWait.filter((w) => w.pid === pid && ms(w.end - w.start) >= 30);
    assert.equal(waits.length, 3, `${groups ?? 'default'}: three ~40 ms waits: ${JSON.stringify(cap.futexWait.filter((w) => w.pid === pid))}`);
    for (const w of waits) {
      assert.equal(w.ret, -110, 'ETIMEDOUT');
      assert.equal(w.op & 127, 9, 'FUTEX_WAIT_BITSET');
      assert.equal(w.flags, groups ? 0 : FutexFlag.FROM_REGS | FutexFlag.RET_INFERRED);
      const off = cap.offcpu.find((o) => o.tid === w.tid && o.start >= w.start && o.end <= w.end);
      assert.ok(off && off.flags & OffcpuFlag.WAKER_HARDIRQ && !(off.flags & OffcpuFlag.WAKER_FUTEX), 'woken by the timer interrupt');
    }
  }
});

test('PI mutex: the owner is read from the futex word', async () => {
  let out!: MutexOut;
  const cap = await captureDuring({}, async () => {
    out = await fixture<MutexOut>('mutex_pi', ['50', '2']);
  });
  const uaddr = Number(out.uaddr);
  const waits = cap.futexWait.filter((w) => w.pid === out.pid && w.tid === out.tid_a && w.uaddr === uaddr);
  assert.equal(waits.length, 2);
  for (const w of waits) {
    assert.equal(w.op & 127, 6, 'FUTEX_LOCK_PI');
    assert.equal(w.ownerTid, out.tid_b);
    assert.equal(w.ownerSrc, OwnerSrc.PI_WORD);
    const r = roundOf(out, w.start, w.end);
    assert.ok(ms(w.end - w.start) >= 45 && within(w.end - w.start, r.a_lock_end_ns - r.a_lock_start_ns, 0.15),
      `${ms(w.end - w.start).toFixed(1)} ms vs the waiter's ${ms(r.a_lock_end_ns - r.a_lock_start_ns).toFixed(1)} ms`);
  }
  const unlocks = cap.futexWake.filter((k) => k.tid === out.tid_b && k.uaddr === uaddr);
  assert.ok(unlocks.length >= 2 && unlocks.every((k) => (k.op & 127) === 7), 'FUTEX_UNLOCK_PI by the holder');
});

test('a CPU hog pinned to the worker\'s CPU: the worker waits in the runqueue, preempted by the hog', async () => {
  let hog!: { pid: number }, worker!: { pid: number; tid: number; start_ns: number; end_ns: number; cpu_ns: number };
  const cap = await captureDuring({}, async () => {
    const hogP = fixture('cpu_hog', ['0', '1.6']);
    await new Promise((r) => setTimeout(r, 100));
    worker = await fixture('pinned_worker', ['0', '150', '2000', '1000']);
    hog = await hogP;
  });
  const off = cap.offcpu.filter((o) => o.tid === worker.tid);
  const runq = off.reduce((s, o) => s + o.runqueue, 0);
  const byHog = off.filter((o) => (o.flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) && o.preemptPid === hog.pid);
  const runqByHog = byHog.reduce((s, o) => s + o.runqueue, 0);
  const wall = worker.end_ns - worker.start_ns;
  assert.ok(byHog.length >= 10, `preempted by the hog ${byHog.length} times`);
  assert.ok(ms(runqByHog) > 100, `runqueue time behind the hog ${ms(runqByHog).toFixed(1)} ms`);
  // The hog is the culprit: it explains more of the worker's runqueue time
  // than any other task (other load on a shared machine may take some too).
  const byPreemptor = new Map<number, number>();
  for (const o of off) {
    if (o.flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) byPreemptor.set(o.preemptPid, (byPreemptor.get(o.preemptPid) ?? 0) + o.runqueue);
  }
  const top = [...byPreemptor].sort((x, y) => y[1] - x[1])[0];
  assert.equal(top[0], hog.pid, `top preemptor ${top[0]} (${ms(top[1]).toFixed(0)} ms), the hog has ${ms(runqByHog).toFixed(0)} of ${ms(runq).toFixed(0)} ms`);
  // Wall = own CPU + sleeps + runqueue (+ wakeup latency): the runqueue time fits in what was not CPU.
  assert.ok(runqByHog <= wall - worker.cpu_ns, 'runqueue time fits in the time the worker was not running');
  // The hog itself is named.
  assert.ok(cap.task.some((t) => t.pid === hog.pid && t.comm === 'cpu_hog'));
});

test('fsync under writes: block I/O attributed to the issuing thread with its latency', async () => {
  // Not tmpfs: the build directory is on the repository's disk.
  const dir = mkdtempSync(join(REPO_ROOT, 'build', 'fsync-'));
  let out!: { pid: number; tid: number; count: number; start_ns: number; end_ns: number; fsync_ns: number[]; dev_kernel: number };
  try {
    const cap = await captureDuring({}, async () => {
      out = await fixture('fsync_writer', [dir, '20', '65536']);
    });
    const ios = cap.io.filter((b) => b.tid === out.tid && b.pid === out.pid);
    const writes = ios.filter((b) => (b.flags & IoFlag.WRITE) && b.bytes > 0);
    assert.ok(writes.length >= out.count, `${writes.length} data writes for ${out.count} fsyncs`);
    const maxFsync = Math.max(...out.fsync_ns);
    for (const b of writes) {
      assert.ok(b.start >= out.start_ns && b.end <= out.end_ns + 1e6, 'inside the run');
      assert.ok(b.end > b.start && b.end - b.start <= maxFsync, `latency ${b.end - b.start} ns within the longest fsync`);
      assert.equal(b.error, 0);
      assert.equal(b.comm, 'fsync_writer');
    }
    assert.ok(writes.some((b) => b.bytes === 65536), 'the 64 KiB data writes');
    if (out.dev_kernel) assert.ok(writes.every((b) => b.dev === out.dev_kernel), 'on the file\'s device');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stand-in libcudart/libcuda: every call captured with its duration (10,000 launches -> 10,000 records)', async () => {
  const libs = [join(FIXTURE_BIN, 'libcudart.so.12'), join(FIXTURE_BIN, 'libcuda.so.1')];
  let out!: { pid: number; tid: number; sync_ns: number[]; sync_at_ns: number[]; expect: { api: string; kspan_api: number; count: number; arg: string; ret: number }[] };
  const cap = await captureDuring({ cudaLibs: libs }, async () => {
    out = await fixture('cuda_app', ['10000', '20', '5000'], { env: { ...process.env, KSPAN_STUB_SYNC_US: '5000' } });
  });
  const calls = cap.cuda.filter((c) => c.pid === out.pid);
  // Each expected (api, arg, ret) group must be there exactly as often as it was called.
  const key = (api: number, arg: number, ret: number) => `${api}/${arg}/${ret}`;
  const want = new Map<string, number>();
  for (const e of out.expect) {
    const k = key(e.kspan_api, Number(e.arg), e.ret);
    want.set(k, (want.get(k) ?? 0) + e.count);
  }
  const got = new Map<string, number>();
  for (const c of calls) got.set(key(c.api, c.arg, c.ret), (got.get(key(c.api, c.arg, c.ret)) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()));
  assert.equal(calls.filter((c) => c.apiName === 'cudaLaunchKernel' && c.arg === 0x5151000).length, 10001);

  const syncs = calls.filter((c) => c.api === 4 && c.tid === out.tid).sort((a, b) => a.start - b.start);
  assert.equal(syncs.length, 21); // 20 + one _ptsz
  // The stub sleeps 5 ms: the probe must agree with the app's own clock around each call.
  assertSyncsMatchApp(syncs, out, 5e6);
  const sorted = syncs.slice(0, 20).map((c) => c.end - c.start).sort((a, b) => a - b);
  assert.ok(within(ms(sorted[10]), 5, 0.2), `median sync ${ms(sorted[10]).toFixed(2)} ms`);
  const lost = cap.probe.state.drops[2]?.lost;
  assert.equal(lost, 0, 'no CUDA records lost');
});

test('TCP retransmits in a network namespace: records with the connection\'s 4-tuple, IPv4 and IPv6', async () => {
  type Conn = { saddr: string; daddr: string; sport: number; dport: number; retrans: number; peer_retrans: number };
  let out!: { v4: Conn; v6: Conn };
  const cap = await captureDuring({ groups: ['tcp', 'task'] }, async () => {
    out = await fixture('tcp_retrans.sh', ['both']);
  });
  for (const [fam, conn] of [[2, out.v4], [10, out.v6]] as const) {
    const rs = cap.tcp.filter((t) => t.family === fam && t.saddr === conn.saddr && t.daddr === conn.daddr &&
      t.sport === conn.sport && t.dport === conn.dport);
    assert.ok(rs.length >= 1, `retransmits seen for ${conn.saddr}:${conn.sport} -> ${conn.daddr}:${conn.dport}`);
    assert.ok(rs.length <= conn.retrans, `${rs.length} records <= ${conn.retrans} retransmitted segments (nstat)`);
    assert.ok(rs.every((t) => t.sockIno > 0 || t.state !== 1), 'established sockets carry their inode');
  }
});

test('clock: probe monotonic times convert to the epoch within a few ms', async () => {
  const cap = await captureDuring({ groups: ['task'] }, async () => {
    await run('true', []);
  });
  const mono = Number(process.hrtime.bigint()); // CLOCK_MONOTONIC on Linux
  const epochMs = Number(cap.clock.toEpochNs(mono) / 1000000n);
  assert.ok(Math.abs(epochMs - Date.now()) < 5, `converted ${epochMs}, now ${Date.now()}`);
});

test('pid filter with follow: only the target process and its children are captured', async () => {
  const { spawn } = await import('node:child_process');
  // A shell that stops itself first, so the filter is in place before it runs anything.
  const child = spawn('/bin/sh', ['-c', 'kill -STOP $$; sleep 0.15; sleep 0.15'], { stdio: 'ignore' });
  const shPid = child.pid!;
  const exited = new Promise((r) => child.on('exit', r));
  for (let i = 0; i < 200 && !/\) T /.test(await readStat(shPid)); i++) await new Promise((r) => setTimeout(r, 5));
  const cap = await captureDuring({ pids: [shPid], follow: true }, async () => {
    process.kill(shPid, 'SIGCONT');
    await exited;
  });
  const forks = cap.task.filter((t) => t.event === 2 && t.otherPid === shPid);
  assert.equal(forks.length, 2, 'the two sleep children were forked and followed');
  const childPids = new Set(forks.map((f) => f.pid));
  for (const o of cap.offcpu) assert.ok(o.pid === shPid || childPids.has(o.pid), `unexpected pid ${o.pid} in a filtered capture`);
  const sleeps = cap.offcpu.filter((o) => childPids.has(o.pid) && within(ms(o.blocked), 150, 0.3));
  assert.equal(sleeps.length, 2, 'each child\'s 150 ms sleep');
});

async function readStat(pid: number): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
}

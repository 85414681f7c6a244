// ProbeProcess with the real probe (build/kspan-probe): real BPF programs,
// real kernel activity from child processes and fixtures (test/fixtures/),
// real control commands. Needs root; fails with the reason when it can't run.
// Every assert.ok has a message: without one, node's assert re-reads the
// tsx-transformed source to build one, which can take minutes on this file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROBE_EXIT, ProbeError, ProbeProcess, REPO_ROOT, probeArgs } from '../../src/capture/probe.js';
import type { CaptureSink } from '../../src/capture/state.js';
import { CudaWatcher } from '../../src/capture/cudawatch.js';
import { ABI_VERSION, Group, Kind, OffcpuFlag, STATUS_DETACHED, TaskEvent } from '../../src/capture/records.js';
import { replayFile } from '../../src/capture/replay.js';
import { RecordView } from '../../src/capture/decoder.js';
import { Collector, GatedChild, KERNEL_KINDS, fixture, monoNs, requireLiveProbe, runChild, sleep, unprivilegedProbe, type Rec } from '../helpers/live.js';

const S_STATE = 1; // TASK_INTERRUPTIBLE in prev_state
const MS = 1e6;

/** Number of possible CPUs (what libbpf and the probe's HELLO count). */
function possibleCpus(): number {
  let n = 0;
  for (const part of readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim().split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += (b ?? a) - a + 1;
  }
  return n;
}

/** Records of the BPF side (not TASK NAME, which names every task that runs, filtered or not). */
function captured(r: Rec): boolean {
  return KERNEL_KINDS.has(r.kind) && !(r.kind === Kind.TASK && r.event === TaskEvent.NAME);
}

function dropsRecords(p: ProbeProcess): number {
  let n = 0;
  for (const d of p.state.drops) n += d?.records ?? 0;
  return n;
}

test('command line follows docs/probe.md; kspan excludes its own process by default', () => {
  const self = String(process.pid);
  assert.deepEqual(
    probeArgs({ pids: [1, 2], excludePids: [7, 8], follow: true, groups: ['sched', 'futex'], cudaLibs: ['/x/libcudart.so.12'], offcpuMinUs: 100, stacks: true, ringMb: 32, drainMs: 5, clockMs: 500, check: true }),
    ['--pid', '1', '--pid', '2', '--exclude-pid', '7', '--exclude-pid', '8', '--exclude-pid', self, '--follow', '--groups', 'sched,futex', '--cuda-lib', '/x/libcudart.so.12', '--offcpu-min-us', '100', '--stacks', '--ring-mb', '32', '--drain-ms', '5', '--clock-ms', '500', '--check'],
  );
  assert.deepEqual(probeArgs({}), ['--exclude-pid', self]);
  assert.deepEqual(probeArgs({ excludeSelf: false }), []);
  assert.deepEqual(probeArgs({ excludeSelf: false, excludePids: [9] }), ['--exclude-pid', '9']);
  // capturing this very process on purpose: no exclusion
  assert.deepEqual(probeArgs({ pids: [process.pid] }), ['--pid', self]);
  assert.deepEqual(probeArgs({ excludePids: [process.pid] }), ['--exclude-pid', self]);
});

test('every exit code in docs/probe.md has a reason and a hint', () => {
  const doc = readFileSync(join(REPO_ROOT, 'docs', 'probe.md'), 'utf8');
  const table = doc.slice(doc.indexOf('## Exit codes'));
  const codes = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1])).filter((c) => c !== 0).sort((a, b) => a - b);
  assert.deepEqual(codes, [1, 2, 10, 11, 12, 13, 14]);
  assert.deepEqual(Object.keys(PROBE_EXIT).map(Number).sort((a, b) => a - b), codes);
});

test('HELLO and STATUS; a gated `sleep 0.3` is one ≥ 250 ms off-CPU record, delivered by flush before its ACK; clean stop with DROPS', async () => {
  requireLiveProbe();
  const c = new Collector();
  const g = new GatedChild(['sleep', '0.3']);
  // a drain period longer than the test: only the control commands drain the rings
  const p = ProbeProcess.start({ pids: [g.pid], drainMs: 60_000 }, c);
  try {
    const hello = await p.ready;
    assert.ok(p.args.includes('--pid') && p.args.includes(String(g.pid)), p.args.join(' '));
    assert.equal(hello.abiVersion, ABI_VERSION);
    assert.equal(hello.ncpu, possibleCpus());
    assert.equal(hello.probePid, p.pid);
    assert.equal(hello.offcpuMinNs, 50_000);
    assert.equal(hello.bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    assert.ok(hello.realtimeNs > nowNs - 10_000_000_000n && hello.realtimeNs <= nowNs + 1_000_000_000n, `HELLO realtime ${hello.realtimeNs} vs now ${nowNs}`);
    assert.equal(p.state.clock.toEpochNs(hello.monoNs), hello.realtimeNs);

    // answered once attaching is over
    assert.deepEqual(await p.control('ping'), { err: 0, msg: 'pong' });
    for (const grp of [Group.SCHED, Group.TASK, Group.FUTEX, Group.BLOCK, Group.TCP]) {
      const st = p.state.statusOf(grp);
      assert.equal(st.length, 1, `one STATUS for group ${grp}`);
      assert.equal(st[0].err, 0, `group ${st[0].name}: ${st[0].detail}`);
      assert.ok(st[0].nAttached > 0, `group ${st[0].name} attached programs`);
    }

    const t0 = monoNs();
    const ex = await g.run();
    const t1 = monoNs();
    assert.equal(ex.code, 0);
    // (The probe may drain early — e.g. a signal interrupting its epoll wait —
    // so what arrived before the flush is not asserted; what matters is that
    // the flush's ACK comes after every record produced before it.)

    assert.deepEqual(await p.control('flush'), { err: 0, msg: 'flushed' });
    // flush resolved: everything produced before it is in the sink
    const mine = c.records.filter((r) => r.pid === g.pid);
    const naps = mine.filter((r) => r.kind === Kind.OFFCPU && r.startNs! > t0 && r.blockedNs! >= 250 * MS);
    assert.equal(naps.length, 1, JSON.stringify(mine.filter((r) => r.kind === Kind.OFFCPU)));
    const nap = naps[0];
    assert.equal(nap.tid, g.pid);
    assert.ok(nap.blockedNs! < 1000 * MS, `blocked ${nap.blockedNs}`);
    assert.equal(nap.prevState! & 0xff, S_STATE);
    assert.ok(nap.flags! & OffcpuFlag.WOKEN, `flags ${nap.flags}`);
    assert.ok(nap.ts < t1, 'switch-in before the exit was seen');
    assert.ok(mine.some((r) => r.kind === Kind.TASK && r.event === TaskEvent.EXEC && r.comm === 'sleep'), 'exec of sleep');
    assert.ok(mine.some((r) => r.kind === Kind.TASK && r.event === TaskEvent.EXIT && r.exitCode === 0), 'exit of sleep');
    // filtered: no kernel records of any other process
    assert.deepEqual(c.records.filter((r) => captured(r) && r.pid !== g.pid), []);

    // several commands in flight resolve by their sequence numbers
    const many = await Promise.all([p.control('ping'), p.control('follow on'), p.control('set offcpu_min_us 100'), p.control('ping')]);
    assert.deepEqual(many, [{ err: 0, msg: 'pong' }, { err: 0, msg: 'follow on' }, { err: 0, msg: 'set offcpu_min_us 100' }, { err: 0, msg: 'pong' }]);
    assert.deepEqual(await p.control('bogus'), { err: -22, msg: 'unknown command: bogus' });
    assert.deepEqual(await p.control('set offcpu_min_us soon'), { err: -22, msg: 'set offcpu_min_us soon' });
    await assert.rejects(p.command('bogus'), /refused "bogus": unknown command: bogus/);
    await assert.rejects(p.control('ping\nping'), /one line/);

    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  } finally {
    g.kill();
    p.kill('SIGKILL');
  }
  // final DROPS: one per ring, nothing lost, and every record the probe drained reached the sink
  assert.deepEqual(p.state.drops.map((d) => d?.name), ['sched', 'task', 'cuda']);
  assert.equal(p.state.totalLost, 0);
  assert.equal(c.kernelRecords, dropsRecords(p));
  assert.equal(c.records.length, p.decoder.records);
  assert.equal(p.decoder.corruptBytes, 0);
  assert.equal(p.decoder.truncatedBytes, 0);
  await assert.rejects(p.control('ping'), /not running/);
});

test('pid add turns a host-wide capture into that process only; pid clear makes it host-wide again', async () => {
  requireLiveProbe();
  const c = new Collector();
  const p = ProbeProcess.start({}, c);
  const g = new GatedChild(['sleep', '0.2']);
  const other = new GatedChild(['sleep', '0.1']);
  try {
    await p.ready;
    await p.control('ping');
    const before = await runChild(['sleep', '0.05']);
    assert.deepEqual(await p.control(`pid add ${g.pid}`), { err: 0, msg: `pid add ${g.pid}` });
    const ackTs = c.records.find((r) => r.kind === Kind.ACK && r.msg === `pid add ${g.pid}`)!.ts;
    await Promise.all([g.run(), other.run()]);
    assert.deepEqual(await p.control('pid clear'), { err: 0, msg: 'host-wide' });
    const after = await runChild(['sleep', '0.05']);
    await p.control('flush');
    await p.stop();

    const napOf = (pid: number, ms: number) => c.of(Kind.OFFCPU, pid).filter((r) => r.blockedNs! >= ms * MS);
    const seen = (pid: number) => JSON.stringify(c.records.filter((r) => r.pid === pid));
    assert.equal(napOf(before.pid, 40).length, 1, `host-wide before pid add: ${seen(before.pid)}`);
    assert.equal(napOf(g.pid, 150).length, 1, `the added process: ${seen(g.pid)}`);
    assert.equal(napOf(after.pid, 40).length, 1, `host-wide after pid clear: ${seen(after.pid)}`);
    // between the ACK and `pid clear`, only g: `other` ran then and is not there
    // (intervals that began before the ACK may end after it)
    assert.deepEqual(c.records.filter((r) => r.pid === other.pid && captured(r) && (r.startNs ?? r.ts) > ackTs), []);
    assert.ok(!c.records.some((r) => r.pid === other.pid && r.kind === Kind.TASK && r.event === TaskEvent.EXEC), 'exec of other not captured');
    assert.ok(c.records.some((r) => r.pid === g.pid && r.kind === Kind.TASK && r.event === TaskEvent.EXEC), 'exec of g captured');
    const clearTs = c.records.find((r) => r.kind === Kind.ACK && r.msg === 'host-wide')!.ts;
    const stray = c.records.filter((r) => captured(r) && r.pid !== g.pid && (r.startNs ?? r.ts) > ackTs && r.ts < clearTs);
    assert.deepEqual(stray, []);
  } finally {
    g.kill();
    other.kill();
    p.kill('SIGKILL');
  }
});

test('host-wide capture leaves out the Node process that reads it, and keeps everything else', async () => {
  requireLiveProbe();
  // futex waits and sleeps of this process while a child sleeps
  const work = async (): Promise<number> => {
    const child = runChild(['sleep', '0.3']);
    const word = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 5; i++) {
      Atomics.wait(word, 0, 0, 10); // a futex wait that times out
      await sleep(20); // epoll_wait in libuv
    }
    return (await child).pid;
  };
  const run = async (excludeSelf: boolean): Promise<{ c: Collector; child: number; args: string[] }> => {
    const c = new Collector();
    const p = ProbeProcess.start({ excludeSelf }, c);
    try {
      await p.ready;
      await p.control('ping');
      const child = await work();
      await p.control('flush');
      await p.stop();
      return { c, child, args: p.args };
    } finally {
      p.kill('SIGKILL');
    }
  };

  const ex = await run(true);
  assert.deepEqual(ex.args, ['--exclude-pid', String(process.pid)]);
  // only the names of this process's threads (every task that runs is named once)
  const self = ex.c.records.filter((r) => r.pid === process.pid);
  assert.deepEqual(self.filter((r) => !(r.kind === Kind.TASK && r.event === TaskEvent.NAME)), []);
  // the child, forked by this process, is captured
  assert.equal(ex.c.of(Kind.OFFCPU, ex.child).filter((r) => r.blockedNs! >= 250 * MS).length, 1);
  assert.ok(ex.c.of(Kind.TASK, ex.child).some((r) => r.event === TaskEvent.EXEC && r.comm === 'sleep'), 'exec of the child');

  // the same work with excludeSelf: false does show up: the check above is not vacuous
  const inc = await run(false);
  assert.deepEqual(inc.args, []);
  const selfWaits = inc.c.of(Kind.FUTEX_WAIT, process.pid).filter((r) => r.tid === process.pid && r.ts - r.startNs! >= 5 * MS);
  assert.ok(selfWaits.length >= 5, `futex waits of this process: ${selfWaits.length}`);
  assert.ok(inc.c.of(Kind.OFFCPU, process.pid).length >= 5, `off-CPU records of this process: ${inc.c.of(Kind.OFFCPU, process.pid).length}`);
  assert.equal(inc.c.of(Kind.OFFCPU, inc.child).filter((r) => r.blockedNs! >= 250 * MS).length, 1);
});

test('detach futex stops futex records (sched keeps going); attach futex brings them back', async () => {
  requireLiveProbe();
  const c = new Collector();
  const a = new GatedChild([fixture('mutex_hold'), '30', '2']);
  const b = new GatedChild([fixture('mutex_hold'), '30', '2']);
  const p = ProbeProcess.start({ pids: [a.pid, b.pid] }, c);
  try {
    await p.ready;
    await p.control('ping');
    assert.deepEqual(await p.control('detach futex'), { err: 0, msg: 'detach futex' });
    assert.ok(c.of(Kind.STATUS).some((s) => s.group === Group.FUTEX && s.err === STATUS_DETACHED), 'STATUS: futex detached');
    const ra = JSON.parse((await a.run()).stdout) as { tid_a: number; uaddr_dec: string };
    assert.deepEqual(await p.control('attach futex'), { err: 0, msg: 'attach futex' });
    const st = p.state.statusOf(Group.FUTEX);
    assert.equal(st[st.length - 1].err, 0);
    assert.ok(st[st.length - 1].nAttached > 0, 'futex programs attached again');
    const rb = JSON.parse((await b.run()).stdout) as { tid_a: number; tid_b: number; uaddr_dec: string };
    await p.control('flush');
    await p.stop();

    // detached: no futex records of a, but its waiter's ~30 ms blocks are still off-CPU records
    assert.deepEqual(c.records.filter((r) => r.pid === a.pid && (r.kind === Kind.FUTEX_WAIT || r.kind === Kind.FUTEX_WAKE)), []);
    const aOff = c.of(Kind.OFFCPU, a.pid);
    assert.ok(aOff.filter((r) => r.tid === ra.tid_a && r.blockedNs! >= 20 * MS).length >= 2, JSON.stringify({ ra, aOff }));
    // attached again: b's waiter waits on the mutex word each round, ~30 ms
    const waits = c.of(Kind.FUTEX_WAIT, b.pid).filter((r) => r.uaddr === Number(rb.uaddr_dec));
    assert.equal(waits.length, 2, JSON.stringify(waits));
    for (const w of waits) {
      assert.equal(w.tid, rb.tid_a);
      assert.ok(w.ts - w.startNs! >= 20 * MS && w.ts - w.startNs! < 500 * MS, `wait ${w.ts - w.startNs!}`);
    }
    // (the holder's FUTEX_WAKE records are not checked here: they depend on the
    // per-CPU irq depth, which a probe start sometimes leaves stale)
  } finally {
    a.kill();
    b.kill();
    p.kill('SIGKILL');
  }
});

/** Is the process blocked writing to its stdout (a full pipe)? */
function blockedOnStdout(pid: number): boolean {
  const WRITE_NR: Record<string, number> = { x64: 1, arm64: 64 };
  try {
    const sc = readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ');
    if (Number(sc[0]) === WRITE_NR[process.arch] && sc[1] === '0x1') return true;
  } catch {
    /* not readable here */
  }
  try {
    return /pipe_write/.test(readFileSync(`/proc/${pid}/wchan`, 'utf8'));
  } catch {
    return false;
  }
}

test('backpressure: a stalled async sink blocks the probe on the pipe; batches stay valid; nothing is lost', async () => {
  requireLiveProbe();
  const ITERS = 6000; // ~530 KB of off-CPU records: far more than the pipe and the stream buffer hold
  let inFlight = 0;
  let maxInFlight = 0;
  let records = 0;
  let kernel = 0;
  let stall: Promise<void> | null = null;
  let stalled = false;
  let release = (): void => {};
  const kinds = new Uint32Array(256);
  let worker = -1;
  let workerNaps = 0;
  const v = new RecordView();
  const sink: CaptureSink = {
    async onBatch(b) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const n = b.count;
      const first = b.offsets[0];
      if (stall) {
        stalled = true;
        await stall;
        stall = null;
      } else {
        await sleep(0);
      }
      // batches are reused only after this promise settles
      assert.equal(b.offsets[0], first);
      assert.equal(b.count, n);
      for (let i = 0; i < n; i++) {
        const k = v.set(b, i).kind;
        kinds[k]++;
        if (KERNEL_KINDS.has(k)) kernel++;
        if (k === Kind.OFFCPU && v.pid === worker) workerNaps++;
      }
      records += n;
      inFlight--;
    },
  };
  // the load: ITERS × (20 µs of work, usleep(50)), one off-CPU record each, ~1 s
  const g = new GatedChild([fixture('pinned_worker'), '0', String(ITERS), '20', '50']);
  worker = g.pid;
  const p = ProbeProcess.start({ offcpuMinUs: 0, futexMinUs: 0 }, sink);
  try {
    await p.ready;
    await p.control('ping');
    stall = new Promise((r) => (release = r));
    const done = g.run();
    let blocked = false;
    for (let i = 0; i < 300 && !blocked; i++) {
      await sleep(10);
      blocked = stalled && blockedOnStdout(p.pid!);
    }
    assert.ok(blocked, 'the probe blocked writing to the pipe while the sink stalled');
    release();
    assert.equal((await done).code, 0);
    await p.control('flush');
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  } finally {
    release();
    g.kill();
    p.kill('SIGKILL');
  }
  assert.equal(maxInFlight, 1);
  assert.equal(records, p.decoder.records);
  // the rings (16 MiB) held what the blocked probe could not write: nothing lost anywhere
  assert.equal(p.state.totalLost, 0);
  // (a usleep whose timer fires before the thread got off the CPU is no switch: allow a few)
  assert.ok(workerNaps >= 0.95 * ITERS, `off-CPU records of the worker: ${workerNaps}`);
  assert.equal(kernel, dropsRecords(p));
  assert.equal(kinds[Kind.HELLO], 1);
  assert.ok(kinds[Kind.DROPS] >= 3, `${kinds[Kind.DROPS]} DROPS records`);
  assert.equal(p.decoder.corruptBytes, 0);
});

test('exit 10: the real probe run unprivileged is a not_privileged ProbeError with its stderr line', async () => {
  const lines: string[] = [];
  const p = ProbeProcess.start({ path: unprivilegedProbe(), onStderr: (l) => lines.push(l) });
  await assert.rejects(p.ready, (e: unknown) => {
    assert.ok(e instanceof ProbeError, String(e));
    assert.equal(e.exitCode, 10);
    assert.equal(e.reason, 'not_privileged');
    assert.match(e.message, /needs root, or CAP_BPF \+ CAP_PERFMON/);
    assert.match(e.message, /probe said: kspan-probe: not privileged: run as root/);
    return true;
  });
  await assert.rejects(p.done, ProbeError);
  assert.deepEqual(lines, ['kspan-probe: not privileged: run as root, or grant CAP_BPF and CAP_PERFMON']);
});

test('exit 2: a flag the probe does not know is a bad_command_line ProbeError', async () => {
  requireLiveProbe();
  const p = ProbeProcess.start({ extraArgs: ['--bogus'] });
  await assert.rejects(p.ready, (e: unknown) => {
    assert.ok(e instanceof ProbeError, String(e));
    assert.equal(e.exitCode, 2);
    assert.equal(e.reason, 'bad_command_line');
    assert.match(e.message, /rebuild with `make -s probe`/);
    assert.ok(e.stderrTail.some((l) => /unrecognized option '--bogus'/.test(l)), e.stderrTail.join('\n'));
    return true;
  });
  await assert.rejects(p.done, ProbeError);
});

test('missing binary: a clear not_built error', async () => {
  const p = ProbeProcess.start({ path: '/nonexistent/kspan-probe' });
  await assert.rejects(p.ready, (e: unknown) => e instanceof ProbeError && e.reason === 'not_built' && /make -s probe/.test(e.message));
  await assert.rejects(p.done, ProbeError);
});

test('stop() escalates to SIGKILL when the probe does not exit on EOF (here: it is stopped)', async () => {
  requireLiveProbe();
  const p = ProbeProcess.start({ groups: ['sched'] });
  try {
    await p.ready;
    await p.control('ping');
    process.kill(p.pid!, 'SIGSTOP'); // EOF and SIGTERM stay pending
    const t0 = Date.now();
    const ex = await p.stop(150);
    assert.deepEqual(ex, { code: null, signal: 'SIGKILL' });
    assert.ok(Date.now() - t0 >= 290, `${Date.now() - t0} ms`);
  } finally {
    p.kill('SIGKILL');
  }
});

test('a sink that throws stops the probe and fails done with that error', async () => {
  requireLiveProbe();
  const p = ProbeProcess.start({}, { onBatch() { throw new Error('sink broke'); } });
  await assert.rejects(p.done, /sink broke/);
  assert.equal(p.running, false);
});

test('tee writes exactly the stdout bytes; replaying the file gives the same records', async () => {
  requireLiveProbe();
  const file = join(mkdtempSync(join(tmpdir(), 'kspan-tee-')), 'cap.kspan');
  const live = new Collector();
  const p = ProbeProcess.start({ teePath: file }, live);
  let child: number;
  try {
    await p.ready;
    await p.control('ping');
    child = (await runChild(['sleep', '0.1'])).pid;
    await p.control('flush');
    await p.stop();
  } finally {
    p.kill('SIGKILL');
  }
  assert.equal(statSync(file).size, p.decoder.inputBytes);
  const replayed = new Collector();
  const r = await replayFile(file, replayed, { chunkBytes: 4099 });
  assert.equal(replayed.digest(), live.digest());
  assert.deepEqual(replayed.records, live.records);
  assert.equal(r.counters.records, p.decoder.records);
  assert.equal(r.counters.truncatedBytes, 0);
  assert.equal(r.counters.corruptBytes, 0);
  assert.deepEqual(r.state.hello, p.state.hello);
  assert.deepEqual(r.state.drops, p.state.drops);
  assert.equal(replayed.of(Kind.OFFCPU, child).filter((x) => x.blockedNs! >= 80 * MS).length, 1);
});

test('CudaWatcher finds the CUDA libraries a process mapped after start, asks the probe once each, and its calls are captured', async () => {
  requireLiveProbe();
  const c = new Collector();
  const p = ProbeProcess.start({}, c);
  const app = spawn(fixture('cuda_app'), ['200', '2', '1000'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KSPAN_WAIT_STDIN: '1' } });
  let out = '';
  app.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((res) => app.on('close', (code) => res(code)));
  try {
    await p.ready;
    await p.control('ping'); // the probe's own /proc scan is over: the app is the watcher's to find
    await new Promise<void>((res, rej) => {
      app.stderr.setEncoding('utf8').on('data', (d: string) => /ready \d+/.test(d) && res());
      app.on('error', rej);
    });
    const seen: [string, number][] = [];
    const w = new CudaWatcher(p, { pids: () => [app.pid!], intervalMs: 20, onAttach: (path, err) => seen.push([path, err]) }).start();
    for (let i = 0; i < 300 && seen.length < 2; i++) await sleep(10);
    await sleep(100); // more scans: nothing asked twice
    w.stop();
    const root = `/proc/${app.pid}/root`;
    assert.deepEqual(
      seen.map(([path, err]) => [path.startsWith(root) ? path.slice(root.length) : path, err]).sort(),
      [[realpathSync(fixture('libcuda.so.1')), 0], [realpathSync(fixture('libcudart.so.12')), 0]],
    );
    app.stdin.end('go\n');
    assert.equal(await exited, 0);
    await p.control('flush');
    // detaching uprobes takes the kernel ~2 s per library (measured on 6.18)
    await p.stop(10_000);
  } finally {
    app.kill('SIGKILL');
    p.kill('SIGKILL');
  }
  const res = JSON.parse(out) as { pid: number; expect: { kspan_api: number; count: number }[] };
  const want = new Map<number, number>();
  for (const e of res.expect) want.set(e.kspan_api, (want.get(e.kspan_api) ?? 0) + e.count);
  const got = new Map<number, number>();
  for (const r of c.of(Kind.CUDA_CALL, app.pid)) got.set(r.api!, (got.get(r.api!) ?? 0) + 1);
  assert.deepEqual([...got].sort((x, y) => x[0] - y[0]), [...want].sort((x, y) => x[0] - y[0]));
});

test('blocked group: attached with sched by default, stops and starts with it, refused without it', async () => {
  requireLiveProbe();
  const c = new Collector();
  const p = ProbeProcess.start({ groups: ['task', 'sched', 'blocked'] }, c);
  try {
    await p.ready;
    await p.control('ping');
    const last = () => {
      const st = p.state.statusOf(Group.BLOCKED);
      return st.length ? { err: st[st.length - 1].err, detail: st[st.length - 1].detail } : null;
    };
    assert.deepEqual(last(), { err: 0, detail: 'iter/task walk before each watermark' });
    const walked = () => c.of(Kind.BLOCKED).length;
    await p.control('flush');
    await sleep(300);
    assert.ok(walked() > 0, 'walks report the tasks blocked since before attach');
    assert.deepEqual(await p.control('detach sched'), { err: 0, msg: 'detach sched' });
    assert.deepEqual(last(), { err: STATUS_DETACHED, detail: 'detached with the sched group' });
    assert.deepEqual(await p.control('attach sched'), { err: 0, msg: 'attach sched' });
    assert.deepEqual(last(), { err: 0, detail: 'iter/task walk before each watermark' });
    assert.deepEqual(await p.control('detach blocked'), { err: 0, msg: 'detach blocked' });
    assert.deepEqual(last(), { err: STATUS_DETACHED, detail: 'detached on request' });
    await p.control('flush');
    const n = walked();
    await sleep(300);
    await p.control('flush');
    assert.equal(walked(), n, 'no walks while detached');
  } finally {
    p.kill('SIGKILL');
  }
  const c2 = new Collector();
  const p2 = ProbeProcess.start({ groups: ['task', 'blocked'] }, c2);
  try {
    await p2.ready;
    await p2.control('ping');
    const st = p2.state.statusOf(Group.BLOCKED);
    assert.deepEqual(st.map((s) => [s.err, s.detail]), [[-2, 'needs the sched group']]);
  } finally {
    p2.kill('SIGKILL');
  }
});

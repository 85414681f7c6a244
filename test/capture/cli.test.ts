// The kspan CLI as a subprocess (`node --import tsx src/cli.ts ...`): dump
// with synthetic record files (corrupt and truncated ones included), record
// with the real probe (needs root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/probe.js';
import { main } from '../../src/cli.js';
import { CudaApi, OffcpuFlag, TaskEvent } from '../../src/capture/records.js';
import { FrameWriter } from '../helpers/frames.js';
import { requireLiveProbe, unprivilegedProbe } from '../helpers/live.js';

const dir = mkdtempSync(join(tmpdir(), 'kspan-cli-test-'));

function kspan(args: string[], env: Record<string, string> = {}, input?: string): { code: number | null; out: string; err: string } {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!env.KSPAN_PROBE) delete e.KSPAN_PROBE;
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), ...args], {
    // dump --json of a busy host's half second can pass spawnSync's default 1 MiB (the child is then killed)
    cwd: REPO_ROOT, env: e, encoding: 'utf8', input, timeout: 60000, maxBuffer: 256 << 20,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function dumpJson(file: string): Record<string, any>[] {
  const d = kspan(['dump', file, '--json']);
  assert.equal(d.code, 0, d.err);
  return d.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
}

const E = 1_763_730_000_000_000_000n;

function sampleFile(): string {
  const w = new FrameWriter();
  w.hello({ ts: 1e9, monoNs: 1e9, realtimeNs: E });
  w.task({ ts: 1e9, pid: 10, tid: 11, event: TaskEvent.NAME, comm: 'worker', pcomm: 'app' });
  for (let i = 0; i < 5; i++) w.offcpu({ ts: 2e9 + i, pid: 10, tid: 11, startNs: 1.5e9, runnableNs: 1.9e9, prevState: 1, flags: OffcpuFlag.WOKEN, wakerPid: 10, wakerTid: 11 });
  w.cudaCall({ ts: 3e9, pid: 10, tid: 11, startNs: 2.9e9, api: CudaApi.CUDA_DEVICE_SYNC });
  const p = join(dir, 'sample.kspan');
  writeFileSync(p, w.toBuffer());
  return p;
}

test('main(): unknown command exits 2, --version and help exit 0', async () => {
  assert.equal(await main(['--version']), 0);
  const r = kspan(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown command "frobnicate"/);
  assert.match(kspan(['--version']).out, /^kspan \d+\.\d+\.\d+\n$/);
  const h = kspan(['help']);
  assert.equal(h.code, 0);
  assert.match(h.out, /record \[options\] \[-- CMD ARGS/);
  assert.equal(kspan(['dump']).code, 2);
  assert.equal(kspan(['record', '--bogus-flag']).code, 2);
  // the ring's size is checked before any probe starts, for record and for run
  for (const cmd of ['record', 'run']) {
    const big = kspan([cmd, '--ring-mb', '2000', '--data', join(tmpdir(), 'kspan-never-created')]);
    assert.equal(big.code, 2);
    assert.match(big.err, /--ring-mb wants at most 1024/);
  }
});

test('dump: text and JSON lines, kind filter, counters on stderr', () => {
  const f = sampleFile();
  const t = kspan(['dump', f]);
  assert.equal(t.code, 0);
  const lines = t.out.trim().split('\n');
  assert.equal(lines.length, 8);
  assert.match(lines[2], /^2025-11-21T13:00:01\.000000000Z offcpu +worker\[10\/11\] cpu0 S 500\.0ms/);
  assert.match(t.err, /kspan dump: 8 records, 0 unknown-kind records skipped, 0 corrupt bytes \(0 resyncs\), 0 truncated bytes/);
  const j = kspan(['dump', f, '--json', '--kind', 'cuda_call']);
  const objs = j.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(objs.length, 1);
  assert.equal(objs[0].api, 'cudaDeviceSynchronize');
  assert.equal(objs[0].ts, (E + 2_000_000_000n).toString());
  assert.equal(objs[0].comm, 'worker');
  assert.equal(kspan(['dump', f, '--kind', 'nope']).code, 2);
  assert.equal(kspan(['dump', join(dir, 'missing.kspan')]).code, 1);
});

test('dump: a corrupt, truncated file is reported, not fatal', () => {
  const good = readFileSync(sampleFile());
  const bad = Buffer.from(good);
  bad[72 + 80 + 3] = 0; // magic of the first offcpu
  const p = join(dir, 'bad.kspan');
  writeFileSync(p, bad.subarray(0, bad.length - 5));
  const r = kspan(['dump', p, '--json']);
  assert.equal(r.code, 0);
  assert.equal(r.out.trim().split('\n').length, 6); // hello, task, 4 offcpu; cuda truncated
  assert.match(r.err, /88 corrupt bytes \(1 resyncs\), 43 truncated bytes/);
});

test('dump into a closed pipe stops quietly', () => {
  const w = new FrameWriter();
  w.hello({ ts: 1e9, realtimeNs: E });
  for (let i = 0; i < 200000; i++) w.futexWait({ ts: 2e9 + i, tid: i, startNs: 2e9 });
  const p = join(dir, 'big.kspan');
  writeFileSync(p, w.toBuffer());
  const cli = join(REPO_ROOT, 'src', 'cli.ts');
  const r = spawnSync('bash', ['-c', `set -o pipefail; '${process.execPath}' --import tsx '${cli}' dump '${p}' | head -2`], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 2);
});

test('record --duration --out: the file holds what the probe wrote, dump reads every record back, kspan is not in it', async () => {
  requireLiveProbe();
  const out = join(dir, 'rec.kspan');
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.KSPAN_PROBE;
  // something that certainly blocks and wakes while the 0.5 s capture runs (an idle host may not)
  const sleeper = spawn('sh', ['-c', 'for i in $(seq 200); do sleep 0.02; done'], { stdio: 'ignore' });
  // spawned (not spawnSync) to know kspan's pid
  const cli = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli.ts'), 'record', '--duration', '0.5', '--out', out, '--quiet'], {
    cwd: REPO_ROOT, env, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  cli.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(cli, 'close')) as [number | null];
  sleeper.kill();
  assert.equal(code, 0, err);
  const m = /wrote ([\d,]+) records \(([\d.]+) MB\) to /.exec(err);
  assert.ok(m, err);
  const n = Number(m[1].replace(/,/g, ''));
  const d = kspan(['dump', out, '--json']);
  assert.equal(d.code, 0, d.err);
  const recs = d.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(recs.length, n);
  assert.match(d.err, new RegExp(`kspan dump: ${n.toLocaleString('en-US')} records, 0 unknown-kind records skipped, 0 corrupt bytes \\(0 resyncs\\), 0 truncated bytes`));
  assert.equal(recs[0].kind, 'hello');
  assert.ok(recs.filter((x) => x.kind === 'drops').length >= 3, 'final DROPS');
  assert.ok(recs.some((x) => x.kind === 'offcpu'), 'host-wide: off-CPU records');
  // kspan ran (its threads are named) but is not captured: it excludes itself
  const own = recs.filter((x) => x.pid === cli.pid);
  assert.ok(own.some((x) => x.kind === 'task' && x.event === 'name'), 'kspan\'s threads are named');
  assert.deepEqual(own.filter((x) => !(x.kind === 'task' && x.event === 'name')), []);
});

test('record -- CMD: CMD starts filtered, children followed (--no-follow: not), options reach the probe, CMD\'s exit code is kspan\'s', () => {
  requireLiveProbe();
  const marker = join(dir, 'ran');
  const out = join(dir, 'cmd.kspan');
  const script = `echo hi > '${marker}'; sleep 0.3; exit 3`;
  const r = kspan(['record', '--quiet', '--offcpu-min-us', '200', '--out', out, '--', 'sh', '-c', script]);
  assert.equal(r.code, 3, r.err);
  assert.equal(readFileSync(marker, 'utf8'), 'hi\n');
  const recs = dumpJson(out);
  assert.equal(recs[0].offcpu_min_ns, 200_000);
  const ack = recs.find((x) => x.kind === 'ack' && /^pid add \d+$/.test(x.msg));
  assert.ok(ack, 'pid add acked');
  const sh = Number(ack.msg.split(' ')[2]);
  assert.ok(recs.some((x) => x.kind === 'task' && x.event === 'exec' && x.pid === sh && x.comm === 'sh'), 'exec of sh');
  assert.ok(recs.some((x) => x.kind === 'task' && x.event === 'exit' && x.pid === sh && x.exit_code === 3 << 8), 'exit 3 of sh');
  // sh forks `sleep 0.3`: followed
  const fork = recs.find((x) => x.kind === 'task' && x.event === 'fork' && x.parent?.pid === sh && x.pid !== sh);
  assert.ok(fork, JSON.stringify(recs.filter((x) => x.kind === 'task' && x.pid === sh)));
  const nap = recs.filter((x) => x.kind === 'offcpu' && x.pid === fork.pid && x.blocked_ns >= 250e6);
  assert.equal(nap.length, 1);
  // --offcpu-min-us 200 reached the BPF side
  const offs = recs.filter((x) => x.kind === 'offcpu');
  assert.ok(offs.length > 0 && offs.every((x) => x.duration_ns >= 200_000), JSON.stringify(offs.map((x) => x.duration_ns)));
  // only CMD and what it forked
  assert.deepEqual(recs.filter((x) => ['offcpu', 'futex_wait', 'futex_wake', 'cuda_call'].includes(x.kind) && x.pid !== sh && x.pid !== fork.pid), []);

  const nf = join(dir, 'nofollow.kspan');
  assert.equal(kspan(['record', '--quiet', '--no-follow', '--out', nf, '--', 'sh', '-c', 'sleep 0.2; exit 0']).code, 0);
  const nrecs = dumpJson(nf);
  const nack = nrecs.find((x) => x.kind === 'ack' && /^pid add \d+$/.test(x.msg));
  assert.ok(nack, 'pid add acked');
  const nsh = Number(nack.msg.split(' ')[2]);
  assert.ok(nrecs.some((x) => x.kind === 'offcpu' && x.pid === nsh), 'sh itself (waiting for sleep) is captured');
  assert.deepEqual(nrecs.filter((x) => x.kind === 'offcpu' && x.pid !== nsh), []);

  // killed by a signal: 128 + n
  assert.equal(kspan(['record', '--quiet', '--', 'sh', '-c', 'kill -TERM $$']).code, 128 + 15);
});

test('record: a probe that cannot run (unprivileged) is explained and exits 1', () => {
  const r = kspan(['record', '--duration', '1', '--quiet'], { KSPAN_PROBE: unprivilegedProbe() });
  assert.equal(r.code, 1);
  assert.match(r.err, /not_privileged\): kspan-probe needs root/);
  assert.match(r.err, /probe said: kspan-probe: not privileged: run as root/);
  assert.match(r.err, /kspan doctor/);
});

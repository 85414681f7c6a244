import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, archCheck, effectiveCaps, findCudaLibs, formatDoctor, hasCap, kernelChecks, kernelFloor, kernelVersion, runDoctor,
} from '../../src/capture/doctor.js';
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { REPO_ROOT } from '../../src/capture/probe.js';
import { ABI_VERSION } from '../../src/capture/records.js';
import { fixture, requireLiveProbe, unprivilegedProbe } from '../helpers/live.js';

test('CapEff parsing and capability bits', () => {
  const caps = effectiveCaps('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n');
  assert.equal(caps, 0x1fffeffffffn);
  assert.ok(hasCap(caps, CAP_BPF), 'CAP_BPF');
  assert.ok(hasCap(caps, CAP_PERFMON), 'CAP_PERFMON');
  assert.ok(hasCap(caps, CAP_SYS_ADMIN), 'CAP_SYS_ADMIN');
  assert.ok(!hasCap(caps, 24), 'CAP_SYS_RESOURCE is the cleared bit in 0x1fffeffffff');
  const bpfOnly = effectiveCaps(`CapEff:\t${(1n << 39n).toString(16).padStart(16, '0')}\n`);
  assert.ok(hasCap(bpfOnly, CAP_BPF) && !hasCap(bpfOnly, CAP_PERFMON), 'CAP_BPF only');
  assert.equal(effectiveCaps('nothing here'), 0n);
});

test('kernel version parsing', () => {
  assert.deepEqual(kernelVersion('6.18.44-fc-v669'), [6, 18]);
  assert.deepEqual(kernelVersion('5.4.0-1-generic'), [5, 4]);
  assert.deepEqual(kernelVersion('weird'), [0, 0]);
});

test('kernel floor: what the probe needs (prev_state 5.18, bpf_task_pt_regs 5.15, x86-64 bpf_rdonly_cast 6.2); block_io_start (6.5) decides how block I/O is attributed', () => {
  assert.deepEqual(kernelFloor('x64'), [6, 2]);
  assert.deepEqual(kernelFloor('arm64'), [5, 18]);
  const st = (rel: string, arch = 'x64', seen: boolean | null = null) => kernelChecks(rel, arch, seen).map((c) => `${c.name}:${c.status}`);
  assert.deepEqual(st('5.17.15', 'arm64'), ['kernel:fail', 'block I/O:warn']);
  assert.match(kernelChecks('5.15.0-91-generic', 'arm64', null)[0].detail,
    /needs Linux >= 5\.18 on arm64 \(sched_switch's prev_state argument \(tp_btf\): 5\.18\)$/);
  assert.deepEqual(st('5.18.0', 'arm64'), ['kernel:ok', 'block I/O:warn']);
  assert.deepEqual(st('5.18.0'), ['kernel:fail', 'block I/O:warn']);
  assert.match(kernelChecks('6.1.0', 'x64', null)[0].detail, /needs Linux >= 6\.2 on x64 \(bpf_rdonly_cast .*: 6\.2\)$/);
  assert.match(kernelChecks('6.1.0', 'x64', null)[1].detail, /no block_io_start \(Linux < 6\.5\).*block_rq_issue.*issuer-guessed/);
  assert.deepEqual(st('6.2.0'), ['kernel:ok', 'block I/O:warn']);
  assert.deepEqual(st('6.5.0'), ['kernel:ok', 'block I/O:ok']);
  assert.deepEqual(st('6.18.44-fc'), ['kernel:ok', 'block I/O:ok']);
  // what tracefs shows wins over the version (backports, configs)
  assert.deepEqual(st('6.1.0', 'arm64', true), ['kernel:ok', 'block I/O:ok']);
  assert.deepEqual(st('6.8.0', 'x64', false), ['kernel:ok', 'block I/O:warn']);
});

test('arch: x86-64 and arm64 are build targets; elsewhere doctor says what is not read', () => {
  assert.equal(archCheck('x64').status, 'ok');
  assert.equal(archCheck('arm64').status, 'ok');
  assert.match(archCheck('arm64').detail, /AAPCS64/);
  const other = archCheck('riscv64');
  assert.equal(other.status, 'warn');
  assert.match(other.detail, /riscv64: .*CUDA launch stream argument is not read/);
});

test('bpf/kspan.bpf.c compiles for arm64 (make check-arm64: clang -target bpf -D__TARGET_ARCH_arm64, compile only)', () => {
  // This host's vmlinux.h is x86-64's; the Makefile target supplies arm64's struct user_pt_regs.
  // Loading needs an arm64 kernel: not checked here.
  const r = spawnSync('make', ['-s', 'check-arm64'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'make');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /compiles for arm64/);
});

test('given CUDA library paths are reported, missing ones flagged', () => {
  const libs = findCudaLibs(['/nonexistent/libcudart.so.12']);
  const l = libs.find((x) => x.path === '/nonexistent/libcudart.so.12');
  assert.deepEqual(l, { path: '/nonexistent/libcudart.so.12', source: 'arg', exists: false, pids: [] });
});

test('runDoctor with the real probe: every group attaches, a given CUDA library too', async () => {
  requireLiveProbe();
  const lib = realpathSync(fixture('libcudart.so.12'));
  const r = await runDoctor({ cudaLibs: [lib] });
  assert.equal(r.ready, true, r.reason ?? '');
  assert.equal(r.reason, null);
  assert.equal(r.probe.ran, true);
  assert.equal(r.probe.exitCode, 0);
  assert.equal(r.probe.error, null);
  assert.deepEqual(r.probe.groups.map((g) => g.group).sort(), ['block', 'blocked', 'cuda', 'futex', 'sched', 'task', 'tcp']);
  for (const g of r.probe.groups) {
    assert.equal(g.err, 0, `${g.group}: ${g.error} ${g.detail}`);
    assert.ok(g.n_attached > 0, `${g.group} attached programs`);
  }
  assert.equal(r.probe.groups.find((g) => g.group === 'cuda')?.detail, lib);
  for (const name of ['kernel', 'arch', 'btf', 'privileges', 'probe binary', 'probe check']) {
    assert.equal(r.checks.find((c) => c.name === name)?.status, 'ok', name);
  }
  assert.equal(r.checks.find((c) => c.name === 'probe check')!.detail, `attached: sched task futex block tcp cuda blocked (ABI ${ABI_VERSION})`);
  assert.ok(r.checks.some((c) => c.name === 'cuda lib' && c.status === 'ok' && c.detail === `${lib} (given)`), 'given library listed');
  const text = formatDoctor(r);
  assert.match(text, /\n {4}sched +ok +\d+ +0  interrupt context from the preempt count\n/);
  assert.match(text, /capture: ready$/);
});

test('runDoctor: a CUDA library that does not exist is a warning from the probe and makes capture not ready', async () => {
  requireLiveProbe();
  const r = await runDoctor({ cudaLibs: ['/nonexistent/libcudart.so.12'] });
  assert.equal(r.probe.exitCode, 0);
  const cuda = r.probe.groups.find((g) => g.group === 'cuda');
  assert.deepEqual(cuda && [cuda.err, cuda.error, cuda.n_attached, cuda.detail], [-2, 'ENOENT', 0, '/nonexistent/libcudart.so.12']);
  assert.ok(r.checks.some((c) => c.name.trim() === 'cuda' && c.status === 'warn' && /ENOENT/.test(c.detail)), 'cuda group warning');
  assert.equal(r.ready, false);
  assert.equal(r.reason, 'cuda lib: /nonexistent/libcudart.so.12 not found');
});

test('runDoctor: the probe run unprivileged exits 10, so capture is not ready, with the reason', async () => {
  const r = await runDoctor({ probePath: unprivilegedProbe() });
  assert.equal(r.ready, false);
  assert.equal(r.probe.ran, true);
  assert.equal(r.probe.exitCode, 10);
  assert.match(r.reason ?? '', /probe check: kspan-probe failed \(exit 10, not_privileged\)/);
  assert.match(r.reason ?? '', /probe said: kspan-probe: not privileged/);
  assert.match(formatDoctor(r), /capture: cannot run — probe check/);
});

test('runDoctor: probe not built', async () => {
  const r = await runDoctor({ probePath: '/nonexistent/kspan-probe' });
  assert.equal(r.ready, false);
  assert.match(r.reason ?? '', /probe binary: \/nonexistent\/kspan-probe not built: run `make -s probe`/);
  assert.equal(r.probe.ran, false);
});

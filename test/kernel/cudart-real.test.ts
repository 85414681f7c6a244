// NVIDIA's real CUDA runtime (libcudart.so.12 from the nvidia-cuda-runtime-cu12
// wheel in .venv, requirements.txt): a Python process loads it with ctypes as
// PyTorch does; CudaWatcher finds it in /proc/PID/maps and the probe attaches
// its uprobes to the versioned symbols (cudaStreamSynchronize@@libcudart.so.12,
// the _ptsz variant ...). No GPU here: every call returns
// cudaErrorInsufficientDriver (35) at once, and every call must be captured
// with its API, its argument and that return code.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { CudaWatcher, Group, REPO_ROOT } from '../../src/capture/index.js';
import { cudartFromVenv } from '../helpers/live.js';
import { captureDuring, ms, requireLiveProbe } from './harness.js';

before(requireLiveProbe);

const CUDA_ERROR_INSUFFICIENT_DRIVER = 35;

interface Out {
  pid: number; tid: number; lib: string; rounds: number;
  calls: { api: string; kspan_api: number; count: number; arg: string; rets: Record<string, number> }[];
}

test('real libcudart loaded by Python ctypes: found in /proc/PID/maps, every call captured with API, arg and ret 35', async () => {
  const lib = cudartFromVenv(); // fails with what to install when missing
  const python = join(REPO_ROOT, '.venv', 'bin', 'python');
  const ROUNDS = 300;
  let out!: Out;
  const attached: [string, number][] = [];
  const cap = await captureDuring({}, async (probe) => {
    const app = spawn(python, [join(REPO_ROOT, 'test', 'fixtures', 'cudart_ctypes.py'), String(ROUNDS)],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KSPAN_WAIT_STDIN: '1' } });
    let stdout = '', stderr = '';
    app.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exited = new Promise<number | null>((res) => app.on('close', (code) => res(code)));
    try {
      await new Promise<void>((res, rej) => {
        app.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; if (/ready \d+/.test(stderr)) res(); });
        app.on('error', rej);
        app.on('close', (code) => rej(new Error(`cudart_ctypes exited ${code} before it was ready: ${stderr}`)));
      });
      const w = new CudaWatcher(probe, { pids: () => [app.pid!], intervalMs: 20, onAttach: (p, err) => attached.push([p, err]) }).start();
      for (let i = 0; i < 500 && attached.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      w.stop();
      app.stdin.end('go\n');
      assert.equal(await exited, 0, stderr);
    } finally {
      app.kill('SIGKILL');
    }
    out = JSON.parse(stdout.trim().split('\n').pop()!) as Out;
  }, (pid) => pid !== process.pid);

  // the watcher found the wheel's library through the process's maps, and the probe attached to it
  assert.equal(attached.length, 1, JSON.stringify(attached));
  assert.ok(attached[0][0].endsWith('/nvidia/cuda_runtime/lib/libcudart.so.12'), attached[0][0]);
  assert.equal(attached[0][1], 0, 'attached without error');
  assert.equal(out.lib, lib);
  // (the STATUS detail holds the first 95 bytes of the path)
  const st = cap.probe.state.status.filter((s) => s.group === Group.CUDA && s.detail.includes('/nvidia/cuda_runtime/'));
  assert.ok(st.length === 1 && st[0].err === 0 && st[0].nAttached >= 10,
    `uprobe pairs on the real symbols and their variants: ${JSON.stringify(st)}`);

  // every call, counted per API (the _ptsz variant folds into cudaStreamSynchronize), with its arg and ret
  const calls = cap.cuda.filter((c) => c.pid === out.pid);
  const got = new Map<string, number>();
  for (const c of calls) {
    const k = `${c.apiName} arg=0x${c.arg.toString(16)} ret=${c.ret}`;
    got.set(k, (got.get(k) ?? 0) + 1);
  }
  const want = new Map<string, number>();
  for (const c of out.calls) {
    assert.deepEqual(c.rets, { [CUDA_ERROR_INSUFFICIENT_DRIVER]: ROUNDS }, `${c.api}: every call returned 35 in the app`);
    const name = c.api.replace(/_ptsz$/, '');
    const k = `${name} arg=0x${Number(c.arg).toString(16)} ret=${CUDA_ERROR_INSUFFICIENT_DRIVER}`;
    want.set(k, (want.get(k) ?? 0) + c.count);
  }
  assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()));
  assert.equal(calls.length, 7 * ROUNDS);
  for (const c of calls) {
    assert.equal(c.tid, out.tid, 'on the main thread');
    assert.ok(c.end > c.start && ms(c.end - c.start) < 50, `${c.apiName} took ${c.end - c.start} ns`);
  }
  assert.equal(cap.probe.state.drops[2]?.lost, 0, 'no CUDA records lost');
});

// A stand-in for build/kspan-probe that speaks its protocol (docs/probe.md)
// without BPF: HELLO, a STATUS for the sched group, then synthetic off-CPU
// records at a steady rate with real CLOCK_MONOTONIC times, a DRAINED marker
// per tick, a CLOCK sample per second; control commands on stdin get their
// ACK after everything written before; stdin EOF ends the stream (final
// DROPS, exit 0). For tests that need a fast, deterministic capture stream
// through the real `kspan record` / `kspan run` (disk full, kill -9):
//
//   KSPAN_PROBE=$(fakeProbePath()) node bin/kspan.js record --data DIR
//
// Environment: FAKE_PROBE_RATE events/s (default 200000), FAKE_PROBE_THREADS
// (default 200), FAKE_PROBE_TICK_MS (default 10), FAKE_PROBE_PID_BASE (default 700000).

import { fileURLToPath } from 'node:url';
import { FrameWriter } from './frames.js';
import { scriptExecutable } from './script-exe.js';

/** An executable that runs this script (KSPAN_PROBE wants a path); one per process, removed when it exits. */
export function fakeProbePath(): string {
  return scriptExecutable(fileURLToPath(import.meta.url));
}

function main(): void {
  const rate = Number(process.env.FAKE_PROBE_RATE ?? 200_000);
  const threads = Number(process.env.FAKE_PROBE_THREADS ?? 200);
  const tickMs = Number(process.env.FAKE_PROBE_TICK_MS ?? 10);
  const pidBase = Number(process.env.FAKE_PROBE_PID_BASE ?? 700_000);
  const out = process.stdout;
  const fw = new FrameWriter(1 << 20);
  const mono = (): bigint => process.hrtime.bigint();
  const rtOffset = BigInt(Date.now()) * 1_000_000n - mono();
  let records = 0;
  let stopped = false;

  const write = (): boolean => {
    if (!fw.len) return true;
    const b = Buffer.from(fw.take());
    return out.write(b);
  };
  const m0 = mono();
  fw.hello({ ts: m0, monoNs: m0, realtimeNs: m0 + rtOffset, offcpuMinNs: 50_000, probePid: process.pid, ncpu: 2, bootIdHi: 1n, bootIdLo: 2n });
  fw.status({ ts: m0, group: 0, err: 0, nAttached: 3, nFailed: 0, detail: 'fake' });
  write();

  let next = 0;
  let lastClock = Number(m0);
  let due = 0;
  let paused = false;
  const tick = (): void => {
    if (stopped || paused) return;
    const now = Number(mono());
    due += (rate * tickMs) / 1000;
    const n = Math.floor(due);
    due -= n;
    for (let i = 0; i < n; i++) {
      const t = next++ % threads;
      const end = now - (n - i) * 10;
      fw.offcpu({ ts: end, pid: pidBase + Math.floor(t / 10), tid: pidBase + t, startNs: end - 60_000 - (t % 7) * 1000, flags: 1, prevState: 1 });
    }
    records += n;
    if (now - lastClock >= 1e9) {
      lastClock = now;
      fw.clock({ ts: now, realtimeNs: BigInt(now) + rtOffset });
    }
    fw.drained({ ts: now, lostTs: now, lost: [0, 0, 0] });
    if (!write()) {
      // the consumer is behind (backpressure): wait for it, as the real probe does (its ring fills)
      paused = true;
      out.once('drain', () => {
        paused = false;
      });
    }
  };
  const timer = setInterval(tick, tickMs);

  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      const [seq, cmd] = [Number(line.split(' ')[0]), line.split(' ').slice(1).join(' ')];
      const now = mono();
      if (cmd === 'flush') fw.drained({ ts: now, lostTs: now, lost: [0, 0, 0] });
      fw.ack({ ts: now, seq, err: ['ping', 'flush'].includes(cmd) || cmd.startsWith('pid ') ? 0 : -22, msg: '' });
      write();
    }
  });
  process.stdin.on('end', () => {
    stopped = true;
    clearInterval(timer);
    const now = mono();
    fw.drops({ ts: now, ring: 0, lost: 0, records, bytes: records * 80 });
    fw.drained({ ts: now, lostTs: now, lost: [0, 0, 0] });
    write();
    out.end(() => process.exit(0));
  });
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();

// cuda_sync: time inside blocking CUDA calls (off CPU, or spinning on CPU),
// and the kernel launch latency tail.

import { cudaApiName, fmtDur } from '../../capture/index.js';
import { F } from '../../store/index.js';
import type { SpanCtx } from '../session.js';
import type { Piece, Timeline } from '../timeline.js';
import type { Evidence } from '../types.js';
import { type CauseFinder, type Draft } from './cause.js';
import { hex, pct, percentile } from '../util.js';

function cudaCause(ctx: SpanCtx, pieces: Piece[], tls: Timeline[]): Draft | null {
  const off = pieces.filter((p) => p.label === 'cuda_sync' && p.eff > 0).reduce((x, p) => x + p.eff, 0);
  const spin = tls.reduce((x, tl) => x + tl.cudaOnCpu, 0);
  const total = off + spin;
  if (total <= 0) return null;
  const byApi = new Map<string, { calls: number; total_ns: number }>();
  const calls: { tl: Timeline; i: number; d: number }[] = [];
  const launch: number[] = [];
  for (const tl of tls) {
    const l = tl.list;
    for (const i of tl.cudaSync) {
      const name = cudaApiName(l.f[F.cudaCall.api][i]);
      const d = Math.min(l.end[i], tl.b) - Math.max(l.start[i], tl.a);
      const e = byApi.get(name) ?? byApi.set(name, { calls: 0, total_ns: 0 }).get(name)!;
      e.calls++;
      e.total_ns += d;
      calls.push({ tl, i, d });
    }
    for (const i of tl.cudaLaunch) launch.push(l.end[i] - l.start[i]);
  }
  launch.sort((x, y) => x - y);
  const p50 = percentile(launch, 0.5);
  const p99 = percentile(launch, 0.99);
  const apis = [...byApi.entries()].sort((x, y) => y[1].total_ns - x[1].total_ns);
  const evidence: Evidence[] = calls.sort((x, y) => y.d - x.d).slice(0, ctx.t.maxEvidence).map(({ tl, i }) => ({
    kind: 'cuda_call', tid: tl.tid, pid: tl.pid, start_unix_nano: ctx.t.epoch(tl.list.start[i]), end_unix_nano: ctx.t.epoch(tl.list.end[i]),
    api: cudaApiName(tl.list.f[F.cudaCall.api][i]), duration_ns: tl.list.end[i] - tl.list.start[i], ret: tl.list.f[F.cudaCall.ret][i],
    arg: hex(tl.list.f[F.cudaCall.arg][i]),
  }));
  // a tail worth acting on: 5x the median and long in absolute terms (launches are µs; 8 µs vs 1 µs is noise)
  const tail = launch.length >= 10 && p99 > 5 * p50 && p99 >= 100_000;
  return {
    kind: 'cuda_sync', t: total, culprit: null, chain: [], evidence,
    summary: (d, share) => {
      let s = `Inside CUDA synchronizing calls for ${fmtDur(d)} (${pct(share)} of the span): ${apis.map(([n, e]) => `${e.calls}× ${n} ${fmtDur(e.total_ns)}`).join(', ')}; ${fmtDur(off)} blocked off CPU, ${fmtDur(spin)} spinning on CPU`;
      if (launch.length) s += `; kernel launch latency p50 ${fmtDur(p50)}, p99 ${fmtDur(p99)} over ${launch.length} launch(es)`;
      return s + '.';
    },
    remediation: tail
      ? `The thread waited on the GPU, and its kernel launches have a long tail (p99 ${fmtDur(p99)} vs p50 ${fmtDur(p50)}): the launching thread is starved (check its CPU preemption) — pin it, and batch launches (CUDA graphs).`
      : 'The request waited for GPU work: overlap host work with the GPU (async copies, streams, CUDA graphs), avoid synchronizing in the request path, or the GPU itself is the bottleneck (check its utilization).',
    details: {
      off_cpu_ns: off, on_cpu_spin_ns: spin, calls: Object.fromEntries(apis), launches: launch.length,
      launch_p50_ns: p50, launch_p99_ns: p99, launch_max_ns: launch.length ? launch[launch.length - 1] : 0,
    },
  };
}

export const cudaCauses: CauseFinder = (x) => {
  const d = cudaCause(x.ctx, x.pieces, x.timelines as Timeline[]);
  return d ? [d] : [];
};

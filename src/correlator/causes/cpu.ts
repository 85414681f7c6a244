// cpu_preemption: runnable but waiting for a CPU; who held it.

import { OffcpuFlag, fmtDur } from '../../capture/index.js';
import { F } from '../../store/index.js';
import type { SpanCtx } from '../session.js';
import { runqueueCulprit, type Piece } from '../timeline.js';
import type { Culprit } from '../types.js';
import { offcpuEvidence, type CauseFinder, type Draft } from './cause.js';
import { pct } from '../util.js';

/**
 * Runqueue pieces grouped by who held the CPU. A culprit is named as it was
 * during its longest piece: a process that execs (a shell or a container
 * entrypoint starting the workload) takes the CPU under its workload's name.
 */
export function preemptors(ctx: SpanCtx, pieces: Piece[]): { c: Culprit; t: number; cpus: Set<number>; pieces: Piece[] }[] {
  type Group = { c: Culprit; t: number; cpus: Set<number>; pieces: Piece[]; pid: number; tid: number; longest: Piece };
  const m = new Map<number, Group>();
  for (const p of pieces) {
    if (p.label !== 'runqueue' || p.eff <= 0) continue;
    const w = runqueueCulprit(p.tl.list, p.i);
    const k = w.pid * 0x400000 + w.tid; // Linux pids and tids are below 2^22 (PID_MAX_LIMIT)
    let g = m.get(k);
    if (!g) {
      g = { c: { pid: w.pid, tid: w.tid, comm: '' }, t: 0, cpus: new Set(), pieces: [], pid: w.pid, tid: w.tid, longest: p };
      m.set(k, g);
    }
    g.t += p.eff;
    g.cpus.add(w.cpu);
    g.pieces.push(p);
    if (p.eff > g.longest.eff) g.longest = p;
  }
  const out = [...m.values()].sort((x, y) => y.t - x.t);
  for (const g of out) g.c = ctx.t.culprit(g.pid, g.tid, g.longest.a + (g.longest.b - g.longest.a) / 2);
  return out;
}

function cpuCause(ctx: SpanCtx, pieces: Piece[]): Draft | null {
  const groups = preemptors(ctx, pieces);
  if (!groups.length) return null;
  const total = groups.reduce((a, g) => a + g.t, 0);
  const named = groups.filter((g) => g.c.tid !== 0);
  const top = named[0] ?? null;
  const idle = groups.find((g) => g.c.tid === 0);
  const rq = pieces.filter((p) => p.label === 'runqueue' && p.eff > 0).sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence);
  const evidence = rq.map((p) => {
    const w = runqueueCulprit(p.tl.list, p.i);
    return offcpuEvidence(ctx, p, {
      preempted: (p.tl.list.f[F.offcpu.flags][p.i] & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0,
      cpu_holder_pid: w.pid, cpu_holder_tid: w.tid, held_cpu: w.cpu,
    });
  });
  const who = (g: { c: Culprit }): string => `${g.c.observer ? 'kspan itself, ' : ''}pid ${g.c.pid} (${g.c.comm || '?'}, tid ${g.c.tid})`;
  const cpuList = (g: { cpus: Set<number> }): string => [...g.cpus].sort((a, b) => a - b).join(',');
  let remediation: string;
  if (top?.c.observer) {
    // the observer, not a neighbour: on a small host the capture's own consumer can take the app's CPU
    remediation = `kspan's own capture (${who(top)}) took the CPU for ${fmtDur(top.t)} of this request on CPU ${cpuList(top)}: give kspan a CPU of its own (systemd CPUAffinity, a cpuset) or a lower priority (Nice=, CPUWeight=), or capture less (--groups, --pid).`;
  } else if (top) {
    remediation = `${who(top)} took the CPU for ${fmtDur(top.t)} of this request on CPU ${cpuList(top)}: isolate it with cpusets/taskset (or move this thread to other CPUs), or lower its priority (nice, SCHED_IDLE/SCHED_BATCH).`;
  } else {
    remediation = 'The CPU was idle when this thread was picked to run: wakeup/migration latency. Check CPU idle states (C-states), frequency scaling and cross-CPU wakeups; pinning the thread near its wakers helps.';
  }
  return {
    kind: 'cpu_preemption', t: total, culprit: top?.c ?? null,
    culprits: groups.slice(0, 10).map((g) => ({ ...g.c, duration_ns: g.t, cpus: [...g.cpus].sort((a, b) => a - b) })),
    chain: groups.slice(0, 5).map((g) => ({ step: 'preempted_by', depth: 0, pid: g.c.pid, tid: g.c.tid, comm: g.c.comm, duration_ns: g.t, cpu: cpuList(g), ...(g.c.observer ? { observer: true } : {}) })),
    evidence,
    summary: (d, share) => {
      let s = `Runnable but waiting for a CPU for ${fmtDur(d)} (${pct(share)} of the span) in ${groups.reduce((a, g) => a + g.pieces.length, 0)} interval(s)`;
      if (top) s += `; ${who(top)} held the CPU for ${fmtDur(top.t)} on CPU ${cpuList(top)}`;
      if (named.length > 1) s += `, ${named.length - 1} other task(s) ${fmtDur(named.slice(1).reduce((a, g) => a + g.t, 0))}`;
      if (idle) s += `; ${fmtDur(idle.t)} with the CPU idle before switch-in (wakeup latency)`;
      return s + '.';
    },
    remediation,
    details: { intervals: groups.reduce((a, g) => a + g.pieces.length, 0) },
  };
}

export const cpuCauses: CauseFinder = (x) => {
  const d = cpuCause(x.ctx, x.pieces);
  return d ? [d] : [];
};

// sleep (timed or interrupt-ended waits) and other_block (woken by another
// task, not through a futex).

import { fmtDur } from '../../capture/index.js';
import { F } from '../../store/index.js';
import type { SpanCtx } from '../session.js';
import type { Piece } from '../timeline.js';
import type { Culprit } from '../types.js';
import { offcpuEvidence, type CauseFinder, type Draft } from './cause.js';
import { IRQ_FLAGS, pct } from '../util.js';

function sleepCauses(ctx: SpanCtx, pieces: Piece[]): Draft[] {
  const out: Draft[] = [];
  const timer = pieces.filter((p) => p.label === 'sleep' && p.sub === 'timer' && p.eff > 0);
  if (timer.length) {
    const t = timer.reduce((x, p) => x + p.eff, 0);
    const irq = timer.filter((p) => p.tl.list.f[F.offcpu.flags][p.i] & IRQ_FLAGS).length;
    out.push({
      kind: 'sleep', t, culprit: null, chain: [],
      evidence: timer.sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence).map((p) => offcpuEvidence(ctx, p)),
      summary: (d, share) => `Voluntarily sleeping for ${fmtDur(d)} (${pct(share)} of the span) in ${timer.length} interval(s), ${irq} ended by a timer or interrupt (sleep, poll/epoll timeouts, socket reads completed by the network).`,
      remediation: 'Timed or interrupt-ended waits in the request path: look for sleeps, polling loops and timeouts; if the thread waited for network data, the peer was slow (check the downstream span).',
      details: { intervals: timer.length, irq_woken: irq },
    });
  }
  const other = pieces.filter((p) => p.label === 'sleep' && p.sub !== 'timer' && p.eff > 0);
  if (other.length) {
    const t = other.reduce((x, p) => x + p.eff, 0);
    const byW = new Map<string, { c: Culprit; t: number }>();
    for (const p of other) {
      const l = p.tl.list;
      const wt = l.f[F.offcpu.wakerTid][p.i];
      if (p.sub !== 'woken' || !wt) continue;
      const wp = l.f[F.offcpu.wakerPid][p.i];
      const k = `${wp}/${wt}`;
      const e = byW.get(k) ?? byW.set(k, { c: ctx.t.culprit(wp, wt, p.b), t: 0 }).get(k)!;
      e.t += p.eff;
    }
    const ws = [...byW.values()].sort((x, y) => y.t - x.t);
    const top = ws[0]?.c ?? null;
    out.push({
      kind: 'other_block', t, culprit: top,
      culprits: ws.slice(0, 10).map((w) => ({ ...w.c, duration_ns: w.t })),
      chain: ws.slice(0, 5).map((w) => ({ step: 'woken_by', depth: 0, pid: w.c.pid, tid: w.c.tid, comm: w.c.comm, duration_ns: w.t })),
      evidence: other.sort((x, y) => y.eff - x.eff).slice(0, ctx.t.maxEvidence).map((p) => offcpuEvidence(ctx, p, { waker_tid: p.tl.list.f[F.offcpu.wakerTid][p.i] })),
      summary: (d, share) => `Blocked ${fmtDur(d)} (${pct(share)} of the span) waiting for another task (not a futex: pipe, socket, epoll, signal, or an untraced wait)${top ? `; woken mostly by tid ${top.tid} (${top.comm || '?'}, pid ${top.pid})` : ''}.`,
      remediation: top
        ? `This request waited for work done by tid ${top.tid} (${top.comm || '?'}): explain that thread's window too (kspan explain --tid ${top.tid}), or decouple the hand-off.`
        : 'Blocked in a non-futex wait with no recorded waker: check pipes/sockets/epoll on this path.',
    });
  }
  return out;
}

export const sleepFinder: CauseFinder = (x) => sleepCauses(x.ctx, x.pieces);

// The one interface behind every cause finder: given one span's window and
// its threads' timelines, return draft causes (thread-time; explain.ts scales
// them to the span and ranks them). A finder that explains pieces another
// would also claim removes them from `pieces` (network retransmits claim the
// sleeps they contain).

import { OffcpuFlag } from '../../capture/index.js';
import { F } from '../../store/index.js';
import type { SpanCtx, SpanLike } from '../session.js';
import type { Piece, Timeline } from '../timeline.js';
import type { CauseKind, ChainStep, Culprit, Evidence } from '../types.js';

export interface CauseInput {
  ctx: SpanCtx;
  span: SpanLike;
  /** labelled off-CPU pieces of the joined threads not claimed by an earlier finder */
  pieces: Piece[];
  timelines: readonly Timeline[];
  /** the span's window, monotonic ns */
  S: number;
  E: number;
}

export type CauseFinder = (x: CauseInput) => Draft[];

export interface Draft {
  kind: CauseKind;
  /** thread-time (process join: summed over threads) */
  t: number;
  culprit: Culprit | null;
  culprits?: (Culprit & { duration_ns: number; cpus?: number[]; requests?: number; bytes?: number })[];
  chain: ChainStep[];
  evidence: Evidence[];
  /** summary, given the span-scaled duration and share */
  summary: (d: number, share: number) => string;
  remediation: string;
  details?: Record<string, unknown>;
}

export function offcpuEvidence(ctx: SpanCtx, p: Piece, extra?: Record<string, string | number | boolean | null>): Evidence {
  const l = p.tl.list;
  const i = p.i;
  const ev: Evidence = {
    kind: 'offcpu', tid: p.tl.tid, pid: p.tl.pid, start_unix_nano: ctx.t.epoch(l.start[i]), end_unix_nano: ctx.t.epoch(l.end[i]),
    part: p.label, part_start_unix_nano: ctx.t.epoch(p.a), part_end_unix_nano: ctx.t.epoch(p.b), duration_ns: p.eff,
    cpu: l.cpu[i], flags: l.f[F.offcpu.flags][i], prev_state: l.f[F.offcpu.prevState][i],
  };
  // no switch-in yet: the end is where the window (or the capture) ends
  if (l.f[F.offcpu.flags][i] & OffcpuFlag.OPEN) ev.open = true;
  if (extra) for (const k in extra) ev[k] = extra[k];
  return ev;
}


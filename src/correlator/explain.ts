// explainTrace / explainWindow: join spans to kernel events, break their wall
// time down, and rank the causes with culprits, chains and evidence.
// Rules: see README.md in this directory (they are the documentation of
// record; keep both in sync).
//
//   session.ts  one snapshot's shared state; a span's window and events
//   join.ts     which threads a span is read from
//   causes/     one file per cause kind behind CauseFinder (causes/cause.ts)
//   here        the breakdown, scaling, ranking, data quality, entry points

import { fmtDur } from '../capture/index.js';
import { PROCESS_ID_ATTRIBUTES, type StoreReader } from '../store/index.js';
import { cpuCauses } from './causes/cpu.js';
import { cudaCauses } from './causes/cuda.js';
import { ioCauses } from './causes/io.js';
import { lockFinder } from './causes/lock.js';
import { netCauses, peerOf } from './causes/net.js';
import { sleepFinder } from './causes/sleep.js';
import type { CauseFinder, CauseInput, Draft } from './causes/cause.js';
import { numAttr, resolveJoin } from './join.js';
import { ExplainSession, SpanCtx, capturedThrough, type SpanLike } from './session.js';
import { SEV_RANK, severityOf } from './severity.js';
import { emptyBreakdown, type Timeline } from './timeline.js';
import type { Breakdown, Cause, Correlation, DataQuality, ExplainOptions, Explanation, SpanDataQuality, SpanExplanation } from './types.js';
import { pct } from './util.js';

export { severityOf } from './severity.js';
export { parseServiceProcess } from './join.js';

/** Cause finders, in the order they claim pieces (retransmits first: they claim the sleeps they explain). */
const FINDERS: readonly CauseFinder[] = [netCauses, cpuCauses, lockFinder, ioCauses, cudaCauses, sleepFinder];

/** A span as the store keeps it (SpanInput or StoredSpan). */
export interface ExplainableSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string | null;
  name: string;
  service: string;
  /** epoch ns (bigint, or a decimal string as StoredSpan has it) */
  startUnixNano: bigint | string;
  endUnixNano: bigint | string;
  pid?: number | null;
  tid?: number | null;
  /** a server's process-id attribute value (vllm.process_id, ...) */
  processId?: string | null;
  attributes?: Record<string, string | number | boolean>;
}

/** Spans of the same service (and process) overlapping [from, to] (epoch), this one included. */
function concurrentSpans(t: ExplainSession, s: SpanLike, pid: number, from: bigint, to: bigint): number {
  // mapped services: every span of the service runs in the mapped process
  const mapped = !!t.o.serviceProcess?.[s.service];
  const n = t.reader.spans.countOverlapping(s.service, from, to, (sp) => {
    if (mapped || sp.spanId === s.spanId) return true;
    const spid = sp.pid ?? numAttr(sp.attributes ?? {}, 'process.pid') ?? (sp.processId && /^\d+$/.test(sp.processId) ? Number(sp.processId) : null);
    return spid === null || spid === pid;
  });
  return Math.max(1, n);
}

function scaleBreakdown(sum: Breakdown, D: number): Breakdown {
  const keys = Object.keys(sum) as (keyof Breakdown)[];
  const tot = keys.reduce((a, k) => a + sum[k], 0);
  const out = emptyBreakdown();
  if (tot <= 0) {
    out.unknown = D;
    return out;
  }
  // largest remainder: integers adding up to D exactly
  const raw = keys.map((k) => (sum[k] * D) / tot);
  let used = 0;
  keys.forEach((k, i) => {
    out[k] = Math.floor(raw[i]);
    used += out[k];
  });
  const order = keys.map((_k, i) => [i, raw[i] - Math.floor(raw[i])] as [number, number]).sort((x, y) => y[1] - x[1]);
  for (let r = 0; used < D; r = (r + 1) % keys.length, used++) out[keys[order[r][0]]]++;
  return out;
}

function explainOne(t: ExplainSession, s: SpanLike): { e: SpanExplanation; dq: SpanDataQuality; S: number; E: number } {
  const D = s.durationNs;
  const S = t.clock.toMonoNs(s.startEpoch);
  const E = S + D;
  const join = resolveJoin(t, s, S, E);
  const cov = t.coverage(S, E);
  const drops = t.drops.dropsIn(S, capturedThrough(cov.ranges, S, E));
  const sessions = t.sessions.filter((x) => x.startNs <= E && x.endNs >= S);
  const thr = sessions.map((x) => x.offcpuMinNs).filter((x): x is number => typeof x === 'number');
  const notes: string[] = [];
  const dq: SpanDataQuality = {
    lost_events: drops.total, covered: cov.covered, coverage: cov.fraction, lost_known: drops.known,
    offcpu_threshold_ns: thr.length ? Math.max(...thr) : null, threads_joined: 0, notes,
  };
  if (t.knownThrough !== null && E > t.knownThrough) {
    // past the running capture's watermark nothing is seen yet: coverage stops there, so it is unknown
    const missing = Math.min(D, E - Math.max(S, t.knownThrough));
    dq.settling = true;
    dq.not_ingested_ns = missing;
    notes.push(`the last ${fmtDur(missing)} of the window were not yet ${t.reader.hasHead ? 'ingested' : 'committed to the store'} when explained: counted as unknown (kernel data for them may still arrive)`);
  }
  if (drops.total > 0) notes.push(`${drops.total} kernel record(s) were lost during the window: intervals may be missing`);
  if (!cov.covered) notes.push(`capture covered ${pct(cov.fraction)} of the window; the rest is "unknown"`);
  notes.push(t.thresholdNote(dq.offcpu_threshold_ns ?? 50_000));
  const base: SpanExplanation = {
    span_id: s.spanId, name: s.name, service: s.service, start_unix_nano: s.startEpoch.toString(), duration_ns: D,
    correlation: join.c, breakdown_ns: emptyBreakdown(), causes: [], parent_span_id: s.parentSpanId, data_quality: dq,
    host: t.hostAt(s.startEpoch),
  };
  if (join.c.method === 'none' || D <= 0) {
    base.breakdown_ns.unknown = D;
    return { e: base, dq, S, E };
  }
  const blind = t.blindOpenNote(S, E);
  if (blind) notes.push(blind);
  const ctx = new SpanCtx(t, S, E, cov.ranges);
  try {
    let tls: Timeline[];
    let scale = 1;
    if (join.c.method === 'thread') {
      tls = [ctx.timeline(join.c.tid!, join.c.pid ?? 0, S, E)];
      dq.threads_joined = 1;
      base.breakdown_ns = { ...tls[0].bd };
      if (tls[0].unseen) notes.push(`tid ${join.c.tid} had no events in the window and capture never saw it: its time is unknown (not traced, or a wrong linux.tid)`);
      else if (tls[0].events === 0 && cov.fraction > 0) notes.push(`no events of tid ${join.c.tid} in the window: on CPU throughout, or not traced (pid filter?)`);
    } else {
      const pid = join.c.pid!;
      const all = t.reader.threadsOfProcess(pid, S, E, t.parts).map((tid) => ctx.timeline(tid, pid, S, E));
      const covLen = cov.ranges.reduce((a, [x, y]) => a + (y - x), 0);
      // active: events in the window, and running (on CPU, runqueue or CUDA) >= 5% of the covered window
      tls = all.filter((tl) => tl.events > 0 && tl.bd.on_cpu + tl.bd.runqueue + tl.bd.cuda_sync >= 0.05 * covLen);
      dq.threads_joined = all.length;
      dq.threads_active = tls.length;
      const sum = emptyBreakdown();
      for (const tl of tls) for (const k of Object.keys(sum) as (keyof Breakdown)[]) sum[k] += tl.bd[k];
      base.breakdown_thread_ns = sum;
      if (tls.length) {
        scale = 1 / tls.length;
        base.breakdown_ns = scaleBreakdown(sum, D);
      } else {
        base.breakdown_ns = { ...emptyBreakdown(), unknown: D };
      }
      notes.push(`process join: ${tls.length} of ${all.length} thread(s) of pid ${pid} were active in the window (events, and running >= 5% of it); breakdown_ns is their per-thread time summed and scaled to the span (÷ ${tls.length}; breakdown_thread_ns has the sums), causes are shared by the process's concurrent requests`);
    }
    let lost = 0;
    for (const tl of tls) lost += tl.lostNs;
    if (lost > 0) {
      dq.lost_unknown_ns = Math.round(lost * scale);
      notes.push(`${fmtDur(dq.lost_unknown_ns)} with no off-CPU record counted as unknown, not on CPU: the kernel ring ${drops.total > 0 ? `lost ${drops.total} record(s)` : 'had not reported its losses'} around then`);
    }
    const input: CauseInput = { ctx, span: s, pieces: tls.flatMap((tl) => tl.pieces), timelines: tls, S, E };
    const drafts: Draft[] = [];
    for (const find of FINDERS) drafts.push(...find(input));
    const concurrent = join.c.method === 'process' && !s.forced ? concurrentSpans(t, s, join.c.pid!, s.startEpoch, s.startEpoch + BigInt(D)) : undefined;
    const causes: Cause[] = [];
    for (const d of drafts) {
      if (d.t <= 0 && d.kind !== 'network_retransmit') continue;
      const dur = Math.min(D, Math.round(d.t * scale));
      const share = D > 0 ? dur / D : 0;
      const c: Cause = {
        kind: d.kind, severity: severityOf(dur, share), duration_ns: dur, share: Math.round(share * 1e4) / 1e4,
        culprit: d.culprit, chain: d.chain, evidence: d.evidence, summary: d.summary(dur, share), remediation: d.remediation,
      };
      if (join.c.method === 'process') {
        c.shared = true;
        if (concurrent !== undefined) c.concurrent_spans = concurrent;
        c.thread_time_ns = d.t;
        c.summary += ` Shared: process-level, ${concurrent !== undefined ? `${concurrent} concurrent span(s) of this process` : 'across the process\'s threads'}.`;
      }
      if (d.culprits) c.culprits = d.culprits;
      if (d.details) c.details = d.details;
      causes.push(c);
    }
    causes.sort((x, y) => y.duration_ns - x.duration_ns || SEV_RANK[y.severity] - SEV_RANK[x.severity]);
    base.causes = causes;
  } finally {
    ctx.release();
  }
  return { e: base, dq, S, E };
}


/**
 * The trace summary: the top cause over all spans (severity first, then
 * time), or why there is none. Also used to re-rank a trace merged from
 * several hosts (src/mcp/fanout.ts).
 */
export function summarizeSpans(
  spans: readonly SpanExplanation[], dq: { covered: boolean; coverage: number },
  o: { childWaits?: boolean; withHost?: boolean } = {},
): string {
  // childWaits: a span's sleep / other-block time while its child spans ran
  // (a caller waiting on a downstream service, on another host) is explained
  // by the children's causes: it ranks by what is left.
  const waitLeft = (e: SpanExplanation, c: Cause): number => {
    if (!o.childWaits || (c.kind !== 'sleep' && c.kind !== 'other_block')) return c.duration_ns;
    const s0 = BigInt(e.start_unix_nano);
    const e0 = s0 + BigInt(e.duration_ns);
    const iv = spans.filter((k) => k.parent_span_id === e.span_id).map((k): [bigint, bigint] => {
      const a = BigInt(k.start_unix_nano);
      const b = a + BigInt(k.duration_ns);
      return [a > s0 ? a : s0, b < e0 ? b : e0];
    }).filter(([a, b]) => b > a).sort((x, y) => (x[0] < y[0] ? -1 : 1));
    let covered = 0n;
    let end = s0;
    for (const [a, b] of iv) {
      const from = a > end ? a : end;
      if (b > from) covered += b - from;
      if (b > end) end = b;
    }
    return Math.max(0, c.duration_ns - Number(covered));
  };
  let best: { s: SpanExplanation; c: Cause; d: number } | null = null;
  for (const e of spans) {
    for (const c of e.causes) {
      const d = waitLeft(e, c);
      if (o.childWaits && d < 0.1 * c.duration_ns) continue;
      if (!best || SEV_RANK[c.severity] > SEV_RANK[best.c.severity] || (SEV_RANK[c.severity] === SEV_RANK[best.c.severity] && d > best.d)) best = { s: e, c, d };
    }
  }
  let summary: string;
  const joined = spans.filter((s) => s.correlation.method !== 'none').length;
  if (!joined) {
    summary = `None of the ${spans.length} span(s) could be joined to kernel events (no linux.tid, process.pid, ${PROCESS_ID_ATTRIBUTES.join(', ')} or service mapping).`;
  } else if (!best || best.c.severity === 'low') {
    const onCpu = spans.reduce((a, s) => a + s.breakdown_ns.on_cpu, 0);
    const tot = spans.reduce((a, s) => a + s.duration_ns, 0);
    summary = `No kernel-side cause above low severity in ${spans.length} span(s) (${pct(tot ? onCpu / tot : 0)} of their time on CPU)${best ? `; largest: ${best.c.kind} ${fmtDur(best.c.duration_ns)} in "${best.s.name}"` : ''}.`;
  } else {
    const where = o.withHost && best.s.host?.name ? ` on ${best.s.host.name}` : '';
    summary = `Top cause: ${best.c.kind} (${best.c.severity}) in "${best.s.name}" (${best.s.service || 'window'}${where}, ${fmtDur(best.s.duration_ns)}): ${best.c.summary}`;
  }
  if (!dq.covered) summary += ` Capture covered ${pct(dq.coverage)} of the least-covered span.`;
  return summary;
}

function assemble(traceId: string, spans: { e: SpanExplanation; dq: SpanDataQuality; S: number; E: number }[], t: ExplainSession): Explanation {
  const methods: Record<string, number> = {};
  for (const s of spans) methods[s.e.correlation.method] = (methods[s.e.correlation.method] ?? 0) + 1;
  const S = Math.min(...spans.map((s) => s.S));
  const E = Math.max(...spans.map((s) => s.E));
  const drops = t.drops.dropsIn(S, E);
  const thr = spans.map((s) => s.dq.offcpu_threshold_ns).filter((x): x is number => x !== null);
  const notes = [...new Set(spans.flatMap((s) => s.dq.notes))];
  const dq: DataQuality = {
    lost_events: drops.total, covered: spans.every((s) => s.dq.covered), coverage: Math.min(...spans.map((s) => s.dq.coverage)),
    lost_known: spans.every((s) => s.dq.lost_known), offcpu_threshold_ns: thr.length ? Math.max(...thr) : null, correlation: methods,
    threads_joined: spans.reduce((a, s) => a + s.dq.threads_joined, 0), notes,
  };
  const summary = summarizeSpans(spans.map((s) => s.e), dq);
  return { trace_id: traceId, found: true, summary, spans: spans.map((s) => s.e), data_quality: dq };
}

/** Explain every span of a trace. found:false (and no spans) when the trace is not in the store. */
export function explainTrace(reader: StoreReader, traceId: string, o: ExplainOptions = {}): Explanation {
  const id = traceId.toLowerCase();
  return reader.snapshot(() => {
    const stored = /^[0-9a-f]{32}$/.test(id) ? reader.spans.getTrace(id) : [];
    if (!stored.length) {
      return {
        trace_id: id, found: false, summary: `trace ${id} not found in the store`, spans: [],
        data_quality: { lost_events: 0, covered: false, coverage: 0, lost_known: false, offcpu_threshold_ns: null, correlation: {}, threads_joined: 0, notes: ['trace not found'] },
      };
    }
    return explainSpanGroups(reader, [{ traceId: id, spans: stored }], o)[0];
  });
}

/**
 * Explain the given spans of several traces (all of each, or the part the
 * OTel pipeline holds) without reading them from the span index, sharing one
 * snapshot of the store and its caches (thread names, clock, drops): what the
 * OTel pipeline does with the traces that became ready together. Spans in the
 * store shape (SpanInput or StoredSpan): epoch-ns start and end.
 */
export function explainSpanGroups(
  reader: StoreReader, groups: readonly { traceId: string; spans: readonly ExplainableSpan[] }[], o: ExplainOptions = {},
): Explanation[] {
  const out: Explanation[] = [];
  explainSpanGroupsEach(reader, groups, o, (x) => { out.push(x); });
  return out;
}

/**
 * explainSpanGroups, handing each group's explanation to `each` (in order) as
 * soon as it is made, so a caller that turns it into bytes at once keeps no
 * batch of explanation objects alive (they die young: cheap garbage).
 */
export function explainSpanGroupsEach(
  reader: StoreReader, groups: readonly { traceId: string; spans: readonly ExplainableSpan[] }[], o: ExplainOptions,
  each: (x: Explanation, index: number) => void,
): void {
  reader.snapshot(() => {
    const t = new ExplainSession(reader, o);
    groups.forEach((g, index) => {
      const spans = g.spans.map((sp): SpanLike => {
        const start = BigInt(sp.startUnixNano);
        const end = BigInt(sp.endUnixNano);
        return {
          traceId: sp.traceId, spanId: sp.spanId, parentSpanId: sp.parentSpanId ?? null, name: sp.name, service: sp.service,
          startEpoch: start, durationNs: end > start ? Number(end - start) : 0, pid: sp.pid ?? null, tid: sp.tid ?? null,
          processId: sp.processId ?? null, attributes: sp.attributes ?? {},
        };
      });
      // retransmit lookups (a scan of every thread) are done once for the whole trace window
      let S = Infinity;
      let E = -Infinity;
      for (const s of spans) {
        const m = t.clock.toMonoNs(s.startEpoch);
        if (m < S) S = m;
        if (m + s.durationNs > E) E = m + s.durationNs;
      }
      t.retrans = null;
      t.retransWindow = spans.some((s) => peerOf(s)) ? [S, E] : [0, 0];
      t.cov = reader.coverage(S, E, undefined, t.known);
      t.covWindow = [S, E];
      each(assemble(g.traceId.toLowerCase(), spans.map((s) => explainOne(t, s)), t), index);
    });
  });
}

/** Explain a thread's (tid) or a process's (pid) window with no span: one pseudo-span, same shape. */
export function explainWindow(
  reader: StoreReader, w: { tid?: number; pid?: number; fromUnixNano: bigint; toUnixNano: bigint }, o: ExplainOptions = {},
): Explanation {
  const D = Number(w.toUnixNano - w.fromUnixNano);
  if (!(D > 0)) throw new Error('explainWindow: the window must end after it starts');
  if (!w.tid && !w.pid) throw new Error('explainWindow: give tid or pid');
  return reader.snapshot(() => explainWindowIn(new ExplainSession(reader, o), w, D));
}

function explainWindowIn(t: ExplainSession, w: { tid?: number; pid?: number; fromUnixNano: bigint; toUnixNano: bigint }, D: number): Explanation {
  const reader = t.reader;
  const S = t.clock.toMonoNs(w.fromUnixNano);
  let forced: Correlation;
  if (w.tid) {
    let pid = w.pid ?? reader.threadAt(w.tid, S)?.pid ?? reader.threadAt(w.tid, S + D)?.pid ?? null;
    if (!pid) {
      const l = reader.eventsOnThread(w.tid, S, S + D);
      pid = l.count ? l.pid[0] : null;
    }
    forced = { method: 'thread', pid, tid: w.tid, reason: 'window of one thread' };
  } else {
    forced = { method: 'process', pid: w.pid!, tid: null, reason: 'window of one process' };
  }
  const s: SpanLike = {
    traceId: '', spanId: '0000000000000000', parentSpanId: null, name: w.tid ? `tid ${w.tid} window` : `pid ${w.pid} window`, service: '',
    startEpoch: w.fromUnixNano, durationNs: D, pid: forced.pid, tid: forced.tid, processId: null, attributes: {}, forced,
  };
  return assemble('', [explainOne(t, s)], t);
}


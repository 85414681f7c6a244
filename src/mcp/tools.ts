// The kspan MCP tools: schemas (zod 4), handlers and short text renderings.
// Every tool is read-only (annotations.readOnlyHint) and works from a
// StoreReader; bad arguments come back as isError results that name the fix.
//
// Token-lean by design: the conventions every tool shares (time formats,
// defaults, units, budgets) are stated once in the server's instructions
// (SERVER_INSTRUCTIONS), not per argument; descriptions say what a tool
// answers and what comes back; output schemas list the top-level fields.
//
// Every call runs under a Budget (budget.ts): 2 s wall and 5 M events
// examined by default, and the request's AbortSignal; scans yield to the
// event loop between slices and stop early with `partial: true` and a note.

import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { fmtDur, groupName, isoNs } from '../capture/index.js';
import { explainTrace, formatExplanation, type Explanation } from '../correlator/index.js';
import { loadStoreClock, localHost, spanServices, statsOf, storeClock, type HostIdentity, type StoreReader } from '../store/index.js';
import { eventTimeRange, findSlowSpansAny, spanTimeRange, spansByRequestId } from '../store/queries.js';
import {
  DIST_KINDS, EVENT_KIND_NAMES, GROUP_FIELDS, checkEventQuery, checkScope, futexContention, latencyDistribution, listProcesses,
  offCpuIntervals, queryEvents, threadsByComm, whoWoke, type Scope,
} from './analysis.js';
import { Budget, type BudgetLimits } from './budget.js';
import { HOST_META, PEER_META, mergeExplanations, mergeSlowRequests, type FanOut, type PeerAnswer } from './fanout.js';
import { ToolInputError, nowEpochNs, parseTimeArg, resolveWindow, type DataRange, type Window } from './time.js';

export interface ToolContext {
  reader: StoreReader;
  /** store directory, when known (file size in capture_status) */
  dataDir?: string;
  /** service.name -> process comm, for the correlator's process join */
  serviceProcess?: Record<string, string>;
  /** each call's time and row budget (default 2 s, 5 M events) */
  limits?: BudgetLimits;
  /** the host this server speaks for (default: the store's latest host record, else this machine) */
  host?: HostIdentity;
  /** peers: explain_request and find_slow_requests also ask them (calls from a peer do not fan out again) */
  fanout?: FanOut | null;
}

/** Was this call made by a fanning-out kspan (answer from this store only)? */
export function isPeerCall(extra: { _meta?: Record<string, unknown> }): boolean {
  return !!extra._meta?.[PEER_META];
}

/** The host a server over `reader` speaks for: the given one, the store's latest writer, or this machine. */
export function serverHost(ctx: Pick<ToolContext, 'host' | 'reader'>): HostIdentity {
  if (ctx.host) return ctx.host;
  const h = ctx.reader.hosts().at(-1);
  return h ? { name: h.name, bootId: h.bootId } : localHost();
}

/** Largest text rendering sent back (the structured result is bounded by the tools' limits). */
const MAX_TEXT = 8000;

const timeArg = z.union([z.string().max(64), z.number()]);
const pidArg = z.number().int().min(1).max(4_194_304);
const tidArg = z.number().int().min(1).max(4_194_304);
const limitArg = (def: number, max: number) => z.number().int().min(1).max(max).default(def);
const minMsArg = z.number().min(0).max(86_400_000);

/** Output schemas name the top-level fields; items are described in the tool's description. */
const out = (shape: Record<string, z.ZodType>) => z.looseObject(shape);
const list = z.array(z.unknown());
const obj = z.looseObject({});
const str = z.string();
const num = z.number();
const bool = z.boolean();
const scanOut = { threads_scanned: num, events_examined: num, partial: bool };

const READ_ONLY = { readOnlyHint: true, openWorldHint: false } as const;

function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : text.slice(0, MAX_TEXT) + `\n… (text cut at ${MAX_TEXT} chars; the structured result has everything)`;
}

function ok(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text: clip(text) }], structuredContent: structured };
}

export function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}

/** Run a handler under a fresh budget; ToolInputError and store errors become isError results. */
async function guard(ctx: ToolContext, signal: AbortSignal | undefined, f: (b: Budget) => CallToolResult | Promise<CallToolResult>): Promise<CallToolResult> {
  const r = await guarded(ctx, signal, f);
  // every answer names its host (fan-out: how a peer's answer, or this server answering itself, is recognized)
  const h = serverHost(ctx);
  r._meta = { ...(r._meta ?? {}), [HOST_META]: { name: h.name, boot_id: h.bootId } };
  return r;
}

async function guarded(ctx: ToolContext, signal: AbortSignal | undefined, f: (b: Budget) => CallToolResult | Promise<CallToolResult>): Promise<CallToolResult> {
  const budget = new Budget(ctx.limits, signal);
  try {
    if (!(await budget.begin())) return toolError(budget.stopped === 'aborted' ? 'kspan: the request was cancelled' : 'kspan: no time left in the budget');
    // the store's clock (epoch <-> monotonic), loaded in slices the first time (kept per reader)
    const { clock, complete } = await loadStoreClock(ctx.reader, budget);
    await budget.turn();
    if (!complete) {
      return toolError(budget.stopped === 'aborted' ? 'kspan: the request was cancelled'
        : `kspan: the store's clock history is still loading (${clock.size} samples so far, kept): call again`);
    }
    return await f(budget);
  } catch (e) {
    if (e instanceof ToolInputError) return toolError(e.message);
    return toolError(`kspan: ${(e as Error).message ?? String(e)}`);
  } finally {
    budget.end();
  }
}

const ms = (ns: number): string => fmtDur(Math.round(ns));
const windowJson = (w: Window) => ({ since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() });

/** Explanation trimmed to `maxSpans` spans (the slowest kept, in their original order). */
function boundExplanation(e: Explanation, maxSpans: number): Explanation & { spans_total: number; spans_truncated: boolean } {
  const total = e.spans.length;
  if (total <= maxSpans) return { ...e, spans_total: total, spans_truncated: false };
  const keep = new Set([...e.spans].sort((x, y) => y.duration_ns - x.duration_ns).slice(0, maxSpans));
  return { ...e, spans: e.spans.filter((s) => keep.has(s)), spans_total: total, spans_truncated: true };
}

export function registerTools(server: McpServer, ctx: ToolContext): void {
  const { reader } = ctx;
  const clock = () => storeClock(reader);
  /** The store's data (kernel events and spans) as an epoch range, for the default window. */
  const dataRange = (): DataRange | null => {
    const c = clock();
    const ev = eventTimeRange(reader);
    const sp = spanTimeRange(reader);
    if (!ev && !sp) return null;
    const from = [ev && c.size ? c.toEpochNs(ev.fromNs) : null, sp?.fromUnixNano ?? null].filter((x): x is bigint => x !== null);
    const to = [ev && c.size ? c.toEpochNs(ev.toNs) : null, sp?.toUnixNano ?? null].filter((x): x is bigint => x !== null);
    if (!from.length) return null;
    return { from: from.reduce((x, y) => (y < x ? y : x)), to: to.reduce((x, y) => (y > x ? y : x)) };
  };
  const window = (since: string | number | undefined, until: string | number | undefined): Window => resolveWindow(clock(), since, until, dataRange);

  // ---- explain_request
  server.registerTool('explain_request', {
    title: 'Explain a slow request',
    description:
      'Why a request (trace) was slow: per span, wall time split into on_cpu/runqueue/futex/io/sleep/cuda_sync/unknown ' +
      '(breakdown_ns) and causes[] ranked by time, each {kind, severity, share, culprit {pid,tid,comm}, chain, evidence, ' +
      'remediation}; data_quality. Give trace_id or request_id (gen_ai.request.id, x-request-id); neither: the slowest ' +
      'request of the default window.',
    inputSchema: {
      trace_id: z.string().regex(/^[0-9a-fA-F]{32}$/, 'trace_id must be 32 hex digits (W3C trace id)').optional(),
      request_id: z.string().min(1).max(256).optional(),
      max_spans: limitArg(20, 100).describe('slowest spans explained'),
      evidence: limitArg(5, 20).describe('evidence items per cause'),
    },
    outputSchema: out({
      trace_id: str, found: bool, summary: str, spans: list, data_quality: obj, spans_total: num, spans_truncated: bool, request: obj.optional(),
    }),
    annotations: { title: 'Explain a slow request', ...READ_ONLY },
  }, async (args, extra) => {
    const fan = !isPeerCall(extra) && ctx.fanout?.peers.configured ? ctx.fanout : null;
    const peerArgs = { max_spans: args.max_spans, evidence: args.evidence };
    // a trace id: the peers are asked at once, while this host explains
    const early = fan && args.trace_id && args.request_id === undefined && /^[0-9a-fA-F]{32}$/.test(args.trace_id)
      ? fan.call('explain_request', { trace_id: args.trace_id.toLowerCase(), ...peerArgs }, extra.signal) : null;
    early?.catch(() => undefined);
    const t0 = performance.now();
    return guard(ctx, extra.signal, async (budget) => {
      if (args.trace_id !== undefined && args.request_id !== undefined) throw new ToolInputError('give one of trace_id and request_id, not both');
      let traceId = args.trace_id?.toLowerCase();
      let request: { request_id: string; attribute: string; trace_ids: string[]; truncated: boolean } | undefined;
      let note = '';
      if (traceId === '0'.repeat(32)) throw new ToolInputError('trace_id is all zeros (invalid W3C trace id)');
      if (args.request_id !== undefined) {
        const { matches, truncated } = await spansByRequestId(reader, args.request_id, 50, 2_000_000, budget);
        if (matches.length) {
          const traces = [...new Set(matches.sort((x, y) => (BigInt(y.span.startUnixNano) > BigInt(x.span.startUnixNano) ? 1 : -1)).map((m) => m.span.traceId))];
          traceId = traces[0];
          request = { request_id: args.request_id, attribute: matches[0].attribute, trace_ids: traces.slice(0, 20), truncated: truncated || traces.length > 20 };
        } else if (fan) {
          // not stored here: the peers may know the request id
          const r = await fan.call('explain_request', { request_id: args.request_id, ...peerArgs }, extra.signal);
          const hit = r.answers.find((a) => a.structured?.found === true && typeof a.structured.trace_id === 'string');
          if (hit) {
            traceId = hit.structured!.trace_id as string;
            const req = hit.structured!.request as typeof request | undefined;
            request = req ?? { request_id: args.request_id, attribute: '?', trace_ids: [traceId], truncated: false };
          }
        }
        if (!traceId) {
          return toolError(`no stored span has request id "${args.request_id}" (looked at gen_ai.request.id and the kept request-id attributes${truncated ? '; the span scan stopped at its budget' : ''}${fan ? ', on this host and its peers' : ''}); find_slow_requests lists the stored requests`);
        }
      } else if (traceId === undefined) {
        const w = window(undefined, undefined);
        const slow = await findSlowSpansAny(reader, { fromUnixNano: w.fromUnixNano, toUnixNano: w.toUnixNano, limit: 1 }, budget);
        let best: { traceId: string; durationNs: number } | null = slow.spans.length ? { traceId: slow.spans[0].traceId, durationNs: slow.spans[0].durationNs } : null;
        if (fan) {
          const r = await fan.call('find_slow_requests', { limit: 1 }, extra.signal);
          await budget.turn();
          for (const a of r.answers) {
            const row = (a.structured?.requests as { trace_id: string; duration_ns: number }[] | undefined)?.[0];
            if (row && (!best || row.duration_ns > best.durationNs)) best = { traceId: row.trace_id, durationNs: row.duration_ns };
          }
        }
        if (!best) return toolError(`no stored spans ${w.note ? 'in the store' : 'in the last hour'}${fan ? ' (on this host or its peers)' : ''}: give trace_id or request_id, or a window to find_slow_requests`);
        traceId = best.traceId;
        note = `no trace_id given: the slowest request since ${isoNs(w.fromUnixNano.toString())}${fan ? ' on any host' : ''}\n`;
      }
      const peers = early ?? (fan ? fan.call('explain_request', { trace_id: traceId!, ...peerArgs }, extra.signal) : null);
      const tl = performance.now();
      const local = boundExplanation(explainTrace(reader, traceId!, { serviceProcess: ctx.serviceProcess, maxEvidence: args.evidence }), args.max_spans);
      const localMs = performance.now() - tl;
      let e: typeof local = local;
      if (peers) {
        // merging is light (no store access): no turn to wait for, the deadline is what the caller waits on
        const { answers, errors } = await peers;
        e = mergeExplanations(traceId!, serverHost(ctx), local, localMs, answers, errors, args.max_spans);
        if (!e.found) {
          const dq = e.data_quality as typeof e.data_quality & { hosts: { name: string | null; url: string | null; status: string; reason?: string }[] };
          return toolError(`trace ${traceId} is not in the span index of any host asked (${dq.hosts.map((h) => `${h.name ?? h.url} ${h.status}${h.reason ? `: ${h.reason}` : ''}`).join('; ')}); check the id, or use find_slow_requests`);
        }
      } else if (!e.found) {
        // a fanning-out kspan asked: "not here" is an answer, not an error
        if (isPeerCall(extra)) return ok({ ...e } as unknown as Record<string, unknown>, `trace ${traceId} is not stored on this host`);
        return toolError(`trace ${traceId} is not in the span index (spans arrive through kspan's OTLP receiver; check the id, or use find_slow_requests)`);
      }
      void t0;
      const res = request ? { ...e, request } : e;
      let text = note + formatExplanation(e);
      if (request) text = `request ${request.request_id} -> trace ${traceId}${request.trace_ids.length > 1 ? ` (most recent of ${request.trace_ids.length} traces)` : ''}\n` + text;
      if (e.spans_truncated) text += `\n(${e.spans_total} spans in the trace; the ${e.spans.length} slowest explained)`;
      return ok(res as unknown as Record<string, unknown>, text);
    });
  });

  // ---- find_slow_requests
  server.registerTool('find_slow_requests', {
    title: 'Find slow requests',
    description:
      'Start here. The slowest traces (by their slowest span) started in the window, optionally of one service, each ' +
      '{trace_id, service, name, duration_ns, top_cause {kind, share, culprit}, blame}: blame is a one-line kernel ' +
      'explanation. Then explain_request(trace_id).',
    inputSchema: {
      service: z.string().min(1).max(256).optional(),
      since: timeArg.optional(), until: timeArg.optional(),
      min_duration_ms: minMsArg.optional(),
      limit: limitArg(10, 50),
    },
    outputSchema: out({ window: obj, requests: list, matched_spans: num, returned: num, truncated: bool, notes: z.array(str), hosts: list.optional(), partial: bool.optional() }),
    annotations: { title: 'Find slow requests', ...READ_ONLY },
  }, async (args, extra) => {
    const fan = !isPeerCall(extra) && ctx.fanout?.peers.configured ? ctx.fanout : null;
    const peers = fan ? fan.call('find_slow_requests', { ...args }, extra.signal) : null;
    peers?.catch(() => undefined);
    return guard(ctx, extra.signal, async (budget) => {
    const tl = performance.now();
    const me = serverHost(ctx).name;
    const w = window(args.since, args.until);
    const res = await findSlowSpansAny(reader, {
      service: args.service, fromUnixNano: w.fromUnixNano, toUnixNano: w.toUnixNano,
      minDurationNs: args.min_duration_ms !== undefined ? Math.round(args.min_duration_ms * 1e6) : undefined, limit: args.limit * 4,
    }, budget);
    const seen = new Set<string>();
    const rows = [];
    let moreTraces = false;
    for (const s of res.spans) {
      if (seen.has(s.traceId)) continue;
      seen.add(s.traceId);
      if (rows.length >= args.limit) {
        moreTraces = true;
        break;
      }
      // explanations are the costly part: one per slice, while the budget lasts
      const go: boolean = seen.size === 1 || (await budget.tick());
      const e: Explanation | null = go ? explainTrace(reader, s.traceId, { serviceProcess: ctx.serviceProcess, maxEvidence: 1, maxDepth: 2 }) : null;
      const se: Explanation["spans"][number] | undefined = e?.spans.find((x) => x.span_id === s.spanId);
      const top = se?.causes[0] ?? null;
      const blame: string = !e ? 'not explained (time budget): explain_request(trace_id)' : !se ? 'not explained'
        : top ? `${top.kind} ${(top.share * 100).toFixed(0)}% (${ms(top.duration_ns)})${top.culprit ? ` by ${top.culprit.comm} pid ${top.culprit.pid} tid ${top.culprit.tid}` : ''}: ${top.summary}`
        : se.correlation.method === 'none' ? 'no kernel join (the span has no thread/process id)' : `no kernel cause: on CPU ${ms(se.breakdown_ns.on_cpu)}, unknown ${ms(se.breakdown_ns.unknown)}`;
      rows.push({
        trace_id: s.traceId, span_id: s.spanId, service: s.service, name: s.name, start_unix_nano: s.startUnixNano,
        duration_ns: s.durationNs, request_id: s.requestId, correlation: se?.correlation.method ?? 'none',
        top_cause: top ? { kind: top.kind, severity: top.severity, duration_ns: top.duration_ns, share: top.share, culprit: top.culprit } : null,
        blame: blame.length > 300 ? blame.slice(0, 297) + '...' : blame, host: me,
      });
    }
    const notes: string[] = [];
    if (w.note) notes.push(w.note);
    if (res.truncated) notes.push(budget.note('the span scan') ?? 'the span scan stopped at its limit: narrow the window or give a service');
    if (!rows.length) notes.push(`no spans in the window${args.service ? ` for service "${args.service}"` : ''} (spans arrive through kspan's OTLP receiver; capture_status lists the services)`);
    const res2 = {
      window: windowJson(w), requests: rows, matched_spans: res.matched, returned: rows.length,
      // more traces than shown, or more matching spans than the candidates looked at (their traces may be others)
      truncated: res.truncated || moreTraces || res.matched > res.spans.length, notes,
    };
    if (peers) {
      const localMs = performance.now() - tl;
      const { answers, errors } = await peers;
      const m = mergeSlowRequests(serverHost(ctx), res2, localMs, answers, errors, args.limit);
      const rows2 = m.requests as unknown as typeof rows;
      const text = (rows2.length ? rows2.map((r, i) => `${i + 1}. ${ms(r.duration_ns)} ${r.service} "${r.name}" on ${r.host} trace ${r.trace_id} — ${r.blame}`).join('\n') : 'no slow requests on any host') +
        `\nhosts: ${m.hosts.map((h) => `${h.name ?? h.url} ${h.status}${h.reason ? ` (${h.reason})` : ''}`).join(', ')}` + (m.notes as string[]).map((n) => `\n${n}`).join('');
      return ok(m, text);
    }
    const text = rows.length
      ? rows.map((r, i) => `${i + 1}. ${ms(r.duration_ns)} ${r.service} "${r.name}" trace ${r.trace_id} — ${r.blame}`).join('\n') + (notes.length ? `\n${notes.join('\n')}` : '')
      : notes.join('\n');
    return ok(res2, text);
  });
  });

  // ---- get_latency_distribution
  server.registerTool('get_latency_distribution', {
    title: 'Latency distribution',
    description:
      'Percentiles (count, p50, p90, p99, p999, max, total) of one kernel latency for a thread, a process or the host, ' +
      'overall (all) and per group: off_cpu by state, runqueue (preempted vs wakeup latency), futex_wait by op, io by ' +
      'direction+device, cuda by API. Events ending in the window count.',
    inputSchema: {
      kind: z.enum(DIST_KINDS).default('off_cpu'),
      pid: pidArg.optional(), tid: tidArg.optional(),
      since: timeArg.optional(), until: timeArg.optional(),
    },
    outputSchema: out({ kind: str, measure: str, window: obj, all: obj, groups: list, truncated: bool, notes: z.array(str), ...scanOut }),
    annotations: { title: 'Latency distribution', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, async (budget) => {
    const w = window(args.since, args.until);
    const d = await latencyDistribution(reader, args.kind, checkScope(args.pid, args.tid, false), w.a, w.b, budget);
    if (w.note) d.notes.unshift(w.note);
    const res = { ...d, window: { ...windowJson(w), pid: args.pid ?? null, tid: args.tid ?? null } };
    const line = (k: string, x: typeof d.all): string => `${k}: n=${x.count} p50 ${ms(x.p50_ns)} p90 ${ms(x.p90_ns)} p99 ${ms(x.p99_ns)} p99.9 ${ms(x.p999_ns)} max ${ms(x.max_ns)} total ${ms(x.total_ns)}`;
    const text = [`${args.kind} — ${d.measure}`, line('all', d.all), ...d.groups.map((g) => '  ' + line(g.key, g)), ...d.notes].join('\n');
    return ok(res, text);
  }));

  // ---- query_off_cpu
  server.registerTool('query_off_cpu', {
    title: 'Off-CPU intervals',
    description:
      'Off-CPU intervals of a thread (tid) or a process (pid): intervals[] {tid, state (R+ preempted, S, D...; ? = off CPU since before capture began, start is the capture\'s), ' +
      'duration_ns, blocked_ns, runqueue_ns, waker {pid,tid,comm,context,uaddr}, preempted_by, open (still off CPU: no switch-in yet, ' +
      'its end is how far capture is known)}; totals by state. ' +
      'Longest first, or order=time.',
    inputSchema: {
      pid: pidArg.optional(), tid: tidArg.optional(),
      since: timeArg.optional(), until: timeArg.optional(),
      min_duration_ms: minMsArg.default(0),
      order: z.enum(['longest', 'time']).default('longest'),
      limit: limitArg(50, 500),
    },
    outputSchema: out({
      window: obj, intervals: list, matched: num, returned: num, truncated: bool, total_off_cpu_ns: num, by_state_ns: obj, notes: z.array(str), ...scanOut,
    }),
    annotations: { title: 'Off-CPU intervals', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, async (budget) => {
    const scope = checkScope(args.pid, args.tid, true);
    const w = window(args.since, args.until);
    const res = await offCpuIntervals(reader, clock(), scope, w.a, w.b, Math.round(args.min_duration_ms * 1e6), args.limit, args.order, budget);
    if (w.note) res.notes.unshift(w.note);
    const who = (x: { comm: string; pid: number; tid: number }): string => `${x.comm} ${x.pid}/${x.tid}`;
    const text = [
      `${res.matched} off-CPU intervals, ${ms(res.total_off_cpu_ns)} in the window (${Object.entries(res.by_state_ns).map(([k, v]) => `${k} ${ms(v)}`).join(', ')})` +
        (res.truncated ? `; showing ${res.returned}` : ''),
      ...res.intervals.slice(0, 40).map((iv) => `  ${isoNs(iv.start_unix_nano)} tid ${iv.tid} ${iv.state} ${ms(iv.duration_ns)}` +
        (iv.preempted_by ? ` preempted by ${who(iv.preempted_by)}` : iv.waker ? ` woken by ${iv.waker.tid ? who(iv.waker) : 'irq'} (${iv.waker.context})` : '') +
        (iv.runqueue_ns ? `, runqueue ${ms(iv.runqueue_ns)}` : '')),
      ...res.notes,
    ].join('\n');
    return ok({ window: windowJson(w), ...res }, text);
  }));

  // ---- who_woke
  server.registerTool('who_woke', {
    title: 'Who woke a thread',
    description:
      'For thread tid blocked at time `at`: the off-CPU interval around it, who woke it (task or irq, futex word), the ' +
      'futex it waited on and its holder, or who preempted it; summary says it in one line.',
    inputSchema: { tid: tidArg, at: timeArg },
    outputSchema: out({ tid: num, at_unix_nano: str, off_cpu_at: bool, interval: obj.nullable(), futex_waits: list, waker_futex_wakes: list, nearest: obj, summary: str }),
    annotations: { title: 'Who woke a thread', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, () => {
    const at = parseTimeArg(args.at, 'at');
    const res = whoWoke(reader, clock(), args.tid, Math.max(0, clock().toMonoNs(at)), at);
    return ok(res as unknown as Record<string, unknown>, res.summary);
  }));

  // ---- futex_contention
  server.registerTool('futex_contention', {
    title: 'Futex contention',
    description:
      'Lock words ranked by total wait: words[] {pid, uaddr, guess, waits, wait {p50..max}, waiters, holders (owner at ' +
      'wait time), wakers}. pthread_join waits are left out unless include_thread_join.',
    inputSchema: {
      pid: pidArg.optional(),
      since: timeArg.optional(), until: timeArg.optional(),
      include_thread_join: z.boolean().default(false),
      limit: limitArg(10, 100),
    },
    outputSchema: out({
      window: obj, words: list, words_total: num, returned: num, truncated: bool, thread_join_words_omitted: num, notes: z.array(str), ...scanOut,
    }),
    annotations: { title: 'Futex contention', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, async (budget) => {
    const w = window(args.since, args.until);
    const res = await futexContention(reader, checkScope(args.pid, undefined, false), w.a, w.b, args.limit, args.include_thread_join, budget);
    if (w.note) res.notes.unshift(w.note);
    const text = [
      `${res.words_total} contended futex words` + (res.truncated ? `, top ${res.returned}` : ''),
      ...res.words.map((x, i) => `${i + 1}. ${x.comm} pid ${x.pid} ${x.uaddr} (${x.guess}): ${x.waits} waits, ${ms(x.wait_total_ns)} total, p99 ${ms(x.wait.p99_ns)}` +
        (x.holders.length ? `; held by ${x.holders.map((h) => `${h.comm}/${h.tid}`).join(', ')}` : '') +
        (x.wakers.length ? `; woken by ${x.wakers.map((h) => `${h.comm}/${h.tid}`).join(', ')}` : '') +
        `; waiters ${x.waiters.map((h) => `${h.comm}/${h.tid}`).join(', ')}`),
      ...res.notes,
    ].join('\n');
    return ok({ window: windowJson(w), ...res }, text);
  }));

  // ---- query_events
  server.registerTool('query_events', {
    title: 'Query raw kernel events',
    description:
      'Typed filter over the raw events of one kind (pid/tid/comm, window, min duration, CUDA api, futex uaddr, block dev). ' +
      'Without group_by: rows[] {pid, tid, comm, cpu, start_unix_nano, duration_ns, fields}; with group_by: groups[] ' +
      '{key, count, sum_ns, p50_ns, p99_ns, p999_ns, max_ns}. `all` aggregates every match.',
    inputSchema: {
      kind: z.enum(EVENT_KIND_NAMES).default('off_cpu'),
      pid: pidArg.optional(), tid: tidArg.optional(), comm: z.string().min(1).max(16).optional(),
      since: timeArg.optional(), until: timeArg.optional(),
      min_duration_ms: minMsArg.default(0),
      api: z.string().max(64).optional(), uaddr: z.string().max(24).optional(), dev: z.string().max(16).optional(),
      group_by: z.enum(GROUP_FIELDS).optional(),
      order: z.enum(['longest', 'time']).default('longest'),
      limit: limitArg(20, 200),
    },
    outputSchema: out({
      kind: str, window: obj, rows: list.optional(), group_by: str.optional(), groups: list.optional(), all: obj,
      matched: num, returned: num, truncated: bool, notes: z.array(str), ...scanOut,
    }),
    annotations: { title: 'Query raw kernel events', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, async (budget) => {
    checkEventQuery({ ...args, minNs: 0, groupBy: args.group_by });
    const w = window(args.since, args.until);
    let scope: Scope = { pid: args.pid, tid: args.tid };
    if (args.comm !== undefined) {
      const tids = threadsByComm(reader, w.a, w.b, args.comm, args.pid).filter((t) => args.tid === undefined || t === args.tid);
      if (!tids.length) throw new ToolInputError(`no thread or process named "${args.comm}" has events in the window${args.pid || args.tid ? ' (with that pid/tid)' : ''}; list_processes shows the names`);
      scope = { ...scope, tids };
    }
    const res = await queryEvents(reader, clock(), {
      kind: args.kind, scope, a: w.a, b: w.b, minNs: Math.round(args.min_duration_ms * 1e6), api: args.api, uaddr: args.uaddr, dev: args.dev,
      groupBy: args.group_by, order: args.order, limit: args.limit,
    }, budget);
    if (w.note) res.notes.unshift(w.note);
    const agg = (x: typeof res.all): string => `n=${x.count} sum ${ms(x.sum_ns)} p50 ${ms(x.p50_ns)} p99 ${ms(x.p99_ns)} p99.9 ${ms(x.p999_ns)} max ${ms(x.max_ns)}`;
    const text = [
      `${res.matched} ${args.kind} events: ${agg(res.all)}` + (res.truncated ? ` (showing ${res.returned})` : ''),
      ...(res.groups ?? []).map((g) => `  ${args.group_by} ${g.key}: ${agg(g)}`),
      ...(res.rows ?? []).slice(0, 40).map((r) => `  ${isoNs(r.start_unix_nano)} ${r.comm} ${r.pid}/${r.tid} ${ms(r.duration_ns)} ${Object.entries(r.fields).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(' ')}`),
      ...res.notes,
    ].join('\n');
    return ok({ window: windowJson(w), ...res }, text);
  }));

  // ---- capture_status
  server.registerTool('capture_status', {
    title: 'Capture status',
    description:
      'The host (name, boot id, capture scope) and whether the data can be trusted: capture sessions and probe groups attached (or failed), records lost in the kernel, ' +
      'coverage of the last 5 min, clock offset, store size/events/time range, span services.',
    inputSchema: {},
    outputSchema: out({
      host: obj, sessions: list, probes: list, drops: obj, skipped: obj, coverage_last_5m: obj, clock: obj, store: obj, span_services: z.array(str), now_unix_nano: str,
    }),
    annotations: { title: 'Capture status', ...READ_ONLY },
  }, async (_args, extra) => guard(ctx, extra.signal, () => {
    const c = clock();
    const dataDir = ctx.dataDir ?? (reader.root as { path?: string }).path ?? null;
    const st = statsOf(reader, dataDir ?? '/nonexistent');
    const samples = reader.clockSamples();
    const last = samples.at(-1);
    const sessions = reader.sessions().slice(-20).map((s) => ({
      start_unix_nano: c.toEpochNs(s.startNs).toString(), end_unix_nano: c.toEpochNs(s.endNs).toString(), closed: s.closed,
      probe_pid: s.probePid, offcpu_threshold_ns: s.offcpuMinNs, host_name: s.hostName ?? null, boot_id: s.bootId, cgroups: s.cgroups ?? [],
      groups: Object.entries(s.groups).map(([name, g]) => ({
        name, attached: g.ranges.some((r) => r.err === 0), detail: g.ranges.map((r) => r.detail).filter(Boolean).join('; ').slice(0, 200),
      })),
    }));
    const latest = new Map<string, ReturnType<StoreReader['statusRecords']>[number]>();
    for (const s of reader.statusRecords()) latest.set(s.name || groupName(s.group), s);
    const now = nowEpochNs();
    const nowMono = c.toMonoNs(now);
    const cov = reader.coverage(Math.max(0, nowMono - 300e9), nowMono);
    const drops = reader.dropsIn(0, Number.MAX_SAFE_INTEGER);
    const retained = reader.retainedFromNs();
    const me = serverHost(ctx);
    const lastSession = sessions.at(-1);
    const res = {
      host: { name: me.name, boot_id: me.bootId, capture_scope: lastSession ? (lastSession.cgroups.length ? { cgroups: lastSession.cgroups } : 'host') : null },
      sessions,
      probes: [...latest.values()].map((s) => ({ group: s.name || groupName(s.group), err: s.err, attached: s.nAttached, failed: s.nFailed, detail: s.detail.slice(0, 200) })),
      drops: { total: drops.total, by_ring: drops.byRing, known: drops.known },
      skipped: st.skipped,
      coverage_last_5m: { fraction: Math.round(cov.fraction * 1e4) / 1e4, covered: cov.covered },
      clock: {
        samples: samples.length, offset_ns: last ? (BigInt(last.realtimeNs) - reader.originNs - BigInt(Math.trunc(last.monoNs))).toString() : null,
        error_ns: last?.errorNs ?? null, stepped: samples.filter((s) => s.stepped).length,
      },
      store: {
        data_dir: dataDir, file_bytes: st.fileBytes, used_bytes: st.usedBytes, events: st.events, events_by_kind: st.eventsByKind,
        threads: st.threads, partitions: st.partitions, from_unix_nano: st.fromUnixNano, to_unix_nano: st.toUnixNano,
        retained_from_unix_nano: retained ? c.toEpochNs(retained).toString() : null, bytes_per_event: st.bytesPerEvent,
      },
      span_services: spanServices(reader, 100),
      now_unix_nano: now.toString(),
    };
    const text = [
      `host: ${me.name} (boot ${me.bootId ?? '?'})${lastSession?.cgroups.length ? `, capture scoped to ${lastSession.cgroups.join(', ')}` : ''}`,
      `store: ${st.events.toLocaleString('en-US')} events, ${(st.usedBytes / 1e6).toFixed(1)} MB in use, ` +
        (st.fromUnixNano ? `${isoNs(st.fromUnixNano)} .. ${isoNs(st.toUnixNano!)}` : 'empty'),
      `sessions: ${sessions.length}${sessions.length ? ` (last: ${sessions.at(-1)!.closed ? 'closed' : 'open'}, groups ${sessions.at(-1)!.groups.map((g) => `${g.name}${g.attached ? '' : ' FAILED'}`).join(',')})` : ''}`,
      `lost records: ${drops.total}${drops.known ? '' : ' (no drop counters seen)'}; coverage of the last 5 min: ${(cov.fraction * 100).toFixed(0)}%`,
      `clock offset: ${res.clock.offset_ns ?? 'unknown'} ns (${samples.length} samples)`,
      `span services: ${res.span_services.join(', ') || '(none)'}`,
    ].join('\n');
    return ok(res, text);
  }));

  // ---- list_processes
  server.registerTool('list_processes', {
    title: 'List processes',
    description: 'Processes with kernel events in the window, most threads first: {pid, comm, threads, thread_sample [{tid, comm}], parent_pid, exited}.',
    inputSchema: { since: timeArg.optional(), until: timeArg.optional(), limit: limitArg(50, 500) },
    outputSchema: out({ window: obj, processes: list, total: num, returned: num, truncated: bool }),
    annotations: { title: 'List processes', ...READ_ONLY },
  }, async (args, extra) => guard(ctx, extra.signal, async (budget) => {
    const w = window(args.since, args.until);
    const res = await listProcesses(reader, w.a, w.b, args.limit, budget);
    const text = [`${res.total} processes with events` + (res.truncated ? `, showing ${res.returned}` : ''),
      ...res.processes.map((p) => `  ${p.pid} ${p.comm} (${p.threads} thread${p.threads === 1 ? '' : 's'})${p.exited ? ' exited' : ''}`),
      ...(w.note ? [w.note] : [])].join('\n');
    return ok({ window: windowJson(w), ...res }, text);
  }));
}

export const TOOL_NAMES = [
  'explain_request', 'find_slow_requests', 'get_latency_distribution', 'query_off_cpu', 'who_woke', 'futex_contention',
  'query_events', 'capture_status', 'list_processes',
] as const;

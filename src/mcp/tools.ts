// The kspan MCP tools: schemas (zod 4), handlers and short text renderings.
// Every tool is read-only (annotations.readOnlyHint) and works from a
// StoreReader; bad arguments come back as isError results.

import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { fmtDur, groupName, isoNs } from '../capture/index.js';
import { explainTrace, formatExplanation, type Explanation } from '../correlator/index.js';
import { findSlowSpansAny, spanServices, spansByRequestId, statsOf, type StoreReader } from '../store/index.js';
import {
  DIST_KINDS, checkScope, futexContention, latencyDistribution, listProcesses, offCpuIntervals, whoWoke,
} from './analysis.js';
import { ClockCacheMcp, TIME_HELP, ToolInputError, nowEpochNs, parseTimeArg, parseWindow } from './time.js';

export interface ToolContext {
  reader: StoreReader;
  /** store directory, when known (file size in capture_status) */
  dataDir?: string;
  /** service.name -> process comm, for the correlator's process join */
  serviceProcess?: Record<string, string>;
  /** clock history cache shared by the servers made for one reader (HTTP makes one per request) */
  clocks?: ClockCacheMcp;
}

/** Largest text rendering sent back (the structured result is bounded by the tools' limits). */
const MAX_TEXT = 8000;

const timeArg = (what: string) => z.union([z.string().max(64), z.number()]).describe(`${what}: ${TIME_HELP}`);
const pidArg = z.number().int().min(1).max(4_194_304).describe('process id (as the kernel numbers it)');
const tidArg = z.number().int().min(1).max(4_194_304).describe('OS thread id (gettid(), not a runtime thread number)');
const limitArg = (def: number, max: number) => z.number().int().min(1).max(max).default(def).describe(`at most this many rows (default ${def}, max ${max}); the result says when more matched`);

const whoSchema = z.object({ pid: z.number(), tid: z.number(), comm: z.string() });
const distSchema = z.object({
  count: z.number(), p50_ns: z.number(), p90_ns: z.number(), p99_ns: z.number(), p999_ns: z.number(),
  max_ns: z.number(), min_ns: z.number(), total_ns: z.number(),
});
const windowOut = z.object({ since_unix_nano: z.string(), until_unix_nano: z.string() });

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const;

function clip(text: string): string {
  return text.length <= MAX_TEXT ? text : text.slice(0, MAX_TEXT) + `\n… (text cut at ${MAX_TEXT} chars; the structured result has everything)`;
}

function ok(structured: Record<string, unknown>, text: string): CallToolResult {
  return { content: [{ type: 'text', text: clip(text) }], structuredContent: structured };
}

export function toolError(message: string): CallToolResult {
  return { content: [{ type: 'text', text: message }], isError: true };
}

/** Run a handler; ToolInputError and store errors become isError results. */
async function guard(f: () => CallToolResult | Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ToolInputError) return toolError(e.message);
    return toolError(`kspan: ${(e as Error).message ?? String(e)}`);
  }
}

const ms = (ns: number): string => fmtDur(Math.round(ns));

/** Explanation trimmed to `maxSpans` spans (the slowest kept, in their original order). */
function boundExplanation(e: Explanation, maxSpans: number): Explanation & { spans_total: number; spans_truncated: boolean } {
  const total = e.spans.length;
  if (total <= maxSpans) return { ...e, spans_total: total, spans_truncated: false };
  const keep = new Set([...e.spans].sort((x, y) => y.duration_ns - x.duration_ns).slice(0, maxSpans));
  return { ...e, spans: e.spans.filter((s) => keep.has(s)), spans_total: total, spans_truncated: true };
}

export function registerTools(server: McpServer, ctx: ToolContext): void {
  const { reader } = ctx;
  const clocks = ctx.clocks ?? (ctx.clocks = new ClockCacheMcp());
  const clock = () => clocks.get(reader);

  // ---- explain_request
  server.registerTool('explain_request', {
    title: 'Explain a slow request',
    description:
      'Why a request (trace) was slow, from the kernel events kspan captured: per span, the wall time broken down ' +
      '(on-CPU, runqueue, futex, I/O, sleep, CUDA sync, unknown), the causes ranked by time with culprit ' +
      '(pid/tid/comm), causal chain, evidence and remediation, and data quality. Give trace_id, or request_id ' +
      '(matched against the span attributes gen_ai.request.id, http.request.header.x-request-id, request.id).',
    inputSchema: {
      trace_id: z.string().regex(/^[0-9a-fA-F]{32}$/, 'trace_id must be 32 hex digits (W3C trace id)').optional()
        .describe('W3C trace id, 32 hex digits'),
      request_id: z.string().min(1).max(256).optional().describe('a request id carried by a span attribute (e.g. vLLM gen_ai.request.id)'),
      max_spans: z.number().int().min(1).max(100).default(20).describe('explain at most this many spans of the trace (the slowest; default 20)'),
    },
    outputSchema: z.looseObject({
      trace_id: z.string(), found: z.boolean(), summary: z.string(), spans: z.array(z.looseObject({
        span_id: z.string(), name: z.string(), service: z.string(), start_unix_nano: z.string(), duration_ns: z.number(),
        correlation: z.looseObject({ method: z.string(), pid: z.number().nullable(), tid: z.number().nullable() }),
        breakdown_ns: z.looseObject({ on_cpu: z.number(), runqueue: z.number(), futex: z.number(), io: z.number(), sleep: z.number(), cuda_sync: z.number(), unknown: z.number() }),
        causes: z.array(z.looseObject({
          kind: z.string(), severity: z.string(), duration_ns: z.number(), share: z.number(), culprit: whoSchema.nullable(),
          chain: z.array(z.looseObject({})), evidence: z.array(z.looseObject({})), summary: z.string(), remediation: z.string(),
        })),
      })),
      data_quality: z.looseObject({ lost_events: z.number(), covered: z.boolean() }),
      spans_total: z.number(), spans_truncated: z.boolean(),
      request: z.object({ request_id: z.string(), attribute: z.string(), trace_ids: z.array(z.string()), truncated: z.boolean() }).optional(),
    }),
    annotations: { title: 'Explain a slow request', ...READ_ONLY },
  }, async (args) => guard(() => {
    if ((args.trace_id === undefined) === (args.request_id === undefined)) throw new ToolInputError('give exactly one of trace_id and request_id');
    let traceId = args.trace_id?.toLowerCase();
    let request: { request_id: string; attribute: string; trace_ids: string[]; truncated: boolean } | undefined;
    if (traceId === '0'.repeat(32)) throw new ToolInputError('trace_id is all zeros (invalid W3C trace id)');
    if (args.request_id !== undefined) {
      const { matches, truncated } = spansByRequestId(reader, args.request_id);
      if (!matches.length) {
        return toolError(`no stored span has request id "${args.request_id}" (looked at gen_ai.request.id and the kept request-id attributes${truncated ? '; the span scan stopped at its limit' : ''})`);
      }
      const traces = [...new Set(matches.sort((x, y) => (BigInt(y.span.startUnixNano) > BigInt(x.span.startUnixNano) ? 1 : -1)).map((m) => m.span.traceId))];
      traceId = traces[0];
      request = { request_id: args.request_id, attribute: matches[0].attribute, trace_ids: traces.slice(0, 20), truncated: truncated || traces.length > 20 };
    }
    const e = boundExplanation(explainTrace(reader, traceId!, { serviceProcess: ctx.serviceProcess, maxEvidence: 10 }), args.max_spans);
    if (!e.found) return toolError(`trace ${traceId} is not in the span index (spans arrive through kspan's OTLP receiver; check the trace id and that the exporter points at kspan)`);
    const out = request ? { ...e, request } : e;
    let text = formatExplanation(e);
    if (request) text = `request ${request.request_id} -> trace ${traceId}${request.trace_ids.length > 1 ? ` (most recent of ${request.trace_ids.length} traces)` : ''}\n` + text;
    if (e.spans_truncated) text += `\n(${e.spans_total} spans in the trace; the ${e.spans.length} slowest explained)`;
    return ok(out as unknown as Record<string, unknown>, text);
  }));

  // ---- find_slow_requests
  server.registerTool('find_slow_requests', {
    title: 'Find slow requests',
    description:
      'The slowest traces (by their slowest span) started in a time window, optionally of one service, each with a ' +
      'one-line kernel blame (the top cause of that span from explain_request). Follow up with explain_request(trace_id).',
    inputSchema: {
      service: z.string().min(1).max(256).optional().describe('service.name; omitted: every service'),
      since: timeArg('window start (span start times)'),
      until: timeArg('window end (default: now)').optional(),
      min_duration_ms: z.number().min(0).max(86_400_000).optional().describe('only spans at least this long'),
      limit: limitArg(10, 50),
    },
    outputSchema: z.object({
      window: windowOut,
      requests: z.array(z.object({
        trace_id: z.string(), span_id: z.string(), service: z.string(), name: z.string(), start_unix_nano: z.string(),
        duration_ns: z.number(), request_id: z.string().nullable(), correlation: z.string(),
        top_cause: z.object({ kind: z.string(), severity: z.string(), duration_ns: z.number(), share: z.number(), culprit: whoSchema.nullable() }).nullable(),
        blame: z.string(),
      })),
      matched_spans: z.number(), returned: z.number(), truncated: z.boolean(), notes: z.array(z.string()),
    }),
    annotations: { title: 'Find slow requests', ...READ_ONLY },
  }, async (args) => guard(() => {
    const w = parseWindow(clock(), args.since, args.until);
    const res = findSlowSpansAny(reader, {
      service: args.service, fromUnixNano: w.fromUnixNano, toUnixNano: w.toUnixNano,
      minDurationNs: args.min_duration_ms !== undefined ? Math.round(args.min_duration_ms * 1e6) : undefined, limit: args.limit * 4,
    });
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
      const e = explainTrace(reader, s.traceId, { serviceProcess: ctx.serviceProcess, maxEvidence: 1, maxDepth: 2 });
      const se = e.spans.find((x) => x.span_id === s.spanId);
      const top = se?.causes[0] ?? null;
      const blame = !se ? 'not explained'
        : top ? `${top.kind} ${(top.share * 100).toFixed(0)}% (${ms(top.duration_ns)})${top.culprit ? ` by ${top.culprit.comm} pid ${top.culprit.pid} tid ${top.culprit.tid}` : ''}: ${top.summary}`
        : se.correlation.method === 'none' ? 'no kernel join (the span has no thread/process id)' : `no kernel cause: on CPU ${ms(se.breakdown_ns.on_cpu)}, unknown ${ms(se.breakdown_ns.unknown)}`;
      rows.push({
        trace_id: s.traceId, span_id: s.spanId, service: s.service, name: s.name, start_unix_nano: s.startUnixNano,
        duration_ns: s.durationNs, request_id: s.requestId, correlation: se?.correlation.method ?? 'none',
        top_cause: top ? { kind: top.kind, severity: top.severity, duration_ns: top.duration_ns, share: top.share, culprit: top.culprit } : null,
        blame: blame.length > 300 ? blame.slice(0, 297) + '...' : blame,
      });
    }
    const notes: string[] = [];
    if (res.truncated) notes.push('the span scan stopped at its limit: narrow the window or give a service');
    if (!rows.length) notes.push('no spans in the window (spans arrive through kspan\'s OTLP receiver)');
    const out = {
      window: { since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() },
      requests: rows, matched_spans: res.matched, returned: rows.length,
      // more traces than shown, or more matching spans than the candidates looked at (their traces may be others)
      truncated: res.truncated || moreTraces || res.matched > res.spans.length, notes,
    };
    const text = rows.length
      ? rows.map((r, i) => `${i + 1}. ${ms(r.duration_ns)} ${r.service} "${r.name}" trace ${r.trace_id} — ${r.blame}`).join('\n') + (notes.length ? `\n${notes.join('\n')}` : '')
      : notes.join('\n');
    return ok(out, text);
  }));

  // ---- get_latency_distribution
  server.registerTool('get_latency_distribution', {
    title: 'Latency distribution',
    description:
      'Percentiles (count, p50, p90, p99, p99.9, max, total) of one kind of kernel latency in a window, for a thread, a ' +
      'process or every thread: off_cpu (by state), runqueue (preempted vs wakeup latency), futex_wait (by op), ' +
      'io (block request latency by direction and device), cuda (CUDA call duration by API). Events ending in the window count.',
    inputSchema: {
      kind: z.enum(DIST_KINDS).describe('off_cpu | runqueue | futex_wait | io | cuda'),
      pid: pidArg.optional(), tid: tidArg.optional(),
      since: timeArg('window start'), until: timeArg('window end (default: now)').optional(),
    },
    outputSchema: z.object({
      kind: z.string(), measure: z.string(), window: windowOut, scope: z.object({ pid: z.number().nullable(), tid: z.number().nullable() }),
      all: distSchema, groups: z.array(distSchema.extend({ key: z.string() })),
      threads_scanned: z.number(), truncated: z.boolean(), notes: z.array(z.string()),
    }),
    annotations: { title: 'Latency distribution', ...READ_ONLY },
  }, async (args) => guard(() => {
    const w = parseWindow(clock(), args.since, args.until);
    const d = latencyDistribution(reader, args.kind, checkScope(args.pid, args.tid, false), w.a, w.b);
    const out = {
      ...d, window: { since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() },
      scope: { pid: args.pid ?? null, tid: args.tid ?? null },
    };
    const line = (k: string, x: typeof d.all): string => `${k}: n=${x.count} p50 ${ms(x.p50_ns)} p90 ${ms(x.p90_ns)} p99 ${ms(x.p99_ns)} p99.9 ${ms(x.p999_ns)} max ${ms(x.max_ns)} total ${ms(x.total_ns)}`;
    const text = [`${args.kind} — ${d.measure}`, line('all', d.all), ...d.groups.map((g) => '  ' + line(g.key, g)), ...d.notes].join('\n');
    return ok(out, text);
  }));

  // ---- query_off_cpu
  const offSchema = z.object({
    pid: z.number(), tid: z.number(), comm: z.string(), start_unix_nano: z.string(), end_unix_nano: z.string(),
    duration_ns: z.number(), blocked_ns: z.number(), runqueue_ns: z.number(), state: z.string(), flags: z.array(z.string()),
    cpu: z.number(), out_cpu: z.number(),
    waker: whoSchema.extend({ context: z.string(), uaddr: z.string().nullable() }).nullable(),
    preempted_by: whoSchema.nullable(), previous_on_cpu: whoSchema.nullable(),
  });
  server.registerTool('query_off_cpu', {
    title: 'Off-CPU intervals',
    description:
      'Off-CPU intervals of a thread (tid) or of all threads of a process (pid) in a window: state at switch-out ' +
      '(R+ preempted, S sleep, D uninterruptible, ...), blocked vs runqueue time, who woke it (and how: task, futex, ' +
      'irq) or who preempted it. Longest first by default.',
    inputSchema: {
      pid: pidArg.optional(), tid: tidArg.optional(),
      since: timeArg('window start'), until: timeArg('window end (default: now)').optional(),
      min_duration_ms: z.number().min(0).max(86_400_000).default(0).describe('only intervals at least this long'),
      order: z.enum(['longest', 'time']).default('longest').describe('longest first (default) or in time order'),
      limit: limitArg(50, 500),
    },
    outputSchema: z.object({
      window: windowOut, intervals: z.array(offSchema), matched: z.number(), returned: z.number(), truncated: z.boolean(),
      total_off_cpu_ns: z.number(), by_state_ns: z.record(z.string(), z.number()), order: z.string(), threads_scanned: z.number(),
    }),
    annotations: { title: 'Off-CPU intervals', ...READ_ONLY },
  }, async (args) => guard(() => {
    const scope = checkScope(args.pid, args.tid, true);
    const w = parseWindow(clock(), args.since, args.until);
    const res = offCpuIntervals(reader, clock(), scope, w.a, w.b, Math.round(args.min_duration_ms * 1e6), args.limit, args.order);
    const out = { window: { since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() }, ...res };
    const who = (x: { comm: string; pid: number; tid: number }): string => `${x.comm} ${x.pid}/${x.tid}`;
    const text = [
      `${res.matched} off-CPU intervals, ${ms(res.total_off_cpu_ns)} in the window (${Object.entries(res.by_state_ns).map(([k, v]) => `${k} ${ms(v)}`).join(', ')})` +
        (res.truncated ? `; showing ${res.returned}` : ''),
      ...res.intervals.slice(0, 40).map((iv) => `  ${isoNs(iv.start_unix_nano)} tid ${iv.tid} ${iv.state} ${ms(iv.duration_ns)}` +
        (iv.preempted_by ? ` preempted by ${who(iv.preempted_by)}` : iv.waker ? ` woken by ${iv.waker.tid ? who(iv.waker) : 'irq'} (${iv.waker.context})` : '') +
        (iv.runqueue_ns ? `, runqueue ${ms(iv.runqueue_ns)}` : '')),
    ].join('\n');
    return ok(out, text);
  }));

  // ---- who_woke
  server.registerTool('who_woke', {
    title: 'Who woke a thread',
    description:
      'For a thread blocked at a given time: the off-CPU interval containing that time, who woke it (task or interrupt, ' +
      'futex word), which futex it waited on and who held it, or who preempted it.',
    inputSchema: { tid: tidArg, at: timeArg('a time inside the blocked interval') },
    outputSchema: z.object({
      tid: z.number(), at_unix_nano: z.string(), off_cpu_at: z.boolean(), interval: offSchema.nullable(),
      futex_waits: z.array(z.looseObject({ uaddr: z.string(), duration_ns: z.number(), owner: whoSchema.nullable() })),
      waker_futex_wakes: z.array(z.looseObject({ tid: z.number(), uaddr: z.string() })),
      nearest: z.object({ before: offSchema.nullable(), after: offSchema.nullable() }), summary: z.string(),
    }),
    annotations: { title: 'Who woke a thread', ...READ_ONLY },
  }, async (args) => guard(() => {
    const at = parseTimeArg(args.at, 'at');
    const res = whoWoke(reader, clock(), args.tid, Math.max(0, clock().toMonoNs(at)), at);
    return ok(res as unknown as Record<string, unknown>, res.summary);
  }));

  // ---- futex_contention
  server.registerTool('futex_contention', {
    title: 'Futex contention',
    description:
      'Lock words (pid, futex address) ranked by total wait time in a window, with wait percentiles, waiters, holders ' +
      '(owner recorded at wait time) and wakers. pthread_join waits are left out unless include_thread_join.',
    inputSchema: {
      pid: pidArg.optional(),
      since: timeArg('window start'), until: timeArg('window end (default: now)').optional(),
      include_thread_join: z.boolean().default(false).describe('also list words that look like pthread_join waits'),
      limit: limitArg(10, 100),
    },
    outputSchema: z.object({
      window: windowOut,
      words: z.array(z.object({
        pid: z.number(), comm: z.string(), uaddr: z.string(), guess: z.string(), waits: z.number(), timed_out: z.number(),
        wait_total_ns: z.number(), wait: distSchema,
        waiters: z.array(whoSchema.extend({ waits: z.number(), wait_ns: z.number() })),
        holders: z.array(whoSchema.extend({ waits: z.number(), wait_ns: z.number(), source: z.string() })),
        wakers: z.array(whoSchema.extend({ wakes: z.number(), woken: z.number() })),
      })),
      words_total: z.number(), returned: z.number(), truncated: z.boolean(), thread_join_words_omitted: z.number(),
      threads_scanned: z.number(), notes: z.array(z.string()),
    }),
    annotations: { title: 'Futex contention', ...READ_ONLY },
  }, async (args) => guard(() => {
    const w = parseWindow(clock(), args.since, args.until);
    const res = futexContention(reader, checkScope(args.pid, undefined, false), w.a, w.b, args.limit, args.include_thread_join);
    const out = { window: { since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() }, ...res };
    const text = [
      `${res.words_total} contended futex words` + (res.truncated ? `, top ${res.returned}` : ''),
      ...res.words.map((x, i) => `${i + 1}. ${x.comm} pid ${x.pid} ${x.uaddr} (${x.guess}): ${x.waits} waits, ${ms(x.wait_total_ns)} total, p99 ${ms(x.wait.p99_ns)}` +
        (x.holders.length ? `; held by ${x.holders.map((h) => `${h.comm}/${h.tid}`).join(', ')}` : '') +
        (x.wakers.length ? `; woken by ${x.wakers.map((h) => `${h.comm}/${h.tid}`).join(', ')}` : '') +
        `; waiters ${x.waiters.map((h) => `${h.comm}/${h.tid}`).join(', ')}`),
      ...res.notes,
    ].join('\n');
    return ok(out, text);
  }));

  // ---- capture_status
  server.registerTool('capture_status', {
    title: 'Capture status',
    description:
      'What the store holds and how trustworthy it is: capture sessions with the probe groups attached (and failures), ' +
      'records lost in the kernel, coverage of the last minutes, clock offset (epoch - monotonic), store size and time range, span services.',
    inputSchema: {},
    outputSchema: z.object({
      sessions: z.array(z.object({
        start_unix_nano: z.string(), end_unix_nano: z.string(), closed: z.boolean(), probe_pid: z.number().nullable(),
        offcpu_threshold_ns: z.number().nullable(),
        groups: z.array(z.object({ name: z.string(), attached: z.boolean(), detail: z.string() })),
      })),
      probes: z.array(z.object({ group: z.string(), err: z.number(), attached: z.number(), failed: z.number(), detail: z.string() })),
      drops: z.object({ total: z.number(), by_ring: z.record(z.string(), z.number()), known: z.boolean() }),
      skipped: z.record(z.string(), z.number()),
      coverage_last_5m: z.object({ fraction: z.number(), covered: z.boolean() }),
      clock: z.object({ samples: z.number(), offset_ns: z.string().nullable(), error_ns: z.number().nullable(), stepped: z.number() }),
      store: z.object({
        data_dir: z.string().nullable(), file_bytes: z.number(), used_bytes: z.number(), events: z.number(),
        events_by_kind: z.record(z.string(), z.number()), threads: z.number(), partitions: z.number(),
        from_unix_nano: z.string().nullable(), to_unix_nano: z.string().nullable(), retained_from_unix_nano: z.string().nullable(),
        bytes_per_event: z.number().nullable(),
      }),
      span_services: z.array(z.string()),
      now_unix_nano: z.string(),
    }),
    annotations: { title: 'Capture status', ...READ_ONLY },
  }, async () => guard(() => {
    const c = clock();
    const dataDir = ctx.dataDir ?? (reader.root as { path?: string }).path ?? null;
    const st = statsOf(reader, dataDir ?? '/nonexistent');
    const samples = reader.clockSamples();
    const last = samples.at(-1);
    const sessions = reader.sessions().slice(-20).map((s) => ({
      start_unix_nano: c.toEpochNs(s.startNs).toString(), end_unix_nano: c.toEpochNs(s.endNs).toString(), closed: s.closed,
      probe_pid: s.probePid, offcpu_threshold_ns: s.offcpuMinNs,
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
    const out = {
      sessions,
      probes: [...latest.values()].map((s) => ({ group: s.name || groupName(s.group), err: s.err, attached: s.nAttached, failed: s.nFailed, detail: s.detail.slice(0, 200) })),
      drops: { total: drops.total, by_ring: drops.byRing, known: drops.known },
      skipped: st.skipped,
      coverage_last_5m: { fraction: Math.round(cov.fraction * 1e4) / 1e4, covered: cov.covered },
      clock: {
        samples: samples.length, offset_ns: last ? (BigInt(last.realtimeNs) - BigInt(Math.trunc(last.monoNs))).toString() : null,
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
      `store: ${st.events.toLocaleString('en-US')} events, ${(st.usedBytes / 1e6).toFixed(1)} MB in use, ` +
        (st.fromUnixNano ? `${isoNs(st.fromUnixNano)} .. ${isoNs(st.toUnixNano!)}` : 'empty'),
      `sessions: ${sessions.length}${sessions.length ? ` (last: ${sessions.at(-1)!.closed ? 'closed' : 'open'}, groups ${sessions.at(-1)!.groups.map((g) => `${g.name}${g.attached ? '' : ' FAILED'}`).join(',')})` : ''}`,
      `lost records: ${drops.total}${drops.known ? '' : ' (no drop counters seen)'}; coverage of the last 5 min: ${(cov.fraction * 100).toFixed(0)}%`,
      `clock offset: ${out.clock.offset_ns ?? 'unknown'} ns (${samples.length} samples)`,
      `span services: ${out.span_services.join(', ') || '(none)'}`,
    ].join('\n');
    return ok(out, text);
  }));

  // ---- list_processes
  server.registerTool('list_processes', {
    title: 'List processes',
    description: 'Processes with kernel events in a window (most threads first): pid, name, thread count and a sample of threads.',
    inputSchema: { since: timeArg('window start'), until: timeArg('window end (default: now)').optional(), limit: limitArg(50, 500) },
    outputSchema: z.object({
      window: windowOut,
      processes: z.array(z.object({
        pid: z.number(), comm: z.string(), threads: z.number(), thread_sample: z.array(z.object({ tid: z.number(), comm: z.string() })),
        parent_pid: z.number().nullable(), exited: z.boolean(),
      })),
      total: z.number(), returned: z.number(), truncated: z.boolean(),
    }),
    annotations: { title: 'List processes', ...READ_ONLY },
  }, async (args) => guard(() => {
    const w = parseWindow(clock(), args.since, args.until);
    const res = listProcesses(reader, w.a, w.b, args.limit);
    const out = { window: { since_unix_nano: w.fromUnixNano.toString(), until_unix_nano: w.toUnixNano.toString() }, ...res };
    const text = [`${res.total} processes with events` + (res.truncated ? `, showing ${res.returned}` : ''),
      ...res.processes.map((p) => `  ${p.pid} ${p.comm} (${p.threads} thread${p.threads === 1 ? '' : 's'})${p.exited ? ' exited' : ''}`)].join('\n');
    return ok(out, text);
  }));
}

export const TOOL_NAMES = [
  'explain_request', 'find_slow_requests', 'get_latency_distribution', 'query_off_cpu', 'who_woke', 'futex_contention',
  'capture_status', 'list_processes',
] as const;

// What an agent needs besides the tools: the investigation prompt
// (investigate_slow_request) and two resources saying what the store covers
// (kspan://coverage) and what host it describes (kspan://topology).

import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { GetPromptResult, ReadResourceResult } from '@modelcontextprotocol/sdk/types.js';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import * as z from 'zod';
import { groupName } from '../capture/index.js';
import { ThreadDirectory, loadStoreClock, spanServices, storeClock, type StoreReader } from '../store/index.js';
import { eventTimeRange, forRangeSliced, spanTimeRange } from '../store/queries.js';
import type { StoredSpan } from '../store/spans.js';
import { listProcesses } from './analysis.js';
import { Budget } from './budget.js';
import type { ToolContext } from './tools.js';

/** Cause kind (explain_request's causes[].kind) -> the one drill-down call that confirms it. */
export const DRILL_DOWN: Record<string, string> = {
  lock_contention: 'futex_contention {"pid": CULPRIT_PID} (the lock word: waits, holders, wakers)',
  cpu_preemption: 'query_events {"kind": "off_cpu", "tid": SPAN_TID, "group_by": "preempted_by"} (time lost to each preemptor)',
  cuda_sync: 'query_events {"kind": "cuda_call", "pid": SPAN_PID, "group_by": "api"} (time per CUDA API)',
  io_wait: 'query_events {"kind": "block_io", "pid": SPAN_PID, "group_by": "dev"} (I/O latency per device)',
  network_retransmit: 'query_events {"kind": "tcp_retransmit", "pid": SPAN_PID, "group_by": "dst"} (retransmits per peer)',
  sleep: 'query_off_cpu {"tid": SPAN_TID, "min_duration_ms": 1} (the sleeps and who woke them)',
  other_block: 'query_off_cpu {"tid": SPAN_TID, "min_duration_ms": 1} (what blocked it, who woke it)',
};

export function investigationPrompt(a: { service?: string; since?: string; trace_id?: string }): string {
  const win = a.since ? `, "since": ${JSON.stringify(a.since)}` : '';
  const svc = a.service ? `"service": ${JSON.stringify(a.service)}` : '';
  const find = `find_slow_requests {${[svc, win.slice(2)].filter(Boolean).join(', ')}}`;
  const first = a.trace_id
    ? `1. explain_request {"trace_id": ${JSON.stringify(a.trace_id)}} is the request to explain (skip to step 3 with it).`
    : `1. ${find} — the slowest requests${a.service ? ` of ${a.service}` : ''}, each with a one-line blame (top cause, its share, culprit). Take the slowest (or the one the user means).`;
  return [
    `Investigate why ${a.trace_id ? `request ${a.trace_id}` : a.service ? `requests of service ${a.service}` : 'requests'} ` +
      `${a.since ? `since ${a.since} ` : ''}were slow, with kspan's read-only tools (kernel events joined to OpenTelemetry spans).`,
    '',
    'Steps (stop as soon as the cause and its culprit are clear; most investigations need 2-3 calls):',
    first,
    '2. (if step 1 was find_slow_requests) the blame already names the top cause; for the full picture call',
    '   explain_request {"trace_id": <its trace_id>}: breakdown_ns says where the wall time went; causes[0] is the largest',
    '   cause with kind, share, culprit {pid, tid, comm}, chain (holder of the holder, preemptor...) and remediation.',
    '3. Drill down on causes[0] only if it needs confirming, with the one call for its kind',
    '   (CULPRIT_PID = causes[0].culprit.pid; SPAN_PID/SPAN_TID = the span\'s correlation pid/tid):',
    ...Object.entries(DRILL_DOWN).map(([k, v]) => `   - ${k}: ${v}`),
    '4. Before trusting "no kernel cause", check data_quality in the explanation (lost events, coverage) or the',
    '   resource kspan://coverage; kspan://topology says which host and CPUs the data describes.',
    '',
    'Answer with: the cause kind, the culprit (comm, pid, tid), its share of the request\'s time, the evidence, and the remediation.',
  ].join('\n');
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The store's coverage: sessions, probe groups attached, time range, losses. */
export function coverageOf(r: StoreReader): Record<string, unknown> {
  const c = storeClock(r);
  const ep = (mono: number): string | null => (c.size ? c.toEpochNs(mono).toString() : null);
  const ev = eventTimeRange(r);
  const sp = spanTimeRange(r);
  const drops = r.dropsIn(0, Number.MAX_SAFE_INTEGER);
  const retained = r.retainedFromNs();
  const sessions = r.sessions();
  const latest = new Map<string, { attached: number; failed: number; detail: string }>();
  for (const s of r.statusRecords()) latest.set(s.name || groupName(s.group), { attached: s.nAttached, failed: s.nFailed, detail: s.detail.slice(0, 160) });
  return {
    sessions_total: sessions.length,
    sessions: sessions.slice(-10).map((s) => ({
      start_unix_nano: ep(s.startNs), end_unix_nano: ep(s.endNs), closed: s.closed, boot_id: s.bootId,
      groups_attached: Object.entries(s.groups).filter(([, g]) => g.ranges.some((x) => x.err === 0)).map(([n]) => n),
      groups_failed: Object.entries(s.groups).filter(([, g]) => !g.ranges.some((x) => x.err === 0)).map(([n]) => n),
    })),
    probe_groups: Object.fromEntries(latest),
    events: ev ? { count: ev.events, from_unix_nano: ep(ev.fromNs), to_unix_nano: ep(ev.toNs) } : { count: 0 },
    spans: sp ? { from_unix_nano: sp.fromUnixNano.toString(), to_unix_nano: sp.toUnixNano.toString(), services: spanServices(r, 50) } : null,
    retained_from_unix_nano: retained ? ep(retained) : null,
    lost_records: { total: drops.total, by_ring: drops.byRing, known: drops.known },
    notes: [
      'gaps between sessions were not captured: a request there has no kernel data',
      'off-CPU intervals and futex waits shorter than the capture threshold (default 50 µs) are not recorded',
    ],
  };
}

/** The host's topology (CPUs) and the processes that matter in the store. */
export async function topologyOf(r: StoreReader, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const list = cpus();
  const bootId = readText('/proc/sys/kernel/random/boot_id')?.replace(/-/g, '') ?? null;
  const sessions = r.sessions();
  const lastBoot = sessions.at(-1)?.bootId?.replace(/-/g, '') ?? null;
  const ev = eventTimeRange(r);
  const budget = new Budget({ timeMs: 1000 }, signal);
  // processes named by spans (their pid attribute), per service: a bounded look at the span table
  const spanPids = new Map<string, Set<number>>();
  let procs: Awaited<ReturnType<typeof listProcesses>> = { processes: [], total: 0, returned: 0, truncated: false };
  try {
    await budget.begin();
    if (ev) procs = await listProcesses(r, ev.fromNs, ev.toNs, 15, budget);
    let n = 0;
    await forRangeSliced(r.spans.byId, undefined, undefined, (_k, v) => {
      const s = v as StoredSpan;
      if (s.pid) (spanPids.get(s.service) ?? spanPids.set(s.service, new Set()).get(s.service)!).add(s.pid);
      return ++n < 20_000;
    }, budget);
  } finally {
    budget.end();
  }
  const at = ev?.toNs ?? 0;
  const threads = new ThreadDirectory(r);
  const comm = (pid: number): string => threads.nameNear(pid, at) ?? '?';
  return {
    host: {
      note: lastBoot && bootId ? (lastBoot === bootId ? 'this server runs on the host and boot the store was captured on'
        : 'this server runs on another host or boot than the last capture: CPU facts below may not describe the data') : 'boot of the capture unknown',
      cpus: list.length,
      online: readText('/sys/devices/system/cpu/online'),
      model: list[0]?.model ?? null,
      mhz: list[0]?.speed ?? null,
      numa_nodes: readText('/sys/devices/system/node/online'),
      kernel: readText('/proc/sys/kernel/osrelease'),
    },
    processes_by_threads: procs.processes.map((p) => ({ pid: p.pid, comm: p.comm, threads: p.threads, exited: p.exited })),
    processes_total: procs.total,
    span_processes: Object.fromEntries([...spanPids].map(([svc, pids]) => [svc, [...pids].slice(0, 10).map((pid) => ({ pid, comm: comm(pid) }))])),
    partial: budget.stopped !== null,
  };
}

export function registerGuide(server: McpServer, ctx: ToolContext): void {
  server.registerPrompt('investigate_slow_request', {
    title: 'Investigate a slow request',
    description: 'Walks from a symptom (a service, a time window or a trace id) to the kernel cause and its culprit: find_slow_requests, explain_request, one drill-down.',
    argsSchema: {
      service: z.string().max(256).optional().describe('service.name of the slow requests'),
      since: z.string().max(64).optional().describe('start of the window, e.g. "-30m"'),
      trace_id: z.string().max(64).optional().describe('the slow request, when known'),
    },
  }, (args): GetPromptResult => ({
    description: 'kspan investigation: symptom -> cause -> culprit',
    messages: [{ role: 'user', content: { type: 'text', text: investigationPrompt(args) } }],
  }));

  const json = (uri: URL, o: unknown): ReadResourceResult => ({ contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(o) }] });
  server.registerResource('coverage', 'kspan://coverage', {
    title: 'Store coverage',
    description: 'What the store covers: capture sessions, probe groups attached or failed, time range of events and spans, records lost.',
    mimeType: 'application/json',
  }, async (uri, extra) => {
    const budget = new Budget({ timeMs: 10_000 }, extra.signal);
    try {
      await budget.begin();
      await loadStoreClock(ctx.reader, budget);
    } finally {
      budget.end();
    }
    return json(uri, coverageOf(ctx.reader));
  });
  server.registerResource('topology', 'kspan://topology', {
    title: 'Host topology',
    description: 'The host the data describes: CPUs (count, online, model), kernel; the processes that matter in the store (most threads, named by spans).',
    mimeType: 'application/json',
  }, async (uri, extra) => json(uri, await topologyOf(ctx.reader, extra.signal)));
}

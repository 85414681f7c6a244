// The one-screen text report of `kspan demo`, and the `demo` object added to
// the explain JSON (`kspan demo --json`).

import { fmtDur } from '../capture/index.js';
import type { Breakdown, Cause, Explanation } from '../correlator/index.js';

export interface DemoRequest {
  trace_id: string;
  request_id: string;
  duration_ns: number;
  start_unix_nano: string;
  /** from the workload's own bookkeeping (the span index keeps only correlation attributes) */
  queue_ns: number | null;
  ttft_ns: number | null;
  tokens: number | null;
}

/** Added to the explain JSON as `demo` (the contract allows added fields). */
export interface DemoInfo {
  workload_pid: number;
  api_pid: number;
  engine_pid: number;
  /** the busy-loop thread (tid == pid of the EngineCore) */
  engine_tid: number;
  engine_comm: string;
  engine_cpu: number;
  tokenizer_tid: number;
  neighbour_pid: number | null;
  /** when the workload's processes were up (epoch ns) */
  started_unix_nano?: string;
  neighbour_on_unix_nano?: string;
  neighbour_off_unix_nano?: string;
  service: string;
  protocol: string;
  cuda_lib: string;
  duration_s: number;
  elapsed_s: number;
  requests_sent: number;
  requests_done: number;
  spans_received: number;
  /** through the OTel bridge: spans that got kspan.* events, spans forwarded unchanged, spans the stand-in backend got */
  spans_enriched: number;
  spans_unchanged: number;
  spans_at_backend: number;
  /** the kspan.cause events in the worst request's span as the backend received it */
  worst_span_kspan_events: { kind: string; share: number; culprit: string | null }[];
  kernel_records: number;
  kernel_events_stored: number;
  lost_records: number;
  /** the store (kept) */
  store: string;
  perfetto: string | null;
  perfetto_note: string;
  /** slowest first; [0] is the explained one */
  slowest: DemoRequest[];
}

const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;
const ms = (ns: number | null): string => (ns === null ? '-' : fmtDur(ns));
const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const lpad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

const PARTS: [keyof Breakdown, string][] = [
  ['on_cpu', 'on CPU'], ['runqueue', 'runqueue'], ['futex', 'lock (futex)'], ['cuda_sync', 'CUDA sync'],
  ['io', 'I/O'], ['sleep', 'sleep/idle'], ['unknown', 'unknown'],
];

/** What the demo injected that this cause is, when its culprit says so. */
function injected(c: Cause, d: DemoInfo): string {
  if (c.kind === 'cpu_preemption' && d.neighbour_pid !== null && c.culprit?.pid === d.neighbour_pid) return '← injected: the CPU neighbour';
  if (c.kind === 'lock_contention' && c.culprit?.tid === d.tokenizer_tid) return '← injected: the tokenizer\'s lock';
  if (c.kind === 'cuda_sync' && isEngineSync(c, d)) return '← injected: queued GPU work';
  return '';
}

/** The engine thread's cudaStreamSynchronize calls on the stand-in library, as the workload injects them. */
function isEngineSync(c: Cause, d: DemoInfo): boolean {
  const calls = c.details?.calls as Record<string, { calls: number }> | undefined;
  if (!calls || !(calls.cudaStreamSynchronize?.calls > 0)) return false;
  return c.evidence.some((e) => e.kind === 'cuda_call' && e.api === 'cudaStreamSynchronize' && e.pid === d.engine_pid);
}

function culpritText(c: Cause): string {
  if (c.kind === 'cuda_sync') {
    const calls = c.details?.calls as Record<string, { calls: number }> | undefined;
    if (calls && typeof calls === 'object' && Object.keys(calls).length) {
      return Object.entries(calls).map(([api, n]) => `${n.calls} × ${api}`).join(', ');
    }
    return 'waiting for the GPU';
  }
  if (!c.culprit) return '';
  const k = c.culprit;
  return c.kind === 'lock_contention' ? `held by ${k.comm || '?'} (tid ${k.tid})` : `${k.comm || '?'} (pid ${k.pid}) took the CPU`;
}

export function formatDemoReport(e: Explanation & { demo: DemoInfo }): string {
  const d = e.demo;
  const L: string[] = [];
  // seconds since the workload started
  const rel = (u?: string): string => (u && d.started_unix_nano ? `${(Number(BigInt(u) - BigInt(d.started_unix_nano)) / 1e9).toFixed(1)} s` : '?');
  L.push(`kspan demo — a vLLM-shaped service (examples/vllm): ${d.duration_s} s of load, ${d.requests_done} requests, ` +
    `${d.kernel_records.toLocaleString('en-US')} kernel records (${d.lost_records} lost)`);
  L.push(`  EngineCore pid ${d.engine_pid} "${d.engine_comm}" on CPU ${d.engine_cpu} · tokenizer tid ${d.tokenizer_tid} · ` +
    (d.neighbour_pid !== null ? `CPU neighbour pid ${d.neighbour_pid} on CPU ${d.engine_cpu} from ${rel(d.neighbour_on_unix_nano)} to ${rel(d.neighbour_off_unix_nano)}` : 'no neighbour'));
  L.push('');
  L.push(`slowest requests (llm_request spans of service "${d.service}")`);
  L.push(`     ${lpad('e2e', 9)} ${lpad('queue', 9)} ${lpad('TTFT', 9)} ${lpad('tokens', 6)}  ${pad('request id', 22)} trace id`);
  d.slowest.forEach((s, i) => {
    L.push(`  ${lpad(String(i + 1), 2)} ${lpad(ms(s.duration_ns), 9)} ${lpad(ms(s.queue_ns), 9)} ${lpad(ms(s.ttft_ns), 9)} ${lpad(s.tokens === null ? '-' : String(s.tokens), 6)}  ${pad(s.request_id, 22)} ${s.trace_id}`);
  });
  L.push('');
  const s = e.spans[0];
  if (!s) {
    L.push(`no explanation: ${e.summary}`);
  } else {
    const worst = d.slowest[0];
    L.push(`why was ${worst?.request_id || 'the slowest request'} slow? (${fmtDur(s.duration_ns)}, trace ${e.trace_id})`);
    const c = s.correlation;
    const shared = s.causes.find((k) => k.concurrent_spans !== undefined)?.concurrent_spans;
    L.push(`  joined by ${c.method}${c.pid ? ` to pid ${c.pid}` : ''}${c.reason ? ` (${c.reason})` : ''}` +
      (shared !== undefined ? `; batch-level causes, shared by ${shared} concurrent request(s)` : ''));
    const parts = PARTS.filter(([k]) => s.breakdown_ns[k] > 0).map(([k, name]) => `${name} ${fmtDur(s.breakdown_ns[k])} (${pct(s.breakdown_ns[k] / (s.duration_ns || 1))})`);
    L.push(`  the engine's time in the request's window: ${parts.join(' · ') || 'no data'}`);
    if (!s.causes.length) L.push('  no causes found');
    else L.push('  causes (time explained, share of the request):');
    for (const k of s.causes.slice(0, 6)) {
      L.push(`   ${pad(`[${k.severity}]`, 8)} ${pad(k.kind, 16)} ${lpad(fmtDur(k.duration_ns), 9)} ${lpad(pct(k.share), 4)}  ${pad(culpritText(k), 38)} ${injected(k, d)}`.trimEnd());
    }
    const top = s.causes[0];
    if (top) {
      L.push('');
      L.push(`  ${top.summary}`);
      L.push(`  fix: ${top.remediation}`);
    }
    const dq = e.data_quality;
    L.push(`  data: ${dq.covered ? 'capture covered the window' : `capture covered ${pct(dq.coverage)} of the window`}, ${dq.lost_known ? `${dq.lost_events} records lost` : 'losses unknown'}`);
  }
  L.push('');
  const ev = d.worst_span_kspan_events ?? [];
  L.push(`in the spans: ${d.spans_enriched} of ${d.spans_received} got kspan.* attributes and events on their way through the OTel bridge ` +
    `(${d.spans_unchanged} forwarded unchanged; ${d.spans_at_backend} reached the stand-in backend)`);
  if (ev.length) {
    L.push(`  the slowest request's span, as the backend shows it: ${ev.map((x) => `kspan.cause ${x.kind} ${pct(x.share)}${x.culprit ? ` (${x.culprit})` : ''}`).join(' · ')}`);
  }
  L.push('');
  L.push(`store:    ${d.store} (kept; ${d.kernel_events_stored.toLocaleString('en-US')} events, ${d.spans_received} spans)`);
  L.push(`          kspan explain ${e.trace_id} --data ${d.store} --service-process ${d.service}=${d.engine_comm}`);
  L.push(`          kspan stats --data ${d.store}`);
  L.push(`perfetto: ${d.perfetto ?? '-'}  (${d.perfetto_note})`);
  L.push(`json:     ${d.store}/demo.json  (kspan demo --json prints it)`);
  return L.join('\n') + '\n';
}

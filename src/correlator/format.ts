// Text report of an Explanation (kspan explain without --json).

import { fmtDur } from '../capture/index.js';
import type { Breakdown, ChainStep, Explanation } from './types.js';

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

function bar(b: Breakdown, d: number): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(b)) if (v > 0) parts.push(`${k} ${fmtDur(v)} (${pct(d ? v / d : 0)})`);
  return parts.join(', ') || 'nothing';
}

function stepText(s: ChainStep): string {
  const who = (): string => `tid ${s.tid} (${s.comm || '?'}${s.pid !== undefined ? `, pid ${s.pid}` : ''})`;
  switch (s.step) {
    case 'futex_wait': return `tid ${s.tid} (${s.comm || '?'}) waited ${fmtDur(s.duration_ns as number)} on futex ${s.uaddr ?? '?'}`;
    case 'held_by': return `held by ${who()} [${s.source}]`;
    case 'woken_by': return `woken by ${who()}${s.source ? ` [${s.source}]` : ''}${s.duration_ns !== undefined ? ` ${fmtDur(s.duration_ns as number)}` : ''}`;
    case 'timeline': return `${who()} during the wait (${fmtDur(s.window_ns as number)}): on CPU ${fmtDur(s.on_cpu_ns as number)}, runqueue ${fmtDur(s.runqueue_ns as number)}, futex ${fmtDur(s.futex_ns as number)}, io ${fmtDur(s.io_ns as number)}, sleep ${fmtDur(s.sleep_ns as number)}, cuda ${fmtDur(s.cuda_sync_ns as number)}, unknown ${fmtDur(s.unknown_ns as number)}`;
    case 'preempted_by': return `preempted by ${who()} for ${fmtDur(s.duration_ns as number)} on CPU ${s.cpu}`;
    case 'cycle': return `cycle: tid ${s.tid} is already on this path`;
    case 'depth_limit': return `(depth limit: tid ${s.tid} not followed)`;
    case 'timed_out': return 'the wait timed out (no holder/waker)';
    case 'waker_unknown': return 'no holder or waker recorded';
    default: return `${s.step}${s.duration_ns !== undefined ? ` ${fmtDur(s.duration_ns as number)}` : ''}${s.tid !== undefined ? ` tid ${s.tid}` : ''}`;
  }
}

export function formatExplanation(e: Explanation): string {
  const L: string[] = [];
  if (!e.found) {
    const hs = e.data_quality.hosts;
    if (!hs) return `trace ${e.trace_id}: not found in the store\n`;
    return `trace ${e.trace_id}: not found on any host asked${e.data_quality.partial ? ' (PARTIAL: not every host answered)' : ''}: ` +
      `${hs.map((h) => `${h.name ?? h.url} ${h.status}${h.reason ? ` (${h.reason})` : ''}`).join(', ')}\n`;
  }
  L.push(e.trace_id ? `trace ${e.trace_id}` : 'window');
  L.push(`  ${e.summary}`);
  const dq = e.data_quality;
  L.push(`  data: ${dq.covered ? 'covered' : `covered ${pct(dq.coverage)}`}, lost records ${dq.lost_known ? dq.lost_events : 'unknown'}, off-CPU threshold ${dq.offcpu_threshold_ns !== null ? fmtDur(dq.offcpu_threshold_ns) : '?'}, join ${Object.entries(dq.correlation).map(([k, v]) => `${k}×${v}`).join(' ')}`);
  if (dq.hosts) {
    L.push(`  hosts${dq.partial ? ' (PARTIAL: not every host answered)' : ''}: ${dq.hosts.map((h) => `${h.name ?? h.url ?? '?'} ${h.status === 'failed' || h.status === 'timeout' ? h.status.toUpperCase() : h.status}` +
      `${h.status === 'ok' || h.status === 'local' ? ` (${h.spans} span${h.spans === 1 ? '' : 's'})` : ''}${h.reason ? ` (${h.reason})` : ''}`).join(', ')}`);
  }
  for (const s of e.spans) {
    L.push('');
    const c = s.correlation;
    const on = dq.hosts && s.host?.name ? ` on ${s.host.name}` : '';
    L.push(`span ${s.span_id} "${s.name}"${s.service ? ` [${s.service}]` : ''}${on} ${fmtDur(s.duration_ns)} — join: ${c.method}${c.pid ? ` pid ${c.pid}` : ''}${c.tid ? ` tid ${c.tid}` : ''}${c.reason ? ` (${c.reason})` : ''}`);
    L.push(`  time: ${bar(s.breakdown_ns, s.duration_ns)}`);
    if (!s.causes.length) L.push('  no causes');
    s.causes.forEach((k, i) => {
      L.push(`  ${i + 1}. [${k.severity}] ${k.kind} ${fmtDur(k.duration_ns)} (${pct(k.share)})${k.culprit ? ` — culprit ${k.culprit.comm || '?'} pid ${k.culprit.pid} tid ${k.culprit.tid}` : ''}${k.shared ? ` — shared${k.concurrent_spans !== undefined ? `, ${k.concurrent_spans} concurrent span(s)` : ''}` : ''}`);
      L.push(`     ${k.summary}`);
      if (k.kind === 'lock_contention' || k.chain.some((x) => x.depth > 0)) {
        for (const st of k.chain) L.push(`     ${'  '.repeat(st.depth)}→ ${stepText(st)}`);
      }
      L.push(`     fix: ${k.remediation}`);
    });
    const notes = s.data_quality?.notes ?? [];
    for (const n of notes) if (!/are not recorded and count as on_cpu/.test(n)) L.push(`  note: ${n}`);
  }
  return L.join('\n') + '\n';
}

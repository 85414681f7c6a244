// The join: which kernel threads a span's time is read from (DESIGN §4):
// the thread (linux.tid + process.pid), else the process (a service mapped
// to a process name, process.pid, a server's process-id attribute such as
// vllm.process_id: store/service-attributes.ts), else none.

import { PROCESS_ID_ATTRIBUTES, type StoreReader } from '../store/index.js';
import type { ExplainSession, SpanLike } from './session.js';
import type { Correlation } from './types.js';
import { MAX_SCAN_THREADS } from './util.js';

/**
 * `SERVICE=COMM` arguments (the CLI's repeatable --service-process) as
 * ExplainOptions.serviceProcess; throws on a malformed one. COMM may be the
 * full process name: the join compares its first 15 bytes, as the kernel
 * keeps them.
 */
export function parseServiceProcess(list: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of list ?? []) {
    const i = m.indexOf('=');
    if (i <= 0 || i === m.length - 1) throw new Error(`--service-process wants SERVICE=COMM, got "${m}"`);
    out[m.slice(0, i)] = m.slice(i + 1);
  }
  return out;
}


export function numAttr(attrs: Record<string, string | number | boolean>, ...names: string[]): number | null {
  for (const n of names) {
    const v = attrs[n];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
    if (typeof v === 'string' && /^\d+$/.test(v) && Number(v) > 0) return Number(v);
  }
  return null;
}

/** pids whose process comm (leader comm, 15 chars) is `name`, with events in [a, b]; most threads first. */
function pidsByComm(reader: StoreReader, name: string, a: number, b: number): number[] {
  const want = name.slice(0, 15);
  const tids = new Map<number, number[]>();
  for (const [pid, tid] of reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) (tids.get(pid) ?? tids.set(pid, []).get(pid)!).push(tid);
  const out: [number, number][] = [];
  for (const [pid, ts] of tids) {
    // the process comm: the leader's metadata, else any of its threads' pcomm
    let pcomm = '';
    for (const tid of [pid, ...ts.slice(0, 8)]) {
      const m = reader.threadAt(tid, a) ?? reader.threadAt(tid, b);
      if (m && m.pid === pid) pcomm = m.pcomm || (tid === pid ? m.comm : '');
      if (pcomm) break;
    }
    if (pcomm === want || pcomm === name) out.push([pid, ts.length]);
  }
  return out.sort((x, y) => y[1] - x[1]).map((x) => x[0]);
}

/**
 * Can resolveJoin join this span to anything? False exactly when it would
 * answer method 'none' without reading the store (no tid, no pid, no mapped
 * service, no process-id attribute): such a span is explained in O(1) (the
 * OTel pipeline forwards it unchanged without explaining it).
 */
export function mayJoin(
  s: { service: string; pid?: number | null; tid?: number | null; processId?: string | null; attributes?: Record<string, string | number | boolean> },
  o: { threadIdIsOsTid?: boolean; serviceProcess?: Record<string, string> },
): boolean {
  if (s.tid || s.pid || s.processId) return true;
  const A = s.attributes ?? {};
  if (numAttr(A, 'linux.tid', 'process.pid') || (o.threadIdIsOsTid && numAttr(A, 'thread.id'))) return true;
  if (o.serviceProcess?.[s.service]) return true;
  return PROCESS_ID_ATTRIBUTES.some((a) => typeof A[a] === 'string' || typeof A[a] === 'number');
}

export interface Join {
  c: Correlation;
}

export function resolveJoin(t: ExplainSession, s: SpanLike, S: number, E: number): Join {
  if (s.forced) return { c: s.forced };
  const A = s.attributes ?? {};
  const tid = s.tid ?? (t.o.threadIdIsOsTid ? numAttr(A, 'linux.tid', 'thread.id') : numAttr(A, 'linux.tid'));
  let pid = s.pid ?? numAttr(A, 'process.pid');
  if (tid) {
    let reason = s.tid ? 'span carries linux.tid and process.pid' : (t.o.threadIdIsOsTid ? 'span attribute linux.tid/thread.id (declared to be the OS thread id)' : 'span attribute linux.tid');
    if (!pid) {
      const m = t.threadAt(tid, S) ?? t.threadAt(tid, E);
      if (m) {
        pid = m.pid;
        reason += '; pid from the thread metadata';
      } else {
        const l = t.reader.eventsOnThread(tid, S, E);
        if (l.count) {
          pid = l.pid[0];
          reason += '; pid from the thread\'s events';
        }
      }
    }
    if (pid) return { c: { method: 'thread', pid, tid, reason } };
  }
  const mapped = t.o.serviceProcess?.[s.service];
  if (mapped) {
    const pids = pidsByComm(t.reader, mapped, S, E);
    if (pids.length) {
      return { c: { method: 'process', pid: pids[0], tid: null, reason: `service "${s.service}" mapped to process "${mapped}"${pids.length > 1 ? ` (${pids.length} such processes; the one with most threads)` : ''}` } };
    }
  }
  if (pid) return { c: { method: 'process', pid, tid: null, reason: 'span carries process.pid only' } };
  // a server's own process-id attribute (store/service-attributes.ts: vllm.process_id, ...)
  const named = PROCESS_ID_ATTRIBUTES.find((a) => typeof A[a] === 'string' || typeof A[a] === 'number');
  const vp = s.processId ?? (named !== undefined ? String(A[named]) : null);
  if (vp && /^\d+$/.test(vp) && Number(vp) > 0) {
    return { c: { method: 'process', pid: Number(vp), tid: null, reason: named ?? PROCESS_ID_ATTRIBUTES.join(' or ') } };
  }
  return {
    c: {
      method: 'none', pid: null, tid: null,
      reason: mapped ? `no process named "${mapped}" had events in the window` : `the span carries no linux.tid, process.pid or ${PROCESS_ID_ATTRIBUTES.join(', ')}, and its service has no process mapping`,
    },
  };
}


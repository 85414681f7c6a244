// Structural checks of a Chrome trace-event JSON document (what ui.perfetto.dev
// and chrome://tracing load), shared by the Perfetto export tests.

import assert from 'node:assert/strict';

export interface TraceEvent {
  name: string;
  ph: string;
  ts?: number;
  dur?: number;
  pid: number;
  tid: number;
  cat?: string;
  id?: number | string;
  s?: string;
  bp?: string;
  args?: Record<string, any>;
}
export interface TraceDoc {
  traceEvents: TraceEvent[];
  displayTimeUnit?: string;
  metadata?: { kspan?: Record<string, any> };
}

const PHASES = new Set(['X', 'B', 'E', 'i', 'I', 's', 't', 'f', 'M', 'b', 'e', 'n', 'C']);
const M_NAMES = new Set(['process_name', 'thread_name', 'process_sort_index', 'thread_sort_index', 'process_labels']);

/** Parse and validate; returns the document. */
export function validateTrace(text: string): TraceDoc {
  const doc = JSON.parse(text) as TraceDoc;
  assert.ok(Array.isArray(doc.traceEvents), 'traceEvents is an array');
  assert.ok(doc.displayTimeUnit === undefined || doc.displayTimeUnit === 'ns' || doc.displayTimeUnit === 'ms');
  const flows = new Map<string, { s: number; f: number }>();
  const byTrack = new Map<string, { ts: number; end: number; name: string }[]>();
  for (const e of doc.traceEvents) {
    const where = JSON.stringify(e).slice(0, 300);
    assert.equal(typeof e.name, 'string', `name: ${where}`);
    assert.ok(PHASES.has(e.ph), `phase: ${where}`);
    assert.ok(Number.isInteger(e.pid) && e.pid >= 0, `pid: ${where}`);
    assert.ok(Number.isInteger(e.tid) && e.tid >= 0, `tid: ${where}`);
    if (e.ph === 'M') {
      assert.ok(M_NAMES.has(e.name), `metadata name: ${where}`);
      assert.ok(e.args && typeof e.args === 'object', `metadata args: ${where}`);
      if (e.name.endsWith('_name')) assert.equal(typeof e.args!.name, 'string', where);
      else if (e.name.endsWith('_sort_index')) assert.ok(Number.isInteger(e.args!.sort_index), where);
      continue;
    }
    assert.ok(typeof e.ts === 'number' && Number.isFinite(e.ts) && e.ts >= 0, `ts: ${where}`);
    if (e.ph === 'X') {
      assert.ok(typeof e.dur === 'number' && e.dur >= 0, `dur: ${where}`);
      const k = `${e.pid}/${e.tid}`;
      // as Perfetto's importer converts them: (int64)(µs * 1000)
      const ts = Math.trunc(e.ts * 1000);
      (byTrack.get(k) ?? byTrack.set(k, []).get(k)!).push({ ts, end: ts + Math.trunc(e.dur! * 1000), name: e.name });
    }
    if (e.ph === 'i' || e.ph === 'I') assert.ok(e.s === undefined || ['g', 'p', 't'].includes(e.s), `scope: ${where}`);
    if (e.ph === 's' || e.ph === 't' || e.ph === 'f') {
      assert.ok(e.id !== undefined, `flow id: ${where}`);
      assert.equal(typeof e.cat, 'string', `flow cat: ${where}`);
      const k = `${e.cat}/${e.id}`;
      const c = flows.get(k) ?? flows.set(k, { s: 0, f: 0 }).get(k)!;
      if (e.ph === 's') c.s++;
      if (e.ph === 'f') c.f++;
    }
    if (e.args !== undefined) assert.equal(typeof e.args, 'object', `args: ${where}`);
  }
  for (const [k, c] of flows) assert.ok(c.s === 1 && c.f === 1, `flow ${k}: ${c.s} starts, ${c.f} ends`);
  // X slices on one track nest properly, in integer ns as Perfetto reads them
  const EPS = 0;
  for (const [k, list] of byTrack) {
    list.sort((a, b) => a.ts - b.ts || b.end - a.end);
    const stack: number[] = [];
    for (const s of list) {
      while (stack.length && stack[stack.length - 1] <= s.ts + EPS) stack.pop();
      if (stack.length) assert.ok(s.end <= stack[stack.length - 1] + EPS, `track ${k}: "${s.name}" at ${s.ts} overlaps its enclosing slice`);
      stack.push(s.end);
    }
  }
  return doc;
}

/** thread_name of (pid, tid), or undefined */
export function trackName(doc: TraceDoc, pid: number, tid: number): string | undefined {
  return doc.traceEvents.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === pid && e.tid === tid)?.args?.name;
}

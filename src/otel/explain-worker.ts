// Explaining a batch of traces, on the receiving thread or in an explain
// worker (worker_threads, src/otel/explain-pool.ts): the same function either
// way, so a worker's answer is the main thread's answer on the same store.
//
// A worker opens the store read-only (its own LMDB read transactions on the
// environment the daemon writes; lmdb-js shares one environment per process
// across threads) and sees what is committed. The daemon's reader also merges
// the writer's in-memory head (ingested, not yet committed: store/head.ts),
// which a worker cannot see. So:
//   - the pipeline sends a worker only traces whose window ends before the
//     writer's committed-through time (KernelSide.committedUnixNano);
//   - the worker checks that against its own snapshot (the running session's
//     committed end, StoreReader.knownThroughNs): a trace that ends past it is
//     answered `unseen`, not explained, and the pipeline explains it on the
//     receiving thread with the head. Time a worker has not seen is never
//     counted (and were it explained anyway, the correlator would count it
//     unknown / settling, as on the main thread: knownThroughNs is the
//     committed end there).
//
// When loaded as a worker (workerData.kspanExplainWorker), this module answers
// ExplainBatch messages with BatchResult messages.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { explainSpanGroupsEach, type ExplainOptions, type Explanation, type SpanExplanation } from '../correlator/index.js';
import { openStoreReader, type SpanInput, type StoreReader } from '../store/index.js';
import { hasKernelData, kspanEnrichment, writeKspanEnrichment, type EnrichOptions, type KspanEnrichment } from './enrich.js';
import { PbWriter } from './otlp-encode.js';

export interface ExplainGroup {
  traceId: string;
  spans: SpanInput[];
}

export interface ExplainBatch {
  id: number;
  groups: ExplainGroup[];
  /**
   * encoded: each span's kspan attributes and events encoded (the pipeline in
   * span-events mode: little to copy between threads); enrich: as objects
   * (child-spans mode); explain: the explanations (tests, tools)
   */
  mode: 'encoded' | 'enrich' | 'explain';
  /**
   * the sender's reader merges a head and sees a running capture: answer
   * `unseen` for a trace whose window ends past what this reader's snapshot
   * has committed of it (or when this snapshot shows no running capture)
   */
  onlyKnown: boolean;
}

export type GroupResult =
  /** per input span, in order: its enrichment, or null (no kernel data: forwarded unchanged) */
  | { kind: 'enriched'; spans: (KspanEnrichment | null)[] }
  | { kind: 'explained'; explanation: Explanation }
  /**
   * per input span, in order, rows at..at+n of the batch's `meta` (4 ints a
   * row: offset and length in `bytes` of its encoded kspan fields, key mask,
   * flags: 1 kernel data (else forwarded unchanged), 2 settling)
   */
  | { kind: 'encoded'; at: number; n: number; bytes?: Uint8Array; meta?: Int32Array }
  | { kind: 'error'; message: string }
  /** the trace's window is not all visible to this reader yet (not committed): explain it elsewhere */
  | { kind: 'unseen' };

export interface BatchResult {
  id: number;
  groups: GroupResult[];
  /** encoded mode: the encoded kspan fields of every span and their rows (see GroupResult 'encoded') */
  bytes?: Uint8Array;
  meta?: Int32Array;
  /** ms spent explaining */
  ms: number;
}

export interface ExplainWorkerInit {
  kspanExplainWorker: true;
  dir: string;
  explain: ExplainOptions;
  enrich: EnrichOptions;
  /** decoded-block cache bound, events (0: none) */
  /** decoded-block cache bound, bytes (0: none) */
  blockCacheBytes: number;
}

/** Encoded mode: the rows and bytes of a batch, filled group by group. */
class EncodedOut {
  readonly w = new PbWriter(64 * 1024);
  meta: number[] = [];
  rows = 0;

  /** where the rows written next start: rewind(mark) takes them back */
  mark(): { bytes: number; meta: number; rows: number } {
    return { bytes: this.w.length, meta: this.meta.length, rows: this.rows };
  }

  rewind(m: { bytes: number; meta: number; rows: number }): void {
    this.w.truncate(m.bytes);
    this.meta.length = m.meta;
    this.rows = m.rows;
  }

  /** The batch's bytes and rows, in buffers of their own (transferable). */
  finish(): { bytes: Uint8Array; meta: Int32Array } {
    const b = this.w.finish();
    const bytes = new Uint8Array(b.length);
    bytes.set(b);
    return { bytes, meta: Int32Array.from(this.meta) };
  }
}

/** One group's result from its explanation. */
function resultOf(g: ExplainGroup, x: Explanation, mode: ExplainBatch['mode'], enrich: EnrichOptions, enc: EncodedOut | null): GroupResult {
  if (mode === 'explain') return { kind: 'explained', explanation: x };
  if (enc) {
    const byId = new Map<string, SpanExplanation>();
    for (const s of x.spans) byId.set(s.span_id, s);
    const at = enc.rows;
    for (const sp of g.spans) {
      const e = byId.get(sp.spanId);
      const off = enc.w.length;
      if (e && hasKernelData(e)) {
        const k = writeKspanEnrichment(enc.w, e, BigInt(sp.startUnixNano), enrich);
        enc.meta.push(off, enc.w.length - off, k.keyMask, 1 | (k.settling ? 2 : 0));
      } else {
        enc.meta.push(off, 0, 0, 0);
      }
      enc.rows++;
    }
    return { kind: 'encoded', at, n: g.spans.length };
  }
  const byId = new Map<string, SpanExplanation>();
  for (const s of x.spans) byId.set(s.span_id, s);
  const spans: (KspanEnrichment | null)[] = [];
  for (const sp of g.spans) {
    const e = byId.get(sp.spanId);
    spans.push(e && hasKernelData(e) ? kspanEnrichment(e, BigInt(sp.startUnixNano), enrich) : null);
  }
  return { kind: 'enriched', spans };
}

/** Does the window of every span of g end by `known` (monotonic ns)? Same rule as the correlator's settling. */
function allKnown(reader: StoreReader, g: ExplainGroup, known: number): boolean {
  const clock = reader.clockHistory();
  for (const sp of g.spans) {
    const start = BigInt(sp.startUnixNano);
    const end = BigInt(sp.endUnixNano);
    const S = clock.toMonoNs(start);
    if (S + (end > start ? Number(end - start) : 0) > known) return false;
  }
  return true;
}

/**
 * Explain the groups of one batch on one store snapshot. A group that fails
 * is answered `error` without costing the others their explanation.
 */
export function explainBatch(
  reader: StoreReader, groups: readonly ExplainGroup[], mode: ExplainBatch['mode'], onlyKnown: boolean,
  explain: ExplainOptions, enrich: EnrichOptions = {}, encoded?: { bytes?: Uint8Array; meta?: Int32Array },
): GroupResult[] {
  const enc = mode === 'encoded' ? new EncodedOut() : null;
  const res = reader.snapshot(() => {
    const out: GroupResult[] = new Array(groups.length);
    const todo: number[] = [];
    // onlyKnown: the sender sees a running capture; this snapshot must show it (committed) through every window
    const known = onlyKnown ? reader.knownThroughNs() : null;
    for (let k = 0; k < groups.length; k++) {
      if (onlyKnown && (known === null || !allKnown(reader, groups[k], known))) out[k] = { kind: 'unseen' };
      else todo.push(k);
    }
    const run = (ks: number[]): void => {
      const misses = reader.partitionMisses;
      // each group is encoded as soon as it is explained (its explanation dies young); a failed
      // or unseen run takes its rows back, so a retry writes no row twice
      const mark = enc?.mark() ?? null;
      try {
        explainSpanGroupsEach(reader, ks.map((k) => groups[k]), explain, (x, j) => {
          out[ks[j]] = resultOf(groups[ks[j]], x, mode, enrich, enc);
        });
      } catch (err) {
        if (mark) enc!.rewind(mark);
        throw err;
      }
      if (onlyKnown && reader.partitionMisses !== misses) {
        // a partition of this snapshot could not be opened: its events read as none, which must not
        // become on-CPU time; explained on the receiving thread instead (as a window not committed)
        if (mark) enc!.rewind(mark);
        for (const k of ks) out[k] = { kind: 'unseen' };
      }
    };
    try {
      if (todo.length) run(todo);
    } catch {
      // one bad trace must not cost the others their enrichment: one by one
      for (const k of todo) {
        try {
          run([k]);
        } catch (err) {
          out[k] = { kind: 'error', message: (err as Error).stack ?? String(err) };
        }
      }
    }
    return out;
  });
  if (enc) {
    const { bytes, meta } = enc.finish();
    if (encoded) { encoded.bytes = bytes; encoded.meta = meta; }
    for (const r of res) if (r.kind === 'encoded') { r.bytes = bytes; r.meta = meta; }
  }
  return res;
}

function workerMain(init: ExplainWorkerInit): void {
  const port = parentPort!;
  const reader = openStoreReader(init.dir);
  if (init.blockCacheBytes > 0) reader.enableBlockCache(init.blockCacheBytes);
  port.on('message', (m: ExplainBatch | { cmd: 'crash' }) => {
    if ('cmd' in m) {
      // tests: a worker that dies mid-flight
      if (m.cmd === 'crash') throw new Error('explain worker: crash requested');
      return;
    }
    const t0 = performance.now();
    const enc: { bytes?: Uint8Array; meta?: Int32Array } = {};
    const groups = explainBatch(reader, m.groups, m.mode, m.onlyKnown, init.explain, init.enrich, enc);
    // the bytes travel once, with the batch (not with each group)
    for (const g of groups) if (g.kind === 'encoded') { delete g.bytes; delete g.meta; }
    const res: BatchResult = { id: m.id, groups, ms: performance.now() - t0, bytes: enc.bytes, meta: enc.meta };
    port.postMessage(res, enc.bytes ? [enc.bytes.buffer as ArrayBuffer, enc.meta!.buffer as ArrayBuffer] : []);
  });
  port.postMessage({ ready: true });
}

if (!isMainThread && (workerData as ExplainWorkerInit | undefined)?.kspanExplainWorker) workerMain(workerData as ExplainWorkerInit);

// Read-only span queries that need the span index's key layout (spans.ts)
// and are not part of SpanIndex itself: the services present, the slowest
// spans across every service, and a lookup of spans by request id. Used by
// the MCP server (src/mcp); nothing here writes.

import type { StoreReader } from './reader.js';
import type { StoredSpan } from './spans.js';

/** Span attributes that carry a request id, in the order they are tried (StoredSpan.requestId is gen_ai.request.id). */
export const REQUEST_ID_ATTRIBUTES = [
  'gen_ai.request.id', 'http.request.header.x-request-id', 'http.request.header.x_request_id', 'request.id', 'http.request_id',
] as const;

/** Distinct service names in the span index (sorted), at most `limit`. One key seek per service. */
export function spanServices(r: StoreReader, limit = 1000): string[] {
  r.refresh();
  const out: string[] = [];
  let start: Buffer | undefined;
  const db = r.spans.byTime;
  for (let first = true; (first || start) && out.length < limit; first = false) {
    let next: Buffer | undefined;
    for (const key of db.getKeys(start ? { start, limit: 1 } : { limit: 1 })) {
      const k = key as Buffer;
      const z = k.indexOf(0);
      if (z < 0) break;
      out.push(k.toString('utf8', 0, z));
      // the next service: the prefix with its NUL separator replaced by 0x01
      next = Buffer.concat([k.subarray(0, z), Buffer.from([1])]);
    }
    start = next;
  }
  return out;
}

export interface SlowSpansAnyQuery {
  /** one service, or every service when omitted */
  service?: string;
  /** epoch ns window on span start (inclusive) */
  fromUnixNano: bigint;
  toUnixNano: bigint;
  minDurationNs?: number;
  /** default 20 */
  limit?: number;
  /** stop scanning after this many index entries (bounds the cost; `truncated` says so). Default 1,000,000 */
  maxScan?: number;
}

export interface SlowSpansResult {
  spans: StoredSpan[];
  /** spans started in the window with duration >= minDurationNs */
  matched: number;
  /** the scan stopped at maxScan: matched and spans cover only part of the window */
  truncated: boolean;
}

function u64be(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v < 0n ? 0n : v));
  return b;
}

/** Slowest spans started in [from, to], of one service or of all, longest first. */
export function findSlowSpansAny(r: StoreReader, q: SlowSpansAnyQuery): SlowSpansResult {
  const services = q.service !== undefined ? [q.service] : spanServices(r);
  const limit = q.limit ?? 20;
  const minDur = q.minDurationNs ?? 0;
  const maxScan = q.maxScan ?? 1_000_000;
  r.refresh();
  const cand: { d: number; id: Buffer }[] = [];
  let scanned = 0;
  let matched = 0;
  let truncated = false;
  for (const svc of services) {
    if (svc.includes('\0')) continue;
    const p = Buffer.concat([Buffer.from(svc, 'utf8'), Buffer.from([0])]);
    const start = Buffer.concat([p, u64be(q.fromUnixNano)]);
    const end = Buffer.concat([p, u64be(q.toUnixNano + 1n)]);
    for (const { key, value } of r.spans.byTime.getRange({ start, end })) {
      if (++scanned > maxScan) {
        truncated = true;
        break;
      }
      const d = (value as Buffer).readDoubleLE(0);
      if (d < minDur) continue;
      matched++;
      cand.push({ d, id: Buffer.from((key as Buffer).subarray(p.length + 8)) });
      // keep the candidate list small: prune to the best `limit` now and then
      if (cand.length > 4 * limit + 1024) {
        cand.sort((x, y) => y.d - x.d);
        cand.length = limit;
      }
    }
    if (truncated) break;
  }
  cand.sort((x, y) => y.d - x.d);
  const spans: StoredSpan[] = [];
  for (const c of cand.slice(0, limit)) {
    const s = r.spans.byId.get(c.id) as StoredSpan | undefined;
    if (s) spans.push(s);
  }
  return { spans, matched, truncated };
}

export interface RequestIdMatch {
  span: StoredSpan;
  /** the attribute that matched */
  attribute: string;
}

/**
 * Spans whose request id (gen_ai.request.id, or a kept request-id attribute)
 * equals `requestId`. A scan of the span table (there is no request-id
 * index), stopping after `maxScan` spans or `limit` matches.
 */
export function spansByRequestId(r: StoreReader, requestId: string, limit = 50, maxScan = 2_000_000): { matches: RequestIdMatch[]; truncated: boolean } {
  r.refresh();
  const matches: RequestIdMatch[] = [];
  let n = 0;
  for (const { value } of r.spans.byId.getRange({})) {
    if (++n > maxScan) return { matches, truncated: true };
    const s = value as StoredSpan;
    let attr: string | null = null;
    if (s.requestId === requestId) attr = 'gen_ai.request.id';
    else {
      for (const a of REQUEST_ID_ATTRIBUTES) {
        const v = s.attributes?.[a];
        if (v !== undefined && String(v) === requestId) {
          attr = a;
          break;
        }
      }
    }
    if (attr) {
      matches.push({ span: s, attribute: attr });
      if (matches.length >= limit) break;
    }
  }
  return { matches, truncated: false };
}

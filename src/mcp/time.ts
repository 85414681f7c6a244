// Time arguments of the MCP tools: epoch ns (string or number), RFC 3339, or
// relative to now ("-5m", "now"); converted to the store's monotonic clock
// with the stored clock history (sample in force at the time).

import { ClockHistory } from '../capture/index.js';
import type { StoreReader } from '../store/index.js';

/** A tool argument failed validation: the message goes back to the client as an isError result. */
export class ToolInputError extends Error {}

export const TIME_HELP =
  'epoch nanoseconds (decimal string preferred; JSON numbers above 2^53 lose precision), an RFC 3339 time ' +
  '("2025-01-02T03:04:05.123456789Z"), or relative to now: "now", "-30s", "-5m", "-2h", "-1d", "-250ms"';

const UNIT_NS: Record<string, bigint> = { ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n, d: 86_400_000_000_000n };

/** Earliest accepted epoch ns (2001-09-09): smaller numbers are almost surely seconds or milliseconds. */
const MIN_EPOCH_NS = 1_000_000_000_000_000_000n;

export function nowEpochNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Parse one time argument to epoch ns. `name` is used in the error message. */
export function parseTimeArg(v: string | number, name: string, now: bigint = nowEpochNs()): bigint {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || !Number.isInteger(v) || v < 0) throw new ToolInputError(`${name}: expected ${TIME_HELP}; got ${v}`);
    v = BigInt(v).toString();
  }
  const s = v.trim();
  if (s === 'now') return now;
  if (/^\d{1,20}$/.test(s)) {
    const n = BigInt(s);
    if (n < MIN_EPOCH_NS) throw new ToolInputError(`${name}: "${s}" is not epoch nanoseconds (too small: seconds or milliseconds?); expected ${TIME_HELP}`);
    if (n > (1n << 63n)) throw new ToolInputError(`${name}: "${s}" is out of range`);
    return n;
  }
  const rel = /^-(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)$/.exec(s);
  if (rel) {
    const [whole, frac = ''] = rel[1].split('.');
    const unit = UNIT_NS[rel[2]];
    const f = frac.slice(0, 9).padEnd(9, '0');
    const ns = BigInt(whole) * unit + (BigInt(f) * unit) / 1_000_000_000n;
    if (ns > 400n * UNIT_NS.d) throw new ToolInputError(`${name}: "${s}" reaches back more than 400 days`);
    return now - ns;
  }
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$/.exec(s);
  if (m) {
    const base = Date.parse(m[1] + (m[3] === 'z' ? 'Z' : m[3]));
    if (!Number.isNaN(base)) return BigInt(base) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
  }
  throw new ToolInputError(`${name}: cannot read "${s}" as a time; expected ${TIME_HELP}`);
}

export interface Window {
  fromUnixNano: bigint;
  toUnixNano: bigint;
  /** the same in the store's monotonic ns */
  a: number;
  b: number;
}

/** Longest window a tool accepts (bounds the work of one call). */
export const MAX_WINDOW_NS = 7n * 86_400_000_000_000n;

/** since (required) / until (default now), validated: until after since, not longer than maxNs. */
export function parseWindow(clock: ClockHistory, since: string | number, until: string | number | undefined, maxNs: bigint = MAX_WINDOW_NS): Window {
  const now = nowEpochNs();
  const from = parseTimeArg(since, 'since', now);
  const to = until === undefined ? now : parseTimeArg(until, 'until', now);
  if (to <= from) throw new ToolInputError(`inverted or empty window: until (${to}) must be after since (${from})`);
  if (to - from > maxNs) throw new ToolInputError(`window too long: ${(Number(to - from) / 3.6e12).toFixed(1)} h; at most ${Number(maxNs / 3_600_000_000_000n)} h per call`);
  return { fromUnixNano: from, toUnixNano: to, a: Math.max(0, clock.toMonoNs(from)), b: Math.max(0, clock.toMonoNs(to)) };
}

/**
 * The store's clock history, loaded once per reader and extended
 * incrementally with the samples written since (a long-running server).
 */
export class ClockCacheMcp {
  private readonly clock = new ClockHistory();
  private last: number | undefined;

  get(r: StoreReader): ClockHistory {
    for (const s of r.clockSamples(this.last)) {
      this.clock.add(s.monoNs, BigInt(s.realtimeNs), s.errorNs);
      this.last = s.monoNs;
    }
    return this.clock;
  }
}

/** Monotonic ns -> epoch ns as a decimal string. */
export function epochStr(clock: ClockHistory, mono: number): string {
  return clock.toEpochNs(mono).toString();
}

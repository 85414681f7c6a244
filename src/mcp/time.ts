// Time arguments of the MCP tools: epoch ns (string or number), RFC 3339, or
// relative to now ("-5m", "now"); converted to the store's monotonic clock
// with the store's clock (store/clock.ts: the sample in force at the time).

import type { ClockHistory } from '../capture/index.js';

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
  /** set when the default window was moved to where the store has data */
  note?: string;
}

/** Longest window a tool accepts (bounds the work of one call). */
export const MAX_WINDOW_NS = 7n * 86_400_000_000_000n;
/** Default window length: `since` defaults to this long before `until`. */
export const DEFAULT_WINDOW_NS = 3_600_000_000_000n;

/** The store's data (kernel events and spans), epoch ns. */
export interface DataRange {
  from: bigint;
  to: bigint;
}

/**
 * since / until as given, or the defaults: until = now; since = an hour
 * before until, or the store's first data when that is later (the store's
 * span, if shorter). When neither is given and the store's data ended more
 * than an hour ago, the window is the store's last hour (with a note).
 * Validated: until after since, at most maxNs long.
 */
export function resolveWindow(
  clock: ClockHistory, since: string | number | undefined, until: string | number | undefined,
  range?: () => DataRange | null, maxNs: bigint = MAX_WINDOW_NS,
): Window {
  const now = nowEpochNs();
  let to = until === undefined ? now : parseTimeArg(until, 'until', now);
  let from: bigint;
  let note: string | undefined;
  if (since !== undefined) from = parseTimeArg(since, 'since', now);
  else {
    from = to - DEFAULT_WINDOW_NS;
    const r = range?.() ?? null;
    if (r) {
      if (until === undefined && r.to < from) {
        to = r.to + 1_000_000n;
        from = to - DEFAULT_WINDOW_NS;
        note = `no data in the last hour: the default window is the store's last hour of data (ending ${isoOf(r.to)}); give since/until for another`;
      }
      if (r.from > from && r.from < to) from = r.from;
    }
  }
  if (to <= from) throw new ToolInputError(`inverted or empty window: until (${to}) must be after since (${from}); e.g. since "-1h", until "now"`);
  if (to - from > maxNs) throw new ToolInputError(`window too long: ${(Number(to - from) / 3.6e12).toFixed(1)} h; at most ${Number(maxNs / 3_600_000_000_000n)} h per call: give a later since or an earlier until`);
  const w: Window = { fromUnixNano: from, toUnixNano: to, a: Math.max(0, clock.toMonoNs(from)), b: Math.max(0, clock.toMonoNs(to)) };
  if (note) w.note = note;
  return w;
}

function isoOf(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

/** Monotonic ns -> epoch ns as a decimal string. */
export function epochStr(clock: ClockHistory, mono: number): string {
  return clock.toEpochNs(mono).toString();
}

// What every kspan command parses its arguments with: one usage error (exit
// code 2), one option parser, and one parser per kind of value (integers,
// durations, sizes, epoch times, SERVICE=COMM maps), each with a one-line
// message that says what it wanted.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseServiceProcess } from '../correlator/index.js';

/** A bad command line: the command prints the message and exits 2. */
export class UsageError extends Error {}

/** True for UsageError and node:util parseArgs' own errors (unknown option, missing value). */
export function isUsageError(e: unknown): boolean {
  return e instanceof UsageError || String((e as NodeJS.ErrnoException)?.code ?? '').startsWith('ERR_PARSE_ARGS');
}

/** parseArgs, strict, with -h/--help on every command. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, positionals = false) {
  return parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: positionals, strict: true });
}

/** An integer option >= min (undefined when absent). */
export function intOpt(v: string | undefined, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} wants an integer >= ${min}, got "${v}"`);
  return n;
}

/** --ring-mb: the probe's scheduler ring in MiB, 1..1024 (the probe's own bounds). */
export function ringMbOpt(v: string | undefined): number | undefined {
  const n = intOpt(v, 'ring-mb', 1);
  if (n !== undefined && n > 1024) throw new UsageError(`--ring-mb wants at most 1024 (MiB), got "${v}"`);
  return n;
}

/** A number >= 0 (fractions allowed). */
export function nonNegative(v: string, name: string): number {
  const n = Number(v);
  if (!(n >= 0)) throw new UsageError(`--${name} wants a number >= 0, got "${v}"`);
  return n;
}

const DURATION_UNITS: Record<string, number> = { s: 1e9, m: 60e9, h: 3600e9, d: 86400e9 };
/** "90m", "24h", "7d", "3600s" -> ns */
export function parseDuration(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(v.trim());
  if (!m || !(Number(m[1]) > 0)) throw new UsageError(`--${name} wants a duration like 90m, 24h or 7d, got "${v}"`);
  return Number(m[1]) * DURATION_UNITS[m[2]];
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
/** "500M", "10G", "1048576" -> bytes */
export function parseSize(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m || !(Number(m[1]) > 0)) throw new UsageError(`--${name} wants a size like 500M or 10G, got "${v}"`);
  return Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()]);
}

/** Epoch nanoseconds (digits) or an RFC 3339 time (ms precision, or ns when it has 9 fraction digits). */
export function parseEpochNs(v: string, name: string): bigint {
  if (/^\d+$/.test(v)) return BigInt(v);
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(v);
  const base = m ? Date.parse(m[1] + m[3]) : NaN;
  if (!m || Number.isNaN(base)) throw new UsageError(`--${name} wants epoch nanoseconds or an RFC 3339 time, got "${v}"`);
  return BigInt(base) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
}

/** --service-process SERVICE=COMM (repeatable) -> the correlator's serviceProcess map */
export function serviceProcessOpt(list: string[] | undefined): Record<string, string> {
  try {
    return parseServiceProcess(list);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

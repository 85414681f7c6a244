// `kspan stats`: what a store holds.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { formatStats, storeStats } from '../store/index.js';
import { UsageError, parse } from './args.js';

export const STATS_HELP = `usage: kspan
  stats --data DIR [--json]                   what a store holds: time range, events by kind, threads, drops, size`;

export async function cmdStats(argv: string[]): Promise<number> {
  const { values: o } = parse(argv, { data: { type: 'string' }, json: { type: 'boolean' } });
  if (o.help) {
    process.stdout.write(STATS_HELP + '\n');
    return 0;
  }
  if (!o.data) throw new UsageError('--data DIR is required (the store `kspan record --data DIR` wrote)');
  if (!existsSync(join(o.data, 'data.mdb'))) throw new Error(`no kspan store in ${o.data} (no data.mdb)`);
  const s = storeStats(o.data);
  process.stdout.write(o.json ? JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n' : formatStats(s) + '\n');
  return 0;
}

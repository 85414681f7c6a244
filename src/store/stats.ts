// `kspan stats --data DIR`: what is in a store, as a plain object and as text.

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { kindName } from '../capture/index.js';
import { openStoreReader, type StoreReader } from './reader.js';
import { usedBytes } from './writer.js';

export interface StoreStats {
  dir: string;
  partitionNs: number;
  partitions: number;
  /** monotonic ns range of stored event end times (null when empty) */
  fromNs: number | null;
  toNs: number | null;
  /** the same as epoch ns (decimal strings), via the stored clock history */
  fromUnixNano: string | null;
  toUnixNano: string | null;
  events: number;
  eventsByKind: Record<string, number>;
  threads: number;
  /** endReason: why a session ended when something failed (the probe died, the store filled); null: a clean stop */
  sessions: { startNs: number; endNs: number; closed: boolean; groups: string[]; endReason: string | null }[];
  lostByRing: Record<string, number>;
  lostTotal: number;
  skipped: Record<string, number>;
  /** data.mdb size on disk (never shrinks) and pages in use */
  fileBytes: number;
  usedBytes: number;
  bytesPerEvent: number | null;
}

export function statsOf(r: StoreReader, dir: string): StoreStats {
  r.refresh();
  const parts = r.partitions();
  let events = 0;
  const byKind: Record<string, number> = {};
  let from = Infinity;
  let to = -Infinity;
  for (const p of parts) {
    events += p.events;
    p.byKind.forEach((n, k) => {
      if (n) byKind[kindName(k)] = (byKind[kindName(k)] ?? 0) + n;
    });
    if (p.minEnd < from) from = p.minEnd;
    if (p.maxEnd > to) to = p.maxEnd;
  }
  const clock = r.clockHistory();
  const drops = r.dropsIn(0, Number.MAX_SAFE_INTEGER);
  let fileBytes = 0;
  try {
    fileBytes = statSync(join(dir, 'data.mdb')).size;
  } catch {
    /* */
  }
  const used = usedBytes(r);
  const has = Number.isFinite(from);
  return {
    dir, partitionNs: r.partitionNs, partitions: parts.length,
    fromNs: has ? from : null, toNs: has ? to : null,
    fromUnixNano: has && clock.size ? clock.toEpochNs(from).toString() : null,
    toUnixNano: has && clock.size ? clock.toEpochNs(to).toString() : null,
    events, eventsByKind: byKind, threads: r.threadCount(),
    sessions: r.sessions().map((s) => ({ startNs: s.startNs, endNs: s.endNs, closed: s.closed, groups: Object.keys(s.groups), endReason: s.endReason ?? null })),
    lostByRing: drops.byRing, lostTotal: drops.total, skipped: r.skipCounters(),
    fileBytes, usedBytes: used, bytesPerEvent: events ? used / events : null,
  };
}

/** Stats of the store in `dir` (opens it read-only). */
export function storeStats(dir: string): StoreStats {
  const r = openStoreReader(dir);
  try {
    return statsOf(r, dir);
  } finally {
    void r.root.close();
  }
}

export function formatStats(s: StoreStats): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const mb = (x: number): string => `${(x / 1e6).toFixed(1)} MB`;
  const lines = [
    `store ${s.dir}`,
    `  time range   ${s.fromNs === null ? '(empty)' : `${(s.fromNs / 1e9).toFixed(3)} .. ${(s.toNs! / 1e9).toFixed(3)} s monotonic` +
      (s.fromUnixNano ? ` (${new Date(Number(BigInt(s.fromUnixNano) / 1_000_000n)).toISOString()} .. ${new Date(Number(BigInt(s.toUnixNano!) / 1_000_000n)).toISOString()})` : '')}`,
    `  events       ${n(s.events)}` + (Object.keys(s.eventsByKind).length ? `  (${Object.entries(s.eventsByKind).map(([k, v]) => `${k} ${n(v)}`).join(', ')})` : ''),
    `  threads      ${n(s.threads)} known incarnations`,
    `  partitions   ${s.partitions} x ${(s.partitionNs / 60e9).toFixed(1)} min`,
    `  sessions     ${s.sessions.length}` + s.sessions.map((x) => `\n    ${(x.startNs / 1e9).toFixed(3)} .. ${(x.endNs / 1e9).toFixed(3)} s${x.closed ? '' : ' (open or interrupted)'}${x.groups.length ? `  groups: ${x.groups.join(',')}` : ''}${x.endReason ? `  ended: ${x.endReason}` : ''}`).join(''),
    `  lost         ${n(s.lostTotal)}` + (s.lostTotal ? `  (${Object.entries(s.lostByRing).map(([k, v]) => `${k} ${n(v)}`).join(', ')})` : ''),
    `  skipped      ${Object.entries(s.skipped).map(([k, v]) => `${k} ${n(v)}`).join(', ') || '0'}`,
    `  size         ${mb(s.usedBytes)} in use, data.mdb ${mb(s.fileBytes)} (LMDB files do not shrink)` +
      (s.bytesPerEvent !== null ? `, ${s.bytesPerEvent.toFixed(1)} B/event` : ''),
  ];
  return lines.join('\n') + '\n';
}

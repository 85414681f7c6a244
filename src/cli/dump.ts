// `kspan dump`: print a recorded record file, one record per line.

import { statSync } from 'node:fs';
import {
  RecordView, TaskNames, kindFromName, recordToJson, recordToText, replayFile, type CaptureSink, type ClockHistory, type RecordBatch,
} from '../capture/index.js';
import { UsageError, intOpt, parse } from './args.js';

export const DUMP_HELP = `usage: kspan
  dump FILE [--json] [--kind K,...] [--tid T]   print a recorded file, one record per line`;

export async function cmdDump(argv: string[]): Promise<number> {
  const { values: o, positionals } = parse(argv, {
    json: { type: 'boolean' },
    kind: { type: 'string', short: 'k' },
    tid: { type: 'string', multiple: true },
  }, true);
  if (o.help) {
    process.stdout.write(DUMP_HELP + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('usage: kspan dump FILE [--json] [--kind K,...] [--tid T]');
  const file = positionals[0];
  statSync(file); // a clear ENOENT before streaming
  const kinds = new Set<number>();
  for (const k of o.kind?.split(',') ?? []) {
    const n = kindFromName(k.trim());
    if (n === undefined) throw new UsageError(`unknown kind "${k}"`);
    kinds.add(n);
  }
  const tids = new Set((o.tid ?? []).map((t) => intOpt(t, 'tid')!));
  // First pass: every name in the file, for records that precede their TASK record.
  const later = new TaskNames(1 << 20);
  await replayFile(file, { onBatch: (b) => later.observeBatch(b) });
  const names = new TaskNames(65536, later);
  const v = new RecordView();
  const out = process.stdout;
  const ac = new AbortController();
  out.on('error', () => ac.abort()); // EPIPE from `| head`: stop quietly
  const fmt = o.json
    ? (c: ClockHistory): string => JSON.stringify(recordToJson(v, c, names))
    : (c: ClockHistory): string => recordToText(v, c, names);
  const sink: CaptureSink = {
    onBatch(batch: RecordBatch, clock: ClockHistory): void | Promise<void> {
      if (ac.signal.aborted) return;
      names.observeBatch(batch);
      const lines: string[] = [];
      for (let i = 0; i < batch.count; i++) {
        v.set(batch, i);
        if (kinds.size && !kinds.has(v.kind)) continue;
        if (tids.size && !tids.has(v.tid)) continue;
        lines.push(fmt(clock));
      }
      if (!lines.length) return;
      if (!out.write(lines.join('\n') + '\n')) {
        return new Promise<void>((res) => {
          const done = (): void => {
            out.off('drain', done);
            ac.signal.removeEventListener('abort', done);
            res();
          };
          out.on('drain', done);
          ac.signal.addEventListener('abort', done);
        });
      }
    },
  };
  const r = await replayFile(file, sink, { signal: ac.signal });
  if (ac.signal.aborted) return 0;
  const c = r.counters;
  process.stderr.write(
    `kspan dump: ${c.records.toLocaleString('en-US')} records, ${c.unknownKinds} unknown-kind records skipped, ` +
    `${c.corruptBytes} corrupt bytes (${c.resyncs} resyncs), ${c.truncatedBytes} truncated bytes at the end` +
    `${r.state.totalLost ? `; ${r.state.totalLost} records were lost in the kernel during capture` : ''}\n`);
  if (r.state.clock.size === 0) process.stderr.write('kspan dump: no HELLO or CLOCK record: times are monotonic ns, not epoch\n');
  return 0;
}

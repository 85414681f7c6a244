// `kspan export perfetto (--trace-id ID | --pid P --from A --to B | --tid T --from A --to B) --data DIR [--out FILE]`

import { createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openStoreReader } from '../store/index.js';
import { writePerfettoTrace, type PerfettoTarget } from './export.js';

export const EXPORT_HELP = `usage: kspan export perfetto --data DIR (--trace-id ID | --pid P --from A --to B | --tid T --from A --to B)
                            [--out FILE] [--max-events N] [--no-culprits]
  Chrome trace-event JSON for ui.perfetto.dev / chrome://tracing: threads as tracks (on-CPU,
  runqueue and blocked slices with their state), wakeup flows, futex/CUDA/block-I/O calls, and the
  trace's request spans on top. A, B: epoch ns or RFC 3339 times. Writes to stdout unless --out.
  Exit codes: 0 ok, 2 usage, 3 trace not in the store, 1 other errors.`;

class Usage extends Error {}

/** Epoch nanoseconds (digits) or an RFC 3339 time (ns precision when it has 9 fraction digits). */
export function parseEpochNs(v: string, name: string): bigint {
  if (/^\d+$/.test(v)) return BigInt(v);
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(v);
  const base = m ? Date.parse(m[1] + m[3]) : NaN;
  if (!m || Number.isNaN(base)) throw new Usage(`--${name} wants epoch nanoseconds or an RFC 3339 time, got "${v}"`);
  return BigInt(base) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
}

function posInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new Usage(`--${name} wants a positive integer, got "${v}"`);
  return n;
}

export async function cmdExport(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (e) {
    const usage = e instanceof Usage || String((e as NodeJS.ErrnoException).code ?? '').startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`kspan export: ${(e as Error).message}\n`);
    if (usage) process.stderr.write(EXPORT_HELP + '\n');
    return usage ? 2 : 1;
  }
}

async function run(argv: string[]): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      data: { type: 'string' },
      'trace-id': { type: 'string' },
      pid: { type: 'string' },
      tid: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      out: { type: 'string', short: 'o' },
      'max-events': { type: 'string' },
      'no-culprits': { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (o.help) {
    process.stdout.write(EXPORT_HELP + '\n');
    return 0;
  }
  if (positionals[0] !== 'perfetto' || positionals.length !== 1) {
    throw new Usage(positionals.length ? `unknown export format "${positionals.join(' ')}" (only "perfetto")` : 'give the format: kspan export perfetto ...');
  }
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir) throw new Usage('--data DIR is required (or set KSPAN_DATA)');
  let target: PerfettoTarget;
  const windowMode = o.pid !== undefined || o.tid !== undefined;
  if ((o['trace-id'] !== undefined) === windowMode) throw new Usage('give --trace-id ID, or --pid P / --tid T with --from and --to');
  if (o['trace-id'] !== undefined) {
    if (o.from !== undefined || o.to !== undefined) throw new Usage('--from/--to go with --pid/--tid, not --trace-id');
    const id = o['trace-id'].toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) throw new Usage(`a trace id is 32 hex digits, got "${o['trace-id']}"`);
    target = { traceId: id };
  } else {
    if (o.pid !== undefined && o.tid !== undefined) throw new Usage('give one of --pid and --tid');
    if (o.from === undefined || o.to === undefined) throw new Usage('--from and --to are required with --pid/--tid');
    const fromUnixNano = parseEpochNs(o.from, 'from');
    const toUnixNano = parseEpochNs(o.to, 'to');
    if (toUnixNano <= fromUnixNano) throw new Usage('--to must be after --from');
    target = o.tid !== undefined
      ? { tid: posInt(o.tid, 'tid')!, fromUnixNano, toUnixNano }
      : { pid: posInt(o.pid, 'pid')!, fromUnixNano, toUnixNano };
  }
  const maxEvents = posInt(o['max-events'], 'max-events');
  if (!existsSync(join(dir, 'data.mdb'))) throw new Error(`no kspan store in ${dir} (no data.mdb)`);

  const reader = openStoreReader(dir);
  try {
    if ('traceId' in target && !reader.spans.getTrace(target.traceId).length) {
      process.stderr.write(`kspan export: trace ${target.traceId} not found in the store\n`);
      return 3;
    }
    const warn = (m: string): void => void process.stderr.write(`kspan export: ${m}\n`);
    const opts = { maxEvents, culprits: !o['no-culprits'], warn };
    if (!o.out || o.out === '-') {
      const r = await writePerfettoTrace(reader, target, process.stdout, opts);
      return r.found ? 0 : 3;
    }
    // write next to the destination, rename when complete (no half-written file on error)
    const tmp = `${o.out}.tmp-${process.pid}`;
    const ws = createWriteStream(tmp);
    try {
      const r = await writePerfettoTrace(reader, target, ws, opts);
      await new Promise<void>((resolve, reject) => {
        ws.on('error', reject);
        ws.end(resolve);
      });
      if (!r.found) {
        rmSync(tmp, { force: true });
        return 3;
      }
      renameSync(tmp, o.out);
      process.stderr.write(`kspan export: wrote ${o.out} (${r.events} events, ${r.threads} threads, ${r.spans} spans${r.truncated ? ', truncated' : ''})\n`);
      return 0;
    } catch (e) {
      ws.destroy();
      rmSync(tmp, { force: true });
      throw e;
    }
  } finally {
    void reader.root.close();
  }
}

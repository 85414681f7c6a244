// `kspan export perfetto (--trace-id ID | --pid P --from A --to B | --tid T --from A --to B) --data DIR [--out FILE]`

import { createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writePerfettoTrace, type PerfettoTarget } from '../perfetto/index.js';
import { openStoreReader } from '../store/index.js';
import { UsageError, intOpt, isUsageError, parseEpochNs } from './args.js';

export const EXPORT_HELP = `usage: kspan export perfetto --data DIR (--trace-id ID | --pid P --from A --to B | --tid T --from A --to B)
                            [--out FILE] [--max-events N] [--no-culprits]
  Chrome trace-event JSON for ui.perfetto.dev / chrome://tracing: threads as tracks (on-CPU,
  runqueue and blocked slices with their state), wakeup flows, futex/CUDA/block-I/O calls, and the
  trace's request spans on top. A, B: epoch ns or RFC 3339 times. Writes to stdout unless --out.
  Exit codes: 0 ok, 2 usage, 3 trace not in the store, 1 other errors.`;

export async function cmdExport(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (e) {
    const usage = isUsageError(e);
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
    throw new UsageError(positionals.length ? `unknown export format "${positionals.join(' ')}" (only "perfetto")` : 'give the format: kspan export perfetto ...');
  }
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir) throw new UsageError('--data DIR is required (or set KSPAN_DATA)');
  let target: PerfettoTarget;
  const windowMode = o.pid !== undefined || o.tid !== undefined;
  if ((o['trace-id'] !== undefined) === windowMode) throw new UsageError('give --trace-id ID, or --pid P / --tid T with --from and --to');
  if (o['trace-id'] !== undefined) {
    if (o.from !== undefined || o.to !== undefined) throw new UsageError('--from/--to go with --pid/--tid, not --trace-id');
    const id = o['trace-id'].toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) throw new UsageError(`a trace id is 32 hex digits, got "${o['trace-id']}"`);
    target = { traceId: id };
  } else {
    if (o.pid !== undefined && o.tid !== undefined) throw new UsageError('give one of --pid and --tid');
    if (o.from === undefined || o.to === undefined) throw new UsageError('--from and --to are required with --pid/--tid');
    const fromUnixNano = parseEpochNs(o.from, 'from');
    const toUnixNano = parseEpochNs(o.to, 'to');
    if (toUnixNano <= fromUnixNano) throw new UsageError('--to must be after --from');
    target = o.tid !== undefined
      ? { tid: intOpt(o.tid, 'tid', 1)!, fromUnixNano, toUnixNano }
      : { pid: intOpt(o.pid, 'pid', 1)!, fromUnixNano, toUnixNano };
  }
  const maxEvents = intOpt(o['max-events'], 'max-events', 1);
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

// `kspan explain`: why a trace's spans (or a thread's / process's window) were slow.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { explainTrace, explainWindow, formatExplanation } from '../correlator/index.js';
import { openStoreReader } from '../store/index.js';
import { UsageError, intOpt, parse, parseEpochNs, serviceProcessOpt } from './args.js';

export const EXPLAIN_HELP = `usage: kspan
  explain TRACE_ID --data DIR [--json]        why the trace's spans were slow: time breakdown, causes, chains
      [--service-process SERVICE=COMM]... [--thread-id-is-os-tid]   join options, as for run
  explain --tid T|--pid P --from A --to B --data DIR [--json]
                                              the same for a thread or process and a window (A, B: epoch ns
                                              or RFC 3339 times); exits 3 when the trace is not stored`;

export async function cmdExplain(argv: string[]): Promise<number> {
  const { values: o, positionals } = parse(argv, {
    data: { type: 'string' },
    json: { type: 'boolean' },
    tid: { type: 'string' },
    pid: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    'service-process': { type: 'string', multiple: true },
    'thread-id-is-os-tid': { type: 'boolean' },
  }, true);
  if (o.help) {
    process.stdout.write(EXPLAIN_HELP + '\n');
    return 0;
  }
  const explainOpts = { serviceProcess: serviceProcessOpt(o['service-process']), threadIdIsOsTid: o['thread-id-is-os-tid'] };
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir) throw new UsageError('--data DIR is required (or set KSPAN_DATA)');
  if (!existsSync(join(dir, 'data.mdb'))) throw new Error(`no kspan store in ${dir} (no data.mdb)`);
  const windowMode = o.tid !== undefined || o.pid !== undefined || o.from !== undefined || o.to !== undefined;
  if (windowMode === (positionals.length > 0)) {
    throw new UsageError('give a trace id, or --tid/--pid with --from and --to');
  }
  const reader = openStoreReader(dir);
  try {
    let e;
    if (windowMode) {
      if ((o.tid === undefined) === (o.pid === undefined)) throw new UsageError('give one of --tid and --pid');
      if (!o.from || !o.to) throw new UsageError('--from and --to are required with --tid/--pid');
      const fromUnixNano = parseEpochNs(o.from, 'from'), toUnixNano = parseEpochNs(o.to, 'to');
      if (toUnixNano <= fromUnixNano) throw new UsageError('--to must be after --from');
      e = explainWindow(reader, { tid: intOpt(o.tid, 'tid', 1), pid: intOpt(o.pid, 'pid', 1), fromUnixNano, toUnixNano }, explainOpts);
    } else {
      if (positionals.length > 1) throw new UsageError(`one trace id, got ${positionals.length}`);
      const traceId = positionals[0].toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(traceId)) throw new UsageError(`a trace id is 32 hex digits, got "${positionals[0]}"`);
      e = explainTrace(reader, traceId, explainOpts);
    }
    process.stdout.write(o.json ? JSON.stringify(e) + '\n' : formatExplanation(e) + '\n');
    return e.found ? 0 : 3;
  } finally {
    void reader.root.close();
  }
}

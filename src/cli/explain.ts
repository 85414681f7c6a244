// `kspan explain`: why a trace's spans (or a thread's / process's window) were slow.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { explainTrace, explainWindow, formatExplanation } from '../correlator/index.js';
import { FanOut, mergeExplanations, serverHost, type PeerOptions } from '../mcp/index.js';
import { localHost, openStoreReader } from '../store/index.js';
import { UsageError, intOpt, parse, parseEpochNs, serviceProcessOpt } from './args.js';
import { PEER_ARG_SPECS, PEER_HELP, peerOptionsFrom } from './mcp.js';

export const EXPLAIN_HELP = `usage: kspan
  explain TRACE_ID --data DIR [--json]        why the trace's spans were slow: time breakdown, causes, chains
      [--service-process SERVICE=COMM]... [--thread-id-is-os-tid]   join options, as for run
      [--peers URL,...|--peers-file F|--peers-dns NAME:PORT]        also ask these kspans (MCP HTTP, token from
                                              --peers-token-file or KSPAN_MCP_TOKEN) and merge; --data optional then
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
    'max-spans': { type: 'string' },
    ...PEER_ARG_SPECS,
  }, true);
  if (o.help) {
    process.stdout.write(EXPLAIN_HELP + '\n' + PEER_HELP + '\n');
    return 0;
  }
  const explainOpts = { serviceProcess: serviceProcessOpt(o['service-process']), threadIdIsOsTid: o['thread-id-is-os-tid'] };
  let peers: PeerOptions | null;
  try {
    peers = peerOptionsFrom(o);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir && !peers) throw new UsageError('--data DIR is required (or set KSPAN_DATA), or --peers to ask other kspans');
  if (dir && !existsSync(join(dir, 'data.mdb'))) throw new Error(`no kspan store in ${dir} (no data.mdb)`);
  const windowMode = o.tid !== undefined || o.pid !== undefined || o.from !== undefined || o.to !== undefined;
  if (windowMode === (positionals.length > 0)) {
    throw new UsageError('give a trace id, or --tid/--pid with --from and --to');
  }
  if (windowMode && peers) throw new UsageError('--peers applies to a trace id (a thread or process window is one host\'s)');
  const maxSpans = intOpt(o['max-spans'], 'max-spans', 1) ?? 100;
  const reader = dir ? openStoreReader(dir) : null;
  try {
    let e;
    if (windowMode) {
      if ((o.tid === undefined) === (o.pid === undefined)) throw new UsageError('give one of --tid and --pid');
      if (!o.from || !o.to) throw new UsageError('--from and --to are required with --tid/--pid');
      const fromUnixNano = parseEpochNs(o.from, 'from'), toUnixNano = parseEpochNs(o.to, 'to');
      if (toUnixNano <= fromUnixNano) throw new UsageError('--to must be after --from');
      e = explainWindow(reader!, { tid: intOpt(o.tid, 'tid', 1), pid: intOpt(o.pid, 'pid', 1), fromUnixNano, toUnixNano }, explainOpts);
    } else {
      if (positionals.length > 1) throw new UsageError(`one trace id, got ${positionals.length}`);
      const traceId = positionals[0].toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(traceId)) throw new UsageError(`a trace id is 32 hex digits, got "${positionals[0]}"`);
      if (peers) {
        // this command does the fan-out: its calls are peer calls (the peers answer from their own stores)
        if (peers.token === undefined) peers.token = process.env.KSPAN_MCP_TOKEN?.trim() || null;
        const self = reader ? serverHost({ reader }) : localHost();
        const fan = new FanOut({ ...peers, self, clientName: 'kspan-explain' });
        try {
          const asked = fan.call('explain_request', { trace_id: traceId, max_spans: Math.min(100, maxSpans) });
          const t0 = performance.now();
          const local = reader ? explainTrace(reader, traceId, explainOpts) : null;
          const localMs = performance.now() - t0;
          const { answers, errors } = await asked;
          // no local store (no --data): this machine is not one of the hosts
          e = mergeExplanations(traceId, self, local, localMs, answers, errors, maxSpans);
        } finally {
          await fan.close();
        }
      } else {
        e = explainTrace(reader!, traceId, explainOpts);
      }
    }
    process.stdout.write(o.json ? JSON.stringify(e) + '\n' : formatExplanation(e) + '\n');
    return e.found ? 0 : 3;
  } finally {
    void reader?.root.close();
  }
}

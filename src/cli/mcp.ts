// `kspan mcp --data DIR [--http ADDR]`: the MCP server over stdio (default;
// stdout is the protocol, logs go to stderr) or Streamable HTTP.

import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { parseServiceProcess } from '../correlator/index.js';
import { parseDnsPeer, peerUrl, runStdioServer, startMcpHttpServer, type PeerOptions } from '../mcp/index.js';
import { parseListenAddr } from '../net/index.js';
import { checkHostName, localHost } from '../store/index.js';

/** The peer options of `kspan mcp`, `kspan run` and `kspan explain` (node:util parseArgs specs). */
export const PEER_ARG_SPECS = {
  peers: { type: 'string', multiple: true },
  'peers-file': { type: 'string' },
  'peers-dns': { type: 'string', multiple: true },
  'peers-token-file': { type: 'string' },
  'peer-timeout': { type: 'string' },
  'peer-concurrency': { type: 'string' },
} as const;

export const PEER_HELP = `  --peers URL,...       other kspans (their MCP HTTP endpoints, http://HOST:PORT/mcp or HOST:PORT;
                        repeatable): explain_request and find_slow_requests ask them too and merge
  --peers-file FILE     peer URLs, one per line (# comments); re-read when it changes
  --peers-dns NAME:PORT every A/AAAA record of NAME is a peer (e.g. a Kubernetes headless Service; repeatable)
  --peers-token-file F  bearer token sent to the peers (default: this server's token, else KSPAN_MCP_TOKEN)
  --peer-timeout MS     deadline of the peer calls, connect included (default 2000); late peers are listed
                        as timed out and the answer says it is partial
  --peer-concurrency N  peers asked at once (default 16)`;

/**
 * PeerOptions from parsed flags, or null when no peer source is given. Throws
 * a message for a bad value. `token`: undefined = decided by the caller
 * (the HTTP server's own token), else from --peers-token-file.
 */
export function peerOptionsFrom(v: {
  peers?: string[]; 'peers-file'?: string; 'peers-dns'?: string[]; 'peers-token-file'?: string; 'peer-timeout'?: string; 'peer-concurrency'?: string;
}): PeerOptions | null {
  const urls = (v.peers ?? []).flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean).map(peerUrl);
  for (const d of v['peers-dns'] ?? []) parseDnsPeer(d);
  const any = urls.length || v['peers-file'] || v['peers-dns']?.length;
  if (!any) {
    if (v['peers-token-file'] || v['peer-timeout'] || v['peer-concurrency']) throw new Error('--peers-token-file, --peer-timeout and --peer-concurrency apply to --peers, --peers-file or --peers-dns');
    return null;
  }
  const o: PeerOptions = { urls, file: v['peers-file'], dns: v['peers-dns'] };
  if (v['peer-timeout'] !== undefined) {
    const n = Number(v['peer-timeout']);
    if (!(Number.isInteger(n) && n >= 10 && n <= 600_000)) throw new Error(`--peer-timeout wants milliseconds (10..600000), got "${v['peer-timeout']}"`);
    o.timeoutMs = n;
  }
  if (v['peer-concurrency'] !== undefined) {
    const n = Number(v['peer-concurrency']);
    if (!(Number.isInteger(n) && n >= 1 && n <= 1024)) throw new Error(`--peer-concurrency wants an integer 1..1024, got "${v['peer-concurrency']}"`);
    o.concurrency = n;
  }
  if (v['peers-token-file']) {
    const t = readFileSync(v['peers-token-file'], 'utf8').split('\n')[0].trim();
    if (!t) throw new Error(`token file ${v['peers-token-file']} is empty`);
    o.token = t;
  }
  return o;
}

export const MCP_HELP = `usage: kspan mcp --data DIR [--http ADDR] [options]

Serve kspan's read-only investigation tools (find_slow_requests, explain_request,
get_latency_distribution, query_off_cpu, who_woke, futex_contention, query_events,
capture_status, list_processes), the prompt investigate_slow_request and the resources
kspan://coverage, kspan://topology to an MCP client. See src/mcp/README.md.

  --data DIR            the kspan store (or KSPAN_DATA); opened read-only
  (default)             stdio: the client spawns \`kspan mcp --data DIR\`; logs go to stderr
  --http ADDR           Streamable HTTP at http://ADDR/mcp instead (e.g. 127.0.0.1:7799; port 0 = any)
  --token-file FILE     bearer token for HTTP (first line of FILE); else env KSPAN_MCP_TOKEN.
                        Required to bind anything but loopback. Never given as a flag value.
  --allowed-host NAME   extra Host header value accepted over HTTP (repeatable)
  --rate N              HTTP requests per second per client (burst 2N; default 20); each
                        message of a JSON-RPC batch counts
  --audit-log FILE      append the audit JSON lines to FILE instead of stderr
  --service-process S=COMM  map service.name S to process COMM for the process join (repeatable)
  --host-name NAME      the host this server speaks for (default: the store's host, else os.hostname())
${PEER_HELP}`;

export async function cmdMcp(argv: string[]): Promise<number> {
  let o;
  try {
    o = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h' },
        data: { type: 'string' },
        http: { type: 'string' },
        'token-file': { type: 'string' },
        'allowed-host': { type: 'string', multiple: true },
        rate: { type: 'string' },
        'audit-log': { type: 'string' },
        'service-process': { type: 'string', multiple: true },
        'host-name': { type: 'string' },
        ...PEER_ARG_SPECS,
      },
      strict: true,
    }).values;
  } catch (e) {
    process.stderr.write(`kspan mcp: ${(e as Error).message}\n${MCP_HELP}\n`);
    return 2;
  }
  if (o.help) {
    // with stdio, stdout is the protocol; help is only printed when asked for
    process.stdout.write(MCP_HELP + '\n');
    return 0;
  }
  const usage = (m: string): number => {
    process.stderr.write(`kspan mcp: ${m}\n`);
    return 2;
  };
  const dir = o.data ?? process.env.KSPAN_DATA;
  if (!dir) return usage('--data DIR is required (or set KSPAN_DATA)');
  if (!existsSync(join(dir, 'data.mdb'))) {
    process.stderr.write(`kspan mcp: no kspan store in ${dir} (no data.mdb)\n`);
    return 1;
  }
  let serviceProcess: Record<string, string>;
  try {
    serviceProcess = parseServiceProcess(o['service-process']);
  } catch (e) {
    return usage((e as Error).message);
  }
  let rate: { perSecond: number; burst: number } | undefined;
  if (o.rate !== undefined) {
    const n = Number(o.rate);
    if (!(n > 0 && n <= 100000)) return usage(`--rate wants a positive number, got "${o.rate}"`);
    rate = { perSecond: n, burst: Math.max(1, Math.ceil(2 * n)) };
  }
  let peers: PeerOptions | null;
  let host;
  try {
    peers = peerOptionsFrom(o);
    host = o['host-name'] ? localHost(checkHostName(o['host-name'])) : undefined;
  } catch (e) {
    return usage((e as Error).message);
  }
  const log = o['audit-log'] ? createWriteStream(o['audit-log'], { flags: 'a', mode: 0o600 }) : process.stderr;
  const common = { dataDir: dir, serviceProcess: Object.keys(serviceProcess).length ? serviceProcess : undefined, log, host, peers };

  if (o.http === undefined) {
    if (o['token-file'] || o['allowed-host'] || o.rate) return usage('--token-file, --allowed-host and --rate are for --http');
    if (peers && peers.token === undefined) peers.token = process.env.KSPAN_MCP_TOKEN?.trim() || null;
    await runStdioServer(common);
    return 0;
  }
  try {
    parseListenAddr(o.http);
  } catch (e) {
    return usage(`--http: ${(e as Error).message}`);
  }
  let h;
  try {
    h = await startMcpHttpServer({ ...common, addr: o.http, tokenFile: o['token-file'], allowedHosts: o['allowed-host'], rateLimit: rate });
  } catch (e) {
    process.stderr.write(`kspan mcp: ${(e as Error).message}\n`);
    return 1;
  }
  // the bound URL on stdout (scripts and tests read it), then serve until a signal
  process.stdout.write(`${h.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await h.close();
  return 0;
}

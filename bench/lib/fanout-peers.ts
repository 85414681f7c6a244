// Child process of bench/fanout.ts: MCP Streamable HTTP servers (kspan's
// startMcpHttpServer) over the given stores, on loopback. One JSON line on
// stdout with their URLs; serves until SIGTERM.
//
//   tsx bench/lib/fanout-peers.ts '<json: {servers: [{dir, host, peers?: string[], timeoutMs?}], token}>'
//
// A server with `slowMs` is not kspan: it reads the request and answers 503
// after slowMs (a peer slower than the fan-out deadline).

import { createServer } from 'node:http';
import { localHost, openStoreReader } from '../../src/store/index.js';
import { startMcpHttpServer } from '../../src/mcp/index.js';

interface Spec { dir?: string; host?: string; peers?: string[]; timeoutMs?: number; concurrency?: number; slowMs?: number }
const cfg = JSON.parse(process.argv[2]) as { servers: Spec[]; token: string };
process.env.KSPAN_BENCH_TOKEN = cfg.token;

const urls: string[] = [];
const closers: (() => Promise<void>)[] = [];
for (const s of cfg.servers) {
  if (s.slowMs !== undefined) {
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => { res.writeHead(503); res.end('slow'); }, s.slowMs));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    urls.push(`http://127.0.0.1:${(srv.address() as { port: number }).port}/mcp`);
    closers.push(() => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
    continue;
  }
  const reader = openStoreReader(s.dir!);
  const h = await startMcpHttpServer({
    reader, addr: '127.0.0.1:0', tokenEnv: 'KSPAN_BENCH_TOKEN', host: { name: s.host!, bootId: localHost().bootId },
    // the bench calls faster than the default per-client rate limit (20/s)
    rateLimit: { perSecond: 100_000, burst: 100_000 },
    peers: s.peers ? { urls: s.peers, timeoutMs: s.timeoutMs, concurrency: s.concurrency } : null,
    log: null, diag: () => {},
  });
  urls.push(h.url);
  closers.push(async () => { await h.close(); await reader.root.close(); });
}
process.stdout.write(JSON.stringify({ urls }) + '\n');
await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
for (const c of closers) await c();
process.exit(0);

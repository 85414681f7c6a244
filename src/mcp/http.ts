// Streamable HTTP transport for the kspan MCP server (node:http, stateless:
// one McpServer + transport per POST, sharing one read-only store handle).
//
// Security, checked in this order before the request reaches MCP:
//   path      only /mcp (404)
//   Host      must name the bind address, localhost, or an allowed host (403;
//             DNS-rebinding protection); a present Origin likewise (403)
//   rate      token bucket per client address (429 + Retry-After), unauthenticated
//             requests included; a JSON-RPC batch costs one token per message
//             (the first is taken before the body is read, the rest after it
//             is parsed), and a batch larger than the burst is refused (400)
//   token     `Authorization: Bearer <token>` when a token is configured (401);
//             a token is REQUIRED to bind anything but loopback (refuse to start).
//             The token comes from an env var or a file, never a flag value.

import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Tracer } from '@opentelemetry/api';
import { timingSafeEqual, createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Writable } from 'node:stream';
import { parseListenAddr } from '../net/index.js';
import { openStoreReader, type StoreReader } from '../store/index.js';
import type { BudgetLimits } from './budget.js';
import { FanOut } from './fanout.js';
import { selfUrlMatcher, type PeerOptions } from './peers.js';
import { auditTransport, createKspanMcpServer, type AuditRecord } from './server.js';
import { serverHost } from './tools.js';
import type { HostIdentity } from '../store/index.js';

export interface McpHttpOptions {
  /** store directory (opened read-only here, closed by close()) */
  dataDir?: string;
  /** or an already open reader (not closed by close()) */
  reader?: StoreReader;
  /** a listen address (src/net): "host:port" / "[v6]:port" / ":port" (= 127.0.0.1); port 0 = ephemeral. Default 127.0.0.1:7799 */
  addr?: string;
  /** env var holding the bearer token (default KSPAN_MCP_TOKEN) */
  tokenEnv?: string;
  /** file holding the bearer token (first line); takes precedence over tokenEnv */
  tokenFile?: string;
  /** extra Host names accepted (e.g. the DNS name clients use off loopback) */
  allowedHosts?: string[];
  /** per-client token bucket: sustained requests per second and burst (default 20/s, burst 40); each message of a batch counts */
  rateLimit?: { perSecond: number; burst: number };
  /** each tool call's time and row budget (default 2 s wall, 5 M events) */
  limits?: BudgetLimits;
  /** service.name -> process comm for the correlator's process join */
  serviceProcess?: Record<string, string>;
  tracer?: Tracer;
  /** audit JSON lines (default process.stderr) */
  log?: Writable | ((rec: AuditRecord) => void) | null;
  /** diagnostics (default: stderr) */
  diag?: (line: string) => void;
  /** the host this server speaks for (default: the store's latest host record, else this machine) */
  host?: HostIdentity;
  /** peers to fan explain_request / find_slow_requests out to (token: this server's own unless given) */
  peers?: PeerOptions | null;
}

export interface McpHttpHandle {
  /** e.g. http://127.0.0.1:7799/mcp */
  url: string;
  host: string;
  port: number;
  /** whether a bearer token is required */
  auth: boolean;
  /** the fan-out over the peers (null: none configured) */
  fanout: FanOut | null;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;
/** idle MCP server objects kept for the next POSTs */
const MAX_IDLE_SERVERS = 16;

/** Loopback: 127.0.0.0/8, ::1, ::ffff:127.x, localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

function readToken(o: McpHttpOptions): string | null {
  if (o.tokenFile) {
    const st = statSync(o.tokenFile);
    if (st.mode & 0o077) (o.diag ?? ((l) => process.stderr.write(l + '\n')))(`kspan mcp: warning: ${o.tokenFile} is readable by group/others (chmod 600 it)`);
    const t = readFileSync(o.tokenFile, 'utf8').split('\n')[0].trim();
    if (!t) throw new Error(`token file ${o.tokenFile} is empty`);
    return t;
  }
  const t = process.env[o.tokenEnv ?? 'KSPAN_MCP_TOKEN']?.trim();
  return t || null;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

class Buckets {
  private readonly m = new Map<string, { tokens: number; t: number }>();
  constructor(private readonly rate: number, private readonly burst: number) {}
  /** true when `n` tokens were taken; else the seconds until they are back (nothing taken) */
  take(key: string, n = 1): true | number {
    const now = performance.now() / 1000;
    let b = this.m.get(key);
    if (!b) {
      if (this.m.size > 10_000) this.prune(now);
      this.m.set(key, (b = { tokens: this.burst, t: now }));
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.t) * this.rate);
    b.t = now;
    if (b.tokens >= n) {
      b.tokens -= n;
      return true;
    }
    return (n - b.tokens) / this.rate;
  }
  private prune(now: number): void {
    for (const [k, b] of this.m) if (b.tokens + (now - b.t) * this.rate >= this.burst) this.m.delete(k);
  }
}

function hostsFor(bindHost: string, port: number, extra: string[]): Set<string> {
  const names = new Set<string>(['localhost', '127.0.0.1', '[::1]', ...extra.map((h) => h.toLowerCase())]);
  const h = bindHost.toLowerCase();
  if (h === '0.0.0.0' || h === '::' || h === '') {
    // wildcard bind: the machine's own addresses
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) names.add(a.family === 'IPv6' ? `[${a.address.toLowerCase()}]` : a.address);
    }
  } else names.add(isIP(h) === 6 ? `[${h}]` : h);
  const out = new Set<string>();
  for (const n of names) {
    out.add(n);
    out.add(`${n}:${port}`);
  }
  return out;
}

function reply(res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}, rpcCode = -32000): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: rpcCode, message }, id: null }));
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(Object.assign(new Error('request body is not JSON'), { status: 400 }));
      }
    });
    req.on('error', reject);
  });
}

/**
 * Serve the kspan MCP tools over Streamable HTTP at http://ADDR/mcp.
 * Rejects (without listening) when binding off loopback without a token.
 */
export async function startMcpHttpServer(o: McpHttpOptions): Promise<McpHttpHandle> {
  if (!o.reader && !o.dataDir) throw new Error('startMcpHttpServer: give dataDir or reader');
  const { host, port } = parseListenAddr(o.addr ?? '127.0.0.1:7799');
  const token = readToken(o);
  if (!isLoopback(host) && !token) {
    throw new Error(`refusing to serve MCP on ${host} (not loopback) without a bearer token: set ${o.tokenEnv ?? 'KSPAN_MCP_TOKEN'} or give a token file`);
  }
  const diag = o.diag ?? ((l: string) => process.stderr.write(l + '\n'));
  const reader = o.reader ?? openStoreReader(o.dataDir!);
  const ownReader = !o.reader;
  const tokenDigest = token ? digest(token) : null;
  const rate = o.rateLimit ?? { perSecond: 20, burst: 40 };
  const buckets = new Buckets(rate.perSecond, rate.burst);
  let allowed = new Set<string>();
  let fanout: FanOut | null = null;
  const me = o.host ?? serverHost({ reader });
  const idle: McpServer[] = [];
  let closing = false;

  const server = createServer((req, res) => {
    void handle(req, res).catch((e) => {
      diag(`kspan mcp http: ${(e as Error).message}`);
      reply(res, (e as { status?: number }).status ?? 500, (e as Error).message);
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/mcp') return reply(res, 404, 'not found: the MCP endpoint is /mcp');
    const hostHdr = (req.headers.host ?? '').toLowerCase();
    if (!allowed.has(hostHdr)) return reply(res, 403, `forbidden: Host "${hostHdr}" is not this server (DNS rebinding protection)`);
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let oh = '';
      try {
        oh = new URL(origin).host.toLowerCase();
      } catch {
        /* */
      }
      if (!allowed.has(oh)) return reply(res, 403, `forbidden: Origin "${origin}" is not allowed`);
    }
    // rate limit before the token check: failed guesses count too
    const client = req.socket.remoteAddress ?? 'unknown';
    const t = buckets.take(client);
    if (t !== true) return reply(res, 429, `too many requests: at most ${rate.perSecond}/s per client (burst ${rate.burst}); retry after the Retry-After seconds`, { 'retry-after': String(Math.max(1, Math.ceil(t))) });
    if (tokenDigest) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (!m || !timingSafeEqual(digest(m[1]), tokenDigest)) {
        return reply(res, 401, 'unauthorized: a valid bearer token is required', { 'www-authenticate': 'Bearer realm="kspan-mcp"' });
      }
    }
    if (req.method !== 'POST') {
      // stateless server: no standalone SSE stream, no sessions to delete
      return reply(res, 405, 'method not allowed: POST JSON-RPC to /mcp', { allow: 'POST' });
    }
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) return reply(res, 413, `request body over ${MAX_BODY} bytes`, { connection: 'close' });
    const body = await readBody(req);
    // a batch: every message counts against the client's bucket (one was taken above)
    if (Array.isArray(body)) {
      if (body.length > rate.burst) {
        return reply(res, 400, `batch of ${body.length} messages refused: at most ${rate.burst} per POST (each counts against the rate limit); send fewer`, {}, -32600);
      }
      const more = buckets.take(client, Math.max(0, body.length - 1));
      if (more !== true) {
        return reply(res, 429, `too many requests: a batch of ${body.length} messages costs ${body.length} of the rate limit (${rate.perSecond}/s, burst ${rate.burst}); retry later or send fewer`,
          { 'retry-after': String(Math.max(1, Math.ceil(more))) });
      }
    }
    // building the server (nine tools' schemas) costs ~7 ms: idle ones are kept and reused
    const mcp = idle.pop() ?? createKspanMcpServer({ reader, dataDir: o.dataDir, serviceProcess: o.serviceProcess, limits: o.limits, host: me, fanout });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    // the client gone (or the answer sent): closing the transport aborts the
    // AbortSignal of every call still running for this POST; the server is
    // free again (a late result goes to the closed transport it came from)
    res.on('close', () => {
      void transport.close().then(() => {
        if (idle.length < MAX_IDLE_SERVERS && !closing) idle.push(mcp);
        else void mcp.close();
      });
    });
    await mcp.connect(auditTransport(transport, { log: o.log, tracer: o.tracer, transport: 'http', client }));
    await transport.handleRequest(req, res, body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  allowed = hostsFor(host, a.port, o.allowedHosts ?? []);
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : isIP(host) === 6 ? `[${host}]` : host;
  const url = `http://${urlHost}:${a.port}/mcp`;
  if (o.peers) {
    fanout = new FanOut({ ...o.peers, token: o.peers.token !== undefined ? o.peers.token : token, self: me, isSelfUrl: selfUrlMatcher(a.port, host) });
    if (!fanout.peers.configured) fanout = null;
  }
  diag(`kspan mcp: serving ${o.dataDir ?? 'the store'} at ${url} (read-only${token ? ', bearer token required' : ', loopback, no token'})`);
  return {
    url, host, port: a.port, auth: !!token, fanout,
    close: async () => {
      closing = true;
      for (const m of idle.splice(0)) await m.close().catch(() => undefined);
      await fanout?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (ownReader) await reader.root.close();
    },
  };
}

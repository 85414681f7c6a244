// Many hosts without root (issue 15, items 1 and 3): host identity in the
// store and the explain JSON; the MCP fan-out over peers (static list, file,
// DNS) on loopback, with real MCP Streamable HTTP servers over synthetic
// stores of three hosts (test/hosts/multihost.ts) and the SDK client.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { REPO_ROOT } from '../../src/capture/index.js';
import { explainTrace, type Explanation, type HostAnswer } from '../../src/correlator/index.js';
import { createKspanMcpServer, peerUrl, parsePeersFile, startMcpHttpServer, type AuditRecord, type McpHttpHandle, type PeerOptions } from '../../src/mcp/index.js';
import { HOG, TRACE, hostA, hostB, hostC, hostWithSpan, type HostStore } from './multihost.js';
import { tempDir } from '../store/util.js';
import { openStoreReader } from '../../src/store/index.js';
import { tr } from '../correlator/util.js';

const TOKEN = 'fanout-test-token-0123456789';
type Merged = Explanation & { spans_total: number; data_quality: Explanation['data_quality'] & { hosts: HostAnswer[]; partial: boolean } };

let A: HostStore, B: HostStore, C: HostStore;
const servers: McpHttpHandle[] = [];
const cleanups: (() => void | Promise<void>)[] = [];

before(async () => {
  [A, B, C] = await Promise.all([hostA(), hostB(), hostC()]);
  cleanups.push(A.cleanup, B.cleanup, C.cleanup);
});
after(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  for (const c of cleanups.reverse()) await c();
});

async function serve(h: HostStore, o: { addr?: string; peers?: PeerOptions | null; audit?: AuditRecord[]; rate?: number } = {}): Promise<McpHttpHandle> {
  process.env.KSPAN_TEST_TOKEN = TOKEN;
  const s = await startMcpHttpServer({
    reader: h.reader, addr: o.addr ?? '127.0.0.1:0', tokenEnv: 'KSPAN_TEST_TOKEN', host: h.host, peers: o.peers ?? null,
    log: o.audit ? (r) => o.audit!.push(r) : null, diag: () => {}, rateLimit: o.rate ? { perSecond: o.rate, burst: 2 * o.rate } : undefined,
  });
  servers.push(s);
  return s;
}

async function client(url: string): Promise<Client> {
  const c = new Client({ name: 'fanout-test', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
  cleanups.push(() => c.close());
  return c;
}

async function explain(c: Client, args: Record<string, unknown> = { trace_id: TRACE }): Promise<{ e: Merged; text: string; isError: boolean; ms: number }> {
  const t0 = performance.now();
  const r = await c.callTool({ name: 'explain_request', arguments: args });
  const ms = performance.now() - t0;
  const text = (r.content as { type: string; text: string }[])[0]?.text ?? '';
  return { e: r.structuredContent as unknown as Merged, text, isError: !!r.isError, ms };
}

const byHost = (e: Explanation): Record<string, Explanation['spans'][number]> => Object.fromEntries(e.spans.map((s) => [s.host?.name ?? '?', s]));

/** A TCP server that accepts and never answers: a peer that hangs. */
async function blackHole(): Promise<{ url: string; close: () => Promise<void> }> {
  const socks = new Set<Socket>();
  const srv: Server = createServer((s) => { socks.add(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/mcp`, close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }) };
}

/** A loopback port nobody listens on: a peer that is down. */
async function closedPort(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}/mcp`;
}

test('host identity: the store records the host per session and per writer; each explained span names it; capture_status names it', async () => {
  const s = A.reader.sessions();
  assert.ok(s.length >= 1);
  assert.equal(s[0].hostName, 'host-a');
  assert.equal(A.reader.hosts().at(-1)!.name, 'host-a');
  const e = explainTrace(A.reader, TRACE);
  assert.deepEqual(e.spans[0].host, { name: 'host-a', boot_id: A.host.bootId });
  // capture_status, in process
  const server = createKspanMcpServer({ reader: A.reader });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(st);
  const c = new Client({ name: 't', version: '1' });
  await c.connect(ct);
  const r = await c.callTool({ name: 'capture_status', arguments: {} });
  const sc = r.structuredContent as { host: { name: string; boot_id: string | null }; sessions: { host_name: string }[] };
  assert.equal(sc.host.name, 'host-a', 'the server speaks for the store\'s host');
  assert.equal(sc.host.boot_id, A.host.bootId);
  assert.equal(sc.sessions[0].host_name, 'host-a');
  assert.match((r.content as { text: string }[])[0].text, /^host: host-a/);
  assert.equal((r._meta as Record<string, { name: string }>)['kspan/host'].name, 'host-a', 'every result names its host in _meta');
  await c.close();
  await server.close();
});

test('peer URLs: HOST:PORT and bare URLs get /mcp; files take lines, commas and comments', () => {
  assert.equal(peerUrl('10.0.0.2:7799'), 'http://10.0.0.2:7799/mcp');
  assert.equal(peerUrl('http://[fd00::2]:7799'), 'http://[fd00::2]:7799/mcp');
  assert.equal(peerUrl('https://k.example:443/x/mcp'), 'https://k.example/x/mcp', 'an explicit path is kept');
  assert.throws(() => peerUrl('no-port.example'), /needs a port/);
  assert.deepEqual(parsePeersFile('# peers\n10.0.0.2:7799, 10.0.0.3:7799\n\n  http://h4:1/mcp # four\n').urls,
    ['http://10.0.0.2:7799/mcp', 'http://10.0.0.3:7799/mcp', 'http://h4:1/mcp']);
});

test('fan-out: explain_request on host-a asks host-b and host-c, merges the three spans (each with its host) and re-ranks the summary; a peer call does not fan out again', async () => {
  const auditB: AuditRecord[] = [], auditC: AuditRecord[] = [];
  const sB0 = await serve(B, { audit: auditB });
  const sC0 = await serve(C, { audit: auditC });
  // b and c have peers too (each other and a dead one): a peer call must not use them
  const dead = await closedPort();
  const sB = await serve(B, { audit: auditB, peers: { urls: [sC0.url, dead] } });
  const sC = await serve(C, { audit: auditC, peers: { urls: [sB0.url, dead] } });
  const sA = await serve(A, { peers: { urls: [sB.url, sC.url] } });
  const c = await client(sA.url);
  const { e, text, isError } = await explain(c);
  assert.equal(isError, false, text);
  assert.equal(e.found, true);
  assert.deepEqual(e.spans.map((s) => [s.host?.name, s.span_id, s.service]), [
    ['host-a', '0000000000000001', 'svc-a'], ['host-b', '0000000000000002', 'svc-b'], ['host-c', '0000000000000003', 'svc-c'],
  ], 'spans in start order, each named by its host');
  const h = byHost(e);
  assert.equal(h['host-a'].causes[0].kind, 'cpu_preemption');
  assert.deepEqual(h['host-a'].causes[0].culprit, { pid: HOG, tid: HOG, comm: 'hog' });
  assert.equal(h['host-b'].causes[0].kind, 'lock_contention');
  assert.equal(h['host-b'].causes[0].culprit?.tid, 202);
  assert.equal(h['host-c'].causes[0].kind, 'io_wait');
  assert.deepEqual(e.data_quality.hosts.map((x) => [x.name, x.status, x.spans]), [['host-a', 'local', 1], ['host-b', 'ok', 1], ['host-c', 'ok', 1]]);
  assert.equal(e.data_quality.partial, false);
  assert.equal(e.data_quality.correlation.thread, 3);
  // re-ranked over all hosts: the largest high-severity cause is host-a's 60 ms preemption
  assert.match(e.summary, /^Top cause: cpu_preemption .* "frontend"/);
  assert.match(e.summary, /3 span\(s\) from 3 host\(s\); 3 of 3 hosts answered\)$/);
  assert.match(text, /hosts: host-a local \(1 span\), host-b ok \(1 span\), host-c ok \(1 span\)/);
  assert.match(text, /span 0000000000000002 "middle" \[svc-b\] on host-b/);
  // each peer was asked once, and did not ask anyone (its calls would show up in the other's audit)
  assert.equal(auditB.filter((r) => r.tool === 'explain_request').length, 1, JSON.stringify(auditB));
  assert.equal(auditC.filter((r) => r.tool === 'explain_request').length, 1, JSON.stringify(auditC));
  // the same through `kspan explain --peers` (the CLI does the fan-out; the built CLI)
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'kspan.js'), 'explain', TRACE, '--data', A.dir, '--peers', `${sB.url},${sC.url}`, '--json'],
      { env: { ...process.env, KSPAN_MCP_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
    let so = '', se = '';
    p.stdout.on('data', (d) => (so += d));
    p.stderr.on('data', (d) => (se += d));
    p.on('exit', (code) => resolve({ code, stdout: so, stderr: se }));
  });
  assert.equal(out.code, 0, out.stderr);
  const cli = JSON.parse(out.stdout) as Merged;
  assert.deepEqual(cli.spans.map((s) => s.host?.name), ['host-a', 'host-b', 'host-c']);
  assert.deepEqual(cli.data_quality.hosts.map((x) => x.status), ['local', 'ok', 'ok']);
  assert.equal(auditB.filter((r) => r.tool === 'explain_request').length, 2);
});

test('fan-out: a peer that hangs and a peer that is down: the answer comes within the deadline, names them with the reason, says it is partial, and explains the rest', async () => {
  const sB = await serve(B);
  const hole = await blackHole();
  cleanups.push(hole.close);
  const dead = await closedPort();
  const sA = await serve(A, { peers: { urls: [sB.url, hole.url, dead], timeoutMs: 600 } });
  const c = await client(sA.url);
  const { e, text, isError, ms } = await explain(c);
  assert.equal(isError, false, text);
  assert.ok(ms < 600 + 400, `answered in ${ms.toFixed(0)} ms (deadline 600 ms)`);
  assert.deepEqual(e.spans.map((s) => s.host?.name), ['host-a', 'host-b']);
  const hs = Object.fromEntries(e.data_quality.hosts.map((x) => [x.url ?? 'local', x]));
  assert.equal(hs[hole.url].status, 'timeout');
  assert.match(hs[hole.url].reason!, /no answer within 600 ms/);
  assert.equal(hs[dead].status, 'failed');
  assert.match(hs[dead].reason!, /ECONNREFUSED|fetch failed/);
  assert.equal(e.data_quality.partial, true);
  assert.match(e.summary, /PARTIAL/);
  assert.match(e.data_quality.notes[0], /^partial: 2 of 4 hosts did not answer/);
  assert.match(text, /PARTIAL/);
  // the host name a peer gave before is kept for when it fails: stop host-b, ask again
  await sB.close();
  const again = await explain(c);
  const b = again.e.data_quality.hosts.find((x) => x.url === sB.url)!;
  assert.equal(b.status, 'failed');
  assert.equal(b.name, 'host-b', 'a failed peer is named by the host name it gave last time');
  assert.deepEqual(again.e.spans.map((s) => s.host?.name), ['host-a']);
});

test('fan-out: a trace only the peers have; a trace nobody has is an error naming every host', async () => {
  const sB = await serve(B);
  const sC = await serve(C);
  const other = await hostWithSpan('host-x', 7, 30);
  cleanups.push(other.cleanup);
  const sX = await serve(other, { peers: { urls: [sB.url, sC.url] } });
  const c = await client(sX.url);
  const { e, isError } = await explain(c);
  assert.equal(isError, false);
  assert.deepEqual(e.spans.map((s) => s.host?.name), ['host-b', 'host-c']);
  assert.deepEqual(e.data_quality.hosts.map((x) => [x.name, x.status]), [['host-x', 'local'], ['host-b', 'ok'], ['host-c', 'ok']]);
  const none = await explain(c, { trace_id: tr(99) });
  assert.equal(none.isError, true);
  assert.match(none.text, /not in the span index of any host asked \(host-x local; host-b not_found; host-c not_found\)/);
});

test('fan-out: this server in its own peer list (by address, or by answering as the same host) is skipped', async () => {
  const sB = await serve(B);
  const twinOfA = await serve(A); // same store, same host identity: answers as host-a
  const sA = await serve(A, { peers: { urls: [sB.url, twinOfA.url] } });
  const c = await client(sA.url);
  const { e } = await explain(c);
  assert.deepEqual(e.spans.map((s) => s.host?.name), ['host-a', 'host-b'], 'host-a\'s span once');
  assert.equal(e.data_quality.hosts.find((x) => x.url === twinOfA.url)!.status, 'self');
  assert.equal(e.data_quality.partial, false);
});

test('find_slow_requests fans out and merges the top k across hosts (each row names its host)', async () => {
  const hs = await Promise.all([hostWithSpan('h1', 2, 30), hostWithSpan('h2', 3, 90), hostWithSpan('h3', 4, 60), hostWithSpan('h4', 5, 10)]);
  for (const h of hs) cleanups.push(h.cleanup);
  const peers = await Promise.all(hs.slice(1).map((h) => serve(h)));
  const s1 = await serve(hs[0], { peers: { urls: peers.map((p) => p.url) } });
  const c = await client(s1.url);
  const r = await c.callTool({ name: 'find_slow_requests', arguments: { since: '2025-11-21T00:00:00Z', until: '2025-11-22T00:00:00Z', limit: 2 } });
  assert.ok(!r.isError, JSON.stringify(r.content));
  const sc = r.structuredContent as { requests: { trace_id: string; duration_ns: number; host: string }[]; hosts: HostAnswer[]; partial: boolean; returned: number; truncated: boolean };
  assert.deepEqual(sc.requests.map((x) => [x.host, x.trace_id, x.duration_ns / 1e6]), [['h2', tr(3), 90], ['h3', tr(4), 60]]);
  assert.equal(sc.returned, 2);
  assert.equal(sc.truncated, true);
  assert.equal(sc.partial, false);
  assert.deepEqual(sc.hosts.map((x) => [x.name, x.status, x.spans]), [['h1', 'local', 1], ['h2', 'ok', 1], ['h3', 'ok', 1], ['h4', 'ok', 1]]);
  assert.match((r.content as { text: string }[])[0].text, /on h2 trace/);
  // explain_request with no trace id: the slowest request on any host
  const { e } = await explain(c, {});
  assert.equal(e.trace_id, tr(3));
  assert.deepEqual(e.spans.map((s) => s.host?.name), ['h2']);
});

test('--peers-file is re-read when it changes', async () => {
  const { dir, cleanup } = tempDir('peers-file');
  cleanups.push(cleanup);
  const sB = await serve(B);
  const sC = await serve(C);
  const file = join(dir, 'peers');
  writeFileSync(file, `# one peer\n${sB.url}\n`);
  const sA = await serve(A, { peers: { file } });
  const c = await client(sA.url);
  assert.deepEqual((await explain(c)).e.spans.map((s) => s.host?.name), ['host-a', 'host-b']);
  writeFileSync(file, `${sB.url}\n${sC.url.replace('/mcp', '')}   # two peers\n`);
  assert.deepEqual((await explain(c)).e.spans.map((s) => s.host?.name), ['host-a', 'host-b', 'host-c']);
  writeFileSync(file, '');
  assert.deepEqual((await explain(c)).e.data_quality.hosts.map((x) => x.status), ['local']);
});

/** A DNS server on loopback that answers A queries for `name` with `addrs` (and AAAA with none). */
async function miniDns(name: string, addrs: string[]): Promise<{ server: string; queries: number; close: () => void }> {
  const sock = createSocket('udp4');
  const st = { queries: 0 };
  sock.on('message', (q, rinfo) => {
    st.queries++;
    let p = 12;
    const labels: string[] = [];
    while (q[p] !== 0) { labels.push(q.subarray(p + 1, p + 1 + q[p]).toString()); p += q[p] + 1; }
    const qtype = q.readUInt16BE(p + 1);
    const qend = p + 5;
    const hit = labels.join('.').toLowerCase() === name && qtype === 1;
    const answers = hit ? addrs : [];
    const head = Buffer.alloc(12);
    q.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180 | (labels.join('.').toLowerCase() === name ? 0 : 3), 2); // response, RD+RA; NXDOMAIN for other names
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(answers.length, 6);
    const rr = answers.map((a) => {
      const b = Buffer.alloc(16);
      b.writeUInt16BE(0xc00c, 0); b.writeUInt16BE(1, 2); b.writeUInt16BE(1, 4); b.writeUInt32BE(5, 6); b.writeUInt16BE(4, 10);
      a.split('.').forEach((x, i) => (b[12 + i] = Number(x)));
      return b;
    });
    sock.send(Buffer.concat([head, q.subarray(12, qend), ...rr]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { server: `127.0.0.1:${sock.address().port}`, get queries() { return st.queries; }, close: () => sock.close() };
}

test('--peers-dns: every A record of the name is a peer (a headless Service), this server\'s own address among them skipped', async () => {
  // three "pods" on one port, on three loopback addresses
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const dns = await miniDns('kspan-peers.kspan.svc.cluster.local', ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
  cleanups.push(dns.close);
  await serve(B, { addr: `127.0.0.2:${port}` });
  await serve(C, { addr: `127.0.0.3:${port}` });
  const sA = await serve(A, { addr: `127.0.0.1:${port}`, peers: { dns: [`kspan-peers.kspan.svc.cluster.local:${port}`], dnsServers: [dns.server] } });
  const c = await client(sA.url);
  const { e, text } = await explain(c);
  assert.deepEqual(e.spans.map((s) => s.host?.name), ['host-a', 'host-b', 'host-c'], text);
  assert.deepEqual(e.data_quality.hosts.map((x) => [x.url, x.status]), [
    [null, 'local'], [`http://127.0.0.1:${port}/mcp`, 'self'], [`http://127.0.0.2:${port}/mcp`, 'ok'], [`http://127.0.0.3:${port}/mcp`, 'ok'],
  ]);
  assert.equal(e.data_quality.partial, false);
  // a name that does not resolve: an error in the notes, the answer is partial, the local part stands
  const sA2 = await serve(A, { peers: { dns: [`nope.example:${port}`], dnsServers: [dns.server] } });
  const c2 = await client(sA2.url);
  const r2 = await explain(c2);
  assert.deepEqual(r2.e.spans.map((s) => s.host?.name), ['host-a']);
  assert.equal(r2.e.data_quality.partial, true);
  assert.match(r2.e.data_quality.notes[0], /peers-dns nope\.example/);
});

test('kspan run --host-name --mcp-http --peers: the daemon names its host (ready line, capture_status, the store) and fans out', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = tempDir('run-peers');
  cleanups.push(cleanup);
  const sB = await serve(B);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const data = join(dir, 'store');
  const p = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'kspan.js'), 'run', '--no-capture', '--data', data, '--host-name', 'node-7',
    '--otlp-grpc', '127.0.0.1:0', '--otlp-http', '127.0.0.1:0', '--mcp-http', '127.0.0.1:0', '--mcp-token-file', tokenFile,
    '--peers', sB.url, '--status-interval', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let so = '', se = '';
  p.stdout.on('data', (d) => (so += d));
  p.stderr.on('data', (d) => (se += d));
  const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  try {
    const t0 = Date.now();
    while (!/"ready":true/.test(so)) {
      if (Date.now() - t0 > 30_000 || p.exitCode !== null) throw new Error(`no ready line: ${se}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ready = JSON.parse(so.split('\n').find((l) => l.includes('"ready"'))!) as { host: string; mcp_url: string };
    assert.equal(ready.host, 'node-7');
    assert.match(se, /host node-7 \(boot [0-9a-f-]+\); fan-out to peers \(1 now\)/);
    const c = await client(ready.mcp_url);
    const st = await c.callTool({ name: 'capture_status', arguments: {} });
    assert.equal((st.structuredContent as { host: { name: string } }).host.name, 'node-7');
    const { e } = await explain(c);
    assert.deepEqual(e.spans.map((s) => s.host?.name), ['host-b']);
    assert.deepEqual(e.data_quality.hosts.map((x) => [x.name, x.status]), [['node-7', 'local'], ['host-b', 'ok']]);
  } finally {
    p.kill('SIGTERM');
    await exited;
  }
  const r = openStoreReader(data);
  assert.equal(r.hosts().at(-1)?.name, 'node-7', 'the store records the daemon\'s host');
  await r.root.close();
});

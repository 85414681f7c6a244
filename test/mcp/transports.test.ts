// The MCP server over its real transports, with independent clients, on a
// store captured with the real probe (mutex_hold): `kspan mcp --data DIR` over
// stdio (SDK StdioClientTransport, the official MCP Inspector CLI, the Python
// `mcp` SDK), and Streamable HTTP with its security checks (token required off
// loopback, bearer token, Host/Origin checks, rate limit). Every client must
// get the same explanation as the in-process server.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { REPO_ROOT } from '../../src/capture/index.js';
import { auditTransport, createKspanMcpServer, startMcpHttpServer, TOOL_NAMES, type AuditRecord } from '../../src/mcp/index.js';
import { openStoreReader, type StoreReader } from '../../src/store/index.js';
import { requireLiveProbe, run } from '../kernel/harness.js';
import { CLI, mutexSpans, putTrace, recordScenario, stableExplanation, type Fixtures } from './scenario.js';

let dir = '';
let fx: Fixtures = {};
let traceId = '';
let reader: StoreReader;
let reference: any; // explain_request's structuredContent from the in-process server
const tmp = mkdtempSync(join('/var/tmp', 'kspan-mcp-t-'));
const INSPECTOR_DIR = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'inspector-cli', 'build');
const PYTHON = join(REPO_ROOT, '.venv', 'bin', 'python');
const serverCmd = (): string[] => [process.execPath, '--import', 'tsx', CLI, 'mcp', '--data', dir];

before(async () => {
  requireLiveProbe();
  ({ dir, fx } = await recordScenario('./mutex_hold 40 2', ['mutex_hold']));
  traceId = await putTrace(dir, mutexSpans(fx.mutex_hold));
  reader = openStoreReader(dir);
  const server = createKspanMcpServer({ reader, dataDir: dir });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(auditTransport(st, { log: null }));
  const client = new Client({ name: 'reference', version: '1' });
  await client.connect(ct);
  const r = await client.callTool({ name: 'explain_request', arguments: { trace_id: traceId } });
  reference = r.structuredContent;
  await client.close();
  assert.equal(reference.spans[0].causes[0].kind, 'lock_contention');
  assert.equal(reference.spans[0].causes[0].culprit.tid, fx.mutex_hold.tid_b);
});

after(async () => {
  if (reader) await reader.root.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

function sameExplanation(got: any, what: string): void {
  assert.deepEqual(stableExplanation(got), stableExplanation(reference), `${what} gets the same explanation`);
}

test('stdio: `kspan mcp --data DIR` as a subprocess, SDK client; audit lines on stderr only', async () => {
  const [command, ...args] = serverCmd();
  const transport = new StdioClientTransport({ command, args, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => { stderr += d; });
  const client = new Client({ name: 'stdio-test', version: '1' });
  await client.connect(transport);
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOL_NAMES].sort());
  const r = await client.callTool({ name: 'explain_request', arguments: { trace_id: traceId } });
  sameExplanation(r.structuredContent, 'the stdio client');
  const bad = await client.callTool({ name: 'query_off_cpu', arguments: { tid: 1, since: '-1m', until: '-2m' } });
  assert.equal(bad.isError, true);
  const again = await client.callTool({ name: 'futex_contention', arguments: { pid: fx.mutex_hold.pid, since: '-10m' } });
  assert.equal((again.structuredContent as any).words[0].holders[0].tid, fx.mutex_hold.tid_b, 'still serving after an error');
  await client.close();
  const lines = stderr.split('\n').filter((l) => l.startsWith('{'));
  const recs = lines.map((l) => JSON.parse(l) as AuditRecord);
  assert.deepEqual(recs.map((x) => [x.tool, x.is_error]), [['explain_request', false], ['query_off_cpu', true], ['futex_contention', false]]);
  assert.equal(recs[0].transport, 'stdio');
  assert.deepEqual(recs[0].arguments, { trace_id: traceId });
  assert.ok(recs[0].result_bytes > 1000 && recs[0].duration_ms > 0);
});

test('`kspan mcp` usage errors and help', async () => {
  const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) => run(process.execPath, ['--import', 'tsx', CLI, 'mcp', ...args], { env, timeoutMs: 30000 });
  const env = { ...process.env, KSPAN_DATA: '' };
  assert.equal((await cli([], env)).code, 2, 'no --data');
  assert.equal((await cli(['--data', tmp])).code, 1, 'no store there');
  assert.equal((await cli(['--data', dir, '--token', 'x'])).code, 2, 'no token flag');
  const badAddr = await cli(['--data', dir, '--http', 'nonsense']);
  assert.equal(badAddr.code, 2, 'a bad --http address is a usage error');
  assert.match(badAddr.stderr, /--http: listen address "nonsense": no ":PORT"; want HOST:PORT/);
  const h = await cli(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--token-file/);
  const off = await cli(['--data', dir, '--http', '0.0.0.0:0'], { ...process.env, KSPAN_MCP_TOKEN: '' });
  assert.equal(off.code, 1);
  assert.match(off.stderr, /refusing .* without a bearer token/);
});

test('MCP Inspector CLI: tools/list and tools/call explain_request over stdio', async () => {
  // The inspector reads its own package.json relative to the working directory: run it from its build dir.
  const insp = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const [node, ...rest] = serverCmd();
    const c = spawn(process.execPath, ['index.js', node, ...args, '--', ...rest], { cwd: INSPECTOR_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => { stdout += d; });
    c.stderr.on('data', (d: Buffer) => { stderr += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), 60000);
    c.on('error', reject);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
  const list = await insp(['--method', 'tools/list']);
  assert.equal(list.code, 0, list.stderr);
  const tools = JSON.parse(list.stdout).tools as { name: string; annotations?: { readOnlyHint?: boolean } }[];
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOL_NAMES].sort());
  assert.ok(tools.every((t) => t.annotations?.readOnlyHint === true));
  // tool args are JSON-parsed by the inspector: quote the id so it stays a string
  const call = await insp(['--method', 'tools/call', '--tool-name', 'explain_request', '--tool-arg', `trace_id="${traceId}"`]);
  assert.equal(call.code, 0, call.stderr);
  sameExplanation(JSON.parse(call.stdout).structuredContent, 'the MCP Inspector CLI');
});

test('Python mcp SDK client over stdio', async () => {
  const r = await run(PYTHON, [join(REPO_ROOT, 'test', 'mcp', 'py_client.py'), 'stdio', traceId, '--', ...serverCmd()], { timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual(out.tools, [...TOOL_NAMES].sort());
  assert.equal(out.explain_is_error, false);
  sameExplanation(out.explain, 'the Python SDK client');
  assert.equal(out.bad_is_error, true);
  assert.match(out.bad_text, /32 hex/);
});

// ---- HTTP

interface Resp { status: number; headers: Record<string, string | string[] | undefined>; body: string }
function post(url: string, headers: Record<string, string>, body: unknown = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers,
    } }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

test('HTTP: loopback without a token serves; SDK, Inspector and Python clients get the same explanation', async () => {
  const audit: AuditRecord[] = [];
  const h = await startMcpHttpServer({ reader, addr: '127.0.0.1:0', tokenEnv: 'KSPAN_TEST_NO_SUCH_ENV', log: (r) => audit.push(r), diag: () => {} });
  try {
    assert.equal(h.auth, false);
    assert.match(h.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = new Client({ name: 'http-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(h.url)));
    const r = await client.callTool({ name: 'explain_request', arguments: { trace_id: traceId } });
    sameExplanation(r.structuredContent, 'the SDK HTTP client');
    await client.close();

    // the inspector reads its own package.json relative to the working directory: run it from its build dir
    const insp2 = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, ['index.js', h.url, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'explain_request', '--tool-arg', `trace_id="${traceId}"`],
        { cwd: INSPECTOR_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      c.stdout.on('data', (d: Buffer) => { stdout += d; });
      c.stderr.on('data', (d: Buffer) => { stderr += d; });
      c.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(insp2.code, 0, insp2.stderr);
    sameExplanation(JSON.parse(insp2.stdout).structuredContent, 'the Inspector over HTTP');

    const py = await run(PYTHON, [join(REPO_ROOT, 'test', 'mcp', 'py_client.py'), 'http', traceId, h.url], { timeoutMs: 60000, env: { ...process.env, KSPAN_MCP_TOKEN: '' } });
    assert.equal(py.code, 0, py.stderr);
    sameExplanation(JSON.parse(py.stdout.trim().split('\n').pop()!).explain, 'the Python client over HTTP');
    assert.ok(audit.filter((a) => a.tool === 'explain_request' && a.transport === 'http').length >= 3, 'HTTP calls audited');
    assert.ok(audit.every((a) => a.client === '127.0.0.1' || a.client === '::ffff:127.0.0.1'));
  } finally {
    await h.close();
  }
});

test('HTTP security: token required off loopback, bearer checked, Host and Origin checked, rate limited', async () => {
  // off loopback without a token: refused before listening
  await assert.rejects(startMcpHttpServer({ reader, addr: '0.0.0.0:0', tokenEnv: 'KSPAN_TEST_NO_SUCH_ENV', diag: () => {} }), /refusing .* without a bearer token/);
  await assert.rejects(startMcpHttpServer({ reader, addr: 'nonsense', diag: () => {} }), /HOST:PORT/);
  // with a token from a file (0600), bound on the wildcard address; traffic only to 127.0.0.1
  const tokenFile = join(tmp, 'token');
  writeFileSync(tokenFile, 'sekrit-token-123\n');
  chmodSync(tokenFile, 0o600);
  const h = await startMcpHttpServer({ reader, addr: '0.0.0.0:0', tokenFile, rateLimit: { perSecond: 2, burst: 5 }, log: null, diag: () => {} });
  try {
    assert.equal(h.auth, true);
    const url = `http://127.0.0.1:${h.port}/mcp`;
    const auth = { authorization: 'Bearer sekrit-token-123' };
    const okr = await post(url, auth);
    assert.equal(okr.status, 200, okr.body);
    assert.equal(JSON.parse(okr.body).result.tools.length, TOOL_NAMES.length);
    assert.equal((await post(url, {})).status, 401, 'no token');
    const wrong = await post(url, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401, 'wrong token');
    assert.match(String(wrong.headers['www-authenticate']), /Bearer/);
    assert.equal((await post(url, { ...auth, host: 'evil.example.com' })).status, 403, 'foreign Host');
    assert.equal((await post(url, { ...auth, host: `attacker.test:${h.port}` })).status, 403, 'rebound DNS name');
    assert.equal((await post(url, { ...auth, origin: 'http://evil.example.com' })).status, 403, 'foreign Origin');
    assert.equal((await post(`http://127.0.0.1:${h.port}/other`, auth)).status, 404);
    // unauthenticated requests count against the bucket too; GET, non-JSON and huge bodies are refused
    assert.equal((await post(url, auth, 'not json' as unknown)).status, 400);
    // the bucket (burst 5) is nearly empty now: keep asking until 429
    let limited: Resp | null = null;
    for (let i = 0; i < 10 && !limited; i++) {
      const r = await post(url, auth);
      if (r.status === 429) limited = r;
      else assert.equal(r.status, 200);
    }
    assert.ok(limited, 'rate limited');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await post(url, auth, { x: 'y'.repeat(2 << 20) })).status, 413);
    // the SDK client with the token (after the bucket refills)
    await new Promise((r) => setTimeout(r, 2600));
    const client = new Client({ name: 'http-auth', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: auth } }));
    const r = await client.callTool({ name: 'explain_request', arguments: { trace_id: traceId } });
    sameExplanation(r.structuredContent, 'the SDK client with a token');
    await client.close();
  } finally {
    await h.close();
  }
  // a token from the environment on loopback is enforced too
  const h2 = await startMcpHttpServer({ reader, addr: '127.0.0.1:0', tokenEnv: 'KSPAN_TEST_TOKEN_ENV', log: null, diag: () => {} }).catch((e) => e);
  assert.ok(!(h2 instanceof Error) && h2.auth === false, 'unset env var: no token');
  await h2.close();
  process.env.KSPAN_TEST_TOKEN_ENV = 'env-token';
  try {
    const h3 = await startMcpHttpServer({ reader, addr: '127.0.0.1:0', tokenEnv: 'KSPAN_TEST_TOKEN_ENV', log: null, diag: () => {} });
    try {
      assert.equal((await post(h3.url, {})).status, 401);
      assert.equal((await post(h3.url, { authorization: 'Bearer env-token' })).status, 200);
      assert.equal((await post(h3.url, { authorization: 'Bearer env-token', host: 'localhost:' + h3.port })).status, 200, 'localhost is this server');
    } finally {
      await h3.close();
    }
  } finally {
    delete process.env.KSPAN_TEST_TOKEN_ENV;
  }
});

// The MCP surface an agent pays for before its first question, and what bare
// calls do: tools/list size as a client receives it over HTTP, the
// instructions, the prompt and resources, defaults and one-line errors. On an
// empty store and a small synthetic one (no root or probe needed).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ClockHistory, FrameDecoder } from '../../src/capture/index.js';
import { createKspanMcpServer, DRILL_DOWN, leanSchema, SERVER_INSTRUCTIONS, startMcpHttpServer, TOOL_NAMES } from '../../src/mcp/index.js';
import { openStoreReader, openStoreWriter, type StoreReader } from '../../src/store/index.js';
import { SynthGen } from '../store/synth.js';

/** The whole tools/list response, as JSON on the wire, at most this many bytes (issue 16: was ~30 KB). */
const MAX_TOOLS_LIST_BYTES = 12 * 1024;

let emptyDir = '';
let synthDir = '';
let empty: StoreReader;
let synth: StoreReader;

async function clientFor(reader: StoreReader): Promise<Client> {
  const server = createKspanMcpServer({ reader });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(st);
  const c = new Client({ name: 'surface', version: '1' });
  await c.connect(ct);
  return c;
}

before(async () => {
  emptyDir = mkdtempSync(join('/var/tmp', 'kspan-mcp-empty-'));
  await openStoreWriter(emptyDir).close();
  empty = openStoreReader(emptyDir);
  synthDir = mkdtempSync(join('/var/tmp', 'kspan-mcp-synth-'));
  const w = openStoreWriter(synthDir);
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  for (const c of new SynthGen({ threads: 100, seed: 3 }).nextChunks(100_000)) {
    for (const b of d.push(c)) {
      const p = w.onBatch(b, clock);
      if (p) await p;
    }
  }
  await w.close();
  synth = openStoreReader(synthDir);
});

after(async () => {
  await empty?.root.close();
  await synth?.root.close();
  for (const d of [emptyDir, synthDir]) if (d) rmSync(d, { recursive: true, force: true });
});

function postRaw(url: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
    } }, (res) => {
      let b = '';
      res.on('data', (x: Buffer) => { b += x; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

test('tools/list is at most 12 KB on the wire, and every tool still explains itself', async () => {
  const h = await startMcpHttpServer({ reader: empty, addr: '127.0.0.1:0', log: null, diag: () => {} });
  let bytes = 0;
  let tools: any[] = [];
  try {
    const r = await postRaw(h.url, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    assert.equal(r.status, 200);
    bytes = Buffer.byteLength(r.body);
    tools = JSON.parse(r.body).result.tools;
  } finally {
    await h.close();
  }
  console.log(`tools/list: ${bytes} bytes for ${tools.length} tools (${tools.map((t) => `${t.name} ${JSON.stringify(t).length}`).join(', ')})`);
  assert.ok(bytes <= MAX_TOOLS_LIST_BYTES, `tools/list is ${bytes} bytes (max ${MAX_TOOLS_LIST_BYTES})`);
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOL_NAMES].sort());
  for (const t of tools) {
    assert.ok(t.description.length >= 100 && t.description.length <= 400, `${t.name}: a description that says what comes back (${t.description.length} chars)`);
    assert.equal(t.inputSchema.type, 'object');
    assert.equal(t.outputSchema?.type, 'object', `${t.name} has an output schema`);
    assert.ok(Object.keys(t.outputSchema.properties).length >= 3, `${t.name}: the output schema names the fields`);
    assert.equal(t.annotations.readOnlyHint, true);
    assert.equal(JSON.stringify(t).includes('$schema'), false, 'no $schema per schema');
  }
  // the conventions are stated once, in the instructions
  for (const w of ['epoch ns', 'RFC 3339', '"-5m"', 'defaults to now', '1 h before', 'partial: true', '*_unix_nano', 'find_slow_requests', 'investigate_slow_request']) {
    assert.ok(SERVER_INSTRUCTIONS.includes(w), `instructions mention ${w}`);
  }
  assert.ok(!JSON.stringify(tools).includes('RFC 3339'), 'time formats are not repeated per argument');
});

test('leanSchema drops only keywords that say nothing', () => {
  assert.deepEqual(leanSchema({
    $schema: 'x', type: 'object', properties: { a: { type: 'object', properties: {}, additionalProperties: {} }, b: { type: 'array', items: {} } },
    required: ['a'], additionalProperties: {},
  }), { type: 'object', properties: { a: { type: 'object' }, b: { type: 'array' } }, required: ['a'] });
  assert.deepEqual(leanSchema({ type: 'object', additionalProperties: false, properties: { x: { type: 'string' } } }),
    { type: 'object', additionalProperties: false, properties: { x: { type: 'string' } } });
});

test('bare calls work on an empty store and a synthetic one; errors name the fix on one line', async () => {
  const c = await clientFor(empty);
  try {
    for (const name of ['find_slow_requests', 'get_latency_distribution', 'futex_contention', 'query_events', 'capture_status', 'list_processes']) {
      const r = await c.callTool({ name, arguments: {} });
      assert.notEqual(r.isError, true, `${name} {}: ${JSON.stringify(r.content)}`);
    }
    const f = (await c.callTool({ name: 'find_slow_requests', arguments: {} })).structuredContent as any;
    assert.equal(f.requests.length, 0);
    assert.match(f.notes.join(' '), /no spans in the window/);
    const e = await c.callTool({ name: 'explain_request', arguments: {} });
    assert.equal(e.isError, true);
    const msg = (e.content as { text: string }[])[0].text;
    assert.match(msg, /give trace_id or request_id/);
    for (const [name, args, want] of [
      ['query_off_cpu', {}, /give pid or tid \(list_processes/],
      ['query_events', { kind: 'off_cpu', api: 'cudaMemcpy' }, /api filters kind cuda_call: set kind to cuda_call/],
      ['query_events', { kind: 'cuda_call', api: 'cudaFoo' }, /unknown CUDA API "cudaFoo"; one of cudaLaunchKernel/],
      ['query_events', { kind: 'block_io', dev: 'sda' }, /dev: want "major:minor"/],
      ['query_events', { kind: 'futex_wait', uaddr: 'lock' }, /uaddr: want a lock word address/],
      ['query_events', { kind: 'cuda_call', group_by: 'uaddr' }, /group_by uaddr applies to kind futex_wait or futex_wake/],
      ['query_events', { comm: 'nosuchproc' }, /no thread or process named "nosuchproc"/],
      ['find_slow_requests', { since: '-1h', until: '-2h' }, /must be after since/],
      ['find_slow_requests', { since: 'yesterday' }, /cannot read "yesterday" as a time/],
    ] as const) {
      const r = await c.callTool({ name, arguments: args });
      assert.equal(r.isError, true, `${name} ${JSON.stringify(args)} fails`);
      const t = (r.content as { text: string }[])[0].text;
      assert.match(t, want);
      assert.ok(!t.includes('\n'), `one line: ${t}`);
    }
  } finally {
    await c.close();
  }
  // a store whose data ended long ago (the synthetic one, from 2025): the default window moves to its last hour
  const s = await clientFor(synth);
  try {
    const d = (await s.callTool({ name: 'get_latency_distribution', arguments: {} })).structuredContent as any;
    assert.equal(d.kind, 'off_cpu');
    assert.ok(d.all.count > 1000, `the store's events are in the default window: ${d.all.count}`);
    assert.match(d.notes[0], /no data in the last hour: the default window is the store's last hour of data/);
    const q = (await s.callTool({ name: 'query_events', arguments: {} })).structuredContent as any;
    assert.equal(q.rows.length, 20);
    assert.ok(q.rows[0].duration_ns >= q.rows[1].duration_ns, 'longest first');
  } finally {
    await s.close();
  }
});

test('query_events: rows and aggregates agree, filters and group_by', async () => {
  const c = await clientFor(synth);
  const q = async (args: Record<string, unknown>): Promise<any> => {
    const r = await c.callTool({ name: 'query_events', arguments: args });
    assert.notEqual(r.isError, true, JSON.stringify(r.content));
    return r.structuredContent;
  };
  try {
    const byTid = await q({ kind: 'futex_wait', group_by: 'tid', limit: 200 });
    assert.equal(byTid.partial, false);
    assert.equal(byTid.groups.reduce((a: number, g: any) => a + g.count, 0), byTid.all.count, 'the groups add up to all');
    for (const g of byTid.groups) assert.ok(g.p50_ns <= g.p99_ns && g.p99_ns <= g.p999_ns && g.p999_ns <= g.max_ns);
    const tid = Number(byTid.groups[0].key);
    const rows = await q({ kind: 'futex_wait', tid, limit: 200 });
    assert.equal(rows.matched, byTid.groups[0].count, 'rows of one thread = its group');
    assert.ok(rows.rows.every((r: any) => r.tid === tid && typeof r.fields.uaddr === 'string'));
    const word = rows.rows[0].fields.uaddr;
    const onWord = await q({ kind: 'futex_wait', uaddr: word, group_by: 'uaddr' });
    assert.ok(onWord.groups.every((g: any) => g.key.endsWith('/' + word)));
    const long = await q({ kind: 'off_cpu', min_duration_ms: 0.5, order: 'time', limit: 5 });
    assert.ok(long.rows.every((r: any) => r.duration_ns >= 500_000));
    assert.ok(BigInt(long.rows[0].start_unix_nano) <= BigInt(long.rows[1].start_unix_nano), 'time order');
    assert.equal(long.truncated, long.matched > 5);
    const cuda = await q({ kind: 'cuda_call', group_by: 'api' });
    assert.ok(cuda.groups.length >= 1 && cuda.groups.every((g: any) => /^cu/.test(g.key)));
    const api = cuda.groups[0].key;
    const one = await q({ kind: 'cuda_call', api, limit: 3 });
    assert.equal(one.matched, cuda.groups[0].count);
    assert.ok(one.rows.every((r: any) => r.fields.api === api));
    const io = await q({ kind: 'block_io', group_by: 'dev' });
    if (io.groups.length) {
      const dev = io.groups[0].key;
      assert.equal((await q({ kind: 'block_io', dev })).matched, io.groups[0].count);
    }
    const pre = await q({ kind: 'off_cpu', group_by: 'preempted_by' });
    assert.ok(pre.groups.some((g: any) => g.key === 'not preempted'));
    assert.ok(pre.groups.some((g: any) => / pid \d+ tid \d+$/.test(g.key)));
    const pid = rows.rows[0].pid;
    const byPid = await q({ kind: 'futex_wait', pid, group_by: 'pid' });
    assert.deepEqual(byPid.groups.map((g: any) => g.key), [String(pid)]);
  } finally {
    await c.close();
  }
});

test('prompt investigate_slow_request and resources kspan://coverage, kspan://topology', async () => {
  const c = await clientFor(synth);
  try {
    const { prompts } = await c.listPrompts();
    const p = prompts.find((x) => x.name === 'investigate_slow_request')!;
    assert.deepEqual(p.arguments?.map((a) => a.name).sort(), ['service', 'since', 'trace_id']);
    assert.ok(p.arguments!.every((a) => !a.required));
    const text = (args: Record<string, string>) => c.getPrompt({ name: 'investigate_slow_request', arguments: args }).then((r) => (r.messages[0].content as { text: string }).text);
    const bySvc = await text({ service: 'checkout', since: '-30m' });
    assert.match(bySvc, /^1\. find_slow_requests \{"service": "checkout", "since": "-30m"\}/m);
    assert.match(bySvc, /explain_request \{"trace_id"/);
    for (const [kind, call] of Object.entries(DRILL_DOWN)) assert.ok(bySvc.includes(`- ${kind}: ${call}`), `drill-down for ${kind}`);
    assert.match(await text({}), /^1\. find_slow_requests \{\}/m);
    assert.match(await text({ trace_id: 'ab'.repeat(16) }), /^1\. explain_request \{"trace_id": "abab/m);

    const { resources } = await c.listResources();
    assert.deepEqual(resources.map((r) => r.uri).sort(), ['kspan://coverage', 'kspan://topology']);
    const read = async (uri: string) => JSON.parse(((await c.readResource({ uri })).contents[0] as { text: string }).text);
    const cov = await read('kspan://coverage');
    assert.equal(cov.sessions_total, 1);
    assert.ok(cov.events.count > 90_000 && BigInt(cov.events.to_unix_nano) > BigInt(cov.events.from_unix_nano));
    assert.equal(typeof cov.lost_records.total, 'number');
    const topo = await read('kspan://topology');
    assert.ok(topo.host.cpus >= 1 && typeof topo.host.model === 'string');
    assert.ok(topo.processes_by_threads.length > 0 && topo.processes_by_threads[0].threads >= topo.processes_by_threads.at(-1).threads);
  } finally {
    await c.close();
  }
});

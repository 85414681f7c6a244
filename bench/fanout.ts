// Fan-out latency of explain_request (issue 15, item 6), on loopback, end to
// end: an MCP client (the SDK, Streamable HTTP, bearer token) asks host 1's
// kspan MCP server, which explains from its store and asks its peers in
// parallel, each peer a kspan MCP server over its own store in another
// process (bench/lib/fanout-peers.ts; synthetic stores of test/hosts/multihost.ts).
//
//   1. 3 hosts: host 1 + 2 peers (a process each), each holding one span of the trace.
//      Also host 1 alone (no peers) for reference. Target: p99 <= 50 ms.
//   2. 20 peers: 18 answer (one span each; 3 processes of 6), 1 is slow (answers after 5 s),
//      1 is down (closed port); per-peer deadline 2 s (the default), so every
//      call waits for the deadline. Target: p99 <= deadline + 50 ms.
//
//   npm run bench:fanout [-- --quick] [-- --runs N]

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { REPO_ROOT } from '../src/capture/index.js';
import { hostA, hostB, hostC, hostWithSpan, TRACE, type HostStore } from '../test/hosts/multihost.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, runs: { type: 'string' } } });
const RUNS3 = values.runs ? Number(values.runs) : values.quick ? 100 : 500;
const RUNS20 = Number(process.env.KSPAN_BENCH_RUNS20 ?? (values.quick ? 8 : 40));
const TOKEN = 'bench-fanout-token-0123456789abcdef';
const DEADLINE_MS = Number(process.env.KSPAN_BENCH_DEADLINE_MS ?? 2000);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

interface Peers { proc: ChildProcess; urls: string[] }

function startPeers(servers: object[]): Promise<Peers> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'lib', 'fanout-peers.ts'), JSON.stringify({ servers, token: TOKEN })],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) resolve({ proc, urls: (JSON.parse(line) as { urls: string[] }).urls });
    });
    proc.on('exit', (c) => reject(new Error(`peers exited ${c}`)));
  });
}

async function stopPeers(p: Peers): Promise<void> {
  p.proc.removeAllListeners('exit');
  const done = new Promise((r) => p.proc.once('exit', r));
  p.proc.kill('SIGTERM');
  await done;
}

async function client(url: string): Promise<Client> {
  const c = new Client({ name: 'bench-fanout', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
  return c;
}

async function measure(c: Client, runs: number, check: (sc: any) => void): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await c.callTool({ name: 'explain_request', arguments: { trace_id: TRACE } });
    lat.push(performance.now() - t0);
    if (r.isError) throw new Error(JSON.stringify(r.content));
    if (i === 0) check(r.structuredContent);
  }
  return lat;
}

function report(name: string, lat: number[]): void {
  console.log(`${name}: n=${lat.length} p50 ${pct(lat, 0.5).toFixed(1)} ms, p90 ${pct(lat, 0.9).toFixed(1)} ms, p99 ${pct(lat, 0.99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms`);
  console.log(`RESULT ${name}_p50_ms ${pct(lat, 0.5).toFixed(2)} ms`);
  console.log(`RESULT ${name}_p99_ms ${pct(lat, 0.99).toFixed(2)} ms`);
}

async function closedPort(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}/mcp`;
}

async function main(): Promise<void> {
  const stores: HostStore[] = [];
  try {
    // ---- 1. three hosts
    const [a, b, c] = await Promise.all([hostA(), hostB(), hostC()]);
    stores.push(a, b, c);
    // each host its own process, as on separate machines
    const pb = await startPeers([{ dir: b.dir, host: b.host.name }]);
    const pc = await startPeers([{ dir: c.dir, host: c.host.name }]);
    const peers = { urls: [...pb.urls, ...pc.urls] };
    const h1 = await startPeers([
      { dir: a.dir, host: a.host.name, peers: peers.urls, timeoutMs: DEADLINE_MS },
      { dir: a.dir, host: a.host.name }, // host 1 alone, for reference
    ]);
    try {
      const c3 = await client(h1.urls[0]);
      const c1 = await client(h1.urls[1]);
      const warm = values.quick ? 10 : 30;
      await measure(c3, warm, () => {});
      await measure(c1, warm, () => {});
      const l3 = await measure(c3, RUNS3, (sc) => {
        if (sc.spans.length !== 3 || sc.data_quality.partial) throw new Error(`3 hosts: ${JSON.stringify(sc.data_quality.hosts)}`);
      });
      const l1 = await measure(c1, RUNS3, (sc) => {
        if (sc.spans.length !== 1) throw new Error('local: 1 span');
      });
      report('fanout_3hosts_explain', l3);
      report('fanout_local_only_explain', l1);
      console.log(`RESULT fanout_3hosts_p99_target ${pct(l3, 0.99) <= 50 ? 'met' : 'MISSED'} (<= 50 ms)`);
      await c3.close();
      await c1.close();
    } finally {
      await stopPeers(h1);
      await stopPeers(pb);
      await stopPeers(pc);
    }

    // ---- 2. twenty peers: 18 answer, 1 slow, 1 down
    const healthy = await Promise.all(Array.from({ length: 18 }, (_, i) => hostWithSpan(`peer-${i + 1}`, 1, 20 + i)));
    stores.push(...healthy);
    // 18 kspans in 3 processes of 6, the slow one in a fourth
    const groups = await Promise.all([0, 1, 2].map((g) => startPeers(healthy.slice(6 * g, 6 * g + 6).map((h) => ({ dir: h.dir, host: h.host.name })))));
    const slowP = await startPeers([{ slowMs: 5000 }]);
    const p18 = { urls: [...groups.flatMap((g) => g.urls), ...slowP.urls] };
    const down = await closedPort();
    const h1b = await startPeers([{ dir: a.dir, host: a.host.name, peers: [...p18.urls, down], timeoutMs: DEADLINE_MS }]);
    try {
      const c20 = await client(h1b.urls[0]);
      // the first call connects to every peer (initialize): not counted
      await measure(c20, 2, () => {});
      const l20 = await measure(c20, RUNS20, (sc) => {
        const st = sc.data_quality.hosts.map((h: { status: string }) => h.status);
        const n = (s: string): number => st.filter((x: string) => x === s).length;
        if (sc.spans.length !== 19 || n('ok') !== 18 || n('timeout') !== 1 || n('failed') !== 1 || !sc.data_quality.partial) {
          throw new Error(`20 peers: ${sc.spans.length} spans, ${JSON.stringify(sc.data_quality.hosts)}`);
        }
        console.log(`20 peers: ${sc.spans.length} spans merged; ${sc.data_quality.notes[0]}`);
      });
      report('fanout_20peers_slow_down_explain', l20);
      console.log(`RESULT fanout_20peers_p99_target ${pct(l20, 0.99) <= DEADLINE_MS + 50 ? 'met' : 'MISSED'} (<= ${DEADLINE_MS + 50} ms: deadline ${DEADLINE_MS} ms + 50)`);
      await c20.close();
    } finally {
      await stopPeers(h1b);
      for (const g of [...groups, slowP]) await stopPeers(g);
    }
  } finally {
    for (const s of stores) s.cleanup();
  }
}

await main();

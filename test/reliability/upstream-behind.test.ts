// kspan run with its upstream down: the upstream queue fills, and from 90% of
// --queue-spans the OTLP receiver answers "retry later" (503 + Retry-After)
// instead of taking spans the queue would drop; the status line says so; when
// the upstream comes back the queue drains, the retried request is taken and
// every span arrives, none dropped. Also: bad option values are usage errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import { freePort } from '../helpers/jaeger.js';
import { otlpJsonBody } from '../helpers/otlp-json.js';
import { UpstreamSink } from '../otel/upstream-sink.js';
import { sleep } from '../store/util.js';

const KSPAN = join(REPO_ROOT, 'bin', 'kspan.js');

test('kspan run, upstream down: from 90% of --queue-spans new requests get a retryable 503, said in the status line; nothing is dropped and all arrive when it is back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-behind-'));
  const port = await freePort();
  const kspan = spawn(process.execPath, [
    KSPAN, 'run', '--no-capture', '--data', join(dir, 'store'), '--otlp-grpc', 'off', '--otlp-http', '127.0.0.1:0',
    '--upstream', `http://127.0.0.1:${port}`, '--queue-spans', '50', '--buffer-bytes', '1M', '--status-interval', '1',
  ], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  kspan.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  let sink: UpstreamSink | null = null;
  try {
    const httpPort = JSON.parse(await new Promise<string>((resolve, reject) => {
      createInterface({ input: kspan.stdout! }).once('line', resolve);
      kspan.once('exit', (c) => reject(new Error(`kspan run exited ${c}: ${stderr}`)));
    })).otlp_http_port as number;
    const post = (from: number) => fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: otlpJsonBody('behind', from, 5, 'd') });
    // nine requests of 5 spans: 45 queued (the kernel side is off: forwarded unchanged at once)
    for (let i = 0; i < 9; i++) assert.equal((await post(5 * i)).status, 200, `request ${i}`);
    const refused = await post(45);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    const body = await refused.json() as { code: number; message: string };
    assert.equal(body.code, 8);
    assert.match(body.message, /cannot take more spans now: upstream .* is behind: 45 span\(s\)/);
    const t0 = Date.now();
    while (!/1 requests refused: retry later/.test(stderr)) {
      assert.ok(Date.now() - t0 < 10_000, `no status line saying so: ${stderr.slice(-1500)}`);
      await sleep(100);
    }
    // the upstream comes back; the sender retries as an OTel SDK does (after Retry-After)
    sink = await UpstreamSink.start({ grpcPort: port });
    let status = 503;
    for (let k = 0; status === 503 && k < 60; k++) {
      await sleep(1000);
      status = (await post(45)).status;
    }
    assert.equal(status, 200, 'the retried request is taken once the queue drains');
    await sink.waitFor((r) => r.length >= 50, 30_000, '50 spans upstream');
    kspan.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => kspan.once('exit', r));
    assert.equal(code, 0, stderr.slice(-3000));
    const ids = new Set(sink.received.map((x) => x.span.spanId));
    assert.equal(ids.size, 50);
    assert.match(stderr, /upstream: 50 exported, 0 dropped/);
  } finally {
    if (kspan.exitCode === null) kspan.kill('SIGKILL');
    await sink?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kspan run: a bad --buffer-bytes (or other size, count, duration) is a usage error, exit 2, naming the option', () => {
  // these are parsed while the daemon's options are built: they exited 1 like a start failure before
  for (const [opt, v] of [['--buffer-bytes', 'lots'], ['--max-size', 'x'], ['--buffer-spans', '0'], ['--wait', 'abc']]) {
    const r = spawnSync(process.execPath, [KSPAN, 'run', '--no-capture', opt, v], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, `${opt} ${v}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`kspan run: ${opt} wants`));
  }
});

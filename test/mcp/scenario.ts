// Shared by the MCP tests: capture a real scenario with `kspan record --data`
// (the real probe around the fixtures in test/fixtures), then store spans for
// the fixture's requests in the span index, as the OTel receiver would.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import { openStoreWriter, type SpanInput } from '../../src/store/index.js';
import { FIXTURE_BIN, run } from '../kernel/harness.js';

export type Fixtures = Record<string, any>;

export const CLI = join(REPO_ROOT, 'src', 'cli.ts');

/** `kspan record --data DIR -- bash -c SCRIPT` (run from the fixtures' bin dir); each fixture's JSON line by name. */
export async function recordScenario(script: string, want: string[], extra: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<{ dir: string; fx: Fixtures }> {
  const dir = mkdtempSync(join('/var/tmp', 'kspan-mcp-'));
  const r = await run(process.execPath, ['--import', 'tsx', CLI, 'record', '--quiet', '--data', dir, ...extra,
    '--', 'bash', '-c', `cd ${FIXTURE_BIN} || exit 1; ${script}`], { env, timeoutMs: 120000 });
  assert.equal(r.code, 0, `kspan record failed: ${r.stderr}`);
  const fx: Fixtures = {};
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('{"fixture"')) {
      const o = JSON.parse(line);
      fx[o.fixture] = o;
    }
  }
  for (const name of want) assert.ok(fx[name], `${name} printed its result: ${r.stdout} ${r.stderr}`);
  return { dir, fx };
}

export interface ScenarioSpan {
  name: string;
  startMono: number;
  endMono: number;
  tid?: number;
  pid?: number;
  service?: string;
  requestId?: string;
  attributes?: Record<string, string | number | boolean>;
}

/** Store one trace's spans (monotonic ns converted with the store's clock history); returns the trace id. */
export async function putTrace(dir: string, spans: ScenarioSpan[]): Promise<string> {
  const traceId = randomBytes(16).toString('hex');
  const w = openStoreWriter(dir);
  try {
    const clock = w.reader.clockHistory();
    const input: SpanInput[] = spans.map((s) => ({
      traceId, spanId: randomBytes(8).toString('hex'), service: s.service ?? 'scenario', name: s.name,
      startUnixNano: clock.toEpochNs(s.startMono), endUnixNano: clock.toEpochNs(s.endMono),
      tid: s.tid ?? null, pid: s.pid ?? null, requestId: s.requestId ?? null, attributes: s.attributes ?? {},
    }));
    await w.reader.spans.putSpans(input);
  } finally {
    await w.close();
  }
  return traceId;
}

/** mutex_hold's rounds as spans of the waiter thread (1 ms of margin each side). */
export function mutexSpans(mh: any, extra: Partial<ScenarioSpan> = {}): ScenarioSpan[] {
  return mh.rounds.map((r: any, i: number) => ({
    name: `request ${i}`, startMono: r.a_lock_start_ns - 1e6, endMono: r.a_lock_end_ns + 1e6, tid: mh.tid_a, pid: mh.pid, ...extra,
  }));
}

/** The explanation without the fields that depend on when it was computed (settling flags, notes about it). */
export function stableExplanation(e: any): any {
  return JSON.parse(JSON.stringify(e, (k, v) => (k === 'settling' || k === 'notes' ? undefined : v)));
}

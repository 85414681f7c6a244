// Shared by the MCP tests: capture a real scenario with `kspan record --data`
// (the real probe around the fixtures in test/fixtures), then store spans for
// the fixture's requests in the span index, as the OTel receiver would.

import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import type { ScenarioSpan } from '../kernel/harness.js';

export { putTrace, recordScenario, type Fixtures, type ScenarioSpan } from '../kernel/harness.js';

export const CLI = join(REPO_ROOT, 'src', 'cli.ts');

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

// The thread directory's one rule: which incarnation of a tid was alive at
// monotonic time t, and under which name. Used by the reader, the correlator
// and every tool that names a thread, so they all agree.
//
//   - the incarnation is the latest one that started at or before t
//     (tids are reused: (tid, startTime) identifies a thread);
//   - none when that incarnation had exited before t (the tid was free);
//   - its name is the one in force at t (renames and execs are tracked).

import type { ThreadMeta } from './schema.js';

/** The incarnation alive at t (with `comm` as of t) from the tid's incarnations, oldest first; null when none. */
export function incarnationAt(incarnations: readonly ThreadMeta[], t: number): ThreadMeta | null {
  for (let k = incarnations.length - 1; k >= 0; k--) {
    const m = incarnations[k];
    if (m.startTime > t) continue;
    if (m.exitTs !== null && m.exitTs < t) return null;
    let comm = m.names.length ? m.names[0][1] : m.comm;
    for (const [ts, c] of m.names) if (ts <= t) comm = c;
    return { ...m, comm };
  }
  return null;
}

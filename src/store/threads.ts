// The thread directory's rules: which incarnation of a tid was alive at
// monotonic time t, and under which name (incarnationAt); and which one to
// name a tid by when none was alive (incarnationNear: culprit names, track
// labels). Used by the reader, the correlator, the Perfetto export and the
// MCP tools, so they all agree.
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

/**
 * The incarnation to name tid by at t when a name is better than none (a
 * culprit or a track label): the one alive at t; else the latest that had
 * started by t (it exited before t); else the first one known. Its `comm` is
 * the name in force at t, or its first / last name outside its lifetime.
 */
export function incarnationNear(incarnations: readonly ThreadMeta[], t: number): ThreadMeta | null {
  if (!incarnations.length) return null;
  const alive = incarnationAt(incarnations, t);
  if (alive) return alive;
  for (let k = incarnations.length - 1; k >= 0; k--) {
    const m = incarnations[k];
    if (m.startTime <= t) return { ...m, comm: m.names.length ? m.names[m.names.length - 1][1] : m.comm };
  }
  const m = incarnations[0];
  return { ...m, comm: m.names.length ? m.names[0][1] : m.comm };
}

/**
 * The thread directory of one query (an explain call, an export): each tid's
 * incarnations read once from the store, then both rules answered from them.
 */
export class ThreadDirectory {
  private readonly incs = new Map<number, ThreadMeta[]>();

  constructor(private readonly reader: { threadIncarnations(tid: number): ThreadMeta[] }) {}

  incarnations(tid: number): ThreadMeta[] {
    let inc = this.incs.get(tid);
    if (!inc) this.incs.set(tid, (inc = this.reader.threadIncarnations(tid)));
    return inc;
  }

  /** incarnationAt: the thread alive at t, or null */
  at(tid: number, t: number): ThreadMeta | null {
    return incarnationAt(this.incarnations(tid), t);
  }

  /** incarnationNear: the thread to name tid by at t, or null when the tid was never seen */
  near(tid: number, t: number): ThreadMeta | null {
    return incarnationNear(this.incarnations(tid), t);
  }
}

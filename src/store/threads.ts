// The thread directory's rules: the one answer to "which thread had tid T at
// time t" for the reader, the correlator, the Perfetto export and the MCP
// tools, so they all agree.
//
//   - alive at t (incarnationAt): the latest incarnation that started at or
//     before t (tids are reused: (tid, startTime) identifies a thread); none
//     when that incarnation had exited before t (the tid was free);
//   - to name tid by at t (incarnationNear, ThreadDirectory.nameNear: culprit
//     names, track labels, the MCP tools' comm fields): the one alive at t;
//     else the latest that had started by t (it exited before t); else the
//     first one known;
//   - its name is the one in force at t (renames and execs are tracked);
//     outside its lifetime, its last name after its exit, its first before
//     its start.

import type { ThreadMeta } from './schema.js';

/** Index of the latest incarnation started at or before t; -1 when none. */
function startedBy(incarnations: readonly ThreadMeta[], t: number): number {
  for (let k = incarnations.length - 1; k >= 0; k--) if (incarnations[k].startTime <= t) return k;
  return -1;
}

const firstName = (m: ThreadMeta): string => (m.names.length ? m.names[0][1] : m.comm);
const lastName = (m: ThreadMeta): string => (m.names.length ? m.names[m.names.length - 1][1] : m.comm);

/** m's name in force at t (its first name before its first rename). */
function nameAt(m: ThreadMeta, t: number): string {
  let comm = firstName(m);
  for (const [ts, c] of m.names) if (ts <= t) comm = c;
  return comm;
}

/** The incarnation alive at t (with `comm` as of t) from the tid's incarnations, oldest first; null when none. */
export function incarnationAt(incarnations: readonly ThreadMeta[], t: number): ThreadMeta | null {
  const k = startedBy(incarnations, t);
  if (k < 0) return null;
  const m = incarnations[k];
  if (m.exitTs !== null && m.exitTs < t) return null;
  return { ...m, comm: nameAt(m, t) };
}

/** incarnationNear's choice: the incarnation and the name it goes by at t. */
function near(incarnations: readonly ThreadMeta[], t: number): [ThreadMeta, string] | null {
  if (!incarnations.length) return null;
  const k = startedBy(incarnations, t);
  if (k < 0) return [incarnations[0], firstName(incarnations[0])];
  const m = incarnations[k];
  return [m, m.exitTs !== null && m.exitTs < t ? lastName(m) : nameAt(m, t)];
}

/**
 * The incarnation to name tid by at t when a name is better than none (a
 * culprit or a track label): the one alive at t; else the latest that had
 * started by t (it exited before t); else the first one known. Its `comm` is
 * the name in force at t, or its first / last name outside its lifetime.
 */
export function incarnationNear(incarnations: readonly ThreadMeta[], t: number): ThreadMeta | null {
  const n = near(incarnations, t);
  return n && { ...n[0], comm: n[1] };
}

/** incarnationNear's name alone (a name per event: no incarnation copied); null when the tid was never seen. */
function nameNear(incarnations: readonly ThreadMeta[], t: number): string | null {
  return near(incarnations, t)?.[1] ?? null;
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

  /** nameNear: the name of near(tid, t), or null when the tid was never seen */
  nameNear(tid: number, t: number): string | null {
    return nameNear(this.incarnations(tid), t);
  }
}

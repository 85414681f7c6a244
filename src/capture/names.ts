// TaskNames: tid -> comm (and pid -> process comm) learned from KSPAN_TASK
// records seen so far. Bounded: the least recently set entries go first, so
// a long capture on a busy host does not grow without limit.

import type { RecordBatch } from './decoder.js';
import { Kind, TaskEvent } from './records.js';
import { TaskView } from './views.js';

export class TaskNames {
  private readonly threads = new Map<number, string>();
  private readonly procs = new Map<number, string>();
  private readonly tv = new TaskView();

  /**
   * @param fallback consulted when this map has no name, e.g. names gathered
   *   from a whole file in a first pass (TASK records come on their own ring,
   *   so a name can arrive after the records that need it).
   */
  constructor(readonly maxEntries = 65536, private readonly fallback: TaskNames | null = null) {}

  get size(): number {
    return this.threads.size;
  }

  /** comm of a thread, if a TASK record named it. */
  get(tid: number): string | undefined {
    return this.threads.get(tid) ?? this.fallback?.get(tid);
  }

  /** comm of a process's group leader. */
  process(pid: number): string | undefined {
    return this.procs.get(pid) ?? this.threads.get(pid) ?? this.fallback?.process(pid);
  }

  set(tid: number, comm: string): void {
    setBounded(this.threads, tid, comm, this.maxEntries);
  }

  setProcess(pid: number, comm: string): void {
    setBounded(this.procs, pid, comm, this.maxEntries);
  }

  /** Learn from one TASK record (the view must be on a KSPAN_TASK record). */
  observeTask(v: TaskView): void {
    const ev = v.event;
    if (ev === TaskEvent.EXIT) return; // keep the name: later records may still mention it
    const comm = v.taskComm;
    if (comm) this.set(v.tid, comm);
    const pcomm = v.processComm;
    if (pcomm) this.setProcess(v.pid, pcomm);
  }

  /** Learn from every TASK record in a batch. */
  observeBatch(batch: RecordBatch): void {
    const u32 = batch.u32;
    const offs = batch.offsets;
    for (let i = 0; i < batch.count; i++) {
      if (((u32[offs[i] >>> 2] >>> 16) & 0xff) === Kind.TASK) this.observeTask(this.tv.set(batch, i));
    }
  }
}

function setBounded<K, V>(m: Map<K, V>, k: K, v: V, max: number): void {
  // delete first so re-setting moves the key to the young end
  m.delete(k);
  m.set(k, v);
  if (m.size > max) {
    const oldest = m.keys().next();
    if (!oldest.done) m.delete(oldest.value);
  }
}

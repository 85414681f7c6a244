// The store's head: what the writer has ingested but LMDB has not committed
// yet (open per-thread blocks, sealed blocks waiting for their commit round,
// new thread metadata, the running session). The daemon's own reader merges
// it into every answer, the way a time-series database queries its head
// block, so kernel events are explainable ~one drain period after they
// happen instead of after the next commit (~1 s). Readers in other
// processes see only what is committed.
//
// Merging rule: a sealed block is in the head until its commit round's
// promise resolves, and LMDB may already show it (the round committed but
// the promise callback has not run). Each sealed block keeps its key's
// sequence number, and the reader skips head blocks whose sequence it met
// in the LMDB scan: every event is read exactly once.

import type { DropsSample, OpenInterval, SessionMeta, ThreadMeta } from './schema.js';

export interface HeadBlock {
  /** the block's LMDB key sequence number (unique per writer); -1 for an open block */
  seq: number;
  /** time partition */
  part: number;
  /** pid of the block's first event (the pid map's key) */
  pid: number;
  /** encoded block (codec.ts format, header included) */
  value: Uint8Array;
}

export interface StoreHead {
  /** sequence numbers of the sealed, not yet confirmed committed blocks of thread `tid` (null: none) */
  sealedSeqs(tid: number): readonly number[] | null;
  /** every head block of thread `tid` (sealed first, then the open one) */
  threadBlocks(tid: number, visit: (b: HeadBlock) => void): void;
  /** sequence numbers of the sealed futex-index blocks of lock word (pid, uaddr) (null: none) */
  futexSealedSeqs(pid: number, uaddr: number): readonly number[] | null;
  /** every head block of the futex index of lock word (pid, uaddr) */
  futexBlocks(pid: number, uaddr: number, visit: (b: HeadBlock) => void): void;
  /**
   * (pid, tid) of head blocks that can hold events overlapping [a, b], by the
   * same partition rule as the committed pid map; stop when visit returns false.
   */
  threads(a: number, b: number, visit: (pid: number, tid: number) => boolean): void;
  /** thread metadata newer than what is committed (new incarnations, renames, exits) */
  threadMeta(tid: number, startTime: number): ThreadMeta | undefined;
  /** incarnations of `tid` not committed yet */
  newIncarnations(tid: number): readonly ThreadMeta[];
  /** threads of process `pid` not committed yet */
  newThreadsOf(pid: number): readonly ThreadMeta[];
  /** the running capture session, its end at the ingest watermark (null: none) */
  session(): SessionMeta | null;
  /** monotonic ns before which every captured event has been ingested (0: none yet) */
  ingestWatermarkNs(): number;
  /** ring's loss counter as of the latest drain (null: none); may not be committed yet */
  dropsLatest(ring: number): DropsSample | null;
  /** thread tid's off-CPU interval still open at the latest snapshot, in the running session (null: none); the rows this session committed are superseded by it */
  openInterval(tid: number): OpenInterval | null;
}

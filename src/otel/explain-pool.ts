// Explain workers (worker_threads) for the OTel pipeline: each runs
// explain-worker.ts on its own read-only handle of the store and answers
// batches of traces with each span's kspan attributes and events. The
// receiving thread keeps receiving, buffering and exporting meanwhile.
//
// A worker that dies (an exception, out of memory, a batch past its timeout)
// answers its batches in flight with null (the pipeline forwards their spans
// unchanged and counts them) and is started again after a backoff.

import { Worker } from 'node:worker_threads';
import type { ExplainOptions } from '../correlator/index.js';
import type { EnrichOptions } from './enrich.js';
import type { BatchResult, ExplainBatch, ExplainGroup, ExplainWorkerInit, GroupResult } from './explain-worker.js';

/**
 * An explain worker's young generation, MB (V8's default here is ~48). A
 * worker allocates ~25 KB per span explained: with the default, scavenges
 * promoted much of it and the old generation's collections took ~17% of the
 * worker's busy time under a flood (bench:pipeline, one worker, when a
 * batch's explanations lived until the whole batch was encoded; each trace
 * is now encoded as it is explained); with 96 MB, ~10%, for ~30 MB more
 * peak heap per worker.
 */
const WORKER_YOUNG_GENERATION_MB = 96;

export interface ExplainPoolOptions {
  /** worker threads (>= 1) */
  workers: number;
  /** the store directory (opened read-only by each worker) */
  dir: string;
  explain?: ExplainOptions;
  enrich?: EnrichOptions;
  /** batches in flight per worker at most (default 2) */
  maxInFlight?: number;
  /** a batch not answered in this long: its worker is restarted, its spans go out unchanged (default 30 s) */
  batchTimeoutMs?: number;
  /** decoded-block cache of each worker, bytes (default: 64 MiB shared out among the workers, at least 16 MiB each) */
  blockCacheBytes?: number;
  log?: (msg: string) => void;
}

export interface ExplainPoolCounters {
  /** batches answered by a worker */
  batches: number;
  /** workers that died (or were stopped past the batch timeout) */
  crashes: number;
  /** workers started again after one died */
  restarts: number;
  /** ms the workers spent explaining */
  workerMs: number;
}

interface Pending {
  resolve: (r: GroupResult[] | null) => void;
  timer: NodeJS.Timeout;
}

interface Slot {
  worker: Worker | null;
  inFlight: Map<number, Pending>;
  /** consecutive deaths (backoff); reset by an answered batch */
  deaths: number;
  restartTimer: NodeJS.Timeout | null;
}

/** The worker script next to this module: .ts under tsx (tests, benches), .js when built. */
function workerUrl(): { url: URL; ts: boolean } {
  const self = import.meta.url;
  const ts = self.endsWith('.ts');
  return { url: new URL(ts ? './explain-worker.ts' : './explain-worker.js', self), ts };
}

export class ExplainPool {
  readonly counters: ExplainPoolCounters = { batches: 0, crashes: 0, restarts: 0, workerMs: 0 };
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly log: (msg: string) => void;
  private readonly init: ExplainWorkerInit;

  constructor(private readonly o: ExplainPoolOptions) {
    if (!(o.workers >= 1)) throw new Error('ExplainPool: workers must be >= 1');
    this.maxInFlight = o.maxInFlight ?? 2;
    this.timeoutMs = o.batchTimeoutMs ?? 30_000;
    this.log = o.log ?? ((m) => process.stderr.write(`kspan: ${m}\n`));
    this.init = {
      kspanExplainWorker: true, dir: o.dir, explain: o.explain ?? {}, enrich: o.enrich ?? {},
      // memory is bounded for the pool, not per worker: a many-core host does not get a cache per core
      blockCacheBytes: o.blockCacheBytes ?? Math.max(16 * 1024 * 1024, Math.floor(64 * 1024 * 1024 / o.workers)),
    };
    for (let i = 0; i < o.workers; i++) {
      const s: Slot = { worker: null, inFlight: new Map(), deaths: 0, restartTimer: null };
      this.slots.push(s);
      this.start(s);
    }
  }

  /** workers running now */
  get live(): number {
    let n = 0;
    for (const s of this.slots) if (s.worker) n++;
    return n;
  }

  /** batches that can be submitted now without queueing behind others */
  get capacity(): number {
    let n = 0;
    for (const s of this.slots) if (s.worker) n += Math.max(0, this.maxInFlight - s.inFlight.size);
    return n;
  }

  /** batches in flight */
  get inFlight(): number {
    let n = 0;
    for (const s of this.slots) n += s.inFlight.size;
    return n;
  }

  private start(s: Slot): void {
    const { url, ts } = workerUrl();
    // under tsx the worker needs tsx's loader registered in its own thread before it imports a .ts file
    const rl = { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } };
    const w = ts
      ? new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData: this.init, ...rl })
      : new Worker(url, { workerData: this.init, ...rl });
    s.worker = w;
    w.on('message', (m: BatchResult | { ready: true }) => {
      if (!('id' in m)) return;
      const p = s.inFlight.get(m.id);
      if (!p) return;
      s.inFlight.delete(m.id);
      clearTimeout(p.timer);
      s.deaths = 0;
      this.counters.batches++;
      this.counters.workerMs += m.ms;
      if (m.bytes) for (const g of m.groups) if (g.kind === 'encoded') { g.bytes = m.bytes; g.meta = m.meta; }
      p.resolve(m.groups);
    });
    w.on('error', (e) => { this.log(`explain worker failed: ${e.stack ?? e.message}`); });
    w.on('exit', (code) => {
      if (s.worker !== w) return;
      s.worker = null;
      const lost = [...s.inFlight.values()];
      s.inFlight.clear();
      for (const p of lost) { clearTimeout(p.timer); p.resolve(null); }
      if (this.closed) return;
      this.counters.crashes++;
      s.deaths++;
      const delay = Math.min(5000, 100 * 2 ** Math.min(6, s.deaths - 1));
      this.log(`explain worker exited (code ${code}) with ${lost.length} batch(es) in flight (their spans are forwarded unchanged); restarting in ${delay} ms`);
      s.restartTimer = setTimeout(() => {
        s.restartTimer = null;
        if (this.closed) return;
        this.counters.restarts++;
        this.start(s);
      }, delay);
      s.restartTimer.unref?.();
    });
  }

  /**
   * Explain `groups` on a worker. Resolves with one result per group, or
   * null when the worker died first (or no worker runs). Takes the worker
   * with the fewest batches in flight (may exceed maxInFlight: check capacity).
   */
  submit(groups: ExplainGroup[], mode: ExplainBatch['mode'] = 'enrich', onlyKnown = true): Promise<GroupResult[] | null> {
    let best: Slot | null = null;
    for (const s of this.slots) if (s.worker && (!best || s.inFlight.size < best.inFlight.size)) best = s;
    if (!best || this.closed) return Promise.resolve(null);
    const slot = best;
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.log(`explain worker: batch ${id} not answered in ${this.timeoutMs} ms; restarting the worker`);
        void slot.worker?.terminate();
      }, this.timeoutMs);
      timer.unref?.();
      slot.inFlight.set(id, { resolve, timer });
      const msg: ExplainBatch = { id, groups, mode, onlyKnown };
      slot.worker!.postMessage(msg);
    });
  }

  /** Tests: make worker i die with its batches in flight. */
  crashWorker(i: number): void {
    this.slots[i]?.worker?.postMessage({ cmd: 'crash' });
  }

  /** Resolves when no batch is in flight. */
  async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
  }

  /** Stop every worker (batches in flight resolve with null). */
  async close(): Promise<void> {
    this.closed = true;
    const ws: Promise<number>[] = [];
    for (const s of this.slots) {
      if (s.restartTimer) clearTimeout(s.restartTimer);
      if (s.worker) ws.push(s.worker.terminate());
    }
    await Promise.all(ws);
  }
}

// Peak resident memory of this process, split as the kernel counts it
// (/proc/self/status): anonymous pages (heaps, buffers: what the process
// holds) and file pages (here the LMDB store's memory map: page cache that
// the kernel can drop and read again, shared with every reader of the file).

import { readFileSync } from 'node:fs';

export interface RssPeak {
  /** VmRSS, MB */
  totalMb: number;
  /** RssAnon, MB */
  anonMb: number;
  /** RssFile + RssShmem, MB */
  fileMb: number;
  /** this thread's V8 heap (heapTotal), MB: part of anonymous */
  heapMb: number;
  /** ArrayBuffers and Buffers outside the V8 heap (external), MB: part of anonymous */
  externalMb: number;
}

function kb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : 0;
}

/** Samples /proc/self/status every `everyMs` and keeps each figure's peak until `take()`. */
export class RssSampler {
  private peak: RssPeak = RssSampler.zero();

  private static zero(): RssPeak {
    return { totalMb: 0, anonMb: 0, fileMb: 0, heapMb: 0, externalMb: 0 };
  }

  constructor(everyMs = 50) {
    setInterval(() => this.sample(), everyMs).unref();
  }

  sample(): void {
    const s = readFileSync('/proc/self/status', 'utf8');
    const p = this.peak;
    p.totalMb = Math.max(p.totalMb, kb(s, 'VmRSS') / 1024);
    p.anonMb = Math.max(p.anonMb, kb(s, 'RssAnon') / 1024);
    p.fileMb = Math.max(p.fileMb, (kb(s, 'RssFile') + kb(s, 'RssShmem')) / 1024);
    const m = process.memoryUsage();
    p.heapMb = Math.max(p.heapMb, m.heapTotal / 1048576);
    p.externalMb = Math.max(p.externalMb, m.external / 1048576);
  }

  /** The peaks since the last take (sampled once more now), then starts over. */
  take(): RssPeak {
    this.sample();
    const p = this.peak;
    this.peak = RssSampler.zero();
    return p;
  }
}

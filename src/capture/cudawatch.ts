// CudaWatcher: the probe looks for CUDA libraries in /proc/*/maps once, at
// start. Processes started later (every `record -- CMD`: CMD is stopped
// before exec) or that load libcudart lazily (PyTorch does, from its own
// site-packages copy) are found here by rescanning maps periodically and
// telling the probe `cuda PATH`. The probe dedups by inode, so asking twice
// is harmless. Calls made before the attach are not seen (up to one period).

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import type { ProbeProcess } from './probe.js';

export interface CudaWatcherOptions {
  /** Processes to scan; null/undefined = every process in /proc. */
  pids?: (() => Iterable<number>) | null;
  /** Rescan period (default 1000 ms). */
  intervalMs?: number;
  /** Scan every fastMs during the first fastForMs (a new CMD loads its libraries early). */
  fastMs?: number;
  fastForMs?: number;
  /** Told about each library sent to the probe and its answer. */
  onAttach?: (path: string, err: number, msg: string) => void;
}

const CUDA_BASENAME = /\/(libcudart\.so[^/]*|libcuda\.so[^/]*)$/;

/** CUDA library paths mapped by one process (as opened through /proc/PID/root when possible). */
export function cudaLibsOf(pid: number): string[] {
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return [];
  }
  if (!maps.includes('libcud')) return [];
  const out = new Set<string>();
  for (const line of maps.split('\n')) {
    const i = line.indexOf('/');
    if (i < 0) continue;
    const path = line.slice(i);
    if (!CUDA_BASENAME.test(path) || path.endsWith(' (deleted)')) continue;
    // same rule as the probe's own scan: resolve inside the process's mount namespace
    const viaRoot = `/proc/${pid}/root${path}`;
    out.add(existsSync(viaRoot) ? viaRoot : path);
  }
  return [...out];
}

export class CudaWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly known = new Set<string>(); // dev:ino
  private scanning = false;
  private stopped = false;

  constructor(private readonly probe: ProbeProcess, private readonly opts: CudaWatcherOptions = {}) {}

  start(): this {
    if (this.timer || this.stopped) return this;
    const t0 = Date.now();
    const period = this.opts.intervalMs ?? 1000;
    const tick = (): void => {
      void this.scanOnce().finally(() => {
        if (this.stopped) return;
        const fast = this.opts.fastMs !== undefined && Date.now() - t0 < (this.opts.fastForMs ?? 0);
        this.timer = setTimeout(tick, fast ? this.opts.fastMs : period);
        this.timer.unref();
      });
    };
    tick();
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One pass: send `cuda PATH` for each library not sent before. */
  async scanOnce(): Promise<void> {
    if (this.scanning || !this.probe.running) return;
    this.scanning = true;
    try {
      const pids = this.opts.pids ? [...this.opts.pids()] : allPids();
      for (const pid of pids) {
        for (const path of cudaLibsOf(pid)) {
          let key: string;
          try {
            const st = statSync(path);
            key = `${st.dev}:${st.ino}`;
          } catch {
            continue;
          }
          if (this.known.has(key)) continue;
          this.known.add(key);
          if (/\s/.test(path)) {
            // the probe's command parser splits on blanks
            this.opts.onAttach?.(path, -22, 'path contains blanks; pass it with --cuda-lib');
            continue;
          }
          if (!this.probe.running) return;
          const r = await this.probe.control(`cuda ${path}`).catch((e: Error) => ({ err: -1, msg: e.message }));
          this.opts.onAttach?.(path, r.err, r.msg);
        }
      }
    } finally {
      this.scanning = false;
    }
  }
}

function allPids(): number[] {
  try {
    return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
}

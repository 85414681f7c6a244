// startCapture: the one way `kspan record`, `kspan run` and `kspan demo`
// bring capture up and down. Start the probe, wait until attaching is over
// (its first control command is answered), say which probe groups did not
// attach, watch for CUDA libraries loaded later, and stop it all in order.
// A probe that cannot start is stopped and its ProbeError (with the reason
// `kspan doctor` would give) is thrown.

import { CudaWatcher, type CudaWatcherOptions } from './cudawatch.js';
import { errnoName } from './json.js';
import { ProbeProcess, type ProbeOptions } from './probe.js';
import type { CaptureSink } from './state.js';

export interface CaptureOptions {
  /** one line per notable thing (groups not attached, CUDA attaches) */
  log: (msg: string) => void;
  /**
   * The first control command, answered once attaching is over (default
   * `ping`); `kspan record -- CMD` uses `pid add PID` (the filter holds the
   * stopped CMD before it runs).
   */
  firstCommand?: string;
  /** CUDA libraries loaded after start: rescan options, or false for none (default: on when the cuda group is) */
  cudaWatch?: Omit<CudaWatcherOptions, 'onAttach'> | false;
}

export interface CaptureSession {
  readonly probe: ProbeProcess;
  readonly cuda: CudaWatcher | null;
  /** running and not stopped */
  readonly running: boolean;
  /** drain the rings: every record produced before this call has reached the sink */
  flush(): Promise<void>;
  /** stop watching for CUDA libraries and stop the probe (the stream ends cleanly) */
  stop(): Promise<void>;
}

/** Start the probe into `sink`; resolves when attaching is over. Throws the probe's error (ProbeError) when it cannot. */
export async function startCapture(opts: ProbeOptions, sink: CaptureSink, o: CaptureOptions): Promise<CaptureSession> {
  const probe = ProbeProcess.start(opts, sink);
  try {
    await probe.ready;
    const first = o.firstCommand ?? 'ping';
    if (first === 'ping') await probe.control('ping');
    else await probe.command(first);
  } catch (e) {
    await probe.stop().catch(() => undefined);
    throw e;
  }
  for (const s of probe.state.status) {
    if (s.err < 0) o.log(`probe group ${s.name} not attached: ${errnoName(s.err)}${s.detail ? ` (${s.detail})` : ''}`);
  }
  let cuda: CudaWatcher | null = null;
  if (o.cudaWatch !== false && (!opts.groups || opts.groups.includes('cuda'))) {
    cuda = new CudaWatcher(probe, {
      intervalMs: 5000, ...o.cudaWatch,
      onAttach: (path, err, msg) => o.log(`CUDA uprobes ${err ? 'failed' : 'attached'}: ${path}${err ? ` (${msg})` : ''}`),
    }).start();
  }
  let stopped: Promise<void> | null = null;
  return {
    probe, cuda,
    get running() {
      return probe.running && stopped === null;
    },
    async flush() {
      if (probe.running) await probe.control('flush').catch(() => undefined);
    },
    stop() {
      stopped ??= (async () => {
        cuda?.stop();
        await probe.stop();
      })();
      return stopped;
    },
  };
}

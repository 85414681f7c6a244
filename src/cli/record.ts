// `kspan record`: capture into a summary, a raw record file or the store,
// host-wide or around a command, with a live progress line.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import {
  Kind, ProbeError, TASK, TaskEvent, RecordView, SummarySink, startCapture,
  type CaptureSession, type CaptureSink, type ProbeOptions, type ProbeProcess, type RecordBatch,
} from '../capture/index.js';
import { localHost, recordIntoStore, type HostIdentity, type RecordIntoStore } from '../store/index.js';
import { UsageError, intOpt, parse, parseDuration, parseSize, ringMbOpt } from './args.js';

export const RECORD_HELP = `usage: kspan
  record [options] [-- CMD ARGS...]   capture kernel events (host-wide, or of CMD and its children)
      --data DIR          store the events in the kspan store in DIR (LMDB; created if needed)
      --max-age D         with --data: drop data older than D (e.g. 90m, 24h, 7d)
      --max-size S        with --data: keep the store under S (e.g. 500M, 10G)
      --out FILE          write the raw record stream to FILE (replay with \`kspan dump\`)
      --duration S        stop after S seconds (default: until Ctrl-C, or until CMD exits)
      --pid P             capture only process P (repeatable)
      --cgroup PATH       capture only tasks in this cgroup v2 directory or below it (repeatable: a pod's
                          containers); PATH is under /sys/fs/cgroup, or absolute. Culprits outside the
                          scope (the neighbour that took the CPU, a waker) are still named
      --host-name NAME    host.name recorded in the store (default os.hostname())
      --follow            also capture processes they fork (default on with -- CMD; --no-follow)
      --cuda-lib PATH     attach CUDA uprobes to this libcudart/libcuda from the start (repeatable);
                          libraries that captured processes load later are attached when seen in
                          /proc/PID/maps, missing the calls made before that
      --offcpu-min-us N   shortest off-CPU interval recorded (default 50)
      --futex-min-us N    shortest futex wait recorded (default 50)
      --stacks            take user+kernel stacks of long blocks
      --groups LIST       probe groups (default sched,task,futex,blocked,block,tcp,cuda;
                          blocked: threads still off CPU at each watermark, needs sched; opt-in:
                          futex-syscalls, exact futex return codes at a cost on every syscall)
      --ring-mb N         scheduler ring size in MiB (default 16)
      --quiet             no progress line`;

export async function cmdRecord(argv: string[]): Promise<number> {
  // `--` separates kspan's options from the command to run
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  const cmd = dd >= 0 ? argv.slice(dd + 1) : [];
  const { values: o, positionals } = parse(own, {
    out: { type: 'string', short: 'o' },
    data: { type: 'string' },
    'max-age': { type: 'string' },
    'max-size': { type: 'string' },
    duration: { type: 'string', short: 'd' },
    pid: { type: 'string', short: 'p', multiple: true },
    follow: { type: 'boolean' },
    'no-follow': { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    'offcpu-min-us': { type: 'string' },
    'futex-min-us': { type: 'string' },
    stacks: { type: 'boolean' },
    groups: { type: 'string' },
    'ring-mb': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    cgroup: { type: 'string', multiple: true },
    'host-name': { type: 'string' },
  }, true);
  if (o.help) {
    process.stdout.write(RECORD_HELP + '\n');
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (put the command to run after --)`);
  if (dd >= 0 && cmd.length === 0) throw new UsageError('nothing after --');
  const durationS = o.duration !== undefined ? Number(o.duration) : undefined;
  if (durationS !== undefined && !(durationS > 0)) throw new UsageError(`--duration wants seconds > 0, got "${o.duration}"`);
  const pids = (o.pid ?? []).map((p) => intOpt(p, 'pid', 1)!);
  const follow = o['no-follow'] ? false : o.follow ?? cmd.length > 0;

  const probeOpts: ProbeOptions = {
    pids,
    follow,
    cudaLibs: o['cuda-lib'],
    offcpuMinUs: intOpt(o['offcpu-min-us'], 'offcpu-min-us'),
    futexMinUs: intOpt(o['futex-min-us'], 'futex-min-us'),
    stacks: o.stacks,
    groups: o.groups?.split(',').map((g) => g.trim()).filter(Boolean),
    ringMb: ringMbOpt(o['ring-mb']),
    teePath: o.out,
    cgroups: o.cgroup,
  };
  let host: HostIdentity;
  try {
    host = localHost(o['host-name']);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if ((o['max-age'] || o['max-size']) && !o.data) throw new UsageError('--max-age and --max-size apply to --data');
  const maxAgeNs = o['max-age'] !== undefined ? parseDuration(o['max-age'], 'max-age') : undefined;
  const maxBytes = o['max-size'] !== undefined ? parseSize(o['max-size'], 'max-size') : undefined;
  let store: RecordIntoStore | null = null;
  // the store cannot commit (disk full): capture stops with this reason
  let storeFull: ((why: string) => void) | null = null;
  let storeFullWhy: string | null = null;
  const storeFailed = new Promise<string>((res) => {
    storeFull = (why) => {
      storeFullWhy ??= why;
      res(why);
    };
  });
  if (o.data) {
    try {
      store = recordIntoStore(o.data, {
        maxAgeNs, maxBytes, host, cgroups: o.cgroup,
        onStoreState: (h) => {
          if (!h.ok) storeFull?.(h.error ?? 'commit failed');
        },
      });
    } catch (e) {
      throw new Error(`cannot open the store in ${o.data}: ${(e as Error).message}`);
    }
  }
  const summary = new SummarySink();
  // only a filtered capture needs to know its processes (CUDA library scan)
  const tracker = cmd.length || pids.length ? new PidTracker() : null;
  const storeSink = store?.sink ?? null;
  const sink: CaptureSink = {
    onBatch(b, c) {
      tracker?.onBatch(b);
      summary.onBatch(b, c);
      // the store's promise (when it is behind) is the backpressure
      return storeSink?.onBatch(b, c);
    },
  };
  const progress = new Progress(!o.quiet, store);
  probeOpts.onStderr = (line) => progress.message(line.startsWith('kspan-probe') ? line : `kspan-probe: ${line}`);

  let child: ChildProcess | null = null;
  let childExit: Promise<number> | null = null;
  let firstCommand: string | undefined;
  const t0 = process.hrtime.bigint();

  if (cmd.length) {
    // Start CMD stopped (the shell stops itself, then execs CMD in place, so
    // the pid is the same) so it is in the filter before its first instruction.
    child = spawn('/bin/sh', ['-c', 'kill -STOP $$; exec "$@"', 'sh', ...cmd], { stdio: 'inherit' });
    const c = child;
    childExit = new Promise<number>((res) => {
      c.on('exit', (code, sig) => res(code ?? 128 + (sig ? osConstants.signals[sig] ?? 0 : 0)));
      c.on('error', (e) => {
        progress.message(`kspan record: cannot run ${cmd[0]}: ${e.message}`);
        res(127);
      });
    });
    const pid = c.pid;
    if (pid === undefined || !(await waitStopped(pid, 5000))) {
      c.kill('SIGKILL');
      await store?.close();
      throw new Error(`could not start ${cmd[0]} stopped`);
    }
    probeOpts.pids = [pid, ...pids];
    // the filter holds CMD (stopped) before its first instruction: `pid add` is answered after attaching
    firstCommand = `pid add ${pid}`;
  }
  for (const p of probeOpts.pids ?? []) tracker?.pids.add(p);
  let capture: CaptureSession;
  try {
    capture = await startCapture(probeOpts, sink, {
      log: (m) => progress.message(`kspan record: ${m}`), firstCommand,
      // CUDA libraries loaded after the probe started (CMD has not even exec'd yet)
      cudaWatch: { pids: tracker ? () => tracker.pids : null, intervalMs: tracker ? 500 : 5000, ...(child ? { fastMs: 10, fastForMs: 3000 } : {}) },
    });
  } catch (e) {
    if (child) {
      child.kill('SIGKILL');
      await childExit;
    }
    progress.done();
    await store?.close();
    return reportProbeError(e);
  }
  if (child) process.kill(child.pid!, 'SIGCONT');
  const probe = capture.probe;

  progress.start(probe);
  const stopReason = await waitForStop(probe, durationS, child, childExit, storeFailed);
  if (stopReason === 'store full' && child && child.exitCode === null && child.signalCode === null) {
    // CMD keeps running; kspan stops capturing it
    progress.message(`kspan record: the store cannot commit: capture stops; ${cmd[0]} keeps running`);
  }

  let failure: unknown = null;
  // everything produced before now reaches the summary / the file
  await capture.flush();
  try {
    await capture.stop();
  } catch (e) {
    failure = e;
  }
  let storeFailure: unknown = null;
  let stored: ReturnType<RecordIntoStore['progress']> | null = null;
  let made = '';
  if (store) {
    const w = store.writer;
    try {
      await w.flush(); // everything captured is committed
    } catch (e) {
      storeFailure = e;
    }
    if (storeFailure && (maxBytes || maxAgeNs)) {
      // Disk full. With a size or age limit, make room now so that a restart can commit (no crash
      // loop under a supervisor): the oldest partitions go, then what is held is committed.
      await w.makeRoom(true);
      if (w.health.ok) storeFailure = null;
    }
    const h = w.health;
    if (h.emergencyDropped) made = `; dropped the ${h.emergencyDropped} oldest partition(s) to make room, the store is held under ${(h.capBytes / 1e6).toFixed(1)} MB from now on`;
    stored = store.progress();
    await store.close();
  }
  progress.done();
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;

  let code = 0;
  if (failure) code = reportProbeError(failure);
  if (storeFailure || storeFullWhy) {
    // one line: why it stopped, what was not stored, what was done about it
    const h = store!.writer.health;
    const why = storeFailure ? (storeFailure as Error).message.replace(/^the store in \S+ cannot commit: /, '') : storeFullWhy;
    const lost = (stored?.events ?? 0) - (stored?.committedEvents ?? 0) + h.notStoredEvents;
    process.stderr.write(`kspan record: stopped: the store in ${o.data} cannot commit (${why}; disk full?)` +
      `${lost > 0 ? `; ${lost.toLocaleString('en-US')} events not stored` : ''}` +
      (made || (maxBytes || maxAgeNs ? '' : '; free space, or set --max-size below the free space, before restarting')) + '\n');
    code = 1;
  }
  if (childExit) {
    if (stopReason === 'duration') process.stderr.write(`kspan record: --duration reached; waiting for ${cmd[0]} to exit\n`);
    const cc = await childExit;
    if (!failure && !code) code = cc;
  }

  const d = probe.decoder;
  const problems = d.corruptBytes || d.unknownKinds || d.truncatedBytes
    ? ` (decoder: ${d.corruptBytes} corrupt bytes, ${d.unknownKinds} unknown records, ${d.truncatedBytes} truncated bytes)`
    : '';
  if (o.out) {
    const size = safeSize(o.out);
    const lost = probe.state.totalLost;
    process.stderr.write(
      `kspan record: wrote ${summary.totalRecords.toLocaleString('en-US')} records (${(size / 1e6).toFixed(1)} MB) to ${o.out} in ${elapsedS.toFixed(1)} s` +
      `${lost ? `; ${lost} records lost in the kernel` : ''}${problems}\n`);
  } else {
    process.stdout.write(summary.format(probe.state, { elapsedS }) + '\n');
    if (problems) process.stderr.write(`kspan record:${problems}\n`);
  }
  if (stored) {
    const p = stored;
    process.stderr.write(`kspan record: stored ${p.committedEvents.toLocaleString('en-US')} events in ${o.data} ` +
      `(${p.liveEvents.toLocaleString('en-US')} events, ${(p.usedBytes / 1e6).toFixed(1)} MB in use${p.skipped ? `, ${p.skipped} records skipped` : ''}); \`kspan stats --data ${o.data}\`\n`);
  }
  return code;
}

/**
 * Resolves with why capture should stop: the duration passed, CMD exited,
 * the probe exited, or SIGINT/SIGTERM. With a CMD running, a terminal's
 * Ctrl-C reaches CMD too (same process group), so kspan waits for CMD to
 * exit (without a terminal it passes SIGINT on); a second Ctrl-C kills CMD,
 * a SIGTERM is passed on.
 */
function waitForStop(
  probe: ProbeProcess, durationS: number | undefined, child: ChildProcess | null, childExit: Promise<number> | null, storeFailed: Promise<string>,
): Promise<string> {
  return new Promise<string>((resolve) => {
    let sigints = 0;
    let timer: NodeJS.Timeout | null = null;
    const finish = (why: string): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (timer) clearTimeout(timer);
      resolve(why);
    };
    const onSignal = (sig: NodeJS.Signals): void => {
      if (child && child.exitCode === null && child.signalCode === null) {
        sigints++;
        if (sig === 'SIGTERM') child.kill('SIGTERM');
        else if (sigints > 1) child.kill('SIGKILL');
        // no terminal: nobody else delivered the SIGINT to CMD
        else if (!process.stdin.isTTY) child.kill('SIGINT');
        return;
      }
      finish(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (durationS !== undefined) timer = setTimeout(() => finish('duration'), durationS * 1000);
    childExit?.then(() => finish('command exited'));
    probe.done.then(() => finish('probe exited'), () => finish('probe failed'));
    storeFailed.then(() => finish('store full'));
  });
}

function reportProbeError(e: unknown): number {
  const err = e as Error;
  process.stderr.write(`kspan record: ${err.message}\n`);
  if (e instanceof ProbeError && e.reason !== 'not_built') process.stderr.write('kspan record: `kspan doctor` checks what capture needs\n');
  return 1;
}

function safeSize(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}

/** Processes seen in a filtered capture (their own records, forks, execs): where to look for CUDA libraries. */
class PidTracker {
  readonly pids = new Set<number>();
  private readonly v = new RecordView();
  onBatch(b: RecordBatch): void {
    const v = this.v;
    for (let i = 0; i < b.count; i++) {
      v.set(b, i);
      const k = v.kind;
      if (k === Kind.OFFCPU || k === Kind.CUDA_CALL || (k === Kind.TASK && (v.u32(TASK.event) === TaskEvent.FORK || v.u32(TASK.event) === TaskEvent.EXEC))) {
        this.pids.add(v.pid);
      }
    }
  }
}

/** Poll /proc/PID/stat until the task is stopped (state T). */
async function waitStopped(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'T') return true;
      if (state === 'Z' || state === 'X') return false;
    } catch {
      return false;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}

/** Live progress on stderr: a rewritten line on a TTY, a line every 5 s otherwise. */
class Progress {
  private timer: NodeJS.Timeout | null = null;
  private readonly tty = process.stderr.isTTY === true;
  private lineShown = false;
  private lastRecords = 0;
  private lastT = 0;
  private t0 = 0;

  constructor(private readonly enabled: boolean, private readonly store: RecordIntoStore | null = null) {}

  start(probe: ProbeProcess): void {
    if (!this.enabled) return;
    this.t0 = this.lastT = Date.now();
    const tick = (): void => {
      const now = Date.now();
      const recs = probe.decoder.records;
      const rate = ((recs - this.lastRecords) * 1000) / Math.max(1, now - this.lastT);
      this.lastRecords = recs;
      this.lastT = now;
      const drops = probe.state.drops.filter((x) => x !== undefined).map((x) => `${x!.name} ${x!.lost}`).join(' ');
      let line = `kspan: ${((now - this.t0) / 1000).toFixed(1)} s  ${recs.toLocaleString('en-US')} records  ${Math.round(rate).toLocaleString('en-US')}/s  lost: ${drops || '-'}`;
      if (this.store) {
        const p = this.store.progress();
        line += `  stored: ${p.committedEvents.toLocaleString('en-US')} events, ${(p.usedBytes / 1e6).toFixed(1)} MB`;
      }
      if (this.tty) {
        process.stderr.write(`\r\x1b[K${line}`);
        this.lineShown = true;
      } else {
        process.stderr.write(line + '\n');
      }
    };
    this.timer = setInterval(tick, this.tty ? 500 : 5000);
    this.timer.unref();
  }

  /** A message that must not be garbled by the progress line. */
  message(text: string): void {
    if (this.lineShown) process.stderr.write('\r\x1b[K');
    this.lineShown = false;
    process.stderr.write(text + '\n');
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.lineShown) process.stderr.write('\r\x1b[K');
    this.lineShown = false;
  }
}

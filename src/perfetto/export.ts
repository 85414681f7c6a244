// Chrome trace-event JSON (what ui.perfetto.dev and chrome://tracing open)
// from a kspan store: threads as tracks, on-/off-CPU slices with their state,
// wakeup flows, futex/CUDA/block-I/O slices on a per-thread "calls" track, and
// the request spans on top. See README.md for the track layout.

import { Writable } from 'node:stream';
import {
  Kind, OWNER_SRC_NAMES, OffcpuFlag, TASK_EVENT_NAMES, TCP_STATE_NAMES, TaskState, cudaApiBlocks, cudaApiName, cudaArgKind,
  devMajor, devMinor, errnoName, flagNames, formatAddr, futexOpName, IoFlag, offcpuState, stateLetters,
} from '../capture/index.js';
import { explainTrace, type ExplainOptions, type Explanation } from '../correlator/index.js';
import { EventList, F, ThreadDirectory, addOpenIntervals, type StoreReader, type StoredSpan, type ThreadMeta } from '../store/index.js';
import { ExportClock, dayBaseNs, epochNsToUs, usText } from './clock.js';

/** What to export: a stored trace (its spans' window and the threads they join to), or a process/thread window. */
export type PerfettoTarget =
  | { traceId: string }
  | { pid: number; tid?: undefined; fromUnixNano: bigint; toUnixNano: bigint }
  | { tid: number; pid?: number; fromUnixNano: bigint; toUnixNano: bigint };

export interface PerfettoOptions {
  /** trace events written at most (track-name metadata not counted); default 500 000 */
  maxEvents?: number;
  /** threads exported at most (joined threads first, then culprits); default 256 */
  maxThreads?: number;
  /** extra "calls" tracks per thread for overlapping calls/I/O; default 8 */
  maxLanes?: number;
  /** trace mode: added before and after the spans' window, ns; default 5% of it, 1 ms..1 s */
  marginNs?: number;
  /** include wakers, preemptors and the correlator's culprits as tracks (default true) */
  culprits?: boolean;
  /**
   * ts = epoch µs (true), or µs since midnight UTC of the window's day (default:
   * a double holds those to the ns; metadata.kspan.ts_base_unix_nano gives the base)
   */
  absoluteTs?: boolean;
  /** passed to explainTrace (e.g. serviceProcess) */
  explain?: ExplainOptions;
  /** warnings (truncation): e.g. write them to stderr */
  warn?: (msg: string) => void;
}

export interface PerfettoResult {
  /** false: the trace is not in the store (nothing was written) */
  found: boolean;
  /** trace events written (metadata included) */
  events: number;
  /** events left out because of maxEvents / maxThreads / maxLanes */
  dropped: number;
  truncated: boolean;
  /** kernel threads exported as tracks */
  threads: number;
  spans: number;
  /** trace-event ts = (epoch ns - tsBaseUnixNano) / 1000 */
  tsBaseUnixNano: string;
  /** exported window, epoch ns */
  fromUnixNano: string;
  toUnixNano: string;
}

// Synthetic ids. Linux tids/pids are < 2^22 (PID_MAX_LIMIT).
const LANE_STRIDE = 0x400000;
const REQUESTS_PID_BASE = 0x7f000000;
/** span tracks per service at most (further partial overlaps share the last one) */
const REQUEST_LANES = 64;
const IRQ_FLAGS = OffcpuFlag.WAKER_HARDIRQ | OffcpuFlag.WAKER_SOFTIRQ;
const FLUSH_BYTES = 1 << 18;

const hex = (v: number): string => '0x' + v.toString(16);
const q = (s: string): string => JSON.stringify(s);

/** Buffered writer of the traceEvents array; counts and bounds events. */
class EventSink {
  private parts: string[] = [];
  private size = 0;
  private first = true;
  events = 0;
  dropped = 0;

  constructor(private readonly out: Writable, readonly max: number) {}

  head(s: string): void {
    this.parts.push(s);
    this.size += s.length;
  }

  /** room for n more events under the bound (counts them as dropped when not) */
  room(n: number): boolean {
    if (this.events + n <= this.max) return true;
    this.dropped += n;
    return false;
  }

  /** write one event object's JSON text (unbounded: callers check room() first) */
  put(json: string): void {
    if (this.first) this.first = false;
    else this.parts.push(',\n');
    this.parts.push(json);
    this.size += json.length + 2;
    this.events++;
  }

  async flush(force = false): Promise<void> {
    if (!force && this.size < FLUSH_BYTES) return;
    if (!this.parts.length) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.size = 0;
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const done = (e?: Error) => {
          this.out.off('drain', ok);
          this.out.off('error', done);
          if (e) reject(e);
          else resolve();
        };
        const ok = () => done();
        this.out.once('drain', ok);
        this.out.once('error', done);
      });
    }
  }
}

/**
 * Greedy track assignment that keeps slices properly nested per track (what
 * trace viewers require of X slices on one thread): feed intervals sorted by
 * (start asc, end desc); each goes to the first lane where it nests.
 */
class Lanes {
  private stacks: number[][] = [];
  constructor(private readonly max: number) {}
  reset(): void {
    for (const s of this.stacks) s.length = 0;
  }
  private hw = 0;
  assign(start: number, end: number): number {
    for (let k = 0; k < this.max; k++) {
      let st = this.stacks[k];
      if (!st) st = this.stacks[k] = [];
      while (st.length && st[st.length - 1] <= start) st.pop();
      if (!st.length || end <= st[st.length - 1]) {
        st.push(end);
        if (k + 1 > this.hw) this.hw = k + 1;
        return k;
      }
    }
    return -1;
  }
  resetHigh(): number {
    const h = this.hw;
    this.hw = 0;
    return h;
  }
}

interface ThreadEntry {
  tid: number;
  pid: number;
  /** export order: 0 joined, 1 correlator culprit, 2 waker/preemptor */
  role: number;
  order: number;
  /** lanes used on the calls track(s) */
  lanes: number;
  /** the span's or the target's own thread: a track even when empty */
  named: boolean;
  exported: boolean;
}

class Exporter {
  readonly clock: ExportClock;
  readonly sink: EventSink;
  readonly threads = new Map<number, ThreadEntry>();
  /** threads referenced by flows / names but not (yet) exported */
  readonly referenced = new Map<number, number>();
  readonly directory: ThreadDirectory;
  readonly list = new EventList(4096);
  readonly lanes: Lanes;
  readonly callIdx: number[] = [];
  flowId = 0;
  threadsDropped = 0;
  covRanges: [number, number][] = [];

  constructor(
    readonly reader: StoreReader, out: Writable, readonly o: PerfettoOptions,
    readonly A: number, readonly B: number,
  ) {
    this.clock = new ExportClock(reader);
    this.directory = new ThreadDirectory(reader);
    this.clock.setBase(o.absoluteTs ? 0n : dayBaseNs(this.clock.toEpoch(A)));
    this.sink = new EventSink(out, o.maxEvents ?? 500_000);
    this.lanes = new Lanes(o.maxLanes ?? 8);
    this.covRanges = reader.coverage(A, B).ranges;
  }

  // ---- names ----

  /** The thread to label tid with at t (store/threads.ts incarnationNear). */
  threadAt(tid: number, t: number): ThreadMeta | null {
    return this.directory.near(tid, t);
  }

  comm(tid: number, t: number): string {
    if (tid === 0) return 'swapper';
    return this.threadAt(tid, t)?.comm ?? '';
  }

  addThread(tid: number, pid: number, role: number, named = false): void {
    if (!tid) return;
    const cur = this.threads.get(tid);
    if (cur) {
      if (role < cur.role && !cur.exported) cur.role = role;
      if (named) cur.named = true;
      if (!cur.pid && pid) cur.pid = pid;
      return;
    }
    if (this.threads.size >= (this.o.maxThreads ?? 256)) {
      this.threadsDropped++;
      this.referenced.set(tid, pid);
      return;
    }
    this.threads.set(tid, { tid, pid, role, order: this.threads.size, lanes: 0, exported: false, named });
  }

  ref(tid: number, pid: number): void {
    if (tid && !this.threads.has(tid) && !this.referenced.has(tid)) this.referenced.set(tid, pid);
  }

  // ---- one thread ----

  /** Emit the thread's tracks; wakers/preemptors of its off-CPU intervals are queued as culprits. */
  emitThread(t: ThreadEntry): void {
    const { reader, sink, clock, A, B } = this;
    const ev = reader.eventsOnThread(t.tid, A, B, this.list);
    // a wait still open where capture ends has no switch-in record yet (store/open-intervals.ts)
    const open = reader.openIntervals(t.tid);
    if (open.length) addOpenIntervals(ev, open, t.tid, A, B, reader.sessions(), reader.knownThroughNs());
    const n = ev.count;
    if (!t.pid) {
      for (let i = 0; i < n; i++) if (ev.pid[i]) { t.pid = ev.pid[i]; break; }
      if (!t.pid) t.pid = this.threadAt(t.tid, A)?.pid ?? 0;
    }
    // a thread with nothing in the window gets no track, unless it is the thread a span or the target names
    if (n === 0 && !t.named) return;
    t.exported = true;
    const pid = t.pid;
    const tid = t.tid;
    const culprits = this.o.culprits !== false;
    const meta = this.threadAt(tid, n ? Math.max(A, ev.start[0]) : A);
    // the thread's lifetime inside the window (running slices are only drawn there)
    const life0 = Math.max(A, meta && meta.tid === tid ? meta.startTime : A);
    const life1 = Math.min(B, meta && meta.exitTs !== null ? meta.exitTs : B);
    const fo = F.offcpu;

    // -- state track: running / runqueue / blocked, wakeup flows --
    let prevEnd = -1;
    let lastFutex = -1;
    let lastCuda = -1;
    let lastIo = -1;
    let anyOff = false;
    const ov = (j: number, bs: number, be: number): boolean => j >= 0 && ev.end[j] > bs && ev.start[j] < be;
    for (let i = 0; i < n; i++) {
      const k = ev.kind[i];
      if (ev.pid[i] !== pid && pid) continue; // another incarnation of the tid
      if (k === Kind.FUTEX_WAIT) { lastFutex = i; continue; }
      if (k === Kind.CUDA_CALL) { if (cudaApiBlocks(ev.f[F.cudaCall.api][i])) lastCuda = i; continue; }
      if (k === Kind.BLOCK_IO) { lastIo = i; continue; }
      if (k !== Kind.OFFCPU) continue;
      const st0 = ev.start[i];
      const en = ev.end[i];
      const flags = ev.f[fo.flags][i];
      const state = ev.f[fo.prevState][i];
      const runnableAtSwitch = (flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
      let rn = runnableAtSwitch ? st0 : ev.f[fo.runnableNs][i];
      if (!(rn >= st0)) rn = st0;
      if (rn > en) rn = en;
      // running before this interval
      const s = Math.max(st0, A, prevEnd);
      const e = Math.min(en, B);
      if (e < s) continue;
      const runFrom = prevEnd >= 0 ? prevEnd : life0;
      if (s > runFrom) this.running(pid, tid, runFrom, s);
      anyOff = true;
      prevEnd = e;
      // blocked part
      const bs = s;
      const be = Math.min(Math.max(rn, s), e);
      const argsCommon = `"cpu":${ev.cpu[i]},"out_cpu":${ev.f[fo.outCpu][i]},"state":${q(offcpuState(state, flags))},` +
        `"prev_state":${state},"flags":${q(flagNames(flags, OffcpuFlag).join('|'))},"offcpu_ns":${en - st0},"blocked_ns":${rn - st0},"runqueue_ns":${en - rn}` +
        (st0 < A || en > B ? `,"clipped":true,"offcpu_start_us":${clock.us(st0)}` : '');
      if (be > bs) {
        let name: string;
        let extra = '';
        // calls overlapping the blocked part: the latest one that started before it, or one starting inside it
        if (!ov(lastCuda, bs, be) || !ov(lastFutex, bs, be) || !ov(lastIo, bs, be)) {
          for (let j = i + 1; j < n && j < i + 64 && ev.start[j] < be; j++) {
            const kj = ev.kind[j];
            if (kj === Kind.CUDA_CALL && !ov(lastCuda, bs, be) && cudaApiBlocks(ev.f[F.cudaCall.api][j])) lastCuda = j;
            else if (kj === Kind.FUTEX_WAIT && !ov(lastFutex, bs, be)) lastFutex = j;
            else if (kj === Kind.BLOCK_IO && !ov(lastIo, bs, be)) lastIo = j;
          }
        }
        if (flags & OffcpuFlag.START_UNKNOWN) {
          name = 'off CPU since before capture (?)';
        } else if (ov(lastCuda, bs, be)) {
          name = 'CUDA sync';
          extra = `,"cuda_api":${q(cudaApiName(ev.f[F.cudaCall.api][lastCuda]))}`;
        } else if ((flags & OffcpuFlag.IN_FUTEX) || ov(lastFutex, bs, be)) {
          name = 'futex wait';
          const fw = F.futexWait;
          const hasRec = ov(lastFutex, bs, be);
          const ua = hasRec ? ev.f[fw.uaddr][lastFutex] : ev.f[fo.wakerUaddr][i];
          if (ua) extra += `,"uaddr":${q(hex(ua))}`;
          if (hasRec) {
            extra += `,"futex_op":${q(futexOpName(ev.f[fw.op][lastFutex]))}`;
            const owner = ev.f[fw.ownerTid][lastFutex];
            if (owner) extra += `,"owner_tid":${owner},"owner_comm":${q(this.comm(owner, bs))},"owner_src":${q(OWNER_SRC_NAMES[ev.f[fw.ownerSrc][lastFutex]] ?? '')}`;
          }
        } else if ((state & TaskState.UNINTERRUPTIBLE) && (state & TaskState.NOLOAD) === 0) {
          name = 'I/O wait (D)';
          if (ov(lastIo, bs, be)) {
            const bi = F.blockIo;
            const dev = ev.f[bi.dev][lastIo];
            extra = `,"io_device":"${devMajor(dev)}:${devMinor(dev)}","io_bytes":${ev.f[bi.bytes][lastIo]},"io_latency_ns":${ev.end[lastIo] - ev.start[lastIo]}`;
          }
        } else {
          const letter = stateLetters(state, false);
          name = letter === 'S' ? 'sleep (S)' : `blocked (${letter})`;
        }
        const wk = ev.f[fo.wakerTid][i];
        if (wk && (flags & OffcpuFlag.WOKEN)) {
          extra += `,"waker_tid":${wk},"waker_pid":${ev.f[fo.wakerPid][i]},"waker_comm":${q(this.comm(wk, rn))},"waker_cpu":${ev.f[fo.wakerCpu][i]}`;
          if (flags & IRQ_FLAGS) extra += `,"waker_irq":${q(flags & OffcpuFlag.WAKER_HARDIRQ ? 'hardirq' : 'softirq')}`;
        }
        if (sink.room(1)) {
          sink.put(`{"name":${q(name)},"cat":"sched","ph":"X","ts":${clock.us(bs)},"dur":${clock.dur(bs, be)},"pid":${pid},"tid":${tid},"args":{${argsCommon}${extra}}}`);
        }
      }
      // wakeup flow: waker's track -> this thread at the wake time
      const wk = ev.f[fo.wakerTid][i];
      const wpid = ev.f[fo.wakerPid][i];
      const woken = (flags & OffcpuFlag.WOKEN) !== 0 && !runnableAtSwitch && wk > 0 && (flags & IRQ_FLAGS) === 0;
      if (woken && rn >= A && rn <= B && wk !== tid && sink.room(3)) {
        const id = ++this.flowId;
        const ts = clock.us(rn);
        sink.put(`{"name":"wakeup","cat":"sched","ph":"X","ts":${ts},"dur":0,"pid":${wpid},"tid":${wk},"args":{"wakee_tid":${tid},"wakee_pid":${pid},"wakee_comm":${q(this.comm(tid, rn))}${ev.f[fo.wakerUaddr][i] ? `,"uaddr":${q(hex(ev.f[fo.wakerUaddr][i]))}` : ''}}}`);
        sink.put(`{"name":"wakeup","cat":"wakeup","ph":"s","id":${id},"ts":${ts},"pid":${wpid},"tid":${wk}}`);
        sink.put(`{"name":"wakeup","cat":"wakeup","ph":"f","id":${id},"ts":${ts},"pid":${pid},"tid":${tid}}`);
        this.ref(wk, wpid);
        if (culprits) this.addThread(wk, wpid, 2);
      }
      // runqueue part
      if (e > be) {
        const pt = ev.f[fo.preemptTid][i];
        const lt = ev.f[fo.lastTid][i];
        let extra = '';
        if (runnableAtSwitch && pt) extra += `,"preempted_by_tid":${pt},"preempted_by_pid":${ev.f[fo.preemptPid][i]},"preempted_by_comm":${q(this.comm(pt, st0))}`;
        if (lt) extra += `,"last_on_cpu_tid":${lt},"last_on_cpu_pid":${ev.f[fo.lastPid][i]},"last_on_cpu_comm":${q(this.comm(lt, en))}`;
        // PREEMPTED (kernel preemption) and RESCHED (return-to-user preemption, cond_resched, yield): both runnable at switch-out
        const name = runnableAtSwitch ? 'runqueue (preempted)' : 'runqueue (woken)';
        if (sink.room(1)) {
          sink.put(`{"name":${q(name)},"cat":"sched","ph":"X","ts":${clock.us(be)},"dur":${clock.dur(be, e)},"pid":${pid},"tid":${tid},"args":{${argsCommon}${extra}}}`);
        }
        if (culprits) {
          const cul = runnableAtSwitch && pt ? pt : lt;
          const cpid = runnableAtSwitch && pt ? ev.f[fo.preemptPid][i] : ev.f[fo.lastPid][i];
          if (cul && cul !== tid && e - be >= 100_000) this.addThread(cul, cpid, 2);
        }
      }
    }
    if (anyOff && prevEnd < life1) this.running(pid, tid, prevEnd, life1);

    // -- calls track(s): futex, CUDA, block I/O, TCP retransmits, task events --
    const idx = this.callIdx;
    idx.length = 0;
    for (let i = 0; i < n; i++) {
      const k = ev.kind[i];
      if (k === Kind.OFFCPU || k === Kind.STACK) continue;
      if (ev.pid[i] !== pid && pid && k !== Kind.TCP_RETRANS) continue;
      idx.push(i);
    }
    idx.sort((x, y) => ev.start[x] - ev.start[y] || ev.end[y] - ev.end[x]);
    this.lanes.reset();
    this.lanes.resetHigh();
    for (const i of idx) {
      const s = Math.max(ev.start[i], A);
      const e = Math.min(ev.end[i], B);
      if (e < s) continue;
      const lane = this.lanes.assign(s, e);
      if (lane < 0) {
        sink.dropped++;
        continue;
      }
      if (!sink.room(1)) continue;
      const ltid = tid + (lane + 1) * LANE_STRIDE;
      const k = ev.kind[i];
      const clip = ev.start[i] < A || ev.end[i] > B ? `,"clipped":true,"full_dur_ns":${ev.end[i] - ev.start[i]}` : '';
      let name: string;
      let args: string;
      let ph = 'X';
      switch (k) {
        case Kind.FUTEX_WAIT: {
          const f = F.futexWait;
          const owner = ev.f[f.ownerTid][i];
          const ret = ev.f[f.ret][i];
          name = 'futex_wait';
          args = `"uaddr":${q(hex(ev.f[f.uaddr][i]))},"op":${q(futexOpName(ev.f[f.op][i]))},"val":${ev.f[f.val][i]},"ret":${ret}` +
            (ret < 0 ? `,"errno":${q(errnoName(ret) ?? String(ret))}` : '') +
            (owner ? `,"owner_tid":${owner},"owner_comm":${q(this.comm(owner, s))},"owner_src":${q(OWNER_SRC_NAMES[ev.f[f.ownerSrc][i]] ?? '')}` : '');
          if (owner && culprits && e - s >= 100_000) this.addThread(owner, pid, 2);
          break;
        }
        case Kind.FUTEX_WAKE: {
          const f = F.futexWake;
          name = 'futex_wake';
          args = `"uaddr":${q(hex(ev.f[f.uaddr][i]))},"op":${q(futexOpName(ev.f[f.op][i]))},"woken":${ev.f[f.ret][i]}`;
          break;
        }
        case Kind.CUDA_CALL: {
          const f = F.cudaCall;
          const api = ev.f[f.api][i];
          const ret = ev.f[f.ret][i];
          const ak = cudaArgKind(api);
          name = cudaApiName(api);
          args = `"api":${q(name)},"ret":${ret},"blocking":${cudaApiBlocks(api)}` +
            (ak === 'stream' ? `,"stream":${q(hex(ev.f[f.arg][i]))}` : ak === 'bytes' ? `,"bytes":${ev.f[f.arg][i]}` : ak === 'event' ? `,"event":${q(hex(ev.f[f.arg][i]))}` : '');
          break;
        }
        case Kind.BLOCK_IO: {
          const f = F.blockIo;
          const fl = ev.f[f.flags][i];
          const dev = ev.f[f.dev][i];
          const issue = ev.f[f.issueNs][i];
          const err = ev.f[f.error][i];
          name = fl & IoFlag.WRITE ? 'block I/O write' : fl & IoFlag.DISCARD ? 'block I/O discard' : fl & IoFlag.FLUSH ? 'block I/O flush' : 'block I/O read';
          args = `"device":"${devMajor(dev)}:${devMinor(dev)}","sector":${ev.f[f.sector][i]},"bytes":${ev.f[f.bytes][i]},"flags":${q(flagNames(fl, IoFlag).join('|'))},` +
            `"latency_ns":${ev.end[i] - ev.start[i]}` +
            (issue >= ev.start[i] ? `,"queue_ns":${issue - ev.start[i]},"device_ns":${ev.end[i] - issue}` : '') +
            (err ? `,"error":${err}` : '');
          break;
        }
        case Kind.TCP_RETRANS: {
          const f = F.tcpRetrans;
          const fam = ev.f[f.family][i];
          ph = 'i';
          name = 'tcp retransmit';
          args = `"saddr":${q(formatAddr(fam, ev.bytesField(i, 'saddr')))},"sport":${ev.f[f.sport][i]},"daddr":${q(formatAddr(fam, ev.bytesField(i, 'daddr')))},` +
            `"dport":${ev.f[f.dport][i]},"state":${q(TCP_STATE_NAMES[ev.f[f.state][i]] ?? String(ev.f[f.state][i]))},"in_irq":${ev.f[f.inIrq][i] !== 0}`;
          break;
        }
        case Kind.TASK: {
          const f = F.task;
          ph = 'i';
          name = `task ${TASK_EVENT_NAMES[ev.f[f.event][i]] ?? ev.f[f.event][i]}`;
          args = `"other_pid":${ev.f[f.otherPid][i]},"other_tid":${ev.f[f.otherTid][i]},"exit_code":${ev.f[f.exitCode][i]}`;
          break;
        }
        default:
          sink.dropped++;
          continue;
      }
      if (ph === 'i') {
        sink.put(`{"name":${q(name)},"cat":"kernel","ph":"i","s":"t","ts":${clock.us(s)},"pid":${pid},"tid":${ltid},"args":{${args}}}`);
      } else {
        sink.put(`{"name":${q(name)},"cat":"kernel","ph":"X","ts":${clock.us(s)},"dur":${clock.dur(s, e)},"pid":${pid},"tid":${ltid},"args":{${args}${clip}}}`);
      }
    }
    t.lanes = this.lanes.resetHigh();
  }

  /** "running" slices over [a, b] inside the captured ranges. */
  running(pid: number, tid: number, a: number, b: number): void {
    for (const [x, y] of this.covRanges) {
      const s = Math.max(a, x);
      const e = Math.min(b, y);
      if (e <= s) continue;
      if (!this.sink.room(1)) return;
      this.sink.put(`{"name":"running","cat":"sched","ph":"X","ts":${this.clock.us(s)},"dur":${this.clock.dur(s, e)},"pid":${pid},"tid":${tid}}`);
    }
  }

  // ---- names (M events), always written ----

  names(requestsPids: Map<number, string>): void {
    const { sink, B } = this;
    const procs = new Map<number, number>();
    const sorted = [...this.threads.values()].filter((t) => t.exported).sort((x, y) => x.role - y.role || x.order - y.order);
    let rank = 0;
    for (const t of sorted) {
      if (!procs.has(t.pid)) procs.set(t.pid, procs.size);
      const comm = this.comm(t.tid, B) || `tid ${t.tid}`;
      const label = `${comm} ${t.tid}` + (t.role === 0 ? '' : t.role === 1 ? ' (culprit)' : ' (waker/preemptor)');
      sink.put(`{"name":"thread_name","ph":"M","pid":${t.pid},"tid":${t.tid},"args":{"name":${q(label)}}}`);
      sink.put(`{"name":"thread_sort_index","ph":"M","pid":${t.pid},"tid":${t.tid},"args":{"sort_index":${rank * 64}}}`);
      for (let l = 0; l < t.lanes; l++) {
        const ltid = t.tid + (l + 1) * LANE_STRIDE;
        sink.put(`{"name":"thread_name","ph":"M","pid":${t.pid},"tid":${ltid},"args":{"name":${q(`${comm} ${t.tid} calls${l ? ' ' + (l + 1) : ''}`)}}}`);
        sink.put(`{"name":"thread_sort_index","ph":"M","pid":${t.pid},"tid":${ltid},"args":{"sort_index":${rank * 64 + l + 1}}}`);
      }
      rank++;
    }
    for (const [tid, pid] of this.referenced) {
      if (this.threads.get(tid)?.exported) continue;
      if (!procs.has(pid)) procs.set(pid, procs.size);
      const comm = this.comm(tid, B) || `tid ${tid}`;
      sink.put(`{"name":"thread_name","ph":"M","pid":${pid},"tid":${tid},"args":{"name":${q(`${comm} ${tid}`)}}}`);
    }
    for (const [pid, order] of procs) {
      let pname = '';
      for (const t of this.reader.threadsOf(pid)) {
        if (t.pcomm) { pname = t.pcomm; if (t.tid === pid) break; }
      }
      if (!pname) pname = this.comm(pid, B) || 'process';
      sink.put(`{"name":"process_name","ph":"M","pid":${pid},"tid":0,"args":{"name":${q(`${pname} ${pid}`)}}}`);
      sink.put(`{"name":"process_sort_index","ph":"M","pid":${pid},"tid":0,"args":{"sort_index":${1000 + order}}}`);
    }
    for (const [pid, label] of requestsPids) {
      sink.put(`{"name":"process_name","ph":"M","pid":${pid},"tid":0,"args":{"name":${q(label)}}}`);
      sink.put(`{"name":"process_sort_index","ph":"M","pid":${pid},"tid":0,"args":{"sort_index":${(pid - REQUESTS_PID_BASE) / REQUEST_LANES}}}`);
    }
  }
}

function spanArgs(s: StoredSpan, ex: Explanation | null): string {
  const a: Record<string, unknown> = {
    trace_id: s.traceId, span_id: s.spanId, parent_span_id: s.parentSpanId, service: s.service, kind: s.kind,
    status_code: s.statusCode, duration_ns: s.durationNs, start_unix_nano: s.startUnixNano,
  };
  if (s.pid !== null) a.pid = s.pid;
  if (s.tid !== null) a.tid = s.tid;
  if (s.requestId) a.request_id = s.requestId;
  if (s.processId) a.process_id_attribute = s.processId;
  for (const [k, v] of Object.entries(s.attributes ?? {})) a[`attr.${k}`] = v;
  const se = ex?.spans.find((x) => x.span_id === s.spanId);
  if (se) {
    a.correlation = `${se.correlation.method}` + (se.correlation.pid ? ` pid ${se.correlation.pid}` : '') + (se.correlation.tid ? ` tid ${se.correlation.tid}` : '');
    for (const [k, v] of Object.entries(se.breakdown_ns)) a[`breakdown.${k}_ns`] = v;
    se.causes.slice(0, 5).forEach((c, i) => {
      a[`cause${i + 1}`] = `${c.kind} ${c.severity} ${(100 * c.share).toFixed(1)}% ${(c.duration_ns / 1e6).toFixed(2)} ms` +
        (c.culprit ? ` culprit ${c.culprit.comm} pid ${c.culprit.pid} tid ${c.culprit.tid}` : '');
    });
  }
  return JSON.stringify(a);
}

/** tids named anywhere in the explanation's culprits and chains */
function culpritsOf(ex: Explanation): [number, number][] {
  const out: [number, number][] = [];
  for (const s of ex.spans) {
    for (const c of s.causes) {
      if (c.culprit && c.culprit.tid) out.push([c.culprit.tid, c.culprit.pid]);
      for (const u of c.culprits ?? []) if (u.tid) out.push([u.tid, u.pid]);
      for (const st of c.chain) {
        if (st.step !== 'futex_wait' && typeof st.tid === 'number' && st.tid > 0) out.push([st.tid, typeof st.pid === 'number' ? st.pid : 0]);
      }
    }
  }
  return out;
}

/**
 * Write the Chrome trace-event JSON document for `target` to `out`
 * (`{"displayTimeUnit":"ns","traceEvents":[...],"metadata":{...}}`).
 * Trace mode: nothing is written and `found` is false when the trace is not stored.
 * The Writable is not ended.
 */
export async function writePerfettoTrace(reader: StoreReader, target: PerfettoTarget, out: Writable, o: PerfettoOptions = {}): Promise<PerfettoResult> {
  const clock0 = new ExportClock(reader);
  let A: number;
  let B: number;
  let spans: StoredSpan[] = [];
  let ex: Explanation | null = null;
  const joined: [number, number, boolean][] = []; // [tid, pid, isThread]
  const procJoined: number[] = [];
  if ('traceId' in target) {
    const id = target.traceId.toLowerCase();
    spans = /^[0-9a-f]{32}$/.test(id) ? reader.spans.getTrace(id) : [];
    if (!spans.length) {
      return { found: false, events: 0, dropped: 0, truncated: false, threads: 0, spans: 0, tsBaseUnixNano: '0', fromUnixNano: '0', toUnixNano: '0' };
    }
    let S = Infinity;
    let E = -Infinity;
    for (const s of spans) {
      const m = clock0.toMono(BigInt(s.startUnixNano));
      S = Math.min(S, m);
      E = Math.max(E, m + s.durationNs);
    }
    const margin = o.marginNs ?? Math.min(1e9, Math.max(1e6, Math.round(0.05 * (E - S))));
    A = Math.max(0, S - margin);
    B = E + margin;
    try {
      ex = explainTrace(reader, id, o.explain ?? {});
    } catch (e) {
      // the timeline is still worth having: join on the spans' own ids
      o.warn?.(`explain failed (${(e as Error).message}); joining on the spans' linux.tid / process.pid only`);
      ex = null;
    }
    if (ex) {
      for (const s of ex.spans) {
        const c = s.correlation;
        if (c.method === 'thread' && c.tid) joined.push([c.tid, c.pid ?? 0, true]);
        else if (c.method === 'process' && c.pid) procJoined.push(c.pid);
      }
    } else {
      for (const s of spans) {
        if (s.tid) joined.push([s.tid, s.pid ?? 0, true]);
        else if (s.pid) procJoined.push(s.pid);
      }
    }
  } else {
    if (!(target.toUnixNano > target.fromUnixNano)) throw new Error('the window must end after it starts');
    A = clock0.toMono(target.fromUnixNano);
    B = A + Number(target.toUnixNano - target.fromUnixNano);
    if (target.tid) joined.push([target.tid, target.pid ?? 0, true]);
    else if (target.pid) procJoined.push(target.pid);
    else throw new Error('give a pid or a tid');
  }

  const x = new Exporter(reader, out, o, A, B);
  const { sink, clock } = x;
  sink.head('{"displayTimeUnit":"ns","traceEvents":[\n');

  // request spans: one synthetic process per service, properly nested tracks
  const requestsPids = new Map<number, string>();
  if (spans.length) {
    const services = [...new Set(spans.map((s) => s.service))];
    const lanes = new Lanes(REQUEST_LANES);
    for (const [si, svc] of services.entries()) {
      // the first span track is the process's main thread (tid = pid); synthetic ids stay clear of real ones
      const pid = REQUESTS_PID_BASE + si * REQUEST_LANES;
      requestsPids.set(pid, `requests (${svc || 'unknown service'})`);
      const mine = spans.filter((s) => s.service === svc).map((s) => ({ s, st: BigInt(s.startUnixNano) }));
      mine.sort((p, r) => (p.st < r.st ? -1 : p.st > r.st ? 1 : r.s.durationNs - p.s.durationNs));
      lanes.reset();
      lanes.resetHigh();
      for (const { s, st } of mine) {
        const rel = Number(st - mine[0].st);
        let lane = lanes.assign(rel, rel + s.durationNs);
        if (lane < 0) lane = REQUEST_LANES - 1;
        if (!sink.room(1)) continue;
        sink.put(`{"name":${q(s.name)},"cat":"span","ph":"X","ts":${epochNsToUs(s.startUnixNano, clock.base)},"dur":${usText(s.durationNs)},"pid":${pid},"tid":${pid + lane},"args":${spanArgs(s, ex)}}`);
      }
      const used = lanes.resetHigh();
      for (let l = 0; l < used; l++) {
        sink.put(`{"name":"thread_name","ph":"M","pid":${pid},"tid":${pid + l},"args":{"name":${q(l ? `spans ${l + 1}` : 'spans')}}}`);
        sink.put(`{"name":"thread_sort_index","ph":"M","pid":${pid},"tid":${pid + l},"args":{"sort_index":${l}}}`);
      }
    }
  }

  // joined threads, then the correlator's culprits, then wakers/preemptors found on the way
  for (const [tid, pid] of joined) x.addThread(tid, pid, 0, true);
  for (const pid of procJoined) {
    for (const tid of reader.threadsOfProcess(pid, A, B)) x.addThread(tid, pid, 0);
  }
  if (ex && o.culprits !== false) for (const [tid, pid] of culpritsOf(ex)) x.addThread(tid, pid, 1);
  const done = new Set<number>();
  for (let role = 0; role <= 2; role++) {
    // new entries may be added while iterating (Map iteration sees them)
    for (const t of x.threads.values()) {
      if (done.has(t.tid) || t.role !== role) continue;
      done.add(t.tid);
      x.emitThread(t);
      await sink.flush();
    }
  }
  // threads of a process join with no event in the window were given a track only if they had events
  x.names(requestsPids);

  const truncated = sink.dropped > 0 || x.threadsDropped > 0;
  const fromUnixNano = clock.toEpoch(A).toString();
  const toUnixNano = clock.toEpoch(B).toString();
  if (truncated) {
    const msg = `perfetto export truncated: ${sink.dropped} events left out (max ${sink.max} events)` +
      (x.threadsDropped ? `, ${x.threadsDropped} threads left out (max ${o.maxThreads ?? 256})` : '');
    sink.put(`{"name":"kspan export truncated","cat":"kspan","ph":"i","s":"g","ts":${clock.us(A)},"pid":0,"tid":0,"args":{"dropped_events":${sink.dropped},"max_events":${sink.max},"dropped_threads":${x.threadsDropped}}}`);
    o.warn?.(msg);
  }
  const exported = [...x.threads.values()].filter((t) => t.exported).length;
  const metadata = {
    kspan: {
      target: 'traceId' in target ? { trace_id: target.traceId.toLowerCase() } : { pid: target.pid ?? null, tid: target.tid ?? null },
      from_unix_nano: fromUnixNano, to_unix_nano: toUnixNano, ts_base_unix_nano: clock.base.toString(), ts_unit: 'us', threads: exported, spans: spans.length,
      events: sink.events, truncated, dropped_events: sink.dropped, dropped_threads: x.threadsDropped, max_events: sink.max,
      clock: clock.size ? 'monotonic converted to epoch with the store clock history' : 'no clock samples: monotonic times as is',
    },
  };
  sink.head(`\n],"metadata":${JSON.stringify(metadata)}}\n`);
  await sink.flush(true);
  return {
    found: true, events: sink.events, dropped: sink.dropped, truncated, threads: exported, spans: spans.length,
    tsBaseUnixNano: clock.base.toString(), fromUnixNano, toUnixNano,
  };
}

/** The whole document as a string (small exports, tests). */
export async function perfettoTraceJson(reader: StoreReader, target: PerfettoTarget, o: PerfettoOptions = {}): Promise<{ json: string; result: PerfettoResult }> {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      cb();
    },
  });
  const result = await writePerfettoTrace(reader, target, w, o);
  return { json: chunks.join(''), result };
}

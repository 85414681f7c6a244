// Records as plain objects (`kspan dump --json`) and as one line of text
// (`kspan dump`). Not a hot path: this allocates freely. Times are epoch ns
// as decimal strings (they exceed 2^53), durations are numbers of ns.

import { SocketAddress } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { ClockHistory } from './clock.js';
import type { RecordView } from './decoder.js';
import type { TaskNames } from './names.js';
import {
  AF_INET, AF_INET6, BLOCKED, CUDA_CALL, FUTEX_WAIT, FutexFlag, FUTEX_WAKE, IoFlag, OFFCPU, TCP_RETRANS, Kind, OWNER_SRC_NAMES, OffcpuFlag, STATUS_DETACHED, TASK_EVENT_NAMES,
  TCP_STATE_NAMES, TaskEvent, cudaApiName, cudaArgKind, devMajor, devMinor, flagNames, futexOpName,
  kindName, ringName, groupName, offcpuState,
} from './records.js';
import {
  AckView, BlockedView, BlockIoView, ClockView, CudaCallView, DrainedView, DropsView, FutexWaitView, FutexWakeView, HelloView,
  OffcpuView, StackView, StatusView, TaskView, TcpRetransView,
} from './views.js';

export type JsonRecord = Record<string, unknown> & { kind: string; ts: string };

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** -110 -> "ETIMEDOUT"; 0 or positive -> null. */
/** Where a futex wait's ret comes from: the syscall (tracepoints), inferred from the waker, or unknown (registers). */
function futexRetSource(flags: number): 'syscall' | 'inferred' | 'unknown' {
  if (flags & FutexFlag.RET_UNKNOWN) return 'unknown';
  return flags & FutexFlag.RET_INFERRED ? 'inferred' : 'syscall';
}

export function errnoName(ret: number): string | null {
  if (ret >= 0) return null;
  return ERRNO_NAMES.get(-ret) ?? `E${-ret}`;
}

/** 16 address bytes -> "10.0.0.1" / "2001:db8::1" (RFC 5952 form via node:net). */
export function formatAddr(family: number, bytes: Uint8Array): string {
  if (family === AF_INET) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (family === AF_INET6) {
    const g: string[] = [];
    for (let i = 0; i < 16; i += 2) g.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
    return new SocketAddress({ address: g.join(':'), family: 'ipv6' }).address;
  }
  return Buffer.from(bytes).toString('hex');
}

export const OFFCPU_FLAG_TABLE = OffcpuFlag as Readonly<Record<string, number>>;
export const IO_FLAG_TABLE = IoFlag as Readonly<Record<string, number>>;

// One view per kind, reused.
const V = {
  hello: new HelloView(), offcpu: new OffcpuView(), fw: new FutexWaitView(), fk: new FutexWakeView(),
  io: new BlockIoView(), tcp: new TcpRetransView(), cuda: new CudaCallView(), task: new TaskView(),
  stack: new StackView(), clock: new ClockView(), drops: new DropsView(), drained: new DrainedView(), blocked: new BlockedView(), status: new StatusView(), ack: new AckView(),
};

interface Ctx {
  clock: ClockHistory;
  names: TaskNames | null;
}

function epoch(c: Ctx, mono: number): string | null {
  return mono === 0 ? null : c.clock.toEpochNs(mono).toString();
}

/** A futex wait's lock owner: its tid, name, and where the tid was read (enum kspan_owner_src). */
function lockOwner(tid: number, src: number, names: TaskNames | null): { tid: number; comm: string | null; src: string } {
  return { tid, comm: names?.get(tid) ?? null, src: OWNER_SRC_NAMES[src] ?? `src${src}` };
}

function who(c: Ctx, pid: number, tid: number): { pid: number; tid: number; comm: string | null } {
  // tid 0 is a CPU's idle task (comm "swapper/N"), never named by a TASK record
  return { pid, tid, comm: c.names?.get(tid) ?? (tid === 0 ? 'swapper' : null) };
}

/**
 * One record as a plain object. `names` supplies comms for tids (feed it the
 * TASK records first, e.g. TaskNames.observeBatch()).
 */
export function recordToJson(v: RecordView, clock: ClockHistory, names: TaskNames | null = null): JsonRecord {
  const c: Ctx = { clock, names };
  const kind = v.kind;
  const ts = v.ts;
  const base: JsonRecord = {
    kind: kindName(kind),
    ts: clock.toEpochNs(ts).toString(),
    pid: v.pid,
    tid: v.tid,
    comm: who(c, v.pid, v.tid).comm,
    cpu: v.cpu,
  };
  switch (kind) {
    case Kind.HELLO: {
      const h = V.hello.setFrom(v);
      return Object.assign(base, {
        abi_version: h.abiVersion, ncpu: h.ncpu, mono_ns: String(h.monoNs), realtime_ns: h.realtimeNs.toString(),
        boot_id: h.bootId, offcpu_min_ns: h.offcpuMinNs, probe_pid: h.probePid,
      });
    }
    case Kind.OFFCPU: {
      const o = V.offcpu.setFrom(v);
      const flags = o.flags;
      const woken = (flags & OffcpuFlag.WOKEN) !== 0;
      const runnable = (flags & (OffcpuFlag.PREEMPTED | OffcpuFlag.RESCHED)) !== 0;
      let context = 'task';
      if (flags & OffcpuFlag.WAKER_HARDIRQ) context = 'hardirq';
      else if (flags & OffcpuFlag.WAKER_SOFTIRQ) context = 'softirq';
      return Object.assign(base, {
        start: epoch(c, o.startNs),
        runnable: epoch(c, o.runnableNs),
        duration_ns: o.durationNs,
        blocked_ns: o.blockedNs,
        runqueue_ns: o.runqueueNs,
        state: offcpuState(o.prevState, flags),
        prev_state: o.prevState,
        flags: flagNames(flags, OFFCPU_FLAG_TABLE),
        out_cpu: o.outCpu,
        waker: woken
          ? {
            ...who(c, o.wakerPid, o.wakerTid), cpu: o.wakerCpu, context,
            uaddr: flags & OffcpuFlag.WAKER_FUTEX ? o.hex64(OFFCPU.waker_uaddr) : null,
          }
          : null,
        preemptor: runnable ? who(c, o.preemptPid, o.preemptTid) : null,
        next: who(c, o.preemptPid, o.preemptTid),
        last: who(c, o.lastPid, o.lastTid),
      });
    }
    case Kind.FUTEX_WAIT: {
      const f = V.fw.setFrom(v);
      const src = f.ownerSrc;
      return Object.assign(base, {
        start: epoch(c, f.startNs),
        duration_ns: f.durationNs,
        uaddr: f.hex64(FUTEX_WAIT.uaddr),
        op: futexOpName(f.op),
        op_raw: f.op,
        ret: f.ret,
        error: errnoName(f.ret),
        ret_source: futexRetSource(f.flags),
        val: f.val,
        owner: src !== 0 || f.ownerTid !== 0 ? lockOwner(f.ownerTid, src, names) : null,
      });
    }
    case Kind.FUTEX_WAKE: {
      const f = V.fk.setFrom(v);
      const ret = f.ret;
      return Object.assign(base, {
        start: epoch(c, f.startNs),
        duration_ns: ts - f.startNs,
        uaddr: f.hex64(FUTEX_WAKE.uaddr),
        uaddr2: f.uaddr2 === 0 ? null : f.hex64(FUTEX_WAKE.uaddr2),
        op: futexOpName(f.op),
        op_raw: f.op,
        woken: ret > 0 ? ret : 0,
        ret,
        error: errnoName(ret),
      });
    }
    case Kind.BLOCK_IO: {
      const b = V.io.setFrom(v);
      const issue = b.issueNs;
      const flags = b.flags;
      const dev = b.dev;
      return Object.assign(base, {
        comm: b.issuerComm || base.comm,
        start: epoch(c, b.startNs),
        issue: epoch(c, issue),
        duration_ns: b.durationNs,
        queue_ns: issue ? issue - b.startNs : null,
        device_ns: issue ? ts - issue : null,
        dev: `${devMajor(dev)}:${devMinor(dev)}`,
        sector: b.sector,
        bytes: b.bytesLen,
        direction: flags & IoFlag.WRITE ? 'write' : 'read',
        flags: flagNames(flags, IO_FLAG_TABLE),
        error: b.error,
      });
    }
    case Kind.TCP_RETRANS: {
      const t = V.tcp.setFrom(v);
      const fam = t.family;
      const st = t.state;
      return Object.assign(base, {
        family: fam === AF_INET ? 'ipv4' : fam === AF_INET6 ? 'ipv6' : `af${fam}`,
        saddr: formatAddr(fam, t.saddrBytes()),
        sport: t.sport,
        daddr: formatAddr(fam, t.daddrBytes()),
        dport: t.dport,
        state: TCP_STATE_NAMES[st] ?? `state${st}`,
        in_irq: t.inIrq,
        err: t.err,
        sock_ino: t.sockIno,
      });
    }
    case Kind.CUDA_CALL: {
      const k = V.cuda.setFrom(v);
      const api = k.api;
      const argKind = cudaArgKind(api);
      const out: Record<string, unknown> = {
        start: epoch(c, k.startNs),
        duration_ns: k.durationNs,
        api: cudaApiName(api),
        api_id: api,
        arg: k.hex64(CUDA_CALL.arg),
        ret: k.ret,
      };
      if (argKind === 'bytes') out.bytes = k.arg;
      else if (argKind !== 'none') out[argKind] = k.hex64(CUDA_CALL.arg);
      return Object.assign(base, out);
    }
    case Kind.TASK: {
      const t = V.task.setFrom(v);
      const ev = t.event;
      const out: Record<string, unknown> = {
        event: TASK_EVENT_NAMES[ev] ?? `event${ev}`,
        comm: t.taskComm,
        pcomm: t.processComm,
        start_time: epoch(c, t.startTime),
      };
      if (ev === TaskEvent.FORK) out.parent = who(c, t.otherPid, t.otherTid);
      if (ev === TaskEvent.EXIT) out.exit_code = t.exitCode;
      return Object.assign(base, out);
    }
    case Kind.STACK: {
      const s = V.stack.setFrom(v);
      const n = s.nFrames;
      const nUser = Math.min(s.nUser, n);
      const user: string[] = [];
      const kernel: string[] = [];
      for (let i = 0; i < n; i++) (i < nUser ? user : kernel).push(s.ipHex(i));
      return Object.assign(base, { start: epoch(c, s.startNs), n_user: s.nUser, n_kernel: s.nKernel, user, kernel });
    }
    case Kind.CLOCK: {
      const k = V.clock.setFrom(v);
      return Object.assign(base, { mono_ns: String(ts), realtime_ns: k.realtimeNs.toString(), error_ns: k.errorNs, stepped: k.stepped });
    }
    case Kind.DROPS: {
      const d = V.drops.setFrom(v);
      return Object.assign(base, { ring: ringName(d.ring), lost: d.lost, records: d.ringRecords, bytes: d.ringBytes });
    }
    case Kind.DRAINED: {
      const d = V.drained.setFrom(v);
      if (!d.hasLost) return base;
      return Object.assign(base, { lost_ts: epoch(c, d.lostTs), lost: { sched: d.lost(0), task: d.lost(1), cuda: d.lost(2) } });
    }
    case Kind.BLOCKED: {
      // still off CPU at the snapshot (ts): no switch-in yet, so no end, no runqueue time
      const b = V.blocked.setFrom(v);
      const flags = b.flags;
      return Object.assign(base, {
        start: epoch(c, b.startNs),
        off_cpu_ns: ts - b.startNs,
        runnable: b.runnableNs ? epoch(c, b.runnableNs) : null,
        state: offcpuState(b.prevState, flags),
        prev_state: b.prevState,
        flags: flagNames(flags, OFFCPU_FLAG_TABLE),
        waker: flags & OffcpuFlag.WOKEN && b.runnableNs ? who(c, b.wakerPid, b.wakerTid) : null,
        futex: b.uaddr
          ? {
            uaddr: b.hex64(BLOCKED.uaddr), op: futexOpName(b.op),
            owner: b.ownerTid ? lockOwner(b.ownerTid, b.ownerSrc, names) : null,
          }
          : null,
      });
    }
    case Kind.STATUS: {
      const s = V.status.setFrom(v);
      const err = s.err;
      return Object.assign(base, {
        group: groupName(s.group),
        err,
        error: err === STATUS_DETACHED ? 'detached' : errnoName(err),
        n_attached: s.nAttached,
        n_failed: s.nFailed,
        detail: s.detail,
      });
    }
    case Kind.ACK: {
      const a = V.ack.setFrom(v);
      return Object.assign(base, { seq: a.seq, err: a.err, error: errnoName(a.err), msg: a.msg });
    }
    default:
      return Object.assign(base, { size: v.size });
  }
}

// ---------------------------------------------------------------------------
// Text

/** Epoch ns -> "2025-11-21T13:08:01.123456789Z". */
export function isoNs(epochNs: bigint | string): string {
  const ns = typeof epochNs === 'string' ? BigInt(epochNs) : epochNs;
  const ms = ns / 1_000_000n;
  const iso = new Date(Number(ms)).toISOString(); // ...T13:08:01.123Z
  const frac = (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${frac}Z`;
}

/** 1234567 -> "1.23ms". */
export function fmtDur(ns: number): string {
  const a = Math.abs(ns);
  if (a < 1_000) return `${ns}ns`;
  if (a < 1_000_000) return `${(ns / 1e3).toFixed(a < 10_000 ? 2 : 1)}µs`;
  if (a < 1_000_000_000) return `${(ns / 1e6).toFixed(a < 10_000_000 ? 2 : 1)}ms`;
  return `${(ns / 1e9).toFixed(2)}s`;
}

function whoText(w: unknown): string {
  if (!w || typeof w !== 'object') return '-';
  const o = w as { pid: number; tid: number; comm: string | null };
  return `${o.comm ?? '?'}[${o.pid}/${o.tid}]`;
}

/** One line of text for `kspan dump`. */
export function recordToText(v: RecordView, clock: ClockHistory, names: TaskNames | null = null): string {
  return jsonToText(recordToJson(v, clock, names));
}

export function jsonToText(j: JsonRecord): string {
  const head = `${isoNs(j.ts)} ${j.kind.padEnd(11)} ${String(j.comm ?? '?')}[${j.pid}/${j.tid}] cpu${j.cpu}`;
  const r = j as Record<string, any>;
  let d: string;
  switch (j.kind) {
    case 'hello':
      d = `abi=${r.abi_version} ncpu=${r.ncpu} probe_pid=${r.probe_pid} offcpu_min=${fmtDur(r.offcpu_min_ns)}`;
      break;
    case 'offcpu':
      d = `${r.state} ${fmtDur(r.duration_ns)} (blocked ${fmtDur(r.blocked_ns)}, runq ${fmtDur(r.runqueue_ns)})`;
      if (r.waker) d += ` woken by ${whoText(r.waker)}${r.waker.context !== 'task' ? ` in ${r.waker.context}` : ''}${r.waker.uaddr ? ` futex ${r.waker.uaddr}` : ''}`;
      if (r.preemptor) d += ` preempted by ${whoText(r.preemptor)}`;
      if (r.flags.length) d += ` [${r.flags.join(',')}]`;
      break;
    case 'futex_wait':
      d = `${r.op} ${r.uaddr} ${fmtDur(r.duration_ns)} ret=${r.ret_source === 'unknown' ? '?' : `${r.error ?? r.ret}${r.ret_source === 'inferred' ? ' (inferred)' : ''}`}`;
      if (r.owner) d += ` owner=${r.owner.comm ?? '?'}[${r.owner.tid}] (${r.owner.src})`;
      break;
    case 'futex_wake':
      d = `${r.op} ${r.uaddr} woke ${r.woken}${r.error ? ` ret=${r.error}` : ''}`;
      break;
    case 'block_io':
      d = `${r.direction} ${r.bytes}B dev ${r.dev} sector ${r.sector} ${fmtDur(r.duration_ns)}` +
        (r.device_ns !== null ? ` (device ${fmtDur(r.device_ns)})` : '') +
        (r.flags.length ? ` [${r.flags.join(',')}]` : '') + (r.error ? ` error=${r.error}` : '');
      break;
    case 'tcp_retrans': {
      const s = r.family === 'ipv6' ? `[${r.saddr}]:${r.sport}` : `${r.saddr}:${r.sport}`;
      const dd = r.family === 'ipv6' ? `[${r.daddr}]:${r.dport}` : `${r.daddr}:${r.dport}`;
      d = `${s} -> ${dd} ${r.state}${r.in_irq ? ' (irq)' : ''}${r.err ? ` err=${r.err}` : ''}`;
      break;
    }
    case 'cuda_call':
      d = `${r.api} ${fmtDur(r.duration_ns)}${r.bytes !== undefined ? ` ${r.bytes}B` : ''}${r.stream ? ` stream=${r.stream}` : ''}${r.event ? ` event=${r.event}` : ''} ret=${r.ret}`;
      break;
    case 'task':
      d = `${r.event} comm=${r.comm} pcomm=${r.pcomm}` + (r.parent ? ` parent=${whoText(r.parent)}` : '') +
        (r.exit_code !== undefined ? ` exit_code=${r.exit_code}` : '');
      break;
    case 'stack':
      d = `${r.n_user} user + ${r.n_kernel} kernel frames: ${[...r.user, ...r.kernel].slice(0, 6).join(' ')}${r.n_user + r.n_kernel > 6 ? ' ...' : ''}`;
      break;
    case 'clock':
      d = `realtime=${isoNs(r.realtime_ns)} ±${fmtDur(r.error_ns)}${r.stepped ? ' STEPPED' : ''}`;
      break;
    case 'drops':
      d = `ring ${r.ring}: lost ${r.lost}, drained ${r.records} records / ${r.bytes} bytes`;
      break;
    case 'drained':
      d = r.lost ? `lost so far: ${Object.entries(r.lost as Record<string, number>).map(([k, n]) => `${k} ${n}`).join(', ')}` : '';
      break;
    case 'blocked':
      d = `${r.state} off CPU ${fmtDur(r.off_cpu_ns)} so far, ${r.runnable ? `runnable since ${isoNs(r.runnable)}${r.waker ? ` (woken by ${whoText(r.waker)})` : ''}` : 'not woken yet'}` +
        (r.futex ? ` in ${r.futex.op} ${r.futex.uaddr}${r.futex.owner ? ` owner=${r.futex.owner.comm ?? '?'}[${r.futex.owner.tid}] (${r.futex.owner.src})` : ''}` : '') +
        (r.flags.length ? ` [${r.flags.join(',')}]` : '');
      break;
    case 'status':
      d = `${r.group}: ${r.error ?? 'ok'} attached ${r.n_attached} failed ${r.n_failed}${r.detail ? ` (${r.detail})` : ''}`;
      break;
    case 'ack':
      d = `seq ${r.seq} ${r.error ?? 'ok'}${r.msg ? `: ${r.msg}` : ''}`;
      break;
    default:
      d = `size ${r.size}`;
  }
  return `${head} ${d}`;
}

// io_wait: uninterruptible (D) sleep, this thread's block requests in
// flight, and competing issuers on the same device.

import { Kind, fmtDur } from '../../capture/index.js';
import { EventList, F } from '../../store/index.js';
import type { SpanCtx } from '../session.js';
import type { Piece, Timeline } from '../timeline.js';
import type { Evidence } from '../types.js';
import { offcpuEvidence, type CauseFinder, type Draft } from './cause.js';
import { MAX_SCAN_THREADS, devName, pct, percentile } from '../util.js';

interface IoIssuer { pid: number; tid: number; comm: string; requests: number; bytes: number }

function ioCause(ctx: SpanCtx, pieces: Piece[], a: number, b: number): Draft | null {
  const io = pieces.filter((p) => p.label === 'io' && p.eff > 0);
  if (!io.length) return null;
  const total = io.reduce((x, p) => x + p.eff, 0);
  // this thread's requests in flight during its D intervals
  const own: { tl: Timeline; i: number }[] = [];
  let withIo = 0;
  for (const p of io) {
    let hit = false;
    for (const i of p.tl.blockIo) {
      const l = p.tl.list;
      if (l.start[i] < p.b && l.end[i] > p.a) {
        hit = true;
        if (!own.some((o) => o.tl === p.tl && o.i === i)) own.push({ tl: p.tl, i });
      }
    }
    if (hit) withIo += p.eff;
  }
  const devs = new Map<number, { requests: number; bytes: number }>();
  const lat: number[] = [];
  let bytes = 0;
  for (const { tl, i } of own) {
    const l = tl.list;
    const dev = l.f[F.blockIo.dev][i];
    const d = devs.get(dev) ?? devs.set(dev, { requests: 0, bytes: 0 }).get(dev)!;
    d.requests++;
    d.bytes += l.f[F.blockIo.bytes][i];
    bytes += l.f[F.blockIo.bytes][i];
    lat.push(l.end[i] - l.start[i]);
  }
  lat.sort((x, y) => x - y);
  // competing issuers on the same device(s) in the window: no per-device index, so every thread with events is scanned
  const selfTids = new Set(io.map((p) => p.tl.tid));
  const comp = new Map<string, IoIssuer>();
  if (devs.size) {
    const l = new EventList(64);
    for (const [pid, tid] of ctx.t.reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) {
      if (selfTids.has(tid)) continue;
      ctx.t.reader.eventsOnThread(tid, a, b, l, 1 << Kind.BLOCK_IO);
      for (let i = 0; i < l.count; i++) {
        if (!devs.has(l.f[F.blockIo.dev][i]) || l.pid[i] !== pid) continue;
        const k = `${pid}/${tid}`;
        const c = comp.get(k) ?? comp.set(k, { pid, tid, comm: l.str(i, 'comm'), requests: 0, bytes: 0 }).get(k)!;
        c.requests++;
        c.bytes += l.f[F.blockIo.bytes][i];
      }
    }
  }
  const competitors = [...comp.values()].sort((x, y) => y.bytes - x.bytes);
  const topC = competitors[0];
  const culprit = topC && topC.bytes >= bytes ? { pid: topC.pid, tid: topC.tid, comm: topC.comm || ctx.t.comm(topC.tid, a) } : null;
  const evidence: Evidence[] = own.slice(0, ctx.t.maxEvidence).map(({ tl, i }) => {
    const l = tl.list;
    const issue = l.f[F.blockIo.issueNs][i];
    return {
      kind: 'block_io', tid: tl.tid, pid: tl.pid, start_unix_nano: ctx.t.epoch(l.start[i]), end_unix_nano: ctx.t.epoch(l.end[i]),
      dev: devName(l.f[F.blockIo.dev][i]), sector: l.f[F.blockIo.sector][i], bytes: l.f[F.blockIo.bytes][i], flags: l.f[F.blockIo.flags][i],
      latency_ns: l.end[i] - l.start[i], device_ns: issue ? l.end[i] - issue : null, error: l.f[F.blockIo.error][i],
    };
  });
  for (const p of io.sort((x, y) => y.eff - x.eff).slice(0, Math.max(0, ctx.t.maxEvidence - evidence.length))) evidence.push(offcpuEvidence(ctx, p));
  const devList = [...devs.entries()].map(([dev, d]) => ({ dev: devName(dev), ...d }));
  return {
    kind: 'io_wait', t: total, culprit,
    culprits: competitors.slice(0, 10).map((c) => ({ pid: c.pid, tid: c.tid, comm: c.comm, duration_ns: 0, requests: c.requests, bytes: c.bytes })),
    chain: [], evidence,
    summary: (d, share) => {
      let s = `Blocked in uninterruptible (D) sleep for ${fmtDur(d)} (${pct(share)} of the span)`;
      if (own.length) {
        s += `; ${own.length} block request(s) of this thread in flight (${(bytes / 1024).toFixed(0)} KiB on ${devList.map((x) => x.dev).join(', ')}, latency p50 ${fmtDur(percentile(lat, 0.5))}, max ${fmtDur(lat[lat.length - 1])})`;
      } else {
        s += '; no block I/O issued by this thread was in flight (page faults, writeback by kernel threads, or a kernel lock)';
      }
      if (competitors.length) s += `; ${competitors.length} other issuer(s) on the device, top ${topC.comm || '?'} (pid ${topC.pid}) ${(topC.bytes / 1024).toFixed(0)} KiB in ${topC.requests} request(s)`;
      return s + '.';
    },
    remediation: own.length
      ? culprit
        ? `pid ${culprit.pid} (${culprit.comm}) issued more I/O to ${devList.map((x) => x.dev).join(', ')} than this request during it: separate the devices, throttle it (io.max / ionice -c3), or give this workload I/O priority.`
        : `Synchronous I/O on the request path (${own.length} request(s), ${(bytes / 1024).toFixed(0)} KiB): batch or defer fsync/O_DIRECT writes, move them off the request thread, or use a faster device.`
      : 'D-state waits without block I/O of this thread: check page faults (memory pressure, mmap of cold files), writeback throttling (dirty limits), and kernel lock contention.',
    details: {
      requests: own.length, bytes, devices: devList, latency_p50_ns: percentile(lat, 0.5), latency_p99_ns: percentile(lat, 0.99),
      latency_max_ns: lat.length ? lat[lat.length - 1] : 0, d_state_with_own_io_ns: withIo, competing_issuers: competitors.length,
    },
  };
}

export const ioCauses: CauseFinder = (x) => {
  const d = ioCause(x.ctx, x.pieces, x.S, x.E);
  return d ? [d] : [];
};

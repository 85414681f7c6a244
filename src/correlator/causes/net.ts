// network_retransmit: TCP retransmits on the span's peer tuple (they fire in
// softirq on whatever task ran: found by tuple, not by thread), and the
// sleeps they explain.

import { Kind, fmtDur } from '../../capture/index.js';
import { EventList, F } from '../../store/index.js';
import type { ExplainSession, SpanCtx, SpanLike } from '../session.js';
import type { Piece } from '../timeline.js';
import type { Evidence } from '../types.js';
import { type CauseFinder, type Draft } from './cause.js';
import { MAX_SCAN_THREADS, pct } from '../util.js';

function ipBytes(s: string): Buffer | null {
  s = s.trim().replace(/^\[|\]$/g, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(s)) return Buffer.from(s.split('.').map(Number));
  if (!s.includes(':')) return null;
  const m4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m4) {
    const v4 = m4[2].split('.').map(Number);
    s = `${m4[1]}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const [h, t] = s.split('::');
  const hs = h ? h.split(':') : [];
  const ts = t !== undefined && t ? t.split(':') : [];
  const fill = s.includes('::') ? 8 - hs.length - ts.length : 0;
  const groups = [...hs, ...new Array(fill).fill('0'), ...ts];
  if (groups.length !== 8) return null;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16) || 0, 2 * i));
  // v4-mapped -> v4
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return Buffer.from(b.subarray(12));
  return b;
}

function retransMatches(l: EventList, i: number, peer: Buffer, port: number | null): boolean {
  if (port !== null && l.f[F.tcpRetrans.dport][i] !== port && l.f[F.tcpRetrans.sport][i] !== port) return false;
  const fam = l.f[F.tcpRetrans.family][i];
  const d = l.bytesField(i, 'daddr');
  const sa = l.bytesField(i, 'saddr');
  const eq = (x: Buffer): boolean => {
    if (peer.length === 4) {
      if (fam === 2) return x[0] === peer[0] && x[1] === peer[1] && x[2] === peer[2] && x[3] === peer[3];
      // v4-mapped v6
      return x.subarray(0, 10).every((v) => v === 0) && x[10] === 0xff && x[11] === 0xff && x.subarray(12, 16).equals(peer);
    }
    return fam === 10 && x.equals(peer);
  };
  return eq(d) || eq(sa);
}

function retransIn(t: ExplainSession, a: number, b: number): EventList {
  if (t.retrans && t.retransWindow[0] <= a && t.retransWindow[1] >= b) return t.retrans;
  // trace-wide: one scan of every thread with events (retransmits fire in softirq, on whatever task ran: no per-tuple index)
  const out = new EventList(64);
  const tmp = new EventList(64);
  for (const [, tid] of t.reader.threadsInWindow(a, b, MAX_SCAN_THREADS)) {
    t.reader.eventsOnThread(tid, a, b, tmp, 1 << Kind.TCP_RETRANS);
    for (let i = 0; i < tmp.count; i++) out.appendFrom(tmp, i);
  }
  out.sortByStart();
  t.retrans = out;
  t.retransWindow = [a, b];
  return out;
}


interface Peer { addr: string; bytes: Buffer; port: number | null }

export function peerOf(s: SpanLike): Peer | null {
  const A = s.attributes ?? {};
  for (const [ak, pk] of [['network.peer.address', 'network.peer.port'], ['server.address', 'server.port'], ['net.peer.ip', 'net.peer.port']]) {
    const v = A[ak];
    if (typeof v !== 'string') continue;
    const bytes = ipBytes(v);
    if (!bytes) continue;
    const p = A[pk];
    const port = typeof p === 'number' ? p : typeof p === 'string' && /^\d+$/.test(p) ? Number(p) : null;
    return { addr: v, bytes, port };
  }
  return null;
}

/** Retransmit cause; removes the sleep pieces it explains from `pieces` (returned). */
function retransCause(ctx: SpanCtx, peer: Peer, pieces: Piece[], a: number, b: number, win: [number, number]): { d: Draft | null; rest: Piece[] } {
  const all = retransIn(ctx.t, win[0], win[1]);
  const hits: number[] = [];
  for (let i = 0; i < all.count; i++) {
    if (all.end[i] < a || all.start[i] > b) continue;
    if (retransMatches(all, i, peer.bytes, peer.port)) hits.push(i);
  }
  if (!hits.length) return { d: null, rest: pieces };
  const explained = new Set<Piece>();
  for (const p of pieces) {
    if (p.label !== 'sleep') continue;
    for (const i of hits) if (all.end[i] >= p.a && all.end[i] <= p.b) explained.add(p);
  }
  const t = [...explained].reduce((x, p) => x + p.eff, 0);
  const evidence: Evidence[] = hits.slice(0, ctx.t.maxEvidence).map((i) => ({
    kind: 'tcp_retrans', tid: all.tid[i], pid: all.pid[i], start_unix_nano: ctx.t.epoch(all.start[i]), end_unix_nano: ctx.t.epoch(all.end[i]),
    sport: all.f[F.tcpRetrans.sport][i], dport: all.f[F.tcpRetrans.dport][i], state: all.f[F.tcpRetrans.state][i],
    in_irq: all.f[F.tcpRetrans.inIrq][i], sock_ino: all.f[F.tcpRetrans.sockIno][i],
  }));
  return {
    d: {
      kind: 'network_retransmit', t, culprit: null, chain: [], evidence,
      summary: (d, share) => `${hits.length} TCP retransmit(s) to/from ${peer.addr}${peer.port !== null ? `:${peer.port}` : ''} during the span; ${fmtDur(d)} (${pct(share)}) of blocked time contained one.`,
      remediation: `Packets to ${peer.addr} were lost and resent (each costs at least one RTO, 200 ms by default on Linux): check the path (drops, congestion, NIC queues), and lower the retransmit timeout for this route if latency matters (ip route ... rto_min).`,
      details: { retransmits: hits.length, peer: peer.addr, port: peer.port, blocked_with_retransmit_ns: t },
    },
    rest: pieces.filter((p) => !explained.has(p)),
  };
}

/** Claims the sleep pieces a retransmit explains (removes them from x.pieces). */
export const netCauses: CauseFinder = (x) => {
  const peer = peerOf(x.span);
  if (!peer) return [];
  const t = x.ctx.t;
  const r = retransCause(x.ctx, peer, x.pieces, x.S, x.E, t.retransWindow[1] > 0 ? t.retransWindow : [x.S, x.E]);
  x.pieces = r.rest;
  return r.d ? [r.d] : [];
};

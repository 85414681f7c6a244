// Fan-out over peers (DESIGN §9): a tool call answered from this host's
// store and from every peer kspan, asked in parallel over MCP Streamable HTTP
// (bearer token), each within one deadline (default 2 s from the start of the
// fan-out, connect included) and at most `concurrency` at a time. The peer
// calls carry `_meta["kspan/peer"]`: a peer answers from its own store and
// does not fan out again. Every tool result of a kspan carries
// `_meta["kspan/host"]` ({name, boot_id}): how a peer's answer is named, and
// how a peer that is this server itself (a DNS name listing every pod) is
// recognized and dropped.
//
// merge*(): explain_request spans (each with its host) merged and the trace
// summary re-ranked; find_slow_requests rows merged into one top k. Hosts that
// failed or timed out are listed (data_quality.hosts / hosts) with the reason,
// and the answer says it is partial.

import { setMaxListeners } from 'node:events';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { summarizeSpans, type Explanation, type HostAnswer, type SpanExplanation } from '../correlator/index.js';
import type { HostIdentity } from '../store/index.js';
import { DEFAULT_PEER_CONCURRENCY, DEFAULT_PEER_TIMEOUT_MS, PeerSet, type PeerOptions } from './peers.js';

/** `_meta` key of a call made by a fanning-out kspan: answer locally, do not fan out again. */
export const PEER_META = 'kspan/peer';
/** `_meta` key of every kspan tool result: the host that answered. */
export const HOST_META = 'kspan/host';
/** The SDK's own request timeout is the deadline plus this: it only cleans up requests the deadline gave up on. */
const SDK_GRACE_MS = 10_000;

export interface PeerAnswer {
  url: string;
  /** the peer's host.name (from its answer; for a failure, the name it gave last time) */
  name: string | null;
  bootId: string | null;
  status: 'ok' | 'failed' | 'timeout' | 'self';
  elapsedMs: number;
  reason?: string;
  /** the tool's structuredContent (status ok) */
  structured?: Record<string, unknown>;
  /** the tool answered isError (status ok): its text */
  toolError?: string;
}

export interface FanOutOptions extends PeerOptions {
  /** this server: answers naming it are dropped (status self) */
  self: HostIdentity;
  /** URLs that are this server (its own port on its own addresses) */
  isSelfUrl?: (url: string) => boolean;
  /** client name sent at initialize */
  clientName?: string;
  log?: (line: string) => void;
}

interface PeerConn {
  client: Client;
  transport: StreamableHTTPClientTransport;
  ready: Promise<void>;
}

/** Runs tasks with at most n at once. */
class Slots {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly n: number) {}
  async take(signal: AbortSignal): Promise<boolean> {
    if (this.running < this.n) {
      this.running++;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const go = (): void => {
        signal.removeEventListener('abort', stop);
        this.running++;
        resolve(true);
      };
      const stop = (): void => {
        const i = this.queue.indexOf(go);
        if (i >= 0) this.queue.splice(i, 1);
        resolve(false);
      };
      if (signal.aborted) return resolve(false);
      signal.addEventListener('abort', stop, { once: true });
      this.queue.push(go);
    });
  }
  give(): void {
    this.running--;
    const next = this.queue.shift();
    if (next) next();
  }
}

export class FanOut {
  readonly peers: PeerSet;
  readonly timeoutMs: number;
  private readonly slots: Slots;
  private readonly conns = new Map<string, PeerConn>();
  /** host names peers gave, by URL (to name a peer that does not answer) */
  private readonly known = new Map<string, { name: string; bootId: string | null }>();
  private closed = false;

  constructor(private readonly o: FanOutOptions) {
    this.peers = new PeerSet(o);
    this.timeoutMs = o.timeoutMs ?? DEFAULT_PEER_TIMEOUT_MS;
    this.slots = new Slots(Math.max(1, o.concurrency ?? DEFAULT_PEER_CONCURRENCY));
  }

  private conn(url: string): PeerConn {
    let c = this.conns.get(url);
    if (c) return c;
    const headers: Record<string, string> = {};
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    const client = new Client({ name: this.o.clientName ?? `kspan-fanout@${this.o.self.name}`, version: '1' }, { capabilities: {} });
    client.onerror = () => { /* per-call errors are reported by the calls */ };
    const ready = client.connect(transport, { timeout: this.timeoutMs + SDK_GRACE_MS });
    ready.catch(() => undefined);
    c = { client, transport, ready };
    this.conns.set(url, c);
    return c;
  }

  private drop(url: string): void {
    const c = this.conns.get(url);
    if (!c) return;
    this.conns.delete(url);
    void c.client.close().catch(() => undefined);
  }

  /**
   * Ask every peer `tool(args)` as a peer call. Resolves within the deadline
   * (timeoutMs from now) with one answer per peer, in the order of the list;
   * `errors` says which peer sources could not be read.
   */
  async call(tool: string, args: Record<string, unknown>, signal?: AbortSignal): Promise<{ answers: PeerAnswer[]; errors: string[] }> {
    const t0 = performance.now();
    const deadline = new AbortController();
    setMaxListeners(0, deadline.signal); // one listener per peer
    const timer = setTimeout(() => deadline.abort(new Error('deadline')), this.timeoutMs);
    const onAbort = (): void => deadline.abort(new Error('cancelled'));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const list = await Promise.race([
        this.peers.list(),
        new Promise<null>((r) => deadline.signal.addEventListener('abort', () => r(null), { once: true })),
      ]);
      if (!list) return { answers: [], errors: [`peer list not resolved within ${this.timeoutMs} ms`] };
      const answers = await Promise.all(list.urls.map((url) => this.one(url, tool, args, deadline.signal, t0)));
      return { answers, errors: list.errors };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async one(url: string, tool: string, args: Record<string, unknown>, signal: AbortSignal, t0: number): Promise<PeerAnswer> {
    const known = this.known.get(url);
    const base = { url, name: known?.name ?? null, bootId: known?.bootId ?? null };
    const ms = (): number => Math.round((performance.now() - t0) * 10) / 10;
    if (this.o.isSelfUrl?.(url)) return { ...base, name: this.o.self.name, bootId: this.o.self.bootId, status: 'self', elapsedMs: 0, reason: 'this server' };
    if (this.closed) return { ...base, status: 'failed', elapsedMs: 0, reason: 'fan-out closed' };
    if (!(await this.slots.take(signal))) {
      return { ...base, status: 'timeout', elapsedMs: ms(), reason: `not asked: no free slot before the ${this.timeoutMs} ms deadline (concurrency ${this.o.concurrency ?? DEFAULT_PEER_CONCURRENCY})` };
    }
    let timedOut = false;
    try {
      const work = (async () => {
        const c = this.conn(url);
        await c.ready;
        // no signal for the SDK: at the deadline nothing has to run before the answer is
        // sent; the late request is dropped afterwards (below), or by the SDK's own timeout
        return c.client.callTool({ name: tool, arguments: args, _meta: { [PEER_META]: { from: this.o.self.name } } }, undefined, { timeout: this.timeoutMs + SDK_GRACE_MS });
      })();
      // the deadline (or the client leaving) decides
      const res = await Promise.race([
        work,
        new Promise<never>((_, rej) => {
          const f = (): void => { timedOut = true; rej(new Error(`no answer within ${this.timeoutMs} ms`)); };
          if (signal.aborted) f();
          else signal.addEventListener('abort', f, { once: true });
        }),
      ]);
      work.catch(() => undefined);
      const h = (res._meta as Record<string, unknown> | undefined)?.[HOST_META] as { name?: string; boot_id?: string | null } | undefined;
      const name = typeof h?.name === 'string' ? h.name : base.name;
      const bootId = h && 'boot_id' in h ? h.boot_id ?? null : base.bootId;
      if (name) this.known.set(url, { name, bootId });
      if (name !== null && name === this.o.self.name && bootId === this.o.self.bootId) {
        return { url, name, bootId, status: 'self', elapsedMs: ms(), reason: 'answered as this host' };
      }
      const out: PeerAnswer = { url, name, bootId, status: 'ok', elapsedMs: ms() };
      if (res.isError) {
        const t = (res.content as { type: string; text?: string }[] | undefined)?.find((x) => x.type === 'text')?.text ?? 'error';
        out.toolError = t.slice(0, 300);
      } else out.structured = (res.structuredContent ?? {}) as Record<string, unknown>;
      return out;
    } catch (e) {
      if (timedOut || signal.aborted) {
        // closing the late connection (aborting its request) waits until the answer is out
        setTimeout(() => this.drop(url), 0).unref?.();
        const why = (signal.reason as Error | undefined)?.message === 'cancelled' ? 'cancelled: the client left' : `no answer within ${this.timeoutMs} ms`;
        return { ...base, status: signal.reason && (signal.reason as Error).message === 'cancelled' ? 'failed' : 'timeout', elapsedMs: ms(), reason: why };
      }
      // a broken connection is opened again next time (the peer may have restarted)
      this.drop(url);
      return { ...base, status: 'failed', elapsedMs: ms(), reason: describeError(e) };
    } finally {
      this.slots.give();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const url of [...this.conns.keys()]) this.drop(url);
  }
}

/** One line for a failed peer call: the HTTP status or the socket error, no stack. */
export function describeError(e: unknown): string {
  const err = e as { code?: number | string; message?: string; cause?: { code?: string; message?: string } };
  const cause = err.cause?.code ?? err.cause?.message;
  let m = (err.message ?? String(e)).replace(/\s+/g, ' ');
  if (cause && !m.includes(String(cause))) m += ` (${cause})`;
  return m.slice(0, 300);
}

// ---------------------------------------------------------------- merging

export interface HostsSummary {
  hosts: HostAnswer[];
  partial: boolean;
  /** one sentence when partial */
  note: string | null;
}

function hostName(a: PeerAnswer): string {
  return a.name ?? a.url;
}

/** data_quality.hosts of a fan-out: this host first, then the peers in list order. */
export function hostAnswers(self: HostIdentity, localCount: number | null, localMs: number, answers: PeerAnswer[], counts: Map<PeerAnswer, number>, errors: string[]): HostsSummary {
  // localCount null: no local store (kspan explain --peers without --data)
  const hosts: HostAnswer[] = localCount === null ? [] : [{ name: self.name, url: null, status: 'local', spans: localCount, elapsed_ms: Math.round(localMs * 10) / 10 }];
  for (const a of answers) {
    const n = counts.get(a) ?? 0;
    const status: HostAnswer['status'] = a.status === 'ok' ? (a.toolError || n === 0 ? 'not_found' : 'ok') : a.status;
    const h: HostAnswer = { name: a.name, url: a.url, status, spans: n, elapsed_ms: a.elapsedMs };
    const reason = a.reason ?? a.toolError;
    if (reason) h.reason = reason;
    hosts.push(h);
  }
  const missing = answers.filter((a) => a.status === 'failed' || a.status === 'timeout');
  const partial = missing.length > 0;
  const note = partial
    ? `partial: ${missing.length} of ${answers.filter((a) => a.status !== 'self').length + (localCount === null ? 0 : 1)} hosts did not answer: ` +
      missing.map((a) => `${hostName(a)}${a.name ? ` (${a.url})` : ''} ${a.status === 'timeout' ? 'timed out' : 'failed'}${a.reason ? `: ${a.reason}` : ''}`).join('; ')
    : null;
  if (errors.length && !partial) return { hosts, partial: true, note: `partial: peer sources failed: ${errors.join('; ')}` };
  return { hosts, partial, note: errors.length ? `${note}; peer sources failed: ${errors.join('; ')}` : note };
}

type ExplainResult = Explanation & { spans_total?: number; spans_truncated?: boolean };

/**
 * Merge this host's explanation with the peers' (explain_request): all spans,
 * each named by its host, in start order; data quality combined; the summary
 * re-ranked over every span; data_quality.hosts lists every host and its
 * status. `maxSpans` bounds the merged list (the slowest kept).
 */
export function mergeExplanations(
  traceId: string, self: HostIdentity, local: ExplainResult | null, localMs: number, answers: PeerAnswer[], errors: string[], maxSpans: number,
): Explanation & { spans_total: number; spans_truncated: boolean; data_quality: Explanation['data_quality'] & { hosts: HostAnswer[]; partial: boolean } } {
  const parts: { e: ExplainResult; host: { name: string | null; boot_id: string | null } }[] = [];
  if (local?.found) parts.push({ e: local, host: { name: self.name, boot_id: self.bootId } });
  const counts = new Map<PeerAnswer, number>();
  let peerTruncated = 0;
  for (const a of answers) {
    const e = a.status === 'ok' ? (a.structured as unknown as ExplainResult | undefined) : undefined;
    if (!e || !e.found || !Array.isArray(e.spans)) continue;
    parts.push({ e, host: { name: a.name ?? a.url, boot_id: a.bootId } });
    counts.set(a, e.spans.length);
    if (e.spans_truncated) peerTruncated += (e.spans_total ?? e.spans.length) - e.spans.length;
  }
  const seen = new Set<string>();
  const spans: SpanExplanation[] = [];
  for (const p of parts) {
    for (const s of p.e.spans) {
      const host = s.host?.name ? s.host : p.host;
      const key = `${s.span_id}@${host.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      spans.push({ ...s, host });
    }
  }
  spans.sort((a, b) => (BigInt(a.start_unix_nano) < BigInt(b.start_unix_nano) ? -1 : BigInt(a.start_unix_nano) > BigInt(b.start_unix_nano) ? 1 : 0));
  const hs = hostAnswers(self, local === null ? null : local.found ? local.spans.length : 0, localMs, answers, counts, errors);
  const found = parts.map((p) => p.e);
  const correlation: Record<string, number> = {};
  for (const e of found) for (const [k, v] of Object.entries(e.data_quality?.correlation ?? {})) correlation[k] = (correlation[k] ?? 0) + v;
  const thr = found.map((e) => e.data_quality?.offcpu_threshold_ns).filter((x): x is number => typeof x === 'number');
  const notes: string[] = [];
  for (const p of parts) {
    const tag = parts.length > 1 || p.host.name !== self.name ? `[${p.host.name}] ` : '';
    for (const n of p.e.data_quality?.notes ?? []) notes.push(tag + n);
  }
  if (hs.note) notes.unshift(hs.note);
  const dq = {
    lost_events: found.reduce((a, e) => a + (e.data_quality?.lost_events ?? 0), 0),
    covered: found.length > 0 && found.every((e) => e.data_quality?.covered),
    coverage: found.length ? Math.min(...found.map((e) => e.data_quality?.coverage ?? 0)) : 0,
    lost_known: found.length > 0 && found.every((e) => e.data_quality?.lost_known),
    offcpu_threshold_ns: thr.length ? Math.max(...thr) : null,
    correlation,
    threads_joined: found.reduce((a, e) => a + (e.data_quality?.threads_joined ?? 0), 0),
    notes: [...new Set(notes)],
    hosts: hs.hosts,
    partial: hs.partial,
  };
  // re-ranked over every host's spans; a caller's wait on its downstream spans is theirs to explain
  let summary = spans.length ? summarizeSpans(spans, dq, { childWaits: true, withHost: true }) : `trace ${traceId} not found on any host asked`;
  const answered = hs.hosts.filter((h) => h.status === 'local' || h.status === 'ok' || h.status === 'not_found').length;
  const withSpans = new Set(spans.map((s) => s.host?.name)).size;
  summary += ` (${spans.length} span(s) from ${withSpans} host(s); ${answered} of ${hs.hosts.filter((h) => h.status !== 'self').length} hosts answered${hs.partial ? ': PARTIAL' : ''})`;
  let kept = spans;
  let truncated = peerTruncated > 0;
  if (spans.length > maxSpans) {
    const keep = new Set([...spans].sort((x, y) => y.duration_ns - x.duration_ns).slice(0, maxSpans));
    kept = spans.filter((s) => keep.has(s));
    truncated = true;
  }
  return {
    trace_id: traceId, found: spans.length > 0, summary, spans: kept, data_quality: dq,
    spans_total: spans.length + peerTruncated, spans_truncated: truncated,
  };
}

export interface SlowRow {
  trace_id: string;
  duration_ns: number;
  host?: string | null;
  hosts?: string[];
  [k: string]: unknown;
}

/**
 * Merge find_slow_requests answers: one row per trace (its slowest span on
 * any host; `hosts` lists every host that has spans of it), slowest first,
 * the top `limit`.
 */
export function mergeSlowRequests(
  self: HostIdentity, local: Record<string, unknown>, localMs: number, answers: PeerAnswer[], errors: string[], limit: number,
): Record<string, unknown> & { requests: SlowRow[]; hosts: HostAnswer[]; partial: boolean } {
  const byTrace = new Map<string, SlowRow>();
  const add = (rows: unknown, host: string): number => {
    if (!Array.isArray(rows)) return 0;
    for (const r of rows as SlowRow[]) {
      if (!r || typeof r.trace_id !== 'string') continue;
      const row = { ...r, host: r.host ?? host };
      const prev = byTrace.get(r.trace_id);
      const hosts = [...new Set([...(prev?.hosts ?? []), row.host!])];
      byTrace.set(r.trace_id, !prev || row.duration_ns > prev.duration_ns ? { ...row, hosts } : { ...prev, hosts });
    }
    return rows.length;
  };
  const localN = add(local.requests, self.name);
  const counts = new Map<PeerAnswer, number>();
  let matched = Number(local.matched_spans ?? 0);
  let truncated = local.truncated === true;
  const notes = [...((local.notes as string[] | undefined) ?? [])];
  for (const a of answers) {
    if (a.status !== 'ok' || !a.structured) continue;
    counts.set(a, add(a.structured.requests, a.name ?? a.url));
    matched += Number(a.structured.matched_spans ?? 0);
    truncated ||= a.structured.truncated === true;
    for (const n of (a.structured.notes as string[] | undefined) ?? []) notes.push(`[${a.name ?? a.url}] ${n}`);
  }
  const hs = hostAnswers(self, localN, localMs, answers, counts, errors);
  for (const h of hs.hosts) if (h.status === 'not_found') h.status = 'ok'; // "no slow requests" is an answer
  const all = [...byTrace.values()].sort((x, y) => y.duration_ns - x.duration_ns);
  if (hs.note) notes.unshift(hs.note);
  return {
    ...local,
    requests: all.slice(0, limit), matched_spans: matched, returned: Math.min(limit, all.length),
    truncated: truncated || all.length > limit, notes: [...new Set(notes)], hosts: hs.hosts, partial: hs.partial,
  };
}

// The kspan MCP server: an McpServer with the read-only tools, connected to a
// transport through an audit wrapper that logs every tools/call (one JSON
// line: tool, arguments, duration, result size, isError) and, with an OTel
// tracer, records it as a span.

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ListToolsRequestSchema, type JSONRPCMessage, type ListToolsResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { SpanKind, SpanStatusCode, context, propagation, type Span, type Tracer } from '@opentelemetry/api';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { REPO_ROOT } from '../capture/index.js';
import { openStoreReader, type StoreReader } from '../store/index.js';
import type { BudgetLimits } from './budget.js';
import { registerGuide } from './guide.js';
import { registerTools, serverHost, type ToolContext } from './tools.js';
import { FanOut } from './fanout.js';
import type { PeerOptions } from './peers.js';
import type { HostIdentity } from '../store/index.js';

export interface AuditRecord {
  ts: string;
  event: 'mcp.tools/call';
  tool: string;
  arguments: unknown;
  duration_ms: number;
  result_bytes: number;
  is_error: boolean;
  /** the error text (isError result or JSON-RPC error), cut to 300 chars */
  error?: string;
  transport: string;
  session?: string;
  client?: string;
}

export interface AuditOptions {
  /** where the JSON lines go (default process.stderr); null: no log */
  log?: Writable | ((rec: AuditRecord) => void) | null;
  /** an OTel tracer: each tools/call becomes a span "tools/call <tool>" */
  tracer?: Tracer;
  /** label in the audit record ("stdio", "http", "memory") */
  transport?: string;
  /** client label (e.g. the HTTP peer address) */
  client?: string;
}

const MAX_ARGS_BYTES = 2048;

function kspanVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
const VERSION = kspanVersion();

export const SERVER_INSTRUCTIONS = [
  'kspan explains slow requests from Linux kernel events (scheduling, futex locks, block I/O, TCP retransmits, CUDA calls) joined to OpenTelemetry spans. Every tool is read-only.',
  'Start with find_slow_requests (no arguments needed), then explain_request(trace_id); drill down with query_off_cpu, who_woke, futex_contention, get_latency_distribution and query_events. The prompt investigate_slow_request walks these steps. Resources: kspan://coverage (sessions, probes, time range, losses), kspan://topology (CPUs, the processes that matter).',
  'Conventions for every tool: since/until/at are epoch ns as a decimal string, RFC 3339 ("2025-01-02T03:04:05.123Z"), or relative to now ("now", "-30s", "-5m", "-2h", "-1d"). until defaults to now; since to 1 h before until, or the store\'s first data if later (when the store holds nothing from the last hour, the default window is its last hour of data). A window is at most 7 days. pid/tid are kernel ids (tid = gettid()). *_ms arguments are milliseconds.',
  'Results: times *_unix_nano (epoch ns strings), durations *_ns (numbers); lists bounded by limit with matched/returned/truncated. Each call has a 2 s time and a 5 M-event budget: a scan that runs out answers with partial: true and a note; narrow the window or give pid/tid. Errors say what to change.',
].join('\n');

/** An McpServer with kspan's tools, prompt and resources over `ctx.reader` (not connected). */
export function createKspanMcpServer(ctx: ToolContext): McpServer {
  const server = new McpServer(
    { name: 'kspan', version: VERSION, title: 'kspan — kernel causes of slow requests' },
    { capabilities: { tools: {}, prompts: {}, resources: {} }, instructions: SERVER_INSTRUCTIONS },
  );
  registerTools(server, ctx);
  registerGuide(server, ctx);
  leanToolList(server);
  return server;
}

/**
 * JSON Schema without the keywords that say nothing: "$schema", empty
 * "properties", "additionalProperties": {} (any), "items": {} (any).
 */
export function leanSchema(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(leanSchema);
  if (!s || typeof s !== 'object') return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === '$schema') continue;
    const isEmpty = v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;
    if ((k === 'additionalProperties' || k === 'items') && (v === true || isEmpty)) continue;
    if (k === 'properties' && isEmpty) continue;
    out[k] = k === 'properties' && v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([p, x]) => [p, leanSchema(x)])) : leanSchema(v);
  }
  return out;
}

/** A tool definition as sent: lean schemas; no annotations.title equal to the title; no execution block that states the default. */
function leanTool(t: Tool): Tool {
  const out: Tool = { ...t, inputSchema: leanSchema(t.inputSchema) as Tool['inputSchema'] };
  if (t.outputSchema) out.outputSchema = leanSchema(t.outputSchema) as Tool['outputSchema'];
  if (t.annotations?.title === t.title) {
    const { title: _t, ...rest } = t.annotations!;
    out.annotations = rest;
  }
  if (t.execution && (t.execution.taskSupport ?? 'forbidden') === 'forbidden' && Object.keys(t.execution).length <= 1) delete out.execution;
  return out;
}

/**
 * Serve tools/list through leanTool: the SDK's handler builds the list (from
 * the zod schemas), this one drops what carries no meaning (~1.5 KB over
 * nine tools). Uses the SDK's request-handler map; without it, the list is
 * served as the SDK builds it.
 */
function leanToolList(server: McpServer): void {
  type Handler = (req: unknown, extra: unknown) => Promise<unknown>;
  const handlers = (server.server as unknown as { _requestHandlers?: Map<string, Handler> })._requestHandlers;
  const orig = handlers?.get('tools/list');
  if (!orig) return;
  server.server.setRequestHandler(ListToolsRequestSchema, async (req, extra) => {
    const r = (await orig(req, extra)) as ListToolsResult;
    return { ...r, tools: r.tools.map(leanTool) };
  });
}

function truncateArgs(args: unknown): unknown {
  const s = JSON.stringify(args ?? {});
  return s.length <= MAX_ARGS_BYTES ? args ?? {} : { _truncated: s.slice(0, MAX_ARGS_BYTES) };
}

/**
 * Wrap a transport so that every tools/call request and its response are
 * audited. Must be called before the server connects to the transport.
 */
export function auditTransport(t: Transport, o: AuditOptions = {}): Transport {
  const pending = new Map<string | number, { tool: string; args: unknown; t0: number; span?: Span }>();
  const sink = o.log === undefined ? process.stderr : o.log;
  const emit = (rec: AuditRecord): void => {
    if (!sink) return;
    if (typeof sink === 'function') sink(rec);
    else sink.write(JSON.stringify(rec) + '\n');
  };
  let handler: Transport['onmessage'];
  // Transports that delegate (the node Streamable HTTP transport forwards
  // onmessage to an inner web-standard transport through an accessor) get
  // the wrapped handler through their own setter.
  let inherited: PropertyDescriptor | undefined;
  for (let p = Object.getPrototypeOf(t); p && !inherited; p = Object.getPrototypeOf(p)) inherited = Object.getOwnPropertyDescriptor(p, 'onmessage');
  Object.defineProperty(t, 'onmessage', {
    configurable: true,
    enumerable: true,
    get: () => handler && wrapped,
    set: (h: Transport['onmessage']) => {
      handler = h;
      inherited?.set?.call(t, h ? wrapped : undefined);
    },
  });
  const wrapped: NonNullable<Transport['onmessage']> = (msg, extra) => {
    const m = msg as { method?: string; id?: string | number; params?: { name?: unknown; arguments?: unknown; _meta?: Record<string, unknown> } };
    if (m.method === 'tools/call' && m.id !== undefined) {
      const tool = typeof m.params?.name === 'string' ? m.params.name.slice(0, 128) : String(m.params?.name);
      let span: Span | undefined;
      if (o.tracer) {
        const parent = m.params?._meta ? propagation.extract(context.active(), m.params._meta) : context.active();
        span = o.tracer.startSpan(`tools/call ${tool}`, {
          kind: SpanKind.SERVER,
          attributes: {
            'mcp.method.name': 'tools/call', 'gen_ai.tool.name': tool, 'gen_ai.operation.name': 'execute_tool',
            'jsonrpc.request.id': String(m.id), 'network.transport': o.transport === 'http' ? 'tcp' : 'pipe',
            ...(t.sessionId ? { 'mcp.session.id': t.sessionId } : {}),
          },
        }, parent);
      }
      pending.set(m.id, { tool, args: truncateArgs(m.params?.arguments), t0: performance.now(), span });
    }
    handler?.(msg, extra);
  };
  // calls still running when the transport closes (the HTTP client left): their
  // results are never sent; audit them as cancelled
  const close = t.close.bind(t);
  t.close = async (): Promise<void> => {
    for (const [id, p] of pending) {
      pending.delete(id);
      const rec: AuditRecord = {
        ts: new Date().toISOString(), event: 'mcp.tools/call', tool: p.tool, arguments: p.args,
        duration_ms: Math.round((performance.now() - p.t0) * 1000) / 1000, result_bytes: 0, is_error: true,
        error: 'cancelled: the transport closed (client gone) before the result', transport: o.transport ?? 'unknown',
      };
      if (t.sessionId) rec.session = t.sessionId;
      if (o.client) rec.client = o.client;
      emit(rec);
      if (p.span) {
        p.span.setAttribute('error.type', 'cancelled');
        p.span.setStatus({ code: SpanStatusCode.ERROR, message: rec.error });
        p.span.end();
      }
    }
    return close();
  };
  const send = t.send.bind(t);
  t.send = async (msg: JSONRPCMessage, opts?: Parameters<Transport['send']>[1]): Promise<void> => {
    const r = msg as { id?: string | number; result?: { isError?: boolean; content?: { type: string; text?: string }[] }; error?: { code: number; message: string } };
    const p = r.id !== undefined && ('result' in r || 'error' in r) ? pending.get(r.id) : undefined;
    if (p) {
      pending.delete(r.id!);
      const bytes = Buffer.byteLength(JSON.stringify(r.result ?? r.error ?? null));
      const isError = !!r.error || !!r.result?.isError;
      const errText = r.error ? `${r.error.code}: ${r.error.message}` : r.result?.isError ? (r.result.content?.find((c) => c.type === 'text')?.text ?? '') : undefined;
      const rec: AuditRecord = {
        ts: new Date().toISOString(), event: 'mcp.tools/call', tool: p.tool, arguments: p.args,
        duration_ms: Math.round((performance.now() - p.t0) * 1000) / 1000, result_bytes: bytes, is_error: isError,
        transport: o.transport ?? 'unknown',
      };
      if (errText !== undefined) rec.error = errText.slice(0, 300);
      if (t.sessionId) rec.session = t.sessionId;
      if (o.client) rec.client = o.client;
      emit(rec);
      if (p.span) {
        p.span.setAttribute('kspan.mcp.result_bytes', bytes);
        if (isError) {
          p.span.setAttribute('error.type', r.error ? String(r.error.code) : 'tool_error');
          p.span.setStatus({ code: SpanStatusCode.ERROR, message: rec.error });
        }
        p.span.end();
      }
    }
    return send(msg, opts);
  };
  return t;
}

export interface StdioOptions extends AuditOptions {
  dataDir: string;
  serviceProcess?: Record<string, string>;
  /** each tool call's time and row budget (default 2 s wall, 5 M events) */
  limits?: BudgetLimits;
  /** diagnostics (default: stderr) */
  diag?: (line: string) => void;
  /** the host this server speaks for (default: the store's latest host record, else this machine) */
  host?: HostIdentity;
  /** peers to fan explain_request / find_slow_requests out to */
  peers?: PeerOptions | null;
}

/** `kspan mcp --data DIR`: serve over stdin/stdout until stdin closes. Resolves on close. */
export async function runStdioServer(o: StdioOptions): Promise<void> {
  const reader = openStoreReader(o.dataDir);
  const host = o.host ?? serverHost({ reader });
  let fanout: FanOut | null = o.peers ? new FanOut({ ...o.peers, self: host }) : null;
  if (fanout && !fanout.peers.configured) fanout = null;
  const server = createKspanMcpServer({ reader, dataDir: o.dataDir, serviceProcess: o.serviceProcess, limits: o.limits, host, fanout });
  const transport = auditTransport(new StdioServerTransport(), { ...o, transport: o.transport ?? 'stdio' });
  const closed = new Promise<void>((resolve) => {
    server.server.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
    process.stdin.once('close', () => resolve());
  });
  await server.connect(transport);
  (o.diag ?? ((l) => process.stderr.write(l + '\n')))(`kspan mcp: serving ${o.dataDir} over stdio (read-only)`);
  await closed;
  await server.close().catch(() => {});
  await fanout?.close();
  await reader.root.close();
}

export type { StoreReader };

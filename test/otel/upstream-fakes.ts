// Stand-in upstreams for the exporter tests, on loopback:
//   - rawToDecoded: a request as @elastic/mockotlpserver's own decoders give it
//     (protobufjs messages over HTTP, @grpc/proto-loader objects over gRPC)
//     turned into kspan's DecodedTraceRequest shape, to compare with what was sent;
//   - FakeGrpcUpstream: a grpc-js server whose answer per call the test chooses
//     (OK, partial success, any status with or without RetryInfo, no answer);
//   - FakeHttpUpstream: the same over node:http;
//   - RawH2Upstream: a bare HTTP/2 server that records the gRPC request as it
//     came on the wire (headers, compressed flag, message bytes);
//   - BlackHole: a TCP server that accepts connections and never answers.

import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer as createH2Server, type Http2Server, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { TRACE_SERVICE_DEFINITION } from '../../src/otel/receiver.js';
import { decodeTraceRequestProtobuf } from '../../src/otel/otlp-decode.js';
import { encodeRpcStatus, encodeTraceResponse } from '../../src/otel/otlp-encode.js';
import type { AnyValue, DecodedTraceRequest, KeyValue, Span } from '../../src/otel/types.js';

// ---------------------------------------------------------------- third-party decoded → DecodedTraceRequest

/* eslint-disable @typescript-eslint/no-explicit-any */
const own = (o: any, k: string): boolean => o != null && Object.prototype.hasOwnProperty.call(o, k);

/** A Long (low/high/unsigned), number or decimal string as a bigint. */
function big(v: any, signed: boolean): bigint {
  if (v == null) return 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' || typeof v === 'string') return BigInt(v);
  const x = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return signed ? BigInt.asIntN(64, x) : BigInt.asUintN(64, x);
}

const hex = (b: any): string => (b && b.length ? Buffer.from(b).toString('hex') : '');
const num = (v: any): number => (v == null ? 0 : typeof v === 'object' ? Number(big(v, false)) : Number(v));

function anyValue(v: any): AnyValue {
  if (v == null) return { type: 'empty' };
  if (own(v, 'stringValue')) return { type: 'string', value: v.stringValue };
  if (own(v, 'boolValue')) return { type: 'bool', value: v.boolValue };
  if (own(v, 'intValue')) return { type: 'int', value: big(v.intValue, true) };
  if (own(v, 'doubleValue')) return { type: 'double', value: v.doubleValue };
  if (own(v, 'arrayValue')) return { type: 'array', value: (v.arrayValue.values ?? []).map(anyValue) };
  if (own(v, 'kvlistValue')) return { type: 'kvlist', value: (v.kvlistValue.values ?? []).map(keyValue) };
  if (own(v, 'bytesValue')) return { type: 'bytes', value: Buffer.from(v.bytesValue) };
  return { type: 'empty' };
}

function keyValue(kv: any): KeyValue {
  return { key: kv.key ?? '', value: anyValue(kv.value) };
}

const attrs = (a: any): KeyValue[] => (a ?? []).map(keyValue);

function span(s: any): Span {
  return {
    traceId: hex(s.traceId), spanId: hex(s.spanId), traceState: s.traceState ?? '', parentSpanId: hex(s.parentSpanId),
    flags: num(s.flags), name: s.name ?? '', kind: num(s.kind),
    startTimeUnixNano: big(s.startTimeUnixNano, false), endTimeUnixNano: big(s.endTimeUnixNano, false),
    attributes: attrs(s.attributes), droppedAttributesCount: num(s.droppedAttributesCount),
    events: (s.events ?? []).map((e: any) => ({
      timeUnixNano: big(e.timeUnixNano, false), name: e.name ?? '', attributes: attrs(e.attributes), droppedAttributesCount: num(e.droppedAttributesCount),
    })),
    droppedEventsCount: num(s.droppedEventsCount),
    links: (s.links ?? []).map((l: any) => ({
      traceId: hex(l.traceId), spanId: hex(l.spanId), traceState: l.traceState ?? '', attributes: attrs(l.attributes),
      droppedAttributesCount: num(l.droppedAttributesCount), flags: num(l.flags),
    })),
    droppedLinksCount: num(s.droppedLinksCount),
    status: { code: num(s.status?.code), message: s.status?.message ?? '' },
  };
}

/** mockotlpserver's raw decoded ExportTraceServiceRequest (either transport) in kspan's shape. */
export function rawToDecoded(raw: any): DecodedTraceRequest {
  return {
    resourceSpans: (raw.resourceSpans ?? []).map((rs: any) => ({
      resource: { attributes: attrs(rs.resource?.attributes), droppedAttributesCount: num(rs.resource?.droppedAttributesCount) },
      scopeSpans: (rs.scopeSpans ?? []).map((ss: any) => ({
        scope: {
          name: ss.scope?.name ?? '', version: ss.scope?.version ?? '', attributes: attrs(ss.scope?.attributes),
          droppedAttributesCount: num(ss.scope?.droppedAttributesCount),
        },
        spans: (ss.spans ?? []).map(span),
        schemaUrl: ss.schemaUrl ?? '',
      })),
      schemaUrl: rs.schemaUrl ?? '',
    })),
  };
}

/** Names the AnyValue field each attribute value was set in, as the third-party decoder saw it (e.g. 'doubleValue'). */
export function rawValueKinds(raw: any): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rs of raw.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) {
    for (const kv of s.attributes ?? []) {
      const v = kv.value ?? {};
      out[kv.key] = ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'].find((k) => own(v, k)) ?? 'empty';
    }
  }
  return out;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

export function spansOf(req: DecodedTraceRequest): Span[] {
  return req.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
}

// ---------------------------------------------------------------- answers

export type Answer =
  | { ok: true; rejectedSpans?: number; message?: string }
  | { grpc: grpc.status; message?: string; retryMs?: number }
  | { http: number; message?: string; retryAfter?: string }
  | 'stall';

export interface Call {
  req: DecodedTraceRequest;
  bytes: number;
  headers: Record<string, string>;
}

/** what a gRPC-status answer becomes over HTTP (for tests that drive both transports with one script) */
const GRPC_TO_HTTP: Partial<Record<number, number>> = {
  [grpc.status.UNAVAILABLE]: 503, [grpc.status.INVALID_ARGUMENT]: 400, [grpc.status.RESOURCE_EXHAUSTED]: 429,
  [grpc.status.UNAUTHENTICATED]: 401, [grpc.status.DEADLINE_EXCEEDED]: 504,
};

abstract class Recording {
  readonly calls: Call[] = [];
  private stalled: (() => void)[] = [];
  constructor(protected readonly answer: (c: Call, n: number) => Answer) {}
  get spans(): Span[] {
    return this.calls.flatMap((c) => spansOf(c.req));
  }
  /** spans of the calls that were answered OK */
  accepted: Span[] = [];
  protected onCall(c: Call): Answer {
    this.calls.push(c);
    const a = this.answer(c, this.calls.length);
    if (a !== 'stall' && 'ok' in a) this.accepted.push(...spansOf(c.req));
    return a;
  }
  protected hold(release: () => void): void {
    this.stalled.push(release);
  }
  protected releaseAll(): void {
    for (const f of this.stalled.splice(0)) f();
  }
  async waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const t0 = Date.now();
    while (!pred()) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${this.calls.length} calls, ${this.accepted.length} spans accepted)`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

export class FakeGrpcUpstream extends Recording {
  private server!: grpc.Server;
  port = 0;
  static async start(answer: (c: Call, n: number) => Answer): Promise<FakeGrpcUpstream> {
    const u = new FakeGrpcUpstream(answer);
    u.server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    u.server.addService(TRACE_SERVICE_DEFINITION, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(call.metadata.getMap())) headers[k] = String(v);
        const a = u.onCall({ req: decodeTraceRequestProtobuf(call.request), bytes: call.request.length, headers });
        if (a === 'stall') { u.hold(() => cb({ code: grpc.status.UNAVAILABLE, details: 'released' })); return; }
        if ('ok' in a) { cb(null, encodeTraceResponse(a.rejectedSpans ?? 0, a.message)); return; }
        const code = 'grpc' in a ? a.grpc : grpc.status.UNKNOWN;
        const metadata = new grpc.Metadata();
        if ('grpc' in a && a.retryMs !== undefined) metadata.set('grpc-status-details-bin', encodeRpcStatus(code, a.message ?? '', a.retryMs));
        cb({ code, details: a.message ?? grpc.status[code], metadata });
      },
    });
    u.port = await new Promise<number>((res, rej) => u.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    return u;
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  async close(): Promise<void> {
    this.releaseAll();
    this.server.forceShutdown();
  }
}

export class FakeHttpUpstream extends Recording {
  private server!: HttpServer;
  port = 0;
  static async start(answer: (c: Call, n: number) => Answer): Promise<FakeHttpUpstream> {
    const u = new FakeHttpUpstream(answer);
    u.server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const a = u.onCall({ req: decodeTraceRequestProtobuf(body), bytes: body.length, headers: flat(req.headers) });
        if (a === 'stall') { u.hold(() => res.destroy()); return; }
        if ('ok' in a) {
          res.writeHead(200, { 'content-type': 'application/x-protobuf' });
          res.end(encodeTraceResponse(a.rejectedSpans ?? 0, a.message));
          return;
        }
        const status = 'http' in a ? a.http : GRPC_TO_HTTP[a.grpc] ?? 500;
        const headers: Record<string, string> = { 'content-type': 'application/x-protobuf' };
        if ('http' in a && a.retryAfter) headers['retry-after'] = a.retryAfter;
        if ('grpc' in a && a.retryMs !== undefined) headers['retry-after'] = String(Math.ceil(a.retryMs / 1000));
        res.writeHead(status, headers);
        res.end(encodeRpcStatus('grpc' in a ? a.grpc : 2, a.message ?? ''));
      });
    });
    await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r));
    u.port = (u.server.address() as AddressInfo).port;
    return u;
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/traces`;
  }
  async close(): Promise<void> {
    this.releaseAll();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

function flat(h: IncomingHttpHeaders | H2Headers): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) o[k] = Array.isArray(v) ? v.join(',') : String(v);
  return o;
}

/** A bare HTTP/2 server speaking just enough gRPC to answer OK, recording each request as it came. */
export class RawH2Upstream {
  readonly requests: { headers: Record<string, string>; compressed: boolean; message: Buffer }[] = [];
  private server!: Http2Server;
  port = 0;
  static async start(): Promise<RawH2Upstream> {
    const u = new RawH2Upstream();
    u.server = createH2Server();
    u.server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const b = Buffer.concat(chunks);
        // gRPC length-prefixed message: 1 byte compressed flag, 4 bytes big-endian length, message
        const compressed = b[0] === 1;
        const msg = b.subarray(5, 5 + b.readUInt32BE(1));
        u.requests.push({ headers: flat(headers), compressed, message: compressed ? gunzipSync(msg) : Buffer.from(msg) });
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0])); // an empty ExportTraceServiceResponse
      });
    });
    await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r));
    u.port = (u.server.address() as AddressInfo).port;
    return u;
  }
  async close(): Promise<void> {
    await new Promise((r) => this.server.close(r));
  }
}

/** Accepts TCP connections and never answers (a stalled upstream). */
export class BlackHole {
  private server!: NetServer;
  private sockets = new Set<Socket>();
  port = 0;
  connections = 0;
  static async start(): Promise<BlackHole> {
    const b = new BlackHole();
    b.server = createNetServer((s) => { b.connections++; b.sockets.add(s); s.on('close', () => b.sockets.delete(s)); s.on('error', () => {}); s.resume(); });
    await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', r));
    b.port = (b.server.address() as AddressInfo).port;
    return b;
  }
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

// OTLP trace receiver: OTLP/HTTP (POST /v1/traces, protobuf or JSON, optional
// gzip) and OTLP/gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export)
// in front of a SpanConsumer. Decoding is ours (otlp-decode.ts); the gRPC
// service definition is hand-written with identity (Buffer) (de)serializers.
//
//   const rx = await OtlpReceiver.start({ consumer, httpAddr: '127.0.0.1:4318', grpcAddr: '127.0.0.1:4317' });
//   rx.httpPort, rx.grpcPort, rx.counters ... await rx.close();
//
// Responses (see src/otel/README.md): 200 + ExportTraceServiceResponse (partial
// success when spans are rejected: empty or all-zero ids, or by the consumer),
// 400 malformed, 413 too large (body, or more objects than DecodeLimits), 415
// content type/encoding, 404/405, 503 when busy (the in-flight memory budget)
// or when the consumer fails (retryable); gRPC INVALID_ARGUMENT /
// RESOURCE_EXHAUSTED (with RetryInfo when busy) / UNAVAILABLE.
//
// Memory: a protobuf body is scanned before it is decoded (scanTraceRequestProtobuf:
// counts spans, events, links, attribute values and the decoded size without
// building anything), so a small body that would expand into millions of
// objects is refused up front; requests in progress share a byte budget
// (body + decompressed body + estimated decoded size), past which new ones get
// a retryable 503 / RESOURCE_EXHAUSTED.

import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzip } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { parseListenAddr } from '../net/index.js';
import {
  checkDecodedLimits, decodeTraceRequestJson, decodeTraceRequestProtobuf, DEFAULT_DECODE_LIMITS, OtlpDecodeError, OtlpLimitError,
  scanTraceRequestJson, scanTraceRequestProtobuf, type DecodeLimits,
} from './otlp-decode.js';
import { encodeRpcStatus, encodeTraceResponse, jsonTraceResponse } from './otlp-encode.js';
import { countSpans, type ConsumeMeta, type DecodedTraceRequest, type SpanConsumer } from './types.js';

export const DEFAULT_OTLP_HTTP_ADDR = '127.0.0.1:4318';
export const DEFAULT_OTLP_GRPC_ADDR = '127.0.0.1:4317';
/** Body limit, on the wire and after decompression. */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
export const TRACES_PATH = '/v1/traces';
export const EXPORT_METHOD_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
/** Requests in progress share this much memory (body, decompressed body, estimated decoded size). */
export const DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024;
/** What a busy receiver tells clients to wait before retrying, ms (Retry-After / RetryInfo). */
const BUSY_RETRY_MS = 1000;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_SPAN_ID = '0'.repeat(16);

export interface ReceiverOptions {
  consumer: SpanConsumer;
  /** a listen address (src/net: host:port, [v6]:port, :port; port 0 = ephemeral); null = no HTTP receiver. Default 127.0.0.1:4318 */
  httpAddr?: string | null;
  /** a listen address (src/net, as httpAddr); null = no gRPC receiver. Default 127.0.0.1:4317 */
  grpcAddr?: string | null;
  /** max request body, compressed and decompressed (default 16 MiB) */
  maxBodyBytes?: number;
  /** per-request bounds on decoded objects (defaults: DEFAULT_DECODE_LIMITS — 100,000 spans, 500,000 events, 500,000 links, 1,000,000 attribute values, 128 MiB decoded) */
  limits?: Partial<DecodeLimits>;
  /** memory shared by the requests in progress (default 256 MiB); past it new requests get 503 / RESOURCE_EXHAUSTED (retryable) */
  maxInflightBytes?: number;
  /** diagnostics (bad requests, consumer failures); default: none */
  log?: (msg: string) => void;
}

export interface ReceiverCounters {
  requests: number;
  spansReceived: number;
  spansRejected: number;
  /** 400 / INVALID_ARGUMENT */
  malformed: number;
  /** 413 / RESOURCE_EXHAUSTED */
  tooLarge: number;
  /** 415, 404, 405 */
  unsupported: number;
  /** consumer threw: 503 / UNAVAILABLE */
  consumerErrors: number;
  /** spans refused for an empty or all-zero trace/span id (partial success; also in spansRejected) */
  invalidIds: number;
  /** requests over the DecodeLimits (spans, events, links, attribute values, decoded size): 413 / INVALID_ARGUMENT */
  overLimits: number;
  /** requests refused while the in-flight budget was used up: 503 / RESOURCE_EXHAUSTED with RetryInfo (retryable) */
  busy: number;
  /** requests refused while the consumer pushed back (its upstream behind: SpanConsumer.saturated): 503 / RESOURCE_EXHAUSTED with RetryInfo (retryable) */
  consumerBusy: number;
}

/** Memory reserved by one request in progress, against the receiver's in-flight budget; `decoded`: its decoded size as estimated before decoding. */
interface Reservation { bytes: number; decoded?: number }

class BusyError extends Error {}

/** gRPC status codes used here (google.rpc.Code). */
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_UNAVAILABLE = 14;

/** Result of handling one request, transport-neutral. */
type Outcome =
  | { ok: true; rejectedSpans: number; message?: string }
  | { ok: false; kind: 'malformed' | 'tooLarge' | 'unavailable'; message: string };

function validIds(traceId: string, spanId: string): boolean {
  return traceId.length === 32 && spanId.length === 16 && traceId !== ZERO_TRACE_ID && spanId !== ZERO_SPAN_ID;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

/** Two-level identity service definition: our decoder does the protobuf work. */
const identity = (b: Buffer): Buffer => b;
export const TRACE_SERVICE_DEFINITION: grpc.ServiceDefinition = {
  Export: {
    path: EXPORT_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'export',
  },
};

export class OtlpReceiver {
  readonly counters: ReceiverCounters = {
    requests: 0, spansReceived: 0, spansRejected: 0, malformed: 0, tooLarge: 0, unsupported: 0, consumerErrors: 0,
    invalidIds: 0, overLimits: 0, busy: 0, consumerBusy: 0,
  };
  readonly maxBodyBytes: number;
  readonly limits: DecodeLimits;
  readonly maxInflightBytes: number;
  /** bytes reserved by the requests in progress */
  private inflightBytes = 0;
  private lastBusyLog = 0;
  private http: HttpServer | null = null;
  private grpcServer: grpc.Server | null = null;
  httpPort = 0;
  grpcPort = 0;
  private readonly log: (msg: string) => void;

  private constructor(private readonly o: ReceiverOptions) {
    this.maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.limits = { ...DEFAULT_DECODE_LIMITS, ...o.limits };
    this.maxInflightBytes = o.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES;
    this.log = o.log ?? (() => {});
  }

  static async start(o: ReceiverOptions): Promise<OtlpReceiver> {
    const rx = new OtlpReceiver(o);
    try {
      const httpAddr = o.httpAddr === undefined ? DEFAULT_OTLP_HTTP_ADDR : o.httpAddr;
      const grpcAddr = o.grpcAddr === undefined ? DEFAULT_OTLP_GRPC_ADDR : o.grpcAddr;
      if (httpAddr !== null) await rx.startHttp(httpAddr);
      if (grpcAddr !== null) await rx.startGrpc(grpcAddr);
    } catch (e) {
      await rx.close();
      throw e;
    }
    return rx;
  }

  async close(): Promise<void> {
    const h = this.http;
    this.http = null;
    if (h) {
      await new Promise<void>((res) => { h.close(() => res()); h.closeAllConnections(); });
    }
    const g = this.grpcServer;
    this.grpcServer = null;
    if (g) {
      await new Promise<void>((res) => {
        const t = setTimeout(() => { g.forceShutdown(); res(); }, 2000);
        g.tryShutdown(() => { clearTimeout(t); res(); });
      });
    }
  }

  // ------------------------------------------------------------ shared

  /** Memory in use for requests in progress (bytes reserved against maxInflightBytes). */
  get inflight(): number {
    return this.inflightBytes;
  }

  /**
   * Reserve `n` more bytes for a request in progress. Refused (false) when
   * other requests hold the budget; a request alone is always let through,
   * whatever its size (the per-request limits bound it).
   */
  private grow(r: Reservation, n: number): boolean {
    if (this.inflightBytes - r.bytes > 0 && this.inflightBytes + n > this.maxInflightBytes) return false;
    this.inflightBytes += n;
    r.bytes += n;
    return true;
  }

  private release(r: Reservation): void {
    this.inflightBytes -= r.bytes;
    r.bytes = 0;
  }

  /** The answer to a request refused for now (retryable), counted; logged at most once per 10 s. `why`: the consumer's reason (else the in-flight budget). */
  private busyMessage(transport: string, why: string | null = null): string {
    if (why) this.counters.consumerBusy++;
    else this.counters.busy++;
    const m = why
      ? `kspan cannot take more spans now: ${why}; retry later`
      : `kspan is busy: requests in progress hold ${Math.round(this.inflightBytes / 1048576)} MiB of the ${Math.round(this.maxInflightBytes / 1048576)} MiB budget; retry later`;
    const now = Date.now();
    if (now - this.lastBusyLog > 10_000) {
      this.lastBusyLog = now;
      this.log(`otlp ${transport}: ${m} (${this.counters.busy + this.counters.consumerBusy} refused so far)`);
    }
    return m;
  }

  /** Scan (protobuf) or bound (JSON) the body, reserve its decoded size, decode. Throws OtlpDecodeError, OtlpLimitError, BusyError. */
  private decodeBounded(body: Buffer, encoding: 'protobuf' | 'json', r: Reservation): DecodedTraceRequest {
    const est = encoding === 'protobuf' ? scanTraceRequestProtobuf(body, this.limits).estimatedBytes : scanTraceRequestJson(body, this.limits);
    if (!this.grow(r, est)) throw new BusyError();
    r.decoded = est;
    const req = encoding === 'protobuf' ? decodeTraceRequestProtobuf(body) : decodeTraceRequestJson(body);
    if (encoding === 'json') checkDecodedLimits(req, this.limits);
    return req;
  }

  private async handle(req: DecodedTraceRequest, meta: Omit<ConsumeMeta, 'spanCount'>): Promise<Outcome> {
    let spanCount = countSpans(req);
    this.counters.spansReceived += spanCount;
    // OTLP: a span with an empty or all-zero trace or span id is invalid. Refused (partial success), not forwarded.
    let invalid = 0;
    for (const rs of req.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        let bad = 0;
        for (const s of ss.spans) if (!validIds(s.traceId, s.spanId)) bad++;
        if (bad) { ss.spans = ss.spans.filter((s) => validIds(s.traceId, s.spanId)); invalid += bad; }
      }
    }
    let invalidMsg: string | undefined;
    if (invalid) {
      spanCount -= invalid;
      this.counters.invalidIds += invalid;
      this.counters.spansRejected += invalid;
      invalidMsg = `${invalid} span(s) rejected: invalid trace id or span id (empty or all zeros)`;
    }
    if (spanCount === 0) return { ok: true, rejectedSpans: invalid, message: invalidMsg };
    try {
      const r = await this.o.consumer.consume(req, { ...meta, spanCount });
      const rejected = Math.max(0, Math.min(spanCount, r.rejectedSpans | 0));
      this.counters.spansRejected += rejected;
      const message = [invalidMsg, r.message].filter(Boolean).join('; ') || undefined;
      return { ok: true, rejectedSpans: rejected + invalid, message };
    } catch (e) {
      this.counters.consumerErrors++;
      const message = `kspan could not accept spans now: ${(e as Error).message}`;
      this.log(`otlp ${meta.transport}: ${message}`);
      return { ok: false, kind: 'unavailable', message };
    }
  }

  // ------------------------------------------------------------ HTTP

  private async startHttp(addr: string): Promise<void> {
    const { host, port } = parseListenAddr(addr);
    const server = createServer((req, res) => {
      this.onHttp(req, res).catch((e) => {
        this.log(`otlp http: internal error: ${(e as Error).stack ?? e}`);
        if (!res.headersSent) { res.statusCode = 500; res.setHeader('Content-Type', 'text/plain'); res.end('internal error\n'); }
        else res.destroy();
      });
    });
    server.on('clientError', (_e, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); else socket.destroy(); });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    this.http = server;
    this.httpPort = (server.address() as AddressInfo).port;
  }

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    const plain = (status: number, msg: string, headers: Record<string, string> = {}): void => {
      this.counters.unsupported++;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
      res.end(msg + '\n');
      req.resume();
    };
    if (path !== TRACES_PATH) return plain(404, `not found: ${path} (OTLP traces go to POST ${TRACES_PATH})`);
    if (req.method !== 'POST') return plain(405, `method ${req.method} not allowed on ${TRACES_PATH}; use POST`, { Allow: 'POST' });
    const ct = (req.headers['content-type'] ?? '').split(';', 1)[0].trim().toLowerCase();
    const encoding = ct === 'application/x-protobuf' ? 'protobuf' : ct === 'application/json' ? 'json' : null;
    if (!encoding) return plain(415, `unsupported Content-Type ${JSON.stringify(ct)}; use application/x-protobuf or application/json`);
    const ce = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (ce !== 'identity' && ce !== 'gzip' && ce !== '') return plain(415, `unsupported Content-Encoding ${JSON.stringify(ce)}; use gzip or none`);
    this.counters.requests++;
    const resv: Reservation = { bytes: 0 };
    try {
      await this.onHttpTraces(req, res, encoding, ce, resv);
    } finally {
      this.release(resv);
    }
  }

  private async onHttpTraces(req: IncomingMessage, res: ServerResponse, encoding: 'protobuf' | 'json', ce: string, resv: Reservation): Promise<void> {
    const fail = (status: number, grpcCode: number, message: string, retryAfterMs?: number): void => {
      if (status === 400) this.counters.malformed++;
      else if (status === 413) this.counters.tooLarge++;
      if (status !== 503 || retryAfterMs === undefined) this.log(`otlp http: ${status} ${message}`); // busy is logged by busyMessage, rate-limited
      const headers: Record<string, string> = {};
      // the body may not have been read: don't keep the connection
      if (status === 413 || retryAfterMs !== undefined) headers.Connection = 'close';
      if (retryAfterMs !== undefined) headers['Retry-After'] = String(Math.ceil(retryAfterMs / 1000));
      if (encoding === 'protobuf') {
        res.writeHead(status, { 'Content-Type': 'application/x-protobuf', ...headers });
        res.end(encodeRpcStatus(grpcCode, message, retryAfterMs));
      } else {
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
        res.end(JSON.stringify({ code: grpcCode, message }));
      }
    };
    const busy = (why: string | null = null): void => {
      req.resume();
      fail(503, GRPC_RESOURCE_EXHAUSTED, this.busyMessage('http', why), BUSY_RETRY_MS);
    };
    // the consumer pushes back before anything is read
    const full = this.o.consumer.saturated?.() ?? null;
    if (full) return busy(full);

    const max = this.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > max) {
      req.resume();
      return fail(413, GRPC_RESOURCE_EXHAUSTED, `request body of ${declared} bytes exceeds the limit of ${max} bytes`);
    }
    if (declared > 0 && !this.grow(resv, declared)) return busy();
    let wire: Buffer;
    try {
      // a chunked body (no Content-Length) reserves its bytes as they come
      wire = await readBody(req, max, declared > 0 ? null : (n) => this.grow(resv, n));
    } catch (e) {
      if (e instanceof BusyError) return busy();
      if (e instanceof HttpError) return fail(e.status, e.status === 413 ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT, e.message);
      throw e;
    }
    let body = wire;
    if (ce === 'gzip') {
      try {
        body = await new Promise<Buffer>((resolve, reject) => gunzip(wire, { maxOutputLength: max }, (err, out) => (err ? reject(err) : resolve(out))));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) return fail(413, GRPC_RESOURCE_EXHAUSTED, `decompressed request body exceeds the limit of ${max} bytes`);
        return fail(400, GRPC_INVALID_ARGUMENT, `invalid gzip body: ${err.message}`);
      }
      if (!this.grow(resv, body.length)) return busy();
    }
    let decoded: DecodedTraceRequest;
    try {
      decoded = this.decodeBounded(body, encoding, resv);
    } catch (e) {
      if (e instanceof OtlpDecodeError) return fail(400, GRPC_INVALID_ARGUMENT, e.message);
      if (e instanceof OtlpLimitError) { this.counters.overLimits++; return fail(413, GRPC_RESOURCE_EXHAUSTED, e.message); }
      if (e instanceof BusyError) return busy();
      throw e;
    }
    const out = await this.handle(decoded, {
      transport: 'http', encoding, wireBytes: wire.length, bodyBytes: body.length, decodedBytes: resv.decoded,
      peer: req.socket.remoteAddress ? `${req.socket.remoteAddress}:${req.socket.remotePort}` : undefined,
      receivedUnixNano: BigInt(Date.now()) * 1_000_000n,
    });
    if (!out.ok) return fail(503, GRPC_UNAVAILABLE, out.message);
    if (encoding === 'protobuf') {
      res.writeHead(200, { 'Content-Type': 'application/x-protobuf' });
      res.end(encodeTraceResponse(out.rejectedSpans, out.message));
    } else {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(jsonTraceResponse(out.rejectedSpans, out.message));
    }
  }

  // ------------------------------------------------------------ gRPC

  private async startGrpc(addr: string): Promise<void> {
    const { host, port } = parseListenAddr(addr);
    const server = new grpc.Server({
      'grpc.max_receive_message_length': this.maxBodyBytes,
      'grpc.max_send_message_length': 1024 * 1024,
    });
    server.addService(TRACE_SERVICE_DEFINITION, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        this.onGrpc(call).then(
          (r) => cb(r.err, r.resp),
          (e) => { this.log(`otlp grpc: internal error: ${(e as Error).stack ?? e}`); cb({ code: grpc.status.INTERNAL, details: 'internal error' }); },
        );
      },
    });
    const bindHost = host.includes(':') ? `[${host}]` : host;
    this.grpcPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${bindHost}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.grpcServer = server;
  }

  private async onGrpc(call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<{ err: grpc.ServiceError | null; resp?: Buffer }> {
    this.counters.requests++;
    const resv: Reservation = { bytes: 0 };
    try {
      return await this.onGrpcTraces(call, resv);
    } finally {
      this.release(resv);
    }
  }

  private async onGrpcTraces(call: grpc.ServerUnaryCall<Buffer, Buffer>, resv: Reservation): Promise<{ err: grpc.ServiceError | null; resp?: Buffer }> {
    const body = call.request;
    const err = (code: grpc.status, details: string, retryAfterMs?: number): { err: grpc.ServiceError } => {
      if (retryAfterMs === undefined) this.log(`otlp grpc: ${grpc.status[code]} ${details}`);
      const metadata = new grpc.Metadata();
      // RESOURCE_EXHAUSTED is retryable for OTLP clients only with a RetryInfo detail
      if (retryAfterMs !== undefined) metadata.set('grpc-status-details-bin', encodeRpcStatus(code, details, retryAfterMs));
      return { err: Object.assign(new Error(details), { code, details, metadata }) };
    };
    const full = this.o.consumer.saturated?.() ?? null;
    if (full) return err(grpc.status.RESOURCE_EXHAUSTED, this.busyMessage('grpc', full), BUSY_RETRY_MS);
    if (!this.grow(resv, body.length)) return err(grpc.status.RESOURCE_EXHAUSTED, this.busyMessage('grpc'), BUSY_RETRY_MS);
    let decoded: DecodedTraceRequest;
    try {
      decoded = this.decodeBounded(body, 'protobuf', resv);
    } catch (e) {
      if (e instanceof OtlpDecodeError) { this.counters.malformed++; return err(grpc.status.INVALID_ARGUMENT, e.message); }
      if (e instanceof OtlpLimitError) { this.counters.overLimits++; return err(grpc.status.INVALID_ARGUMENT, e.message); }
      if (e instanceof BusyError) return err(grpc.status.RESOURCE_EXHAUSTED, this.busyMessage('grpc'), BUSY_RETRY_MS);
      throw e;
    }
    const out = await this.handle(decoded, {
      transport: 'grpc', encoding: 'protobuf', wireBytes: body.length, bodyBytes: body.length, decodedBytes: resv.decoded, peer: call.getPeer(),
      receivedUnixNano: BigInt(Date.now()) * 1_000_000n,
    });
    if (!out.ok) return err(grpc.status.UNAVAILABLE, out.message);
    return { err: null, resp: encodeTraceResponse(out.rejectedSpans, out.message) };
  }
}

/**
 * Reads a request body, failing with 413 past `max` bytes (the rest is drained,
 * not kept). `reserve(n)`, when given, is asked before each chunk is kept;
 * false fails the read with BusyError.
 */
function readBody(req: IncomingMessage, max: number, reserve: ((n: number) => boolean) | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      n += c.length;
      if (n > max) {
        over = true;
        chunks.length = 0;
        reject(new HttpError(413, `request body exceeds the limit of ${max} bytes`));
        return;
      }
      if (reserve && !reserve(c.length)) {
        over = true;
        chunks.length = 0;
        reject(new BusyError());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => { if (!over) resolve(Buffer.concat(chunks, n)); });
    req.on('error', (e) => { if (!over) reject(new HttpError(400, `error reading request body: ${e.message}`)); });
  });
}

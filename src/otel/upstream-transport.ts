// Sending one encoded ExportTraceServiceRequest upstream, and what the answer
// means for the queue (upstream.ts):
//
//   OTLP/gRPC       unary /opentelemetry.proto.collector.trace.v1.TraceService/Export
//                   over @grpc/grpc-js with Buffer (passthrough) (de)serializers
//   OTLP/HTTP       POST <url> (…/v1/traces), application/x-protobuf, node:http(s)
//
// Outcomes (OTLP spec, "Failures" / "Retryable response codes"):
//   ok      accepted; partial_success.rejected_spans counted, its message logged
//   retry   the upstream is down, overloaded or slow: keep the batch, back off
//           (gRPC CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
//           DATA_LOSS, RESOURCE_EXHAUSTED *with* a RetryInfo detail; HTTP 429,
//           502, 503, 504; no answer at all: connection refused/reset, timeout).
//           The server's RetryInfo / Retry-After delay is passed on.
//   split   the data was refused (gRPC INVALID_ARGUMENT, RESOURCE_EXHAUSTED without
//           RetryInfo — message too large —; HTTP 400, 413): some span in the batch
//           may be the cause, so the queue retries the halves and finally drops
//           the one span still refused
//   drop    refused for a reason no retry or split can fix (UNAUTHENTICATED,
//           PERMISSION_DENIED, UNIMPLEMENTED, NOT_FOUND, INTERNAL, UNKNOWN, other
//           HTTP 4xx/5xx): the batch is dropped, counted.

import * as grpc from '@grpc/grpc-js';
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { gzip } from 'node:zlib';
import { decodeRpcStatus, decodeTraceResponse } from './otlp-decode.js';

export const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

export type ExportOutcome =
  | { kind: 'ok'; rejectedSpans: number; message: string }
  | { kind: 'retry'; error: string; delayMs?: number }
  | { kind: 'split'; error: string }
  | { kind: 'drop'; error: string };

/** Sends one encoded request; never rejects (every failure is an outcome). */
export interface ExportTransport {
  send(body: Buffer): Promise<ExportOutcome>;
  close(): Promise<void>;
}

export interface TransportOptions {
  url: string;
  /** one attempt, ms (gRPC deadline / HTTP request timeout) */
  timeoutMs: number;
  compression: boolean;
  headers?: Record<string, string>;
}

const USER_AGENT = 'kspan-otlp-exporter';
/** most of a response body read (partial success, error status) */
const MAX_RESPONSE_BYTES = 64 * 1024;

// ---------------------------------------------------------------- gRPC

const RETRYABLE_GRPC = new Set([
  grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED, grpc.status.ABORTED, grpc.status.OUT_OF_RANGE,
  grpc.status.UNAVAILABLE, grpc.status.DATA_LOSS,
]);

/** What a gRPC status means for the batch (retryDelayMs: from a RetryInfo detail). */
export function classifyGrpc(code: number, details: string, retryDelayMs?: number): ExportOutcome {
  const error = `gRPC ${grpc.status[code] ?? code}${details ? `: ${details}` : ''}`;
  if (RETRYABLE_GRPC.has(code)) return { kind: 'retry', error, delayMs: retryDelayMs };
  if (code === grpc.status.RESOURCE_EXHAUSTED) {
    // with RetryInfo: the server is out of capacity for now; without: this request is too much (e.g. message too large)
    return retryDelayMs !== undefined ? { kind: 'retry', error, delayMs: retryDelayMs } : { kind: 'split', error };
  }
  if (code === grpc.status.INVALID_ARGUMENT) return { kind: 'split', error };
  return { kind: 'drop', error };
}

/** 'http://host:port', 'https://host:port', or a bare 'host:port' (insecure). */
export function grpcTarget(url: string): { target: string; secure: boolean } {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return { target: url, secure: false };
  const u = new URL(url);
  const secure = u.protocol === 'https:' || u.protocol === 'grpcs:';
  const port = u.port || (secure ? '443' : '80');
  return { target: `${u.hostname}:${port}`, secure };
}

const passthrough = (b: Buffer): Buffer => b;

export class GrpcTransport implements ExportTransport {
  private readonly client: grpc.Client;
  private readonly metadata: grpc.Metadata;

  constructor(private readonly o: TransportOptions) {
    const { target, secure } = grpcTarget(o.url);
    this.client = new grpc.Client(target, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
      'grpc.primary_user_agent': USER_AGENT,
      'grpc.default_compression_algorithm': o.compression ? grpc.compressionAlgorithms.gzip : grpc.compressionAlgorithms.identity,
      'grpc.max_send_message_length': -1,
      'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
      // the queue retries (and splits) itself; grpc-js's own retry buffering would only copy each message
      'grpc.enable_retries': 0,
      'grpc.enable_channelz': 0,
      // no keepalive pings: servers (grpc-go: one per 5 min) answer frequent ones with GOAWAY;
      // a dead connection shows up as the next call's deadline
    });
    this.metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(o.headers ?? {})) this.metadata.set(k.toLowerCase(), v);
  }

  send(body: Buffer): Promise<ExportOutcome> {
    return new Promise((resolve) => {
      try {
        this.client.makeUnaryRequest(EXPORT_PATH, passthrough, passthrough, body, this.metadata.clone(), { deadline: Date.now() + this.o.timeoutMs },
          (err: grpc.ServiceError | null, resp?: Buffer) => {
            if (!err) { resolve(okOutcome(resp)); return; }
            let delay: number | undefined;
            const bin = err.metadata?.get('grpc-status-details-bin')?.[0];
            if (Buffer.isBuffer(bin)) {
              try { delay = decodeRpcStatus(bin).retryDelayMs; } catch { /* not a google.rpc.Status */ }
            }
            resolve(classifyGrpc(err.code, err.details ?? err.message, delay));
          });
      } catch (e) {
        resolve({ kind: 'retry', error: `gRPC call failed: ${(e as Error).message}` });
      }
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function okOutcome(resp: Buffer | undefined): ExportOutcome {
  if (!resp || resp.length === 0) return { kind: 'ok', rejectedSpans: 0, message: '' };
  try {
    const r = decodeTraceResponse(resp);
    return { kind: 'ok', rejectedSpans: Math.max(0, r.rejectedSpans), message: r.errorMessage };
  } catch {
    return { kind: 'ok', rejectedSpans: 0, message: '' }; // accepted; the response body is not ours to judge
  }
}

// ---------------------------------------------------------------- HTTP

const RETRYABLE_HTTP = new Set([429, 502, 503, 504]);

/** Retry-After: delay-seconds or an HTTP-date; ms, or undefined. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** What an HTTP status means for the batch. */
export function classifyHttp(status: number, message: string, retryAfterMs?: number): ExportOutcome {
  const error = `HTTP ${status}${message ? `: ${message}` : ''}`;
  if (RETRYABLE_HTTP.has(status)) return { kind: 'retry', error, delayMs: retryAfterMs };
  if (status === 400 || status === 413) return { kind: 'split', error };
  return { kind: 'drop', error };
}

export class HttpTransport implements ExportTransport {
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly request: typeof httpRequest;

  constructor(private readonly o: TransportOptions) {
    this.url = new URL(o.url);
    const secure = this.url.protocol === 'https:';
    this.agent = secure ? new HttpsAgent({ keepAlive: true, maxSockets: 1 }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
    this.request = secure ? httpsRequest : httpRequest;
  }

  async send(raw: Buffer): Promise<ExportOutcome> {
    let body = raw;
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...lower(this.o.headers), 'content-type': 'application/x-protobuf' };
    if (this.o.compression) {
      try {
        body = await new Promise<Buffer>((res, rej) => gzip(raw, (e, out) => (e ? rej(e) : res(out))));
      } catch (e) {
        return { kind: 'retry', error: `gzip failed: ${(e as Error).message}` };
      }
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    return new Promise<ExportOutcome>((resolve) => {
      let done = false;
      const finish = (r: ExportOutcome): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const req = this.request(this.url, { method: 'POST', headers, agent: this.agent }, (res) => {
        readLimited(res, MAX_RESPONSE_BYTES).then((data) => finish(httpOutcome(res, data)), (e: Error) => finish({ kind: 'retry', error: `reading the response: ${e.message}` }));
      });
      const timer = setTimeout(() => {
        finish({ kind: 'retry', error: `no answer within ${this.o.timeoutMs} ms (timeout)` });
        req.destroy();
      }, this.o.timeoutMs);
      req.on('error', (e) => finish({ kind: 'retry', error: e.message || String(e) }));
      req.end(body);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}

function lower(h: Record<string, string> | undefined): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) o[k.toLowerCase()] = v;
  return o;
}

function readLimited(res: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    res.on('data', (c: Buffer) => {
      if (n >= max) return; // keep draining, keep nothing more
      chunks.push(c);
      n += c.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).subarray(0, max)));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
  });
}

function httpOutcome(res: IncomingMessage, data: Buffer): ExportOutcome {
  const status = res.statusCode ?? 0;
  const ct = String(res.headers['content-type'] ?? '').split(';', 1)[0].trim().toLowerCase();
  if (status >= 200 && status < 300) {
    if (ct === 'application/json') {
      try {
        const j = JSON.parse(data.toString('utf8')) as { partialSuccess?: { rejectedSpans?: string | number; errorMessage?: string } };
        return { kind: 'ok', rejectedSpans: Math.max(0, Number(j.partialSuccess?.rejectedSpans ?? 0) || 0), message: j.partialSuccess?.errorMessage ?? '' };
      } catch {
        return { kind: 'ok', rejectedSpans: 0, message: '' };
      }
    }
    return okOutcome(data);
  }
  let message = '';
  if (ct === 'application/x-protobuf') {
    try { message = decodeRpcStatus(data).message; } catch { /* not a Status */ }
  } else if (ct === 'application/json') {
    try { message = String((JSON.parse(data.toString('utf8')) as { message?: unknown }).message ?? ''); } catch { /* not JSON */ }
  }
  if (!message) message = data.toString('utf8').replace(/\s+/g, ' ').trim().slice(0, 200);
  return classifyHttp(status, message, parseRetryAfter(res.headers['retry-after']));
}

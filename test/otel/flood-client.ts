// A hostile OTLP client for receiver-limits.test.ts, in its own process:
// 15 MiB amplification bodies, three of each at once, over OTLP/HTTP and
// OTLP/gRPC, plus OTLP/JSON; reports each answer's status and time over IPC.
//   node --import tsx test/otel/flood-client.ts HTTP_PORT GRPC_PORT

import { request } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { PbWriter } from '../../src/otel/otlp-encode.js';

const [httpPort, grpcPort] = process.argv.slice(2).map(Number);
const MiB = 1024 * 1024;
const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** ExportTraceServiceRequest { resource_spans { scope_spans { [span {] unit × N [}] } } }, ~size bytes */
function flood(unit: number[], size: number, inSpan: boolean): Buffer {
  const fill = Buffer.alloc(Math.floor(size / unit.length) * unit.length, Buffer.from(unit));
  const w = new PbWriter(size + 64);
  w.fork(); w.fork();
  if (inSpan) { w.fork(); w.raw(fill); w.join(2); } else w.raw(fill);
  w.join(2); w.join(1);
  return Buffer.from(w.finish());
}

function jsonEvents(): Buffer {
  const head = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + '1'.padStart(32, '0') + '","spanId":"' + '1'.padStart(16, '0') + '","events":[';
  const n = Math.floor((15 * MiB - head.length) / 3);
  return Buffer.concat([Buffer.from(head), Buffer.alloc(n * 3 - 1, '{},'), Buffer.from(']}]}]}]}')]);
}

const bodies: [string, Buffer][] = [
  ['~7.8 M empty span events', flood([0x5a, 0x00], 15 * MiB, true)],
  ['~7.8 M empty spans', flood([0x12, 0x00], 15 * MiB, false)],
  ['~7.8 M empty attributes', flood([0x4a, 0x00], 15 * MiB, true)],
];

function post(what: string, body: Buffer, type: string): Promise<{ what: string; status: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const r = request({ host: '127.0.0.1', port: httpPort, path: '/v1/traces', method: 'POST', headers: { 'content-type': type } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ what, status: res.statusCode!, ms: performance.now() - t0 }));
    });
    r.on('error', (e) => resolve({ what: `${what} (${e.message})`, status: 0, ms: performance.now() - t0 }));
    r.end(body);
  });
}

function call(what: string, body: Buffer): Promise<{ what: string; code: number; details: string; ms: number }> {
  const t0 = performance.now();
  const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  return new Promise((resolve) => {
    client.makeUnaryRequest(EXPORT, (b: Buffer) => b, (b: Buffer) => b, body, (err) => {
      client.close();
      resolve({ what, code: err?.code ?? 0, details: err?.details ?? '', ms: performance.now() - t0 });
    });
  });
}

const json = jsonEvents();
const [http, grpcs] = await Promise.all([
  Promise.all([...bodies.flatMap(([w, b]) => [post(w, b, 'application/x-protobuf'), post(w, b, 'application/x-protobuf'), post(w, b, 'application/x-protobuf')]),
    post('~5.2 M empty JSON events', json, 'application/json'), post('~5.2 M empty JSON events', json, 'application/json')]),
  Promise.all(bodies.flatMap(([w, b]) => [call(w, b), call(w, b), call(w, b)])),
]);
process.send!({ http, grpc: grpcs }, () => process.exit(0));

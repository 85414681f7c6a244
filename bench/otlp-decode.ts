// OTLP request decoding throughput: realistic ExportTraceServiceRequests (512
// spans, 10 attributes and 2 events each, one resource/scope) serialized by the
// real OTel JS SDK (ProtobufTraceSerializer / JsonTraceSerializer from
// @opentelemetry/otlp-transformer 0.223.0), decoded by src/otel/otlp-decode.ts
// on one core. Median of 5 runs (3 with --quick).
//
//   npm run bench:otlp [-- --quick] [-- --spans N] [-- --runs N]

import { parseArgs } from 'node:util';
import { SpanKind, context, trace, TraceFlags } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { decodeTraceRequestJson, decodeTraceRequestProtobuf } from '../src/otel/otlp-decode.js';
import { countSpans } from '../src/otel/types.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, spans: { type: 'string' }, runs: { type: 'string' } } });
const SPANS = values.spans ? Number(values.spans) : 512;
const RUNS = values.runs ? Number(values.runs) : values.quick ? 3 : 5;
const BUDGET_MS = values.quick ? 300 : 1000; // per run

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function buildSpans() {
  const mem = new InMemorySpanExporter();
  const p = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'vllm-api', 'process.pid': 31337, 'host.name': 'gpu-node-7', 'service.version': '0.9.1' }),
    spanProcessors: [new SimpleSpanProcessor(mem)],
  });
  const tracer = p.getTracer('bench.otlp', '1.0.0');
  const root = trace.setSpanContext(context.active(), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED, isRemote: true });
  const t0 = 1_763_728_000_000_000_000n;
  const hr = (ns: bigint): [number, number] => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
  for (let i = 0; i < SPANS; i++) {
    const st = t0 + BigInt(i) * 1_000_000n;
    const s = tracer.startSpan(`POST /v1/completions ${i % 8}`, {
      kind: SpanKind.SERVER, startTime: hr(st),
      attributes: {
        'http.request.method': 'POST', 'http.route': '/v1/completions', 'http.response.status_code': 200,
        'network.peer.address': '10.1.2.3', 'network.peer.port': 40000 + (i % 1000), 'server.address': 'api.local',
        'linux.tid': 31340 + (i % 16), 'gen_ai.request.id': `cmpl-${i.toString(16).padStart(12, '0')}`,
        'gen_ai.usage.input_tokens': 512 + i, 'gen_ai.request.temperature': 0.7,
      },
    }, root);
    s.addEvent('queued', { 'queue.depth': i % 32, 'scheduler': 'fcfs' }, hr(st + 1_000n));
    s.addEvent('first_token', { 'gen_ai.latency.ttft_s': 0.123 }, hr(st + 500_000n));
    s.end(hr(st + 900_000n));
  }
  await p.forceFlush();
  const spans = mem.getFinishedSpans();
  await p.shutdown();
  return spans;
}

function measure(label: string, bytes: Uint8Array, decode: (b: Uint8Array) => unknown): { spansPerS: number; mbPerS: number } {
  // warm up
  for (let i = 0; i < 20; i++) decode(bytes);
  const rates: number[] = [];
  const mbs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let n = 0;
    const start = process.hrtime.bigint();
    let el = 0;
    do {
      decode(bytes);
      n++;
      el = Number(process.hrtime.bigint() - start) / 1e9;
    } while (el * 1000 < BUDGET_MS);
    rates.push((n * SPANS) / el);
    mbs.push((n * bytes.length) / el / 1e6);
  }
  const out = { spansPerS: median(rates), mbPerS: median(mbs) };
  console.log(`${label}: ${bytes.length} bytes/request, ${SPANS} spans: ${Math.round(out.spansPerS).toLocaleString('en-US')} spans/s, ${out.mbPerS.toFixed(1)} MB/s (median of ${RUNS})`);
  return out;
}

const spans = await buildSpans();
const pb = ProtobufTraceSerializer.serializeRequest(spans)!;
const js = JsonTraceSerializer.serializeRequest(spans)!;
if (countSpans(decodeTraceRequestProtobuf(pb)) !== SPANS || countSpans(decodeTraceRequestJson(js)) !== SPANS) throw new Error('decode check failed');
console.log(`node ${process.version}; request built by @opentelemetry/otlp-transformer 0.223.0 serializers`);
const p = measure('protobuf', pb, decodeTraceRequestProtobuf);
const j = measure('json    ', js, decodeTraceRequestJson);
console.log(`RESULT otlp_decode_spans_per_s ${Math.round(p.spansPerS)}`);
console.log(`RESULT otlp_decode_mb_per_s ${p.mbPerS.toFixed(1)}`);
console.log(`RESULT otlp_decode_json_spans_per_s ${Math.round(j.spansPerS)}`);
console.log(`RESULT otlp_decode_json_mb_per_s ${j.mbPerS.toFixed(1)}`);

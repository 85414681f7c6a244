// examples/vllm without kspan's capture: the stand-in libcudart exports the
// real CUDA runtime names, and the workload alone runs and sends vLLM-shaped
// llm_request spans to a real OtlpReceiver (gRPC and HTTP/protobuf). No root.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildExample, defaultPython, EXAMPLE_DIR } from '../../src/demo/index.js';
import { OtlpReceiver } from '../../src/otel/receiver.js';
import { findAttr, type AnyValue, type ConsumeResult, type DecodedTraceRequest, type KeyValue, type Span, type SpanConsumer } from '../../src/otel/types.js';

class Collect implements SpanConsumer {
  spans: { span: Span; resource: KeyValue[] }[] = [];
  async consume(req: DecodedTraceRequest): Promise<ConsumeResult> {
    for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) for (const span of ss.spans) this.spans.push({ span, resource: rs.resource.attributes });
    return { rejectedSpans: 0 };
  }
}

const val = (v: AnyValue | undefined): unknown => (v && 'value' in v ? (typeof v.value === 'bigint' ? Number(v.value) : v.value) : undefined);

test('the stand-in libcudart exports the real CUDA runtime symbols', () => {
  const libs = buildExample();
  const lib = libs['libcudart.so.12'];
  const nm = spawnSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8' });
  assert.equal(nm.status, 0, nm.stderr);
  const exported = new Set(nm.stdout.split('\n').filter((l) => / T /.test(l)).map((l) => l.trim().split(/\s+/).pop()));
  for (const sym of [
    'cudaLaunchKernel', 'cudaLaunchKernel_ptsz', 'cudaMemcpy', 'cudaMemcpyAsync', 'cudaMemcpyAsync_ptsz',
    'cudaStreamSynchronize', 'cudaStreamSynchronize_ptsz', 'cudaDeviceSynchronize', 'cudaEventSynchronize',
    'cudaStreamCreate', 'cudaMalloc', 'cudaFree', 'cudaGetDeviceCount',
  ]) assert.ok(exported.has(sym), `${sym} exported by ${lib}`);
  const rd = spawnSync('readelf', ['-d', lib], { encoding: 'utf8' });
  assert.match(rd.stdout, /SONAME.*\[libcudart\.so\.12\]/, 'SONAME libcudart.so.12, as the real runtime');
  // the helpers the engine uses are in their own library, not in libcudart
  const helpers = spawnSync('nm', ['-D', '--defined-only', libs['libkspan_vllm_engine.so']], { encoding: 'utf8' });
  assert.match(helpers.stdout, / T kspan_demo_tokenizer_run\b/);
});

async function runWorkload(protocol: 'grpc' | 'http/protobuf', durationS: number) {
  const col = new Collect();
  const rx = await OtlpReceiver.start({ consumer: col, grpcAddr: '127.0.0.1:0', httpAddr: '127.0.0.1:0' });
  try {
    const endpoint = protocol === 'grpc' ? `http://127.0.0.1:${rx.grpcPort}` : `http://127.0.0.1:${rx.httpPort}/v1/traces`;
    const child = spawn(defaultPython(), [join(EXAMPLE_DIR, 'serve.py'), '--duration', String(durationS), '--rate', '15', '--no-neighbour'], {
      env: { ...process.env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol, OTEL_SERVICE_NAME: 'vllm' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events: Record<string, any>[] = [];
    const comms: Record<string, string> = {};
    let buf = '';
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const e = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        events.push(e);
        if (e.event === 'started') {
          // names as the kernel sees them, while the processes run
          comms.engine = readFileSync(`/proc/${e.engine_pid}/comm`, 'utf8').trim();
          comms.tokenizer = readFileSync(`/proc/${e.engine_pid}/task/${e.tokenizer_tid}/comm`, 'utf8').trim();
          comms.api = readFileSync(`/proc/${e.api_pid}/comm`, 'utf8').trim();
        }
      }
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    assert.equal(code, 0, stderr);
    for (let i = 0; i < 50 && col.spans.length < (events.find((e) => e.event === 'done')?.done ?? 0); i++) await new Promise((r) => setTimeout(r, 50));
    return { col, events, comms, stderr };
  } finally {
    await rx.close();
  }
}

for (const protocol of ['grpc', 'http/protobuf'] as const) {
  test(`the workload alone sends llm_request spans over OTLP/${protocol}`, { timeout: 60_000 }, async () => {
    const { col, events, comms } = await runWorkload(protocol, 2.5);
    const started = events.find((e) => e.event === 'started')!;
    const done = events.find((e) => e.event === 'done')!;
    assert.ok(started && done, JSON.stringify(events));
    assert.equal(comms.engine, 'VLLM::EngineCor', 'EngineCore titled like vLLM (comm truncated to 15 bytes)');
    assert.equal(comms.tokenizer, 'tokenizer');
    assert.equal(comms.api, 'vllm');
    assert.notEqual(started.engine_pid, started.api_pid);
    assert.equal(started.engine_tid, started.engine_pid, 'the batch loop runs on the engine\'s main thread');
    assert.ok(done.sent > 10 && done.done === done.sent, `all requests finished: ${done.done}/${done.sent}`);
    assert.ok(done.gpu_calls > done.steps * 10, 'the engine called the stand-in libcudart');
    assert.equal(col.spans.length, done.done, 'one span per request');

    const byTrace = new Map(done.spans.map((s: any) => [s.trace_id, s]));
    for (const { span, resource } of col.spans) {
      assert.equal(span.name, 'llm_request');
      assert.equal(span.kind, 2, 'SERVER');
      assert.equal(span.parentSpanId, '');
      assert.equal(val(findAttr(resource, 'service.name')), 'vllm');
      // like vLLM: the pid of the process that creates the spans (the API server)
      assert.equal(val(findAttr(resource, 'vllm.process_id')), String(started.api_pid));
      assert.equal(findAttr(span.attributes, 'process.pid'), undefined, 'vLLM stamps no process.pid');
      const a = (k: string) => val(findAttr(span.attributes, k)) as number;
      const w = byTrace.get(span.traceId) as any;
      assert.ok(w, 'trace id known to the workload');
      assert.equal(val(findAttr(span.attributes, 'gen_ai.request.id')), w.request_id);
      const durS = Number(span.endTimeUnixNano - span.startTimeUnixNano) / 1e9;
      assert.ok(Math.abs(a('gen_ai.latency.e2e') - durS) < 0.005, `e2e ${a('gen_ai.latency.e2e')} ~ span duration ${durS}`);
      assert.ok(a('gen_ai.latency.time_to_first_token') > 0 && a('gen_ai.latency.time_to_first_token') <= durS);
      assert.ok(a('gen_ai.latency.time_in_queue') >= 0);
      assert.ok(a('gen_ai.latency.time_in_model_prefill') > 0);
      assert.ok(a('gen_ai.latency.time_in_model_decode') >= 0);
      assert.ok(Math.abs(a('gen_ai.latency.time_in_model_inference') - a('gen_ai.latency.time_in_model_prefill') - a('gen_ai.latency.time_in_model_decode')) < 1e-6);
      assert.equal(a('gen_ai.usage.completion_tokens'), w.tokens);
    }
  });
}

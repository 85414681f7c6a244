// The upstream exporter alone: CPU per span to queue, encode and send spans
// to an OTLP sink in another process (kspan's own receiver, counting).
//
//   node --expose-gc --import tsx bench/otlp-export.ts [--spans N] [--runs R] [--http]
//
// Spans look like the pipeline bench's enriched ones: 5 attributes (strings,
// ints), 2 kspan.* events with 6 attributes each. Reported: spans/s (wall,
// until the sink has counted them all) and spans per CPU-second of the
// exporting process (the figure that matters on a shared machine), median
// of R runs.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OtlpReceiver, ResourceRef, UpstreamExporter, type KeyValue, type OutgoingSpan, type Span } from '../src/otel/index.js';

const { values } = parseArgs({ options: { spans: { type: 'string' }, runs: { type: 'string' }, http: { type: 'boolean' }, role: { type: 'string' } } });

if (values.role === 'sink') {
  let n = 0;
  const rx = await OtlpReceiver.start({
    httpAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0',
    consumer: { async consume(req) { for (const rs of req.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length; return { rejectedSpans: 0 }; } },
  });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'count') process.send!({ n });
    if (m.cmd === 'stop') void rx.close().then(() => process.exit(0));
  });
  process.send!({ grpc: rx.grpcPort, http: rx.httpPort });
} else {
  const N = Number(values.spans ?? 100_000);
  const R = Number(values.runs ?? 5);
  const sink = fork(fileURLToPath(import.meta.url), ['--role', 'sink'], { execArgv: ['--import', 'tsx'] });
  const ports = await new Promise<{ grpc: number; http: number }>((r) => sink.once('message', (m) => r(m as { grpc: number; http: number })));
  const count = (): Promise<number> => new Promise((r) => { sink.once('message', (m) => r((m as { n: number }).n)); sink.send({ cmd: 'count' }); });

  const str = (key: string, value: string): KeyValue => ({ key, value: { type: 'string', value } });
  const int = (key: string, value: number): KeyValue => ({ key, value: { type: 'int', value: BigInt(value) } });
  const dbl = (key: string, value: number): KeyValue => ({ key, value: { type: 'double', value } });
  const resource = new ResourceRef([str('service.name', 'bench-api'), str('host.name', 'box1'), int('process.pid', 4242)], '');
  const scope = { name: 'bench', version: '1', attributes: [], droppedAttributesCount: 0 };
  const T = 1_763_730_000_000_000_000n;
  let seq = 0;
  function spans(n: number): OutgoingSpan[] {
    const out: OutgoingSpan[] = [];
    for (let i = 0; i < n; i++) {
      const k = ++seq;
      const s: Span = {
        traceId: (0xbe00000000000000n + BigInt(k >> 2)).toString(16).padStart(32, '0'), spanId: (0x5000000000000000n + BigInt(k)).toString(16).padStart(16, '0'),
        traceState: '', parentSpanId: '', flags: 1, name: 'GET /api/v1/items', kind: 2, startTimeUnixNano: T + BigInt(k) * 1000n, endTimeUnixNano: T + BigInt(k) * 1000n + 5_000_000n,
        attributes: [str('http.route', '/api/v1/items'), int('http.response.status_code', 200), int('linux.tid', 10_000 + (k % 100)), int('process.pid', 10_000), str('kspan.top_cause', 'cpu_preemption')],
        droppedAttributesCount: 0,
        events: [0, 1].map((j) => ({
          timeUnixNano: T + BigInt(k) * 1000n + BigInt(j), name: j ? 'kspan.chain' : 'kspan.cause',
          attributes: [str('kspan.cause.kind', 'cpu_preemption'), str('kspan.severity', 'high'), int('kspan.duration_ns', 1_234_567), dbl('kspan.share', 0.25), int('kspan.culprit.pid', 900), str('kspan.culprit.comm', 'hog')],
          droppedAttributesCount: 0,
        })),
        droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
      };
      out.push({ span: s, resource, scope, scopeSchemaUrl: '' });
    }
    return out;
  }

  const url = values.http ? `http://127.0.0.1:${ports.http}/v1/traces` : `http://127.0.0.1:${ports.grpc}`;
  const rates: number[] = [];
  const perCpu: number[] = [];
  for (let r = 0; r < R + 1; r++) {
    const up = new UpstreamExporter({ url, maxQueueSpans: 10_000_000, maxBatchSpans: 1024, log: (m) => console.error(m) });
    const batches: OutgoingSpan[][] = [];
    for (let i = 0; i < N; i += 256) batches.push(spans(Math.min(256, N - i)));
    const before = await count();
    (globalThis as { gc?: () => void }).gc?.(); // building the spans is not the exporter's garbage
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    // as the pipeline does: 256 spans at a time, yielding between sends
    for (const b of batches) { up.send(b); await new Promise((res) => setImmediate(res)); }
    await up.flush(120_000);
    while ((await count()) - before < N) await new Promise((res) => setTimeout(res, 5));
    const el = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    await up.close();
    if (r === 0) continue; // warm-up
    rates.push(N / el);
    perCpu.push(N / cpu);
    console.log(`run ${r}: ${Math.round(N / el).toLocaleString('en-US')} spans/s, ${Math.round(N / cpu).toLocaleString('en-US')} spans per exporter CPU-s`);
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`RESULT export_spans_per_s ${Math.round(med(rates))} spans/s (${values.http ? 'http/protobuf' : 'grpc'})`);
  console.log(`RESULT export_spans_per_cpu_s ${Math.round(med(perCpu))} spans per CPU-s`);
  sink.send({ cmd: 'stop' });
}

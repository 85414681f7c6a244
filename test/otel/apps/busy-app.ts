// A Node app instrumented with the OTel SDK and kspan's LinuxThreadIdSpanProcessor,
// exporting OTLP/gRPC to KSPAN_OTLP (e.g. http://127.0.0.1:4317). It runs one
// span, `compute`, that spins on the CPU for BUSY_MS of wall time. The test
// pins it to the CPU of a cpu_hog, so part of that time is spent waiting in
// the runqueue behind the hog (the known answer: wall - own CPU time).
// Prints {trace_id, span_id, pid, tid, wall_ns, cpu_ns} on stdout.

import { trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { LinuxThreadIdSpanProcessor, linuxTid } from '../../../src/otel/index.js';

const url = process.env.KSPAN_OTLP;
if (!url) throw new Error('set KSPAN_OTLP');
const busyMs = Number(process.env.BUSY_MS ?? 600);
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'busy-node' }),
  spanProcessors: [new LinuxThreadIdSpanProcessor(), new BatchSpanProcessor(new OTLPTraceExporter({ url }))],
});
const tracer = provider.getTracer('kspan-test-app', '1.0.0');

const span = tracer.startSpan('compute', { attributes: { 'app.busy_ms': busyMs } });
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
let x = 0;
while (Number(process.hrtime.bigint() - t0) < busyMs * 1e6) x += Math.sqrt(x + 1);
const wall = process.hrtime.bigint() - t0;
const c = process.cpuUsage(c0);
span.end();
const ctx = span.spanContext();
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(JSON.stringify({
  trace_id: ctx.traceId, span_id: ctx.spanId, pid: process.pid, tid: linuxTid(),
  wall_ns: Number(wall), cpu_ns: (c.user + c.system) * 1000, x: x > 0,
}) + '\n');
void trace;

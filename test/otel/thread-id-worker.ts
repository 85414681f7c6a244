// Worker body for thread-id-processor.test.ts: its own BasicTracerProvider with
// LinuxThreadIdSpanProcessor + the real OTLP/HTTP protobuf exporter; reports
// its tid (read independently) and waits for 'exit' so the main thread can
// look at /proc/self/task while this thread is alive.

import { parentPort, workerData, threadId } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LinuxThreadIdSpanProcessor } from '../../src/otel/thread-id-processor.js';

const { url } = workerData as { url: string };
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'tid-worker' }),
  spanProcessors: [new LinuxThreadIdSpanProcessor(), new SimpleSpanProcessor(new OTLPTraceExporter({ url }))],
});
const tracer = provider.getTracer('tid-test');
tracer.startSpan('worker-span').end();
tracer.startSpan('worker-span-2').end();
await provider.forceFlush();
await provider.shutdown();
const link = readlinkSync('/proc/thread-self');
parentPort!.postMessage({ link, threadId });
parentPort!.once('message', () => process.exit(0));

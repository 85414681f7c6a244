// Public interface of the OTel bridge: OTLP in (receiver, decoders), the
// enrichment pipeline (per-trace buffer, watermark, kspan.* span events or
// child spans), OTLP out (UpstreamExporter), and the app-side span processor.
//
//   const upstream = new UpstreamExporter({ url: 'http://127.0.0.1:4317' });
//   const pipeline = new EnrichPipeline({ kernel, spanSink: writer.reader.spans, upstream });
//   const receiver = await OtlpReceiver.start({ consumer: pipeline });

export * from './types.js';
export {
  DEFAULT_DECODE_LIMITS, OtlpDecodeError, OtlpLimitError, decodeRpcStatus, decodeTraceRequestJson, decodeTraceRequestProtobuf, decodeTraceResponse,
  scanTraceRequestProtobuf, type DecodeLimits, type OtlpDecodeErrorKind, type RequestScan,
} from './otlp-decode.js';
export { PbWriter, encodeRpcStatus, encodeTraceRequest, encodeTraceResponse, jsonTraceResponse, writeSpanExtra } from './otlp-encode.js';
export {
  DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INFLIGHT_BYTES, DEFAULT_OTLP_GRPC_ADDR, DEFAULT_OTLP_HTTP_ADDR, OtlpReceiver, TRACES_PATH,
  type ReceiverCounters, type ReceiverOptions,
} from './receiver.js';
export { StoreSpanConsumer, type SpanSink, type StoreSpanConsumerOptions } from './store-consumer.js';
export {
  applyEnrichment, enrichSpan, hasKernelData, keyMaskOf, kspanAttributes, kspanChildSpan, kspanChildSpanOf, kspanEnrichment, kspanEvents, writeKspanEnrichment,
  type EnrichOptions, type KspanEnrichment,
} from './enrich.js';
export { ExplainPool, type ExplainPoolCounters, type ExplainPoolOptions } from './explain-pool.js';
export { explainBatch, type BatchResult, type ExplainBatch, type ExplainGroup, type GroupResult } from './explain-worker.js';
export {
  ResourceRef, UpstreamExporter, defaultProtocol, type OutgoingSpan, type UpstreamCounters, type UpstreamOptions, type UpstreamProtocol,
} from './upstream.js';
export {
  GrpcTransport, HttpTransport, classifyGrpc, classifyHttp, parseRetryAfter, type ExportOutcome, type ExportTransport,
} from './upstream-transport.js';
export { createOtlpTraceExporter } from './sdk-exporter.js';
export { EnrichPipeline, type EmitMode, type KernelSide, type PipelineCounters, type PipelineOptions } from './pipeline.js';
export { ATTR_LINUX_TID, ATTR_PROCESS_PID, LinuxThreadIdSpanProcessor, linuxTid, parseThreadSelf } from './thread-id-processor.js';

// The OTel JS SDK's OTLP trace exporter, for spans kspan makes itself (the
// daemon's MCP tool-call tracer). Received spans do not go through it: they
// are forwarded byte-exact by UpstreamExporter (upstream.ts).

import { Metadata } from '@grpc/grpc-js';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter as OtlpGrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultProtocol, type UpstreamOptions } from './upstream.js';

/**
 * The OTel JS OTLP trace exporter for an upstream: gRPC (a bare host:port
 * gets http://) or OTLP/HTTP protobuf, with gzip and headers/metadata.
 */
export function createOtlpTraceExporter(o: Pick<UpstreamOptions, 'url' | 'protocol' | 'timeoutMs' | 'compression' | 'headers'>): SpanExporter {
  const timeoutMillis = o.timeoutMs ?? 10_000;
  if ((o.protocol ?? defaultProtocol(o.url)) === 'grpc') {
    const url = /^[a-z]+:\/\//i.test(o.url) ? o.url : `http://${o.url}`;
    const cfg: ConstructorParameters<typeof OtlpGrpcTraceExporter>[0] = { url, timeoutMillis, concurrencyLimit: 4 };
    if (o.compression) cfg.compression = 'gzip' as never;
    if (o.headers) {
      const md = new Metadata();
      for (const [k, v] of Object.entries(o.headers)) md.set(k, v);
      cfg.metadata = md;
    }
    return new OtlpGrpcTraceExporter(cfg);
  }
  const cfg: ConstructorParameters<typeof OtlpProtoTraceExporter>[0] = { url: o.url, timeoutMillis, concurrencyLimit: 4 };
  if (o.compression) cfg.compression = 'gzip' as never;
  if (o.headers) cfg.headers = o.headers;
  return new OtlpProtoTraceExporter(cfg);
}

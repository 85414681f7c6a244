// A real OTLP receiver standing in for the backend kspan forwards to:
// @elastic/mockotlpserver (gRPC and/or HTTP on loopback), with the spans it
// received, normalized (hex ids, attributes as objects, ints as strings).

import { MockOtlpServer, normalizeTrace } from '@elastic/mockotlpserver';

export interface NormSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, any>;
  events?: { name: string; timeUnixNano: string; attributes: Record<string, any> }[];
  links?: { traceId: string; spanId: string; attributes: Record<string, any> }[];
  status?: { code?: string; message?: string };
}

export interface Received {
  span: NormSpan;
  resource: Record<string, any>;
  scope: { name: string; version?: string };
}

export class UpstreamSink {
  readonly received: Received[] = [];
  requests = 0;
  private waiters: (() => void)[] = [];
  private constructor(private readonly server: MockOtlpServer) {}

  static async start(o: { grpcPort?: number; http?: boolean } = {}): Promise<UpstreamSink> {
    let sink: UpstreamSink | null = null;
    const server = new MockOtlpServer({
      logLevel: 'warn',
      services: o.http ? ['grpc', 'http'] : ['grpc'],
      grpcHostname: '127.0.0.1', grpcPort: o.grpcPort ?? 0, httpHostname: '127.0.0.1', httpPort: 0,
      onTrace: (raw: unknown) => sink!.add(raw),
    });
    sink = new UpstreamSink(server);
    await server.start();
    return sink;
  }

  get grpcUrl(): string {
    return String(this.server.grpcUrl).replace(/\/$/, '');
  }

  get httpTracesUrl(): string {
    return `${String(this.server.httpUrl).replace(/\/$/, '')}/v1/traces`;
  }

  private add(raw: unknown): void {
    this.requests++;
    const t = normalizeTrace(raw) as any;
    for (const rs of t.resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) {
        for (const span of ss.spans ?? []) this.received.push({ span, resource: rs.resource?.attributes ?? {}, scope: ss.scope ?? { name: '' } });
      }
    }
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `pred` holds over the received spans, or rejects after timeoutMs. */
  async waitFor(pred: (r: Received[]) => boolean, timeoutMs: number, what = 'spans'): Promise<void> {
    const t0 = Date.now();
    while (!pred(this.received)) {
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new Error(`upstream: timed out after ${timeoutMs} ms waiting for ${what} (got ${this.received.length} spans)`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 200));
        this.waiters.push(() => { clearTimeout(t); res(); });
      });
    }
  }

  async span(spanId: string, timeoutMs = 15_000): Promise<Received> {
    await this.waitFor((r) => r.some((x) => x.span.spanId === spanId), timeoutMs, `span ${spanId}`);
    return this.received.find((x) => x.span.spanId === spanId)!;
  }

  async close(): Promise<void> {
    await this.server.close();
  }
}

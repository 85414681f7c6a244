// SpanConsumer that writes received spans to the store's span index
// (SpanIndex.putSpans), mapping the correlation attributes:
//   service            resource service.name (default 'unknown_service')
//   tid                linux.tid (span, then resource); thread.id only with threadIdIsOsTid
//   pid                process.pid (span, then resource)
//   processId          the first PROCESS_ID_ATTRIBUTES present (vllm.process_id, ...)
//   requestId          the first REQUEST_ID_ATTRIBUTES present (gen_ai.request.id, x-request-id, ...)
//   attributes         KEPT_ATTRIBUTES, scalars only
// (the attribute lists: src/store/service-attributes.ts, one entry per kind of server)
// Spans without a valid trace/span id are rejected (partial success).

import { KEPT_ATTRIBUTES, PROCESS_ID_ATTRIBUTES, REQUEST_ID_ATTRIBUTES, type SpanInput } from '../store/index.js';
import { findAttr, type AnyValue, type ConsumeMeta, type ConsumeResult, type DecodedTraceRequest, type KeyValue, type Span, type SpanConsumer } from './types.js';

export interface SpanSink {
  putSpans(spans: SpanInput[]): Promise<void>;
  /** false while the store cannot commit (disk full): spans are counted as not stored without trying */
  writable?(): boolean;
}

export interface StoreSpanConsumerOptions {
  /** treat thread.id as the Linux TID when linux.tid is absent (semconv: thread.id is a managed id; default false) */
  threadIdIsOsTid?: boolean;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

function scalar(v: AnyValue | undefined): string | number | boolean | undefined {
  if (!v) return undefined;
  switch (v.type) {
    case 'string': case 'bool': case 'double': return v.value;
    case 'int': return Number(v.value);
    // semconv header attributes are string arrays (one per header line): the first
    case 'array': return v.value.length && v.value[0].type === 'string' ? v.value[0].value : undefined;
    default: return undefined;
  }
}

function intOf(v: AnyValue | undefined): number | null {
  const s = scalar(v);
  if (typeof s === 'number' && Number.isSafeInteger(s) && s >= 0) return s;
  if (typeof s === 'string' && /^[0-9]{1,15}$/.test(s)) return Number(s);
  return null;
}

function strOf(v: AnyValue | undefined): string | null {
  const s = scalar(v);
  return s === undefined ? null : String(s);
}

function attr(span: KeyValue[], res: KeyValue[], key: string): AnyValue | undefined {
  return findAttr(span, key) ?? findAttr(res, key);
}

/** The value of the first of `keys` the span (or its resource) has. */
function firstOf(span: KeyValue[], res: KeyValue[], keys: readonly string[]): string | null {
  for (const k of keys) {
    const v = strOf(attr(span, res, k));
    if (v !== null) return v;
  }
  return null;
}

export class StoreSpanConsumer implements SpanConsumer {
  /** spans written / rejected since start */
  stored = 0;
  rejected = 0;

  constructor(private readonly sink: SpanSink, private readonly o: StoreSpanConsumerOptions = {}) {}

  /** Map one span; null when it cannot be stored (reason in `why`). */
  toSpanInput(s: Span, resource: KeyValue[], why: string[]): SpanInput | null {
    if (s.traceId.length !== 32 || s.traceId === ZERO_TRACE) { why.push(`span ${JSON.stringify(s.name)}: invalid trace id`); return null; }
    if (s.spanId.length !== 16 || s.spanId === ZERO_SPAN) { why.push(`span ${JSON.stringify(s.name)}: invalid span id`); return null; }
    const service = (strOf(findAttr(resource, 'service.name')) ?? 'unknown_service').replace(/\0/g, '');
    let tid = intOf(attr(s.attributes, resource, 'linux.tid'));
    if (tid === null && this.o.threadIdIsOsTid) tid = intOf(attr(s.attributes, resource, 'thread.id'));
    const attributes: Record<string, string | number | boolean> = {};
    for (const k of KEPT_ATTRIBUTES) {
      const v = scalar(attr(s.attributes, resource, k));
      if (v !== undefined) attributes[k] = v;
    }
    return {
      traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId === '' || s.parentSpanId === ZERO_SPAN ? null : s.parentSpanId,
      service: service || 'unknown_service', name: s.name, startUnixNano: s.startTimeUnixNano,
      endUnixNano: s.endTimeUnixNano < s.startTimeUnixNano ? s.startTimeUnixNano : s.endTimeUnixNano,
      kind: s.kind, statusCode: s.status.code,
      pid: intOf(attr(s.attributes, resource, 'process.pid')), tid,
      processId: firstOf(s.attributes, resource, PROCESS_ID_ATTRIBUTES),
      requestId: firstOf(s.attributes, resource, REQUEST_ID_ATTRIBUTES),
      attributes,
    };
  }

  async consume(req: DecodedTraceRequest, _meta: ConsumeMeta): Promise<ConsumeResult> {
    const out: SpanInput[] = [];
    const why: string[] = [];
    let rejected = 0;
    for (const rs of req.resourceSpans) {
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          const si = this.toSpanInput(s, rs.resource.attributes, why);
          if (si) out.push(si); else rejected++;
        }
      }
    }
    if (out.length) await this.sink.putSpans(out);
    this.stored += out.length;
    this.rejected += rejected;
    if (!rejected) return { rejectedSpans: 0 };
    const more = why.length > 3 ? ` (and ${why.length - 3} more)` : '';
    return { rejectedSpans: rejected, message: why.slice(0, 3).join('; ') + more };
  }
}

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

/**
 * Every attribute key the mapping reads, numbered. A span's values are
 * gathered in one pass over its attributes and its resource's (a lookup per
 * attribute), not one scan of both lists per key read (~40 keys).
 */
const SLOT = new Map<string, number>();
for (const k of ['linux.tid', 'thread.id', 'process.pid', ...KEPT_ATTRIBUTES, ...PROCESS_ID_ATTRIBUTES, ...REQUEST_ID_ATTRIBUTES]) {
  if (!SLOT.has(k)) SLOT.set(k, SLOT.size);
}
const slotOf = (k: string): number => SLOT.get(k)!;
const TID = slotOf('linux.tid');
const THREAD_ID = slotOf('thread.id');
const PID = slotOf('process.pid');
const KEPT = KEPT_ATTRIBUTES.map(slotOf);
const PROCESS_IDS = PROCESS_ID_ATTRIBUTES.map(slotOf);
const REQUEST_IDS = REQUEST_ID_ATTRIBUTES.map(slotOf);

/** The span's values of the keys in SLOT: the span's first attribute of a key, else its resource's first (reused). */
const values: (AnyValue | undefined)[] = new Array(SLOT.size);
function gather(span: KeyValue[], res: KeyValue[]): (AnyValue | undefined)[] {
  values.fill(undefined);
  fill(span);
  fill(res);
  return values;
}
function fill(list: KeyValue[]): void {
  for (let i = 0; i < list.length; i++) {
    const k = SLOT.get(list[i].key);
    if (k !== undefined && values[k] === undefined) values[k] = list[i].value;
  }
}

/** The value of the first of `slots` present. */
function firstOf(v: (AnyValue | undefined)[], slots: readonly number[]): string | null {
  for (const k of slots) {
    const x = strOf(v[k]);
    if (x !== null) return x;
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
    const v = gather(s.attributes, resource);
    let tid = intOf(v[TID]);
    if (tid === null && this.o.threadIdIsOsTid) tid = intOf(v[THREAD_ID]);
    const attributes: Record<string, string | number | boolean> = {};
    for (let i = 0; i < KEPT.length; i++) {
      const x = scalar(v[KEPT[i]]);
      if (x !== undefined) attributes[KEPT_ATTRIBUTES[i]] = x;
    }
    return {
      traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId === '' || s.parentSpanId === ZERO_SPAN ? null : s.parentSpanId,
      service: service || 'unknown_service', name: s.name, startUnixNano: s.startTimeUnixNano,
      endUnixNano: s.endTimeUnixNano < s.startTimeUnixNano ? s.startTimeUnixNano : s.endTimeUnixNano,
      kind: s.kind, statusCode: s.status.code,
      pid: intOf(v[PID]), tid,
      processId: firstOf(v, PROCESS_IDS),
      requestId: firstOf(v, REQUEST_IDS),
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

// What kspan writes into a span: the correlator's explanation of it as span
// attributes (time breakdown, how the span was joined to kernel threads) and
// span events in the `kspan.` namespace (DESIGN §5): one `kspan.cause` per
// cause, one `kspan.chain` per step of a cause's causal chain. Event names
// are fixed; ids and numbers go in attributes.
//
// Two ways to deliver it:
//   enrichSpan(span, e)       the span itself gets the attributes and events
//                             (in-line mode: kspan forwards the span)
//   kspanChildSpan(span, e)   a new span `kspan` under the original one
//                             (child-span mode: the original was exported
//                             elsewhere and must not be re-sent amended)

import { randomBytes } from 'node:crypto';
import type { SpanExplanation } from '../correlator/index.js';
import type { AnyValue, KeyValue, Span, SpanEvent } from './types.js';

export interface EnrichOptions {
  /** most causes written per span (largest first), default 8 */
  maxCauses?: number;
  /**
   * most span events written per span, causes and chain steps together
   * (default 128). SDK span limits do not apply here (kspan builds the spans
   * it exports itself); this bound keeps one span small. Steps past it are
   * counted in `kspan.events_omitted`.
   */
  maxEvents?: number;
}

const BREAKDOWN_KEYS = ['on_cpu', 'runqueue', 'futex', 'io', 'sleep', 'cuda_sync', 'unknown'] as const;

function str(value: string): AnyValue {
  return { type: 'string', value };
}
function int(value: number): AnyValue {
  return { type: 'int', value: BigInt(Math.round(value)) };
}
function dbl(value: number): AnyValue {
  return { type: 'double', value };
}
function put(out: KeyValue[], key: string, v: string | number | boolean | null | undefined, asDouble = false): void {
  if (v === null || v === undefined) return;
  if (typeof v === 'string') out.push({ key, value: str(v) });
  else if (typeof v === 'boolean') out.push({ key, value: { type: 'bool', value: v } });
  else if (Number.isFinite(v)) out.push({ key, value: asDouble || !Number.isInteger(v) ? dbl(v) : int(v) });
}

/** Does the explanation say anything about the kernel (a join and some captured time)? */
export function hasKernelData(e: SpanExplanation): boolean {
  if (e.correlation.method === 'none') return false;
  return e.breakdown_ns.unknown < e.duration_ns;
}

/** Span attributes: breakdown, correlation, data quality, top cause. */
export function kspanAttributes(e: SpanExplanation): KeyValue[] {
  const out: KeyValue[] = [];
  put(out, 'kspan.correlation.method', e.correlation.method);
  put(out, 'kspan.correlation.pid', e.correlation.pid);
  put(out, 'kspan.correlation.tid', e.correlation.tid);
  // the host whose kernel explained the span (DESIGN §9)
  if (e.host?.name) put(out, 'kspan.host.name', e.host.name);
  for (const k of BREAKDOWN_KEYS) put(out, `kspan.${k}_ns`, e.breakdown_ns[k]);
  const top = e.causes[0];
  if (top) {
    put(out, 'kspan.top_cause', top.kind);
    put(out, 'kspan.top_cause.severity', top.severity);
  }
  const dq = e.data_quality;
  if (dq) {
    put(out, 'kspan.data.coverage', dq.coverage, true);
    put(out, 'kspan.data.lost_events', dq.lost_events);
    if (dq.settling) {
      put(out, 'kspan.data.settling', true);
      put(out, 'kspan.data.not_ingested_ns', dq.not_ingested_ns ?? 0);
    }
  }
  return out;
}

/** The `kspan.cause` and `kspan.chain` events of an explanation, bounded. */
export function kspanEvents(e: SpanExplanation, spanStart: bigint, o: EnrichOptions = {}): { events: SpanEvent[]; omitted: number } {
  const maxCauses = o.maxCauses ?? 8;
  const maxEvents = o.maxEvents ?? 128;
  const events: SpanEvent[] = [];
  let omitted = 0;
  const causes = e.causes.slice(0, maxCauses);
  omitted += e.causes.length - causes.length;
  // causes first (all of them fit before any chain step), then their chains
  causes.forEach((c, index) => {
    const attributes: KeyValue[] = [];
    put(attributes, 'kspan.cause.kind', c.kind);
    put(attributes, 'kspan.cause.index', index);
    put(attributes, 'kspan.severity', c.severity);
    put(attributes, 'kspan.duration_ns', c.duration_ns);
    put(attributes, 'kspan.share', c.share, true);
    if (c.culprit) {
      put(attributes, 'kspan.culprit.pid', c.culprit.pid);
      put(attributes, 'kspan.culprit.tid', c.culprit.tid);
      put(attributes, 'kspan.culprit.comm', c.culprit.comm);
      if (c.culprit.observer) put(attributes, 'kspan.culprit.observer', true);
    }
    if (c.shared) put(attributes, 'kspan.shared', true);
    if (c.concurrent_spans !== undefined) put(attributes, 'kspan.concurrent_spans', c.concurrent_spans);
    put(attributes, 'kspan.summary', c.summary);
    put(attributes, 'kspan.remediation', c.remediation);
    if (events.length < maxEvents) events.push({ timeUnixNano: firstEvidence(c.evidence, spanStart), name: 'kspan.cause', attributes, droppedAttributesCount: 0 });
    else omitted++;
  });
  causes.forEach((c, index) => {
    for (const step of c.chain) {
      if (events.length >= maxEvents) { omitted++; continue; }
      const attributes: KeyValue[] = [];
      put(attributes, 'kspan.cause.index', index);
      put(attributes, 'kspan.cause.kind', c.kind);
      for (const [k, v] of Object.entries(step)) put(attributes, `kspan.chain.${k}`, v);
      events.push({ timeUnixNano: firstEvidence(c.evidence, spanStart), name: 'kspan.chain', attributes, droppedAttributesCount: 0 });
    }
  });
  return { events, omitted };
}

function firstEvidence(ev: SpanExplanation['causes'][number]['evidence'], fallback: bigint): bigint {
  let best: bigint | null = null;
  for (const x of ev) {
    if (!/^[0-9]+$/.test(x.start_unix_nano)) continue;
    const t = BigInt(x.start_unix_nano);
    if (best === null || t < best) best = t;
  }
  return best !== null && best > fallback ? best : fallback;
}

/**
 * What kspan writes into one span: its attributes and events (bounded). Plain
 * data (structured-cloneable): explain workers build it and the pipeline
 * applies it on the receiving thread.
 */
export interface KspanEnrichment {
  attributes: KeyValue[];
  events: SpanEvent[];
  /** explained before its whole window was ingested (data_quality.settling) */
  settling: boolean;
}

/** The attributes and events of an explanation for a span that starts at `spanStart`. */
export function kspanEnrichment(e: SpanExplanation, spanStart: bigint, o: EnrichOptions = {}): KspanEnrichment {
  const attributes = kspanAttributes(e);
  const { events, omitted } = kspanEvents(e, spanStart, o);
  if (omitted) put(attributes, 'kspan.events_omitted', omitted);
  return { attributes, events, settling: !!e.data_quality?.settling };
}

/**
 * Every attribute key kspanAttributes can write (and kspan.events_omitted):
 * an enrichment's keys as a bit mask (bit i: KSPAN_ATTR_KEYS[i]), which is
 * what an explain worker sends with its encoded attributes.
 */
export const KSPAN_ATTR_KEYS: readonly string[] = [
  'kspan.correlation.method', 'kspan.correlation.pid', 'kspan.correlation.tid', 'kspan.host.name',
  ...BREAKDOWN_KEYS.map((k) => `kspan.${k}_ns`),
  'kspan.top_cause', 'kspan.top_cause.severity', 'kspan.data.coverage', 'kspan.data.lost_events', 'kspan.data.settling',
  'kspan.data.not_ingested_ns', 'kspan.events_omitted',
];
const KEY_BIT = new Map(KSPAN_ATTR_KEYS.map((k, i) => [k, 1 << i]));

/** The bit mask of an enrichment's attribute keys (KSPAN_ATTR_KEYS). */
export function keyMaskOf(attributes: readonly KeyValue[]): number {
  let m = 0;
  for (const a of attributes) {
    const b = KEY_BIT.get(a.key);
    if (b === undefined) throw new Error(`kspan attribute ${a.key} has no key bit`);
    m |= b;
  }
  return m;
}

/**
 * In-line mode, from an explain worker: the span gets kspan's attributes and
 * events as encoded bytes (Span.encodedExtra); the keys of the attributes
 * (mask) and its own kspan.* events are removed from it as applyEnrichment does.
 */
export function applyEncodedEnrichment(span: Span, bytes: Uint8Array, keyMask: number): void {
  let theirs = false;
  for (const a of span.attributes) {
    if (a.key.startsWith('kspan.') && ((KEY_BIT.get(a.key) ?? 0) & keyMask) !== 0) { theirs = true; break; }
  }
  if (theirs) span.attributes = span.attributes.filter((a) => ((KEY_BIT.get(a.key) ?? 0) & keyMask) === 0);
  let oldEvents = false;
  for (const ev of span.events) if (ev.name.startsWith('kspan.')) { oldEvents = true; break; }
  if (oldEvents) span.events = span.events.filter((ev) => !ev.name.startsWith('kspan.'));
  span.encodedExtra = bytes;
}

/** In-line mode: add an enrichment to the span (in place); a re-enriched span (kspan behind kspan) keeps one copy of each key. */
export function applyEnrichment(span: Span, x: KspanEnrichment): void {
  const attrs = x.attributes;
  const ours = new Set<string>();
  for (const a of attrs) ours.add(a.key);
  let theirs = false;
  for (const a of span.attributes) if (ours.has(a.key)) { theirs = true; break; }
  span.attributes = (theirs ? span.attributes.filter((a) => !ours.has(a.key)) : span.attributes).concat(attrs);
  let oldEvents = false;
  for (const ev of span.events) if (ev.name.startsWith('kspan.')) { oldEvents = true; break; }
  span.events = (oldEvents ? span.events.filter((ev) => !ev.name.startsWith('kspan.')) : span.events).concat(x.events);
}

/** In-line mode: add kspan's attributes and events to the span (in place). */
export function enrichSpan(span: Span, e: SpanExplanation, o: EnrichOptions = {}): void {
  applyEnrichment(span, kspanEnrichment(e, span.startTimeUnixNano, o));
}

/** Child-span mode: a `kspan` span under `parent` carrying an enrichment's attributes and events. */
export function kspanChildSpanOf(parent: Span, x: KspanEnrichment): Span {
  return {
    traceId: parent.traceId,
    spanId: newSpanId(),
    traceState: parent.traceState,
    parentSpanId: parent.spanId,
    flags: parent.flags & 0xff,
    name: 'kspan',
    kind: 1, // internal
    startTimeUnixNano: parent.startTimeUnixNano,
    endTimeUnixNano: parent.endTimeUnixNano,
    attributes: x.attributes,
    droppedAttributesCount: 0,
    events: x.events,
    droppedEventsCount: 0,
    links: [],
    droppedLinksCount: 0,
    status: { code: 0, message: '' },
  };
}

/** Child-span mode: a `kspan` span under `parent` carrying the same attributes and events. */
export function kspanChildSpan(parent: Span, e: SpanExplanation, o: EnrichOptions = {}): Span {
  return kspanChildSpanOf(parent, kspanEnrichment(e, parent.startTimeUnixNano, o));
}

function newSpanId(): string {
  for (;;) {
    const id = randomBytes(8).toString('hex');
    if (id !== '0000000000000000') return id;
  }
}

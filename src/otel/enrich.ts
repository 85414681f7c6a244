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
import { PbWriter, writeSpanExtra } from './otlp-encode.js';
import type { KeyValue, Span, SpanEvent } from './types.js';

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
const BREAKDOWN_ATTRS = BREAKDOWN_KEYS.map((k) => `kspan.${k}_ns`);

/**
 * Where kspan's attributes go. The rules below (which keys, which types, in
 * which order) are written once against this interface; ObjectAttrs builds
 * KeyValue objects (in-line on the receiving thread, child spans), PbAttrs
 * writes the protobuf bytes directly (explain workers: no objects per
 * attribute to build, walk and collect).
 */
interface AttrOut {
  str(key: string, v: string): void;
  int(key: string, v: number): void;
  dbl(key: string, v: number): void;
  bool(key: string, v: boolean): void;
}

/** The attribute kinds put() writes, as OTLP types: strings, bools, ints (rounded), doubles (non-integers, or asDouble). */
function put(out: AttrOut, key: string, v: string | number | boolean | null | undefined, asDouble = false): void {
  if (v === null || v === undefined) return;
  if (typeof v === 'string') out.str(key, v);
  else if (typeof v === 'boolean') out.bool(key, v);
  else if (Number.isFinite(v)) {
    if (asDouble || !Number.isInteger(v)) out.dbl(key, v);
    else out.int(key, v);
  }
}

class ObjectAttrs implements AttrOut {
  constructor(readonly list: KeyValue[] = []) {}
  str(key: string, value: string): void { this.list.push({ key, value: { type: 'string', value } }); }
  int(key: string, value: number): void { this.list.push({ key, value: { type: 'int', value: BigInt(Math.round(value)) } }); }
  dbl(key: string, value: number): void { this.list.push({ key, value: { type: 'double', value } }); }
  bool(key: string, value: boolean): void { this.list.push({ key, value: { type: 'bool', value } }); }
}

/** KeyValue messages written as repeated field `field` of the enclosing message, bytes as writeAttrs makes them. */
class PbAttrs implements AttrOut {
  /** KSPAN_ATTR_KEYS bits of the keys written (span attributes) */
  mask = 0;
  constructor(readonly w: PbWriter, readonly field: number, readonly spanAttrs: boolean) {}
  private begin(key: string): void {
    if (this.spanAttrs) {
      const b = KEY_BIT.get(key);
      if (b === undefined) throw new Error(`kspan attribute ${key} has no key bit`);
      this.mask |= b;
    }
    this.w.fork();
    this.w.string(1, key);
    this.w.fork();
  }
  private end(): void {
    this.w.join(2);
    this.w.join(this.field);
  }
  str(key: string, v: string): void { this.begin(key); this.w.string(1, v); this.end(); }
  int(key: string, v: number): void {
    this.begin(key);
    const r = Math.round(v);
    this.w.tag(3, 0);
    // varint64 writes a non-negative value below 2^48 as varint does
    if (r >= 0 && r <= 0xffffffffffff) this.w.varint(r);
    else this.w.varint64(BigInt(r));
    this.end();
  }
  dbl(key: string, v: number): void { this.begin(key); this.w.double(4, v); this.end(); }
  bool(key: string, v: boolean): void { this.begin(key); this.w.tag(2, 0); this.w.varint(v ? 1 : 0); this.end(); }
}

/** Where kspan's span events go: SpanEvent objects, or Span field 11 bytes. */
interface EventOut {
  /** a new event; its attributes go to the returned AttrOut until end() */
  begin(timeUnixNano: bigint, name: string): AttrOut;
  end(): void;
}

class ObjectEvents implements EventOut {
  readonly list: SpanEvent[] = [];
  private cur: { t: bigint; name: string; attrs: ObjectAttrs } | null = null;
  begin(t: bigint, name: string): AttrOut {
    this.cur = { t, name, attrs: new ObjectAttrs() };
    return this.cur.attrs;
  }
  end(): void {
    const c = this.cur!;
    this.list.push({ timeUnixNano: c.t, name: c.name, attributes: c.attrs.list, droppedAttributesCount: 0 });
    this.cur = null;
  }
}

class PbEvents implements EventOut {
  private readonly attrs: PbAttrs;
  constructor(readonly w: PbWriter) {
    this.attrs = new PbAttrs(w, 3, false);
  }
  begin(t: bigint, name: string): AttrOut {
    // as writeEvents: time (when set), name (when set), attributes; droppedAttributesCount 0 is omitted
    this.w.fork();
    if (t !== 0n) this.w.fixed64(1, t);
    if (name !== '') this.w.string(2, name);
    return this.attrs;
  }
  end(): void {
    this.w.join(11);
  }
}

/** Does the explanation say anything about the kernel (a join and some captured time)? */
export function hasKernelData(e: SpanExplanation): boolean {
  if (e.correlation.method === 'none') return false;
  return e.breakdown_ns.unknown < e.duration_ns;
}

/** Span attributes: breakdown, correlation, data quality, top cause. */
function writeKspanAttributes(out: AttrOut, e: SpanExplanation): void {
  put(out, 'kspan.correlation.method', e.correlation.method);
  put(out, 'kspan.correlation.pid', e.correlation.pid);
  put(out, 'kspan.correlation.tid', e.correlation.tid);
  // the host whose kernel explained the span (DESIGN §9)
  if (e.host?.name) put(out, 'kspan.host.name', e.host.name);
  for (let k = 0; k < BREAKDOWN_KEYS.length; k++) put(out, BREAKDOWN_ATTRS[k], e.breakdown_ns[BREAKDOWN_KEYS[k]]);
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
}

/** Span attributes: breakdown, correlation, data quality, top cause. */
export function kspanAttributes(e: SpanExplanation): KeyValue[] {
  const out = new ObjectAttrs();
  writeKspanAttributes(out, e);
  return out.list;
}

/** `kspan.chain.<key>` for a chain step's keys (a few distinct keys: built once each) */
const CHAIN_KEYS = new Map<string, string>();
function chainKey(k: string): string {
  let v = CHAIN_KEYS.get(k);
  if (v === undefined) {
    v = `kspan.chain.${k}`;
    if (CHAIN_KEYS.size < 256) CHAIN_KEYS.set(k, v);
  }
  return v;
}

/** Events an explanation's causes and chains would write, and how many of them the bounds leave out. */
function eventBudget(e: SpanExplanation, o: EnrichOptions): { causes: number; omitted: number } {
  const maxCauses = o.maxCauses ?? 8;
  const maxEvents = o.maxEvents ?? 128;
  const causes = Math.min(e.causes.length, maxCauses);
  let wanted = causes;
  for (let i = 0; i < causes; i++) wanted += e.causes[i].chain.length;
  return { causes, omitted: e.causes.length - causes + Math.max(0, wanted - maxEvents) };
}

/** The `kspan.cause` and `kspan.chain` events of an explanation, bounded; returns how many were left out. */
function writeKspanEvents(out: EventOut, e: SpanExplanation, spanStart: bigint, o: EnrichOptions): number {
  const maxEvents = o.maxEvents ?? 128;
  const { causes, omitted } = eventBudget(e, o);
  let written = 0;
  // causes first (all of them fit before any chain step), then their chains
  for (let index = 0; index < causes; index++) {
    if (written >= maxEvents) break;
    const c = e.causes[index];
    const a = out.begin(firstEvidence(c.evidence, spanStart), 'kspan.cause');
    put(a, 'kspan.cause.kind', c.kind);
    put(a, 'kspan.cause.index', index);
    put(a, 'kspan.severity', c.severity);
    put(a, 'kspan.duration_ns', c.duration_ns);
    put(a, 'kspan.share', c.share, true);
    if (c.culprit) {
      put(a, 'kspan.culprit.pid', c.culprit.pid);
      put(a, 'kspan.culprit.tid', c.culprit.tid);
      put(a, 'kspan.culprit.comm', c.culprit.comm);
      if (c.culprit.observer) put(a, 'kspan.culprit.observer', true);
    }
    if (c.shared) put(a, 'kspan.shared', true);
    if (c.concurrent_spans !== undefined) put(a, 'kspan.concurrent_spans', c.concurrent_spans);
    put(a, 'kspan.summary', c.summary);
    put(a, 'kspan.remediation', c.remediation);
    out.end();
    written++;
  }
  for (let index = 0; index < causes; index++) {
    const c = e.causes[index];
    if (!c.chain.length) continue;
    const t = firstEvidence(c.evidence, spanStart);
    for (const step of c.chain) {
      if (written >= maxEvents) break;
      const a = out.begin(t, 'kspan.chain');
      put(a, 'kspan.cause.index', index);
      put(a, 'kspan.cause.kind', c.kind);
      for (const k in step) put(a, chainKey(k), (step as unknown as Record<string, string | number | boolean | null>)[k]);
      out.end();
      written++;
    }
  }
  return omitted;
}

/** The `kspan.cause` and `kspan.chain` events of an explanation, bounded. */
export function kspanEvents(e: SpanExplanation, spanStart: bigint, o: EnrichOptions = {}): { events: SpanEvent[]; omitted: number } {
  const out = new ObjectEvents();
  const omitted = writeKspanEvents(out, e, spanStart, o);
  return { events: out.list, omitted };
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
  if (omitted) put(new ObjectAttrs(attributes), 'kspan.events_omitted', omitted);
  return { attributes, events, settling: !!e.data_quality?.settling };
}

/**
 * kspanEnrichment written straight into Span fields 9 (attributes) and 11
 * (events): the bytes writeSpanExtra makes of it (tested), without building
 * it. Returns the attributes' key mask (KSPAN_ATTR_KEYS) and whether the
 * explanation is settling.
 */
export function writeKspanEnrichment(w: PbWriter, e: SpanExplanation, spanStart: bigint, o: EnrichOptions = {}): { keyMask: number; settling: boolean } {
  const attrs = new PbAttrs(w, 9, true);
  writeKspanAttributes(attrs, e);
  // the count of events left out is known before they are written: all attributes precede the events, as in writeSpanExtra
  const { omitted } = eventBudget(e, o);
  if (omitted) put(attrs, 'kspan.events_omitted', omitted);
  writeKspanEvents(new PbEvents(w), e, spanStart, o);
  return { keyMask: attrs.mask, settling: !!e.data_quality?.settling };
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
  if (span.encodedFields) {
    // a held span (compactSpans) has its own fields encoded: kspan's follow them, encoded too
    // (compacted spans carry no kspan.* keys or events of their own: nothing to replace)
    const w = new PbWriter(256);
    if (span.encodedExtra) w.raw(span.encodedExtra);
    writeSpanExtra(w, x.attributes, x.events);
    span.encodedExtra = w.finish();
    return;
  }
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

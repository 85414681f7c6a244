// The span mix of bench:pipeline (otlp-pipeline.ts): requests of 256 spans,
// 1-20 ms each, 90% on a thread of the synthetic store (linux.tid +
// process.pid), 10% with no correlation attributes; by default on 100
// threads (5 processes) at store times advancing as a live service's would,
// with `random` on any of the 1,000 threads at any time.

import type { DecodedTraceRequest, KeyValue, Span } from '../../src/otel/index.js';
import { SYNTH_T0 as T0 } from './synth-store.js';

export const EPOCH0 = 1_763_730_000_000_000_000n; // realtime at SYNTH_T0 in the synthetic stream
export const THREADS = 1000;
export const SPANS_PER_REQ = 256;

export class SpanMix {
  private seq = 0;
  private s = 4242;
  constructor(readonly minNs: number, readonly maxNs: number, readonly random = false) {}

  rnd(): number {
    return (this.s = (Math.imul(this.s, 1103515245) + 12345) >>> 0) / 4294967296;
  }

  /** One request of SPANS_PER_REQ spans at `progress` (0..1) through the store's time. */
  request(sentNs: bigint | null, progress: number): DecodedTraceRequest {
    const spans: Span[] = [];
    const str = (key: string, value: string): KeyValue => ({ key, value: { type: 'string', value } });
    const int = (key: string, value: bigint | number): KeyValue => ({ key, value: { type: 'int', value: BigInt(value) } });
    const { minNs, maxNs } = this;
    const margin = Math.floor(Math.min(1e9, (maxNs - minNs) * 0.05));
    const range = maxNs - minNs - 2 * margin - 25e6;
    for (let k = 0; k < SPANS_PER_REQ; k++) {
      const n = ++this.seq;
      const ti = Math.floor(this.rnd() * (this.random ? THREADS : 100));
      const at = this.random ? this.rnd() : Math.min(1, progress + this.rnd() * 0.002);
      const start = minNs + margin + Math.floor(at * range);
      const dur = Math.floor((1 + this.rnd() * 19) * 1e6);
      const attributes: KeyValue[] = [str('http.route', '/api/v1/items'), int('http.response.status_code', 200)];
      if (this.rnd() < 0.9) attributes.push(int('linux.tid', 10_000 + ti), int('process.pid', 10_000 + (ti - (ti % 20))));
      if (sentNs !== null) attributes.push(int('bench.sent_ns', sentNs));
      spans.push({
        traceId: (0xbe00000000000000n + BigInt(Math.floor(n / 4))).toString(16).padStart(32, '0'),
        spanId: (0x5000000000000000n + BigInt(n)).toString(16).padStart(16, '0'), traceState: '', parentSpanId: '', flags: 1,
        name: 'GET /api/v1/items', kind: 2, startTimeUnixNano: EPOCH0 + BigInt(start - T0), endTimeUnixNano: EPOCH0 + BigInt(start - T0 + dur),
        attributes, droppedAttributesCount: 0, events: [], droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0, message: '' },
      });
    }
    return {
      resourceSpans: [{
        resource: { attributes: [str('service.name', 'bench-api')], droppedAttributesCount: 0 },
        scopeSpans: [{ scope: { name: 'bench', version: '1', attributes: [], droppedAttributesCount: 0 }, spans, schemaUrl: '' }], schemaUrl: '',
      }],
    };
  }
}

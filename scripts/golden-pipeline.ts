// Golden check for changes to the OTel pipeline's output: every span the
// pipeline sends upstream for the bench span mix (bench/lib/span-mix.ts) over
// the synthetic bench store, encoded as it goes out, hashed (SHA-256). Run it
// before and after a change; the line must not change.
//
//   npx tsx scripts/golden-pipeline.ts [EVENTS (default 20000000)] [random]

import { createHash } from 'node:crypto';
import { openStoreWriter } from '../src/store/index.js';
import { EnrichPipeline, encodeTraceRequest, type OutgoingSpan, type UpstreamExporter } from '../src/otel/index.js';
import { EPOCH0, SpanMix, SPANS_PER_REQ } from '../bench/lib/span-mix.js';
import { ensureSynthStore } from '../bench/lib/synth-store.js';

const built = await ensureSynthStore(Number(process.argv[2] ?? 20_000_000), 1000);
const w = openStoreWriter(built.dir);
w.reader.enableBlockCache();
const mix = new SpanMix(built.minNs, built.maxNs, process.argv[3] === 'random');
const h = createHash('sha256');
let n = 0;
const upstream = {
  send(out: OutgoingSpan[]): void {
    for (const o of out) {
      h.update(encodeTraceRequest({
        resourceSpans: [{
          resource: { attributes: o.resource.attributes, droppedAttributesCount: 0 }, schemaUrl: '',
          scopeSpans: [{ scope: o.scope, schemaUrl: '', spans: [o.span] }],
        }],
      }));
      n++;
    }
  },
  saturated: () => null,
} as unknown as UpstreamExporter;
const p = new EnrichPipeline({ kernel: { reader: w.reader, watermarkUnixNano: () => EPOCH0 + 10n ** 15n }, spanSink: null, upstream, maxBufferedSpans: 10_000_000, log: () => {} });
const total = 40_960;
for (let i = 0; i < total / SPANS_PER_REQ; i++) await p.consume(mix.request(null, i / (total / SPANS_PER_REQ)), { transport: 'http' } as never);
p.tick(true);
await p.close();
console.log(`${n} spans ${h.digest('hex')} passed ${JSON.stringify(p.counters.passed)}`);
await w.close();

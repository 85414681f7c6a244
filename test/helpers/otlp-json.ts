// OTLP/JSON request bodies for tests that post over HTTP: n spans of service
// `service`, ids from a counter (span id = counter, trace id = it padded with
// `pad`), ending now, 5 ms long.

export function otlpJsonBody(service: string, from: number, n: number, pad = 'c'): string {
  const now = BigInt(Date.now()) * 1_000_000n;
  const spans = Array.from({ length: n }, (_, k) => {
    const id = (from + k + 1).toString(16).padStart(16, '0');
    return { traceId: id.padStart(32, pad), spanId: id, name: 'req', kind: 2, startTimeUnixNano: String(now - 5_000_000n), endTimeUnixNano: String(now) };
  });
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] }, scopeSpans: [{ scope: { name: 't' }, spans }] }] });
}

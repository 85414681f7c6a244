// Public interface of the correlator: explain a span (trace) or a thread /
// process window from the kernel events in a store. The JSON shape is the
// DESIGN §4 contract (types.ts); rules in README.md.
//
//   const r = openStoreReader(dir);
//   const e = explainTrace(r, traceId, { serviceProcess: { 'vllm': 'VLLM::EngineCor' } });
//   console.log(formatExplanation(e));   // or JSON.stringify(e)

export {
  explainSpanGroups, explainSpanGroupsEach, explainTrace, explainWindow, parseServiceProcess, severityOf, summarizeSpans, type ExplainableSpan,
} from './explain.js';
export { formatExplanation } from './format.js';
export { mayJoin } from './join.js';
export type {
  Breakdown, Cause, CauseKind, ChainStep, Correlation, CorrelationMethod, Culprit, DataQuality, Evidence, ExplainOptions,
  Explanation, HostAnswer, Severity, SpanDataQuality, SpanExplanation, SpanHost,
} from './types.js';

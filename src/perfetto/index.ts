// Public interface of the Perfetto export: Chrome trace-event JSON (opens in
// ui.perfetto.dev and chrome://tracing) from a kspan store.
//
//   const r = openStoreReader(dir);
//   const res = await writePerfettoTrace(r, { traceId }, process.stdout);          // or
//   await writePerfettoTrace(r, { pid, fromUnixNano, toUnixNano }, fileStream, { maxEvents: 100_000 });
//   if (!res.found) ...   // trace not stored: nothing written
// `kspan export perfetto ...` is cmdExport in src/cli/export.ts.

export {
  perfettoTraceJson, writePerfettoTrace, type PerfettoOptions, type PerfettoResult, type PerfettoTarget,
} from './export.js';
export { ExportClock, dayBaseNs, epochNsToUs, usText } from './clock.js';

// Public interface of the capture module. Other modules (store, correlator,
// otel, cli) import from here, not from the files behind it.
//
// Typical consumer:
//   const v = new RecordView(), off = new OffcpuView();
//   const sink: CaptureSink = { onBatch(batch, clock) {
//     for (let i = 0; i < batch.count; i++) {
//       v.set(batch, i);
//       if (v.kind === Kind.OFFCPU) { off.setFrom(v); use(v.tid, off.startNs, v.ts, off.blockedNs); }
//     } } };
//   const probe = ProbeProcess.start({ pids: [123], follow: true }, sink);
//   await probe.ready; ... await probe.stop();
// Batches are valid only during onBatch (buffers are reused); copy what you keep
// (`v.bytes()` is a view — Buffer.from() it to keep it).

export {
  FrameDecoder, RecordBatch, RecordView, type DecoderCounters, type FinishResult,
} from './decoder.js';
export {
  AckView, BlockIoView, ClockView, CudaCallView, DropsView, FutexWaitView, FutexWakeView, HelloView,
  OffcpuView, StackView, StatusView, TaskView, TcpRetransView,
} from './views.js';
export * from './records.js';
export { ClockHistory, type ClockSample } from './clock.js';
export {
  CaptureState, type AckInfo, type CaptureSink, type DropsInfo, type HelloInfo, type StatusInfo,
} from './state.js';
export { pump, type PumpOptions } from './pump.js';
export {
  PROBE_EXIT, ProbeError, ProbeProcess, REPO_ROOT, probeArgs, probePath, runProbeCheck,
  type ControlResult, type ProbeExit, type ProbeOptions,
} from './probe.js';
export { replayFile, replayStream, type ReplayOptions, type ReplayResult } from './replay.js';
export { TaskNames } from './names.js';
export {
  errnoName, fmtDur, formatAddr, isoNs, jsonToText, recordToJson, recordToText, type JsonRecord,
} from './json.js';
export { Samples, SummarySink } from './summary.js';
export { CudaWatcher, cudaLibsOf, type CudaWatcherOptions } from './cudawatch.js';
export { startCapture, type CaptureOptions, type CaptureSession } from './session.js';
export {
  effectiveCaps, findCudaLibs, formatDoctor, hasCap, runDoctor, type Check, type CudaLib, type DoctorOptions,
  type DoctorReport,
} from './doctor.js';

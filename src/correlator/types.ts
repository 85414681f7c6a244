// The explain JSON: DESIGN §4 "Explain JSON" is a stable contract. Field
// names below are exactly the contract's; fields marked (added) are
// extensions (the contract allows adding fields, never renaming/removing).

export type CauseKind =
  | 'cpu_preemption' | 'lock_contention' | 'io_wait' | 'cuda_sync' | 'network_retransmit' | 'sleep' | 'other_block';
export type Severity = 'high' | 'medium' | 'low';
export type CorrelationMethod = 'thread' | 'process' | 'none';

export interface Culprit {
  pid: number;
  tid: number;
  comm: string;
  /** (added) the culprit is kspan itself (its probe or the process consuming it): the observer, not a neighbour */
  observer?: true;
}

/** Exactly the seven parts of the contract; they add up to duration_ns. */
export type Breakdown = {
  on_cpu: number;
  runqueue: number;
  futex: number;
  io: number;
  sleep: number;
  cuda_sync: number;
  unknown: number;
};

/** One step of a causal chain (see README "Chains"). `depth` 0 = the span's own thread. */
export interface ChainStep {
  step: string;
  depth: number;
  [k: string]: string | number | boolean | null | undefined;
}

/** A reference to one stored kernel event, with its times as epoch ns strings. */
export interface Evidence {
  kind: string;
  tid: number;
  start_unix_nano: string;
  end_unix_nano: string;
  [k: string]: string | number | boolean | null | undefined;
}

export interface Cause {
  kind: CauseKind;
  severity: Severity;
  duration_ns: number;
  /** of the span duration, 0..1 */
  share: number;
  culprit: Culprit | null;
  chain: ChainStep[];
  evidence: Evidence[];
  summary: string;
  remediation: string;
  /** (added) process-level join: the cause is shared by the process's concurrent requests */
  shared?: boolean;
  /** (added) spans of the same process overlapping the window (process join) */
  concurrent_spans?: number;
  /** (added) process join: thread-time behind duration_ns, summed over the process's threads */
  thread_time_ns?: number;
  /** (added) every culprit with the time it explains, largest first */
  culprits?: (Culprit & { duration_ns: number; cpus?: number[]; requests?: number; bytes?: number })[];
  /** (added) kind-specific numbers (counts, percentiles, device, ...) */
  details?: Record<string, unknown>;
}

export interface Correlation {
  method: CorrelationMethod;
  pid: number | null;
  tid: number | null;
  /** (added) how the join was made, or why it could not be */
  reason?: string;
}

export interface SpanDataQuality {
  lost_events: number;
  covered: boolean;
  /** fraction of the window covered by capture, 0..1 */
  coverage: number;
  /** drop counters were seen for the window (false: lost_events is unknown, reported 0) */
  lost_known: boolean;
  /** off-CPU intervals shorter than this were not recorded: they count as on_cpu */
  offcpu_threshold_ns: number | null;
  threads_joined: number;
  /** process join: threads with activity in the window whose time is summed into the breakdown */
  threads_active?: number;
  /**
   * part of the window is after the running capture's watermark (ingested
   * through, in the daemon; committed through, elsewhere): kernel data for it
   * may still arrive. That part counts as `unknown`, never on-CPU.
   */
  settling?: boolean;
  /** (added) ns of the window after the watermark (not yet seen), when settling */
  not_ingested_ns?: number;
  /**
   * (added) ns that would read as on CPU but may hide off-CPU intervals whose
   * records the kernel ring lost (or whose losses are not reported yet):
   * counted as `unknown` (correlator/timeline.ts)
   */
  lost_unknown_ns?: number;
  notes: string[];
}

export interface SpanExplanation {
  span_id: string;
  name: string;
  service: string;
  start_unix_nano: string;
  duration_ns: number;
  correlation: Correlation;
  breakdown_ns: Breakdown;
  causes: Cause[];
  /** (added) */
  parent_span_id?: string | null;
  /** (added) per-span data quality */
  data_quality?: SpanDataQuality;
  /** (added) process join: per-thread breakdown sums (thread-time), before scaling to the span */
  breakdown_thread_ns?: Breakdown;
  /** (added) the host whose kernel explained the span: host.name and boot id (null: not recorded in the store) */
  host?: SpanHost;
}

/** (added) A host as the explain JSON names it. */
export interface SpanHost {
  name: string | null;
  boot_id: string | null;
}

/** (added) One host asked for a fan-out answer (data_quality.hosts). */
export interface HostAnswer {
  /** host.name (of a peer that failed: the name it gave last time, else null) */
  name: string | null;
  /** the peer's MCP URL; null for the host that answered the call itself */
  url: string | null;
  /** local: this host's store; ok: answered; not_found: answered, no span of the trace; failed / timeout: no answer (the result is partial); self: the URL is this server (skipped) */
  status: 'local' | 'ok' | 'not_found' | 'failed' | 'timeout' | 'self';
  /** spans (explain) or requests (find_slow_requests) it contributed */
  spans: number;
  elapsed_ms: number;
  reason?: string;
}

export interface DataQuality {
  lost_events: number;
  covered: boolean;
  /** (added) smallest per-span coverage fraction */
  coverage: number;
  lost_known: boolean;
  offcpu_threshold_ns: number | null;
  /** (added) correlation method -> number of spans */
  correlation: Record<string, number>;
  threads_joined: number;
  notes: string[];
  /** (added) fan-out: every host asked, with its status; failed / timeout hosts make the answer partial */
  hosts?: HostAnswer[];
  /** (added) fan-out: some host did not answer (see hosts) */
  partial?: boolean;
}

export interface Explanation {
  trace_id: string;
  found: boolean;
  summary: string;
  spans: SpanExplanation[];
  data_quality: DataQuality;
}

export interface ExplainOptions {
  /** chain recursion depth (holder of the holder ...), default 3 */
  maxDepth?: number;
  /** service.name -> process comm (as the kernel names it: 15 chars max), for the process join */
  serviceProcess?: Record<string, string>;
  /** evidence entries per cause, default 20 */
  maxEvidence?: number;
  /**
   * Treat the `thread.id` attribute as the OS thread id. Off by default: the
   * semantic conventions define thread.id as the runtime's id (a Java or
   * Python thread number), which would join the span to an unrelated kernel
   * thread. kspan's own helpers stamp `linux.tid`.
   */
  threadIdIsOsTid?: boolean;
}

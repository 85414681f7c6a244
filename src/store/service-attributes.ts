// What kspan knows about the spans of particular servers, declared as a
// table: which attribute carries the pid of the process that does the work
// (the process join, when spans carry no linux.tid), which carry a request id
// (explain_request by request id), and which small attributes the span index
// keeps. Another server (SGLang, TGI, Triton, ...) is one more entry here,
// not a change to the store or the correlator.

export interface ServiceAttributes {
  /** who emits these attributes */
  readonly server: string;
  /** attributes whose value is the pid of the process doing the work, tried in order */
  readonly processId?: readonly string[];
  /** attributes that carry a request id, tried in order */
  readonly requestId?: readonly string[];
  /** further attributes kept on stored spans (scalars, small) */
  readonly kept?: readonly string[];
}

export const SERVICE_ATTRIBUTES: readonly ServiceAttributes[] = [
  {
    // vLLM (V1): one `llm_request` span per request, created in the API server; vllm.process_id on the resource
    server: 'vLLM',
    processId: ['vllm.process_id'],
    requestId: ['gen_ai.request.id'],
    kept: [
      'gen_ai.latency.time_in_queue', 'gen_ai.latency.time_to_first_token', 'gen_ai.latency.e2e', 'gen_ai.latency.time_in_scheduler',
      'gen_ai.latency.time_in_model_prefill', 'gen_ai.latency.time_in_model_decode', 'gen_ai.latency.time_in_model_inference',
      'gen_ai.usage.prompt_tokens', 'gen_ai.usage.completion_tokens', 'gen_ai.usage.input_tokens', 'gen_ai.usage.output_tokens',
    ],
  },
  {
    // any server following the OTel semantic conventions
    server: 'OpenTelemetry semantic conventions',
    requestId: ['http.request.header.x-request-id', 'http.request.header.x_request_id', 'request.id', 'http.request_id'],
    kept: [
      'network.peer.address', 'network.peer.port', 'server.address', 'server.port', 'client.address', 'client.port',
      'network.transport', 'thread.id', 'thread.name', 'linux.tid', 'host.name', 'service.instance.id', 'process.executable.name',
      'http.request.header.x-request-id',
    ],
  },
];

const all = (pick: (s: ServiceAttributes) => readonly string[] | undefined): readonly string[] =>
  [...new Set(SERVICE_ATTRIBUTES.flatMap((s) => pick(s) ?? []))];

/** Attributes carrying the working process's pid, in the order they are tried. */
export const PROCESS_ID_ATTRIBUTES = all((s) => s.processId);
/** Attributes carrying a request id, in the order they are tried (StoredSpan.requestId is the first found). */
export const REQUEST_ID_ATTRIBUTES = all((s) => s.requestId);
/** Attributes kept on stored spans: the declared ones and every request-id attribute. */
export const KEPT_ATTRIBUTES = all((s) => [...(s.kept ?? []), ...(s.requestId ?? [])]);

#!/usr/bin/env python3
"""A vLLM-shaped service for kspan's demo (examples/vllm/README.md).

Processes and threads, shaped like vLLM V1 (one API server, one EngineCore):

  API server (this process, comm "vllm")
    main thread      load generator: requests arrive at --rate per second
    "api" thread     receives finished requests from the engine and creates
                     one `llm_request` span (kind SERVER) per request, the
                     way vLLM's OutputProcessor does: at completion, with
                     start = arrival time and the gen_ai.latency.* attributes
                     computed from the engine's timestamps
    exporter thread  the OTel SDK's BatchSpanProcessor (OTLP gRPC or HTTP)
  EngineCore (child, comm "VLLM::EngineCor", pinned to one CPU)
    main thread      the batch loop: schedule (takes the input-queue lock),
                     prepare inputs (CPU), launch kernels and
                     cudaStreamSynchronize through the stand-in libcudart.so.12
    "tokenizer"      a native thread holding the input-queue lock for
                     --tok-hold-ms every --tok-gap-ms (lock contention)
  neighbour (child, comm "cpu-neighbour")
                     CPU-bound, pinned onto the engine's CPU between
                     --neighbour-from and --neighbour-to (fractions of the run),
                     at nice --neighbour-nice (-3 when permitted)

Injected causes, each tens of ms per request: preemption of the engine
thread by the neighbour, futex waits on the tokenizer's lock, CUDA sync.

OTLP target: --otlp-traces-endpoint or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = grpc (default) | http/protobuf
(as vLLM). Service name: OTEL_SERVICE_NAME (default "vllm"). Resource
attribute vllm.process_id = the pid of the process that creates the spans
(the API server, as in vLLM; --process-id-of engine stamps the engine's).

stdout: one JSON object per line ({"event": ...}): ready, started (pids and
tids of everything above), neighbour on/off, progress, done. Everything
else goes to stderr.
"""

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_NAME = 15
ENGINE_TITLE = "VLLM::EngineCore"  # the kernel keeps 15 bytes: VLLM::EngineCor


# ---------------------------------------------------------------------------
# native libraries

LIBS = {
    # output name: (source, extra link flags)
    "libcudart.so.12": ("cudart_standin.c", ["-Wl,-soname,libcudart.so.12"]),
    "libkspan_vllm_engine.so": ("engine_helpers.c", ["-pthread"]),
}


def build_libs(build_dir):
    """Compile the stand-in libcudart and the engine helpers with cc (when stale)."""
    os.makedirs(build_dir, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    out = {}
    for name, (src, extra) in LIBS.items():
        src_path = os.path.join(HERE, "csrc", src)
        dst = os.path.join(build_dir, name)
        if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src_path):
            fd, tmp = tempfile.mkstemp(prefix=name + ".", dir=build_dir)
            os.close(fd)
            cmd = [cc, "-O2", "-g", "-Wall", "-fPIC", "-shared", "-D_GNU_SOURCE", "-o", tmp, src_path] + extra
            try:
                subprocess.run(cmd, check=True)
                os.rename(tmp, dst)  # atomic: concurrent builds never see a half-written library
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        out[name] = dst
    return out


def emit(obj):
    """One JSON line on stdout, in one write (children share the pipe)."""
    os.write(1, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


def log(msg):
    sys.stderr.write(f"vllm-demo: {msg}\n")
    sys.stderr.flush()


def set_comm(name):
    """Thread name as the kernel sees it (comm), like setproctitle does for vLLM."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


# ---------------------------------------------------------------------------
# EngineCore process


class Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


class EngineReq:
    __slots__ = ("id", "arrival", "prompt_tokens", "max_tokens", "queued", "scheduled", "first_mono", "first_wall", "tokens")

    def __init__(self, m):
        self.id = m["id"]
        self.arrival = m["arrival"]
        self.prompt_tokens = m["prompt_tokens"]
        self.max_tokens = m["max_tokens"]
        self.queued = time.monotonic()
        self.scheduled = None
        self.first_mono = None
        self.first_wall = None
        self.tokens = 0


def engine_main(a, libs, req_conn, out_conn):
    set_comm(ENGINE_TITLE)
    os.sched_setaffinity(0, {a.engine_cpu})
    cudart = ctypes.CDLL(libs["libcudart.so.12"])
    helpers = ctypes.CDLL(libs["libkspan_vllm_engine.so"])
    helpers.kspan_demo_schedule.restype = ctypes.c_int64
    helpers.kspan_demo_schedule.argtypes = [ctypes.c_long]
    helpers.kspan_demo_burn.argtypes = [ctypes.c_long]
    helpers.kspan_demo_tokenizer_set.argtypes = [ctypes.c_long, ctypes.c_long]
    cudart.cudaLaunchKernel.argtypes = [ctypes.c_void_p, Dim3, Dim3, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_void_p]
    cudart.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
    cudart.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
    cudart.kspan_demo_gpu_config.argtypes = [ctypes.c_long]
    cudart.kspan_demo_gpu_calls.restype = ctypes.c_uint64
    cudart.kspan_demo_gpu_config(int(a.kernel_us))

    stream = ctypes.c_void_p()
    cudart.cudaStreamCreate(ctypes.byref(stream))
    grid, block = Dim3(128, 1, 1), Dim3(256, 1, 1)
    kernel_fn = ctypes.cast(helpers.kspan_demo_burn, ctypes.c_void_p)  # any code address plays the kernel
    kargs = (ctypes.c_void_p * 1)()
    host = ctypes.create_string_buffer(1 << 16)
    dev = ctypes.create_string_buffer(1 << 16)

    # the tokenizer: a native loop in its own thread (GIL released by ctypes)
    helpers.kspan_demo_tokenizer_set(int(a.tok_hold_ms * 1000), int(a.tok_gap_ms * 1000))
    all_cpus = set(range(os.cpu_count() or 1))

    def tokenizer():
        try:
            os.sched_setaffinity(threading.get_native_id(), all_cpus)
        except OSError:
            pass
        helpers.kspan_demo_tokenizer_run()

    tok = threading.Thread(target=tokenizer, name="tokenizer", daemon=True)
    tok.start()
    while helpers.kspan_demo_tokenizer_tid() == 0:
        time.sleep(0.001)
    out_conn.send({"kind": "hello", "engine_pid": os.getpid(), "engine_tid": threading.get_native_id(),
                   "tokenizer_tid": helpers.kspan_demo_tokenizer_tid()})

    waiting, running = deque(), []
    stopping = False
    steps = 0
    while True:
        timeout = 0 if (running or waiting) else 0.05
        while req_conn.poll(timeout):
            m = req_conn.recv()
            timeout = 0
            if m is None:
                stopping = True
                break
            waiting.append(EngineReq(m))
        if not running and not waiting:
            if stopping:
                break
            continue
        # 1. schedule: the scheduler pulls tokenized requests off the input queue (the lock)
        helpers.kspan_demo_schedule(int(a.sched_cpu_us))
        new = 0
        now = time.monotonic()
        while waiting and len(running) < a.max_batch:
            r = waiting.popleft()
            r.scheduled = now
            running.append(r)
            new += 1
        # 2. prepare inputs (CPU)
        helpers.kspan_demo_burn(int(a.prep_cpu_us))
        # 3. launch the model's kernels (more for prefill of the new requests), copy out, sync
        n_kernels = a.decode_kernels + a.prefill_kernels * new
        for _ in range(n_kernels):
            cudart.cudaLaunchKernel(kernel_fn, grid, block, kargs, 0, stream)
        cudart.cudaMemcpyAsync(host, dev, 512 * len(running), 2, stream)
        cudart.cudaStreamSynchronize(stream)
        steps += 1
        # 4. update: one token per running request
        now, wall = time.monotonic(), time.time()
        still = []
        for r in running:
            r.tokens += 1
            if r.first_mono is None:
                r.first_mono, r.first_wall = now, wall
            if r.tokens >= r.max_tokens:
                out_conn.send({"kind": "finished", "id": r.id, "arrival": r.arrival, "queued": r.queued, "scheduled": r.scheduled,
                               "first_token": r.first_mono, "first_token_wall": r.first_wall, "last_token": now,
                               "prompt_tokens": r.prompt_tokens, "completion_tokens": r.tokens, "max_tokens": r.max_tokens})
            else:
                still.append(r)
        running = still
    helpers.kspan_demo_tokenizer_stop()
    tok.join(timeout=2)
    out_conn.send({"kind": "bye", "steps": steps, "gpu_calls": int(cudart.kspan_demo_gpu_calls())})


# ---------------------------------------------------------------------------
# the CPU-bound neighbour


def neighbour_main(a, t0, start_at, end_at):
    set_comm("cpu-neighbour")
    os.sched_setaffinity(0, {a.engine_cpu})
    if a.neighbour_nice:
        try:
            os.nice(a.neighbour_nice)  # negative needs root (or CAP_SYS_NICE); kspan demo runs as root
        except OSError:
            pass
    while time.monotonic() < t0 + start_at:
        time.sleep(0.01)
    emit({"event": "neighbour", "state": "on", "pid": os.getpid(), "cpu": a.engine_cpu, "unix_nano": time.time_ns()})
    x = 0
    while time.monotonic() < t0 + end_at:
        for i in range(10000):
            x += i * i
    emit({"event": "neighbour", "state": "off", "pid": os.getpid(), "unix_nano": time.time_ns()})


# ---------------------------------------------------------------------------
# API server: tracing set up like vLLM's init_tracer


def make_tracer(endpoint, process_id):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attrs = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME", "vllm"),
        "vllm.instrumenting_module_name": "vllm.llm_engine",
        "vllm.process_id": str(process_id),
    }
    provider = TracerProvider(resource=Resource.create(attrs))
    if endpoint:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter(endpoint=endpoint)
        else:
            raise SystemExit(f"vllm-demo: unsupported OTEL_EXPORTER_OTLP_TRACES_PROTOCOL {protocol!r} (grpc or http/protobuf)")
        # short export delay: spans reach kspan soon after each request finishes
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    else:
        log("no OTLP endpoint (--otlp-traces-endpoint / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): spans are not exported")
    return provider, provider.get_tracer("vllm.llm_engine")


def record_span(tracer, o, end_ns):
    """The llm_request span, created when the request finished (start = arrival)."""
    from opentelemetry.trace import SpanKind

    arrival_ns = int(o["arrival"] * 1e9)
    attrs = {
        "gen_ai.request.id": o["id"],
        "gen_ai.request.max_tokens": o["max_tokens"],
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 0.95,
        "gen_ai.request.n": 1,
        "gen_ai.usage.prompt_tokens": o["prompt_tokens"],
        "gen_ai.usage.completion_tokens": o["completion_tokens"],
        "gen_ai.response.finish_reasons": json.dumps(["length"]),
        "gen_ai.latency.time_in_queue": o["scheduled"] - o["queued"],
        "gen_ai.latency.time_to_first_token": o["first_token_wall"] - o["arrival"],
        "gen_ai.latency.e2e": end_ns / 1e9 - o["arrival"],
        "gen_ai.latency.time_in_model_prefill": o["first_token"] - o["scheduled"],
        "gen_ai.latency.time_in_model_decode": o["last_token"] - o["first_token"],
        "gen_ai.latency.time_in_model_inference": o["last_token"] - o["scheduled"],
    }
    span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=arrival_ns, attributes=attrs)
    span.end(end_time=end_ns)
    return span.get_span_context()


def parse_args(argv):
    p = argparse.ArgumentParser(description="vLLM-shaped workload for kspan (see README.md)")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of load (default 12)")
    p.add_argument("--rate", type=float, default=12.0, help="requests per second (default 12)")
    p.add_argument("--tokens", default="8-24", help="output tokens per request, MIN-MAX (default 8-24)")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--engine-cpu", type=int, default=None, help="CPU the engine (and the neighbour) run on (default: the last allowed)")
    p.add_argument("--neighbour-from", type=float, default=0.3, help="neighbour starts at this fraction of --duration")
    p.add_argument("--neighbour-to", type=float, default=0.75, help="... and stops at this fraction")
    p.add_argument("--neighbour-nice", type=int, default=-3,
                   help="nice value of the neighbour (default -3: it outweighs the engine and other tasks on that CPU about 2:1)")
    p.add_argument("--no-neighbour", action="store_true")
    p.add_argument("--tok-hold-ms", type=float, default=20.0, help="tokenizer holds the input-queue lock this long ...")
    p.add_argument("--tok-gap-ms", type=float, default=20.0, help="... then releases it for this long")
    p.add_argument("--sched-cpu-us", type=int, default=300, help="CPU time of a scheduler step (under the lock)")
    p.add_argument("--prep-cpu-us", type=int, default=4000, help="CPU time to prepare a step's inputs")
    p.add_argument("--kernel-us", type=int, default=300, help="device time per kernel launch")
    p.add_argument("--decode-kernels", type=int, default=20, help="kernels per decode step")
    p.add_argument("--prefill-kernels", type=int, default=6, help="extra kernels per new request in a step")
    p.add_argument("--otlp-traces-endpoint", default=None, help="as vLLM's flag (else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
    p.add_argument("--process-id-of", choices=["api", "engine"], default="api",
                   help="whose pid vllm.process_id carries (vLLM: the process creating the spans = api)")
    p.add_argument("--build-dir", default=os.path.join(HERE, "build"))
    p.add_argument("--build-only", action="store_true", help="compile the native libraries, print their paths, exit")
    p.add_argument("--wait-go", action="store_true", help="after 'ready', wait for a line on stdin before starting")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    libs = build_libs(a.build_dir)
    if a.build_only:
        emit({"event": "built", "libs": libs})
        return 0
    lo, _, hi = a.tokens.partition("-")
    tok_min, tok_max = int(lo), int(hi or lo)
    allowed = sorted(os.sched_getaffinity(0))
    if a.engine_cpu is None:
        a.engine_cpu = allowed[-1]
    set_comm("vllm")
    emit({"event": "ready", "pid": os.getpid()})
    if a.wait_go:
        sys.stdin.readline()

    # Children first, while this process has no threads (fork).
    ctx = mp.get_context("fork")
    req_r, req_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    t0 = time.monotonic()
    engine = ctx.Process(target=engine_main, args=(a, libs, req_r, out_w), name="EngineCore", daemon=True)
    engine.start()
    neighbour = None
    if not a.no_neighbour:
        neighbour = ctx.Process(target=neighbour_main, args=(a, t0, a.neighbour_from * a.duration, a.neighbour_to * a.duration),
                                name="neighbour", daemon=True)
        neighbour.start()
    # the API server stays off the engine's CPU when there is another one
    if len(allowed) > 1:
        os.sched_setaffinity(0, set(allowed) - {a.engine_cpu})

    if not out_r.poll(30):
        log("the engine did not start")
        return 1
    hello = out_r.recv()
    endpoint = a.otlp_traces_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    provider, tracer = make_tracer(endpoint, hello["engine_pid"] if a.process_id_of == "engine" else os.getpid())
    emit({"event": "started", "api_pid": os.getpid(), "engine_pid": hello["engine_pid"], "engine_tid": hello["engine_tid"],
          "tokenizer_tid": hello["tokenizer_tid"], "neighbour_pid": neighbour.pid if neighbour else None,
          "engine_cpu": a.engine_cpu, "cuda_lib": libs["libcudart.so.12"], "service": os.environ.get("OTEL_SERVICE_NAME", "vllm"),
          "endpoint": endpoint, "protocol": os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
          "unix_nano": time.time_ns()})

    state = {"done": 0, "spans": [], "bye": None}

    def api_thread():
        while True:
            try:
                o = out_r.recv()
            except EOFError:
                return
            if o["kind"] == "bye":
                state["bye"] = o
                return
            if o["kind"] == "finished":
                ctx_ = record_span(tracer, o, time.time_ns())
                state["spans"].append({"trace_id": format(ctx_.trace_id, "032x"), "request_id": o["id"],
                                       "e2e_s": round(time.time() - o["arrival"], 6),
                                       "queue_s": round(o["scheduled"] - o["queued"], 6),
                                       "ttft_s": round(o["first_token_wall"] - o["arrival"], 6),
                                       "tokens": o["completion_tokens"]})
                state["done"] += 1

    api = threading.Thread(target=api_thread, name="api", daemon=True)
    api.start()

    rng = random.Random(a.seed)
    sent = 0
    next_progress = t0 + 1.0
    deadline = t0 + a.duration
    t = time.monotonic()
    while True:
        t += rng.expovariate(a.rate)
        now = time.monotonic()
        if t >= deadline:
            break
        if t > now:
            time.sleep(t - now)
        req_w.send({"id": f"cmpl-{os.getpid()}-{sent}", "arrival": time.time(), "prompt_tokens": rng.randint(32, 512),
                    "max_tokens": rng.randint(tok_min, tok_max)})
        sent += 1
        if time.monotonic() >= next_progress:
            next_progress += 1.0
            emit({"event": "progress", "t": round(time.monotonic() - t0, 2), "sent": sent, "done": state["done"]})
    req_w.send(None)
    api.join(timeout=60)
    engine.join(timeout=10)
    if neighbour:
        neighbour.join(timeout=a.duration)
    provider.force_flush(10000)
    provider.shutdown()
    bye = state["bye"] or {}
    emit({"event": "done", "sent": sent, "done": state["done"], "steps": bye.get("steps"), "gpu_calls": bye.get("gpu_calls"),
          "elapsed_s": round(time.monotonic() - t0, 3), "spans": state["spans"]})
    return 0 if state["done"] == sent else 1


if __name__ == "__main__":
    sys.exit(main())

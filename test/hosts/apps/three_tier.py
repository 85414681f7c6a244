"""Three services on three "hosts" (test/hosts/three-hosts.test.ts), each on
the OTel Python SDK with kspan's LinuxThreadIdSpanProcessor, exporting
OTLP/gRPC to its host's kspan (KSPAN_OTLP), W3C trace context over HTTP
(the SDK's default propagator):

  a  (host 1)  span `frontend`: calls B_URL and waits for the answer. Prints
               {trace_id, a: {...}, b: {...}, c: {...}} on stdout and exits.
  b  (host 2)  span `middle`: burns WORK_MS of its own CPU time on CPU
               B_CPU (a hog pinned there preempts it), then calls C_URL.
  c  (host 3)  span `backend`: waits on a threading.Lock that a sibling
               thread (`holder`) takes and keeps HOLD_MS.

b and c serve on PORT (0.0.0.0) and print {"listening": PORT} when ready.
"""
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))

from kspan_otel import LinuxThreadIdSpanProcessor  # noqa: E402
from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

role = sys.argv[1]
service = {"a": "frontend-svc", "b": "middle-svc", "c": "backend-svc"}[role]
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(LinuxThreadIdSpanProcessor())
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["KSPAN_OTLP"], insecure=True), schedule_delay_millis=200))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("kspan-three-hosts", "1.0.0")


def me(span) -> dict:
    ctx = span.get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "pid": os.getpid(), "tid": threading.get_native_id()}


def call(url: str) -> dict:
    headers: dict = {}
    propagate.inject(headers)  # traceparent of the current span
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


lock = threading.Lock()
go = threading.Semaphore(0)
taken = threading.Semaphore(0)
holder = {}


def hold() -> None:
    holder["tid"] = threading.get_native_id()
    hold_s = float(os.environ.get("HOLD_MS", "250")) / 1000.0
    while True:
        go.acquire()
        with lock:
            taken.release()
            time.sleep(hold_s)  # releases the GIL; the lock stays held


def burn(ms: float) -> int:
    t0 = time.thread_time_ns()
    x = 0
    while time.thread_time_ns() - t0 < ms * 1e6:
        for i in range(2000):
            x += i * i
    return x


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        # header names as sent (urllib capitalizes them): the W3C propagator looks up lower-case keys
        parent = propagate.extract({k.lower(): v for k, v in self.headers.items()})
        with tracer.start_as_current_span("middle" if role == "b" else "backend", context=parent, kind=trace.SpanKind.SERVER) as span:
            out = me(span)
            if role == "b":
                t0 = time.monotonic_ns()
                burn(float(os.environ.get("WORK_MS", "400")))
                out["work_wall_ns"] = time.monotonic_ns() - t0
                out["c"] = call(os.environ["C_URL"])
            else:
                go.release()
                taken.acquire()  # the holder has the lock now
                t0 = time.monotonic_ns()
                lock.acquire()
                out["wait_ns"] = time.monotonic_ns() - t0
                lock.release()
                out["holder_tid"] = holder["tid"]
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        provider.force_flush()


if role == "a":
    with tracer.start_as_current_span("frontend", kind=trace.SpanKind.SERVER) as span:
        out = me(span)
        b = call(os.environ["B_URL"])
    provider.force_flush()
    provider.shutdown()
    c = b.pop("c")
    print(json.dumps({"trace_id": out["trace_id"], "a": out, "b": b, "c": c}), flush=True)
else:
    if role == "b":
        os.sched_setaffinity(0, {int(os.environ.get("B_CPU", "1"))})
    else:
        threading.Thread(target=hold, name="holder", daemon=True).start()
    port = int(os.environ.get("PORT", "8080"))
    srv = HTTPServer(("0.0.0.0", port), Handler)
    print(json.dumps({"listening": port, "pid": os.getpid()}), flush=True)
    srv.serve_forever()

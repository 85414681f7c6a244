"""A Python app instrumented with the OTel Python SDK and kspan's
LinuxThreadIdSpanProcessor (examples/python/kspan_otel.py), exporting OTLP to
KSPAN_OTLP (gRPC, or OTLP/HTTP when KSPAN_PROTOCOL=http/protobuf).

Known answer: a holder thread takes a threading.Lock and keeps it HOLD_MS;
the main thread's span `checkout` blocks acquiring it (a futex wait on the
lock's semaphore) until the holder releases it. Prints
{trace_id, span_id, pid, tid, holder_tid, wait_ns} on stdout.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))

from kspan_otel import LinuxThreadIdSpanProcessor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

url = os.environ["KSPAN_OTLP"]
if os.environ.get("KSPAN_PROTOCOL", "grpc") == "http/protobuf":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=url.rstrip("/") + "/v1/traces")
else:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=url, insecure=True)

hold_s = float(os.environ.get("HOLD_MS", "300")) / 1000.0
provider = TracerProvider(resource=Resource.create({"service.name": "lock-py"}))
provider.add_span_processor(LinuxThreadIdSpanProcessor())
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("kspan-test-app", "1.0.0")

lock = threading.Lock()
taken = threading.Event()
holder = {}


def hold():
    holder["tid"] = threading.get_native_id()
    with lock:
        taken.set()
        time.sleep(hold_s)  # releases the GIL; the lock stays held


t = threading.Thread(target=hold, name="holder")
t.start()
taken.wait()
with tracer.start_as_current_span("checkout") as span:
    t0 = time.monotonic_ns()
    lock.acquire()
    t1 = time.monotonic_ns()
    lock.release()
    ctx = span.get_span_context()
t.join()
provider.force_flush()
provider.shutdown()
print(json.dumps({
    "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
    "pid": os.getpid(), "tid": threading.get_native_id(), "holder_tid": holder["tid"], "wait_ns": t1 - t0,
}), flush=True)

"""A Python app instrumented with the OTel Python SDK and kspan's
LinuxThreadIdSpanProcessor (examples/python/kspan_otel.py), exporting
OTLP/gRPC to KSPAN_OTLP. It serves REQUESTS (default 20) consecutive
lock-bound requests: for each, a holder thread takes a threading.Lock and
keeps it HOLD_MS (default 120); the request's span `checkout`, on the main
thread, blocks acquiring it (a futex wait on the lock's semaphore) until the
holder releases it. Each span is exported as soon as its request ends
(force_flush). Prints {pid, tid, holder_tid, requests: [{trace_id,
span_id, wait_ns}]} on stdout.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))

from kspan_otel import LinuxThreadIdSpanProcessor  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

n = int(os.environ.get("REQUESTS", "20"))
hold_s = float(os.environ.get("HOLD_MS", "120")) / 1000.0
provider = TracerProvider(resource=Resource.create({"service.name": "lock-py"}))
provider.add_span_processor(LinuxThreadIdSpanProcessor())
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["KSPAN_OTLP"], insecure=True)))
tracer = provider.get_tracer("kspan-test-app", "1.0.0")

lock = threading.Lock()
go = threading.Semaphore(0)
taken = threading.Semaphore(0)
holder = {}


def hold():
    holder["tid"] = threading.get_native_id()
    for _ in range(n):
        go.acquire()
        with lock:
            taken.release()
            time.sleep(hold_s)  # releases the GIL; the lock stays held


t = threading.Thread(target=hold, name="holder")
t.start()
requests = []
for i in range(n):
    go.release()
    taken.acquire()  # the holder has the lock
    with tracer.start_as_current_span("checkout", attributes={"app.request": i}) as span:
        t0 = time.monotonic_ns()
        lock.acquire()
        t1 = time.monotonic_ns()
        lock.release()
        ctx = span.get_span_context()
    requests.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "wait_ns": t1 - t0})
    # each span leaves as its request ends, so it reaches kspan milliseconds
    # after its end: the case kspan's bounded wait has to cover
    provider.force_flush()
t.join()
provider.force_flush()
provider.shutdown()
print(json.dumps({"pid": os.getpid(), "tid": threading.get_native_id(), "holder_tid": holder["tid"], "requests": requests}), flush=True)

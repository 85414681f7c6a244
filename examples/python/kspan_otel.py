"""kspan app-side helper for the OpenTelemetry Python SDK (DESIGN §5).

A SpanProcessor that stamps every span with the OS thread that started it
(``linux.tid`` = threading.get_native_id()) and ``process.pid`` (os.getpid()),
so kspan can join the span to kernel events, which are keyed by pid/tid.

``thread.id`` is deliberately not used: the semantic conventions define it as
the runtime's managed thread id (in Python, threading.get_ident(), not the OS
tid), and kspan joins on ``linux.tid``. Values already set by the caller are
kept. Register it before the exporting processor::

    provider = TracerProvider()
    provider.add_span_processor(LinuxThreadIdSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
"""

import os
import threading
from typing import Optional

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

ATTR_LINUX_TID = "linux.tid"
ATTR_PROCESS_PID = "process.pid"


class LinuxThreadIdSpanProcessor(SpanProcessor):
    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        attrs = span.attributes or {}
        if ATTR_LINUX_TID not in attrs:
            # Python >= 3.8; on Linux the kernel tid (gettid)
            span.set_attribute(ATTR_LINUX_TID, threading.get_native_id())
        if ATTR_PROCESS_PID not in attrs:
            span.set_attribute(ATTR_PROCESS_PID, os.getpid())

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

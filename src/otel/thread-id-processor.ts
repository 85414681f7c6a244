// App-side helper (issue 5 item 5, DESIGN §5): a SpanProcessor for the OTel JS
// SDK that stamps every span with the OS thread that started it (`linux.tid`)
// and the process (`process.pid`), so kspan can join the span to kernel events
// (scheduler, block I/O, syscalls), which are keyed by pid/tid.
//
// Why `linux.tid` and not `thread.id`: the semantic conventions define
// `thread.id` as "current managed thread ID (as opposed to OS thread ID)" — a
// runtime id. In Node that is `worker_threads.threadId` (0 on the main thread,
// 1, 2, … for workers), which has no relation to the kernel's tid, and other
// instrumentations may already set it with that meaning. The kernel side only
// knows OS thread ids, so kspan joins on `linux.tid` (see StoreSpanConsumer:
// `tid` ← `linux.tid`; `thread.id` only with `threadIdIsOsTid: true`). This
// processor does not touch `thread.id`.
//
// The tid comes from `readlink('/proc/thread-self')` → "PID/task/TID" (Linux
// ≥ 3.17). It is read once per isolate and cached in a module-level variable:
// a Node isolate runs JS on one OS thread for its whole life (the main thread's
// tid equals the pid; each worker_threads Worker has its own isolate, its own
// copy of this module and so its own cache). Off Linux, or where /proc is not
// mounted, `linux.tid` is left unset and only `process.pid` is stamped.
//
// Attributes already present on the span (set by the caller in startSpan's
// options) are not overwritten.
//
// Caveat: the attribute names the thread that *started* the span. Work done
// later on other threads (libuv pool: fs, dns.lookup, crypto, zlib) is not
// on this tid; kspan's correlator handles that through the pid.

import { readlinkSync } from 'node:fs';
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';

export const ATTR_LINUX_TID = 'linux.tid';
export const ATTR_PROCESS_PID = 'process.pid';

/** undefined = not read yet; null = unavailable on this system */
let cachedTid: number | null | undefined;

/** Parses readlink('/proc/thread-self') ("PID/task/TID"); null when it does not match. */
export function parseThreadSelf(link: string): number | null {
  const m = /^(\d+)\/task\/(\d+)$/.exec(link);
  if (!m) return null;
  const tid = Number(m[2]);
  return Number.isSafeInteger(tid) && tid > 0 ? tid : null;
}

/** The OS thread id of the calling JS thread (cached per isolate), or null off Linux / without /proc. */
export function linuxTid(): number | null {
  if (cachedTid === undefined) {
    try {
      cachedTid = parseThreadSelf(readlinkSync('/proc/thread-self'));
    } catch {
      cachedTid = null;
    }
  }
  return cachedTid;
}

/**
 * Stamps `linux.tid` (OS thread id of the thread that started the span) and
 * `process.pid` on every span at start. Register it before the exporting
 * processor, e.g. `new BasicTracerProvider({ spanProcessors: [new LinuxThreadIdSpanProcessor(), new BatchSpanProcessor(exporter)] })`.
 */
export class LinuxThreadIdSpanProcessor implements SpanProcessor {
  onStart(span: Span, _parentContext: Context): void {
    const attrs = span.attributes;
    if (attrs[ATTR_LINUX_TID] === undefined) {
      const tid = linuxTid();
      if (tid !== null) span.setAttribute(ATTR_LINUX_TID, tid);
    }
    if (attrs[ATTR_PROCESS_PID] === undefined) span.setAttribute(ATTR_PROCESS_PID, process.pid);
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

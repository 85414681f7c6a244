// Work budgets for the MCP tools, and the cooperative scheduler that keeps
// their scans from stalling the event loop.
//
// Inside `kspan run --mcp-http` the MCP server shares the event loop with
// OTLP intake and capture. A tool call therefore never scans in one piece:
// it works in slices of at most SLICE_MS and, between slices, waits for its
// turn. Turns are handed out one per event-loop iteration (setImmediate), to
// every running call in FIFO order, so however many calls run at once, the
// loop gets back control after one slice: I/O of the rest of the process
// (sockets, the probe's pipe, timers) is served between any two slices.
//
// Each call also has a budget: wall time (default 2 s from its start, turns
// spent waiting included, so a flood of calls gets partial answers instead
// of queueing work), events examined (the row budget), and the request's
// AbortSignal (client gone, or notifications/cancelled). When one runs out,
// the scan stops and the tool answers with what it has, saying so.

/** Longest a tool call runs between two yields to the event loop. */
export const SLICE_MS = 5;
/** Default wall-time budget of one tool call. */
export const DEFAULT_TIME_MS = 2000;
/** Default row budget: events examined by one tool call. */
export const DEFAULT_MAX_EVENTS = 5_000_000;

export interface BudgetLimits {
  /** wall time from the start of the call, ms (default 2000) */
  timeMs?: number;
  /** events examined at most (default 5,000,000) */
  maxEvents?: number;
}

export type StopReason = 'time' | 'rows' | 'aborted';

// ---- the turn scheduler: one slice per event-loop iteration

const waiting: (() => void)[] = [];
let pumpScheduled = false;

function pump(): void {
  const next = waiting.shift();
  if (waiting.length) setImmediate(pump);
  else pumpScheduled = false;
  next?.();
}

/** Resolves when this caller may run its next slice (at the earliest, in the next event-loop iteration). */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => {
    waiting.push(resolve);
    if (!pumpScheduled) {
      pumpScheduled = true;
      setImmediate(pump);
    }
  });
}

/** Calls waiting for a turn right now (tests, diagnostics). */
export function turnsWaiting(): number {
  return waiting.length;
}

let running = 0;
/** Tool calls between Budget.begin() and Budget.end() (tests, diagnostics). */
export function callsRunning(): number {
  return running;
}

/**
 * One tool call's budget. `tick()` between units of work: it returns true
 * (go on) without yielding while the current slice is young, yields to the
 * event loop when the slice is used up, and returns false once the call must
 * stop (`stopped` says why).
 */
export class Budget {
  readonly t0 = performance.now();
  readonly deadline: number;
  readonly maxEvents: number;
  readonly timeMs: number;
  /** events examined so far (callers add with `rows()`) */
  events = 0;
  stopped: StopReason | null = null;
  private sliceStart = performance.now();
  /** slices run and turns waited (tests, audit) */
  slices = 0;
  /** between begin() and end(): counted in callsRunning() */
  private open = false;

  constructor(limits: BudgetLimits = {}, readonly signal?: AbortSignal) {
    this.timeMs = limits.timeMs ?? DEFAULT_TIME_MS;
    this.maxEvents = limits.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.deadline = this.t0 + this.timeMs;
  }

  /** Wait for the first turn: a call's work starts in a slice of its own. */
  async begin(): Promise<boolean> {
    if (!this.open) {
      this.open = true;
      running++;
    }
    return this.turn();
  }

  /**
   * Wait for a turn of our own now. After awaiting anything that is not a
   * turn (a promise shared with other calls), call this before working
   * again: calls resumed by the same promise would otherwise run back to
   * back in one event-loop iteration.
   */
  async turn(): Promise<boolean> {
    await nextTurn();
    this.sliceStart = performance.now();
    this.slices++;
    return this.check(this.sliceStart);
  }

  /** The call is over (its answer, if any, is built). */
  end(): void {
    if (this.open) {
      this.open = false;
      running--;
    }
  }

  /** Count `n` events examined (the row budget). */
  rows(n: number): void {
    this.events += n;
  }

  private check(now: number): boolean {
    if (this.stopped) return false;
    if (this.signal?.aborted) this.stopped = 'aborted';
    else if (now >= this.deadline) this.stopped = 'time';
    else if (this.events >= this.maxEvents) this.stopped = 'rows';
    return this.stopped === null;
  }

  /** Go on? Yields to the event loop when the slice is used up. */
  tick(): boolean | Promise<boolean> {
    const now = performance.now();
    if (!this.check(now)) return false;
    if (now - this.sliceStart < SLICE_MS) return true;
    return nextTurn().then(() => {
      this.sliceStart = performance.now();
      this.slices++;
      return this.check(this.sliceStart);
    });
  }

  /** The current slice is used up: reach a tick() soon. */
  due(): boolean {
    return performance.now() - this.sliceStart >= SLICE_MS;
  }

  elapsedMs(): number {
    return performance.now() - this.t0;
  }

  /** A one-line note for a partial answer, or null when the call was not stopped. */
  note(what = 'the scan'): string | null {
    switch (this.stopped) {
      case null: return null;
      case 'time': return `partial: ${what} stopped at the ${this.timeMs >= 1000 ? `${(this.timeMs / 1000).toFixed(1)} s` : `${this.timeMs} ms`} time budget; narrow the window or give pid/tid`;
      case 'rows': return `partial: ${what} stopped at the row budget (${this.maxEvents.toLocaleString('en-US')} events examined); narrow the window or give pid/tid`;
      case 'aborted': return `partial: ${what} stopped because the request was cancelled`;
    }
  }
}

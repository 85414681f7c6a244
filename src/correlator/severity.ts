// Severity of a cause: one rule for every cause kind.
import type { Severity } from './types.js';
import { MS } from './util.js';

/**
 * Severity of a cause, from its share of the span and its absolute time:
 *   high    share >= 0.20 and duration >= 5 ms
 *   medium  share >= 0.05 and duration >= 1 ms
 *   low     otherwise
 * Both conditions must hold, so a tiny span cannot get a "high" for 100 µs and
 * a long span cannot get one for a small fraction of it. A healthy span (pure
 * CPU work) has no cause above low: on-CPU time is never a cause.
 */
export function severityOf(durationNs: number, share: number): Severity {
  if (share >= 0.2 && durationNs >= 5 * MS) return 'high';
  if (share >= 0.05 && durationNs >= 1 * MS) return 'medium';
  return 'low';
}
export const SEV_RANK: Record<Severity, number> = { high: 2, medium: 1, low: 0 };


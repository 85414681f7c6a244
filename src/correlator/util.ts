// Small helpers shared by the correlator's files.

import { OffcpuFlag } from '../capture/index.js';

export const MS = 1_000_000;
/** the waker ran in interrupt context: the waker task is not a cause */
export const IRQ_FLAGS = OffcpuFlag.WAKER_HARDIRQ | OffcpuFlag.WAKER_SOFTIRQ;
/** Threads scanned at most when looking for competing I/O issuers / retransmits (no per-device / per-tuple index). */
export const MAX_SCAN_THREADS = 20_000;

export const pct = (x: number): string => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
export const hex = (v: number): string => '0x' + v.toString(16);
export const devName = (dev: number): string => `${Math.floor(dev / 1048576)}:${dev % 1048576}`;

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}


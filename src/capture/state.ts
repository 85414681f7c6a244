// CaptureState: what a consumer of a record stream needs to know about the
// probe besides the kernel records: HELLO, clock samples, drop counters,
// attach status, control ACKs. Shared by the live probe and file replay.

import { ClockHistory } from './clock.js';
import type { RecordBatch } from './decoder.js';
import { AckView, ClockView, DropsView, HelloView, StatusView } from './views.js';
import { Kind, RING_MAX, groupName, ringName } from './records.js';

export interface HelloInfo {
  abiVersion: number;
  ncpu: number;
  monoNs: number;
  realtimeNs: bigint;
  /** hex of the 16 boot_id bytes in the record */
  bootId: string;
  offcpuMinNs: number;
  probePid: number;
}

export interface DropsInfo {
  ring: number;
  name: string;
  /** records the BPF side could not reserve (cumulative) */
  lost: number;
  /** records / bytes the probe drained from this ring (cumulative) */
  records: number;
  bytes: number;
  /** monotonic ns of the DROPS record */
  ts: number;
}

export interface StatusInfo {
  group: number;
  name: string;
  /** 0 attached, -errno failed, 1 detached on request */
  err: number;
  nAttached: number;
  nFailed: number;
  detail: string;
  ts: number;
}

export interface AckInfo {
  seq: number;
  err: number;
  msg: string;
}

/** Receives decoded batches. Return a promise to apply backpressure: the source pauses until it settles. */
export interface CaptureSink {
  onBatch(batch: RecordBatch, clock: ClockHistory): void | Promise<void>;
}

export class CaptureState {
  readonly clock = new ClockHistory();
  hello: HelloInfo | null = null;
  /** Latest DROPS per ring (index = enum kspan_ring). */
  readonly drops: (DropsInfo | undefined)[] = new Array(RING_MAX).fill(undefined);
  /** Every STATUS record, in arrival order. */
  readonly status: StatusInfo[] = [];
  /** Called once, when the HELLO record is seen. */
  onHello: ((h: HelloInfo) => void) | null = null;
  /** Called for each CLOCK record that reports a realtime step. */
  onClockStep: ((monoNs: number) => void) | null = null;

  private readonly hv = new HelloView();
  private readonly cv = new ClockView();
  private readonly dv = new DropsView();
  private readonly sv = new StatusView();
  private readonly av = new AckView();

  /** STATUS records of one group (the CUDA group has one per library / symbol). */
  statusOf(group: number): StatusInfo[] {
    return this.status.filter((s) => s.group === group);
  }

  /** Sum of `lost` over rings (latest counters). */
  get totalLost(): number {
    let n = 0;
    for (const d of this.drops) if (d) n += d.lost;
    return n;
  }

  /**
   * Pick out the probe's own records from a batch. Returns the ACKs found
   * (null when none, the usual case) so the caller can resolve them after
   * the sink has seen the batch: an ACK promises the records before it were
   * delivered.
   */
  observe(batch: RecordBatch): AckInfo[] | null {
    const u32 = batch.u32;
    const offs = batch.offsets;
    let acks: AckInfo[] | null = null;
    for (let i = 0; i < batch.count; i++) {
      const kind = (u32[offs[i] >>> 2] >>> 16) & 0xff;
      if (kind < Kind.CLOCK && kind !== Kind.HELLO) continue;
      switch (kind) {
        case Kind.HELLO: {
          const v = this.hv.set(batch, i);
          const first = this.hello === null;
          this.hello = {
            abiVersion: v.abiVersion, ncpu: v.ncpu, monoNs: v.monoNs, realtimeNs: v.realtimeNs,
            bootId: v.bootId, offcpuMinNs: v.offcpuMinNs, probePid: v.probePid,
          };
          this.clock.add(v.monoNs, v.realtimeNs, 0);
          if (first && this.onHello) this.onHello(this.hello);
          break;
        }
        case Kind.CLOCK: {
          const v = this.cv.set(batch, i);
          this.clock.add(v.ts, v.realtimeNs, v.errorNs);
          if (v.stepped && this.onClockStep) this.onClockStep(v.ts);
          break;
        }
        case Kind.DROPS: {
          const v = this.dv.set(batch, i);
          const ring = v.ring;
          const prev = this.drops[ring];
          // cumulative counters: keep the latest by time
          if (!prev || prev.ts <= v.ts) {
            this.drops[ring] = {
              ring, name: ringName(ring), lost: v.lost, records: v.ringRecords, bytes: v.ringBytes, ts: v.ts,
            };
          }
          break;
        }
        case Kind.STATUS: {
          const v = this.sv.set(batch, i);
          this.status.push({
            group: v.group, name: groupName(v.group), err: v.err, nAttached: v.nAttached, nFailed: v.nFailed,
            detail: v.detail, ts: v.ts,
          });
          break;
        }
        case Kind.ACK: {
          const v = this.av.set(batch, i);
          (acks ??= []).push({ seq: v.seq, err: v.err, msg: v.msg });
          break;
        }
      }
    }
    return acks;
  }
}

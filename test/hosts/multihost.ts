// Synthetic stores of three "hosts" that each hold one span of the same
// trace, with a known kernel cause each (tests and bench/fanout.ts):
//   host-a  span 1 "frontend" (svc-a): preempted 60 ms of 100 by `hog` (pid 900)
//   host-b  span 2 "middle"   (svc-b): futex wait 50 ms, held by tid 202 (`holder`)
//   host-c  span 3 "backend"  (svc-c): block I/O (D state) 40 ms
// And stores of `n` more hosts with one span each of traces 2.. (slow-request merging).

import { OffcpuFlag, OwnerSrc, TaskEvent } from '../../src/capture/records.js';
import { localHost, type HostIdentity } from '../../src/store/index.js';
import { MS, W0, buildStore, span, tr, type Built } from '../correlator/util.js';

export const TRACE = tr(1);
export const HOG = 900;

export interface HostStore extends Built {
  host: HostIdentity;
}

function ident(name: string): HostIdentity {
  return { name, bootId: localHost().bootId };
}

export async function hostA(name = 'host-a'): Promise<HostStore> {
  const W = W0;
  const b = await buildStore(`mh-${name}`, (fw) => {
    fw.task({ ts: W - 500 * MS, pid: 100, tid: 101, event: TaskEvent.NAME, startTime: 1, comm: 'front', pcomm: 'front' });
    fw.task({ ts: W - 500 * MS, pid: HOG, tid: HOG, event: TaskEvent.NAME, startTime: 2, comm: 'hog', pcomm: 'hog' });
    fw.offcpu({ ts: W + 80 * MS, pid: 100, tid: 101, startNs: W + 20 * MS, flags: OffcpuFlag.PREEMPTED, preemptPid: HOG, preemptTid: HOG, outCpu: 1, cpu: 1 });
  }, [span(1, W, W + 100 * MS, { tid: 101, pid: 100, service: 'svc-a', name: 'frontend' })], undefined, { host: ident(name) });
  return { ...b, host: ident(name) };
}

export async function hostB(name = 'host-b'): Promise<HostStore> {
  const W = W0;
  const M1 = 0x7f00_0000_1000;
  const b = await buildStore(`mh-${name}`, (fw) => {
    fw.task({ ts: W - 500 * MS, pid: 200, tid: 201, event: TaskEvent.NAME, startTime: 1, comm: 'mid', pcomm: 'mid' });
    fw.task({ ts: W - 500 * MS, pid: 200, tid: 202, event: TaskEvent.NAME, startTime: 2, comm: 'holder', pcomm: 'mid' });
    fw.futexWait({ ts: W + 65 * MS, pid: 200, tid: 201, startNs: W + 15 * MS, uaddr: M1, op: 0x80, val: 2, ownerTid: 202, ownerSrc: OwnerSrc.GLIBC_MUTEX });
    fw.offcpu({ ts: W + 65 * MS, pid: 200, tid: 201, startNs: W + 15 * MS, runnableNs: W + 64.5 * MS, prevState: 1,
      flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: 200, wakerTid: 202, wakerUaddr: M1 });
  }, [span(2, W + 5 * MS, W + 75 * MS, { tid: 201, pid: 200, service: 'svc-b', name: 'middle', parentSpanId: '0000000000000001' })], undefined, { host: ident(name) });
  return { ...b, host: ident(name) };
}

export async function hostC(name = 'host-c'): Promise<HostStore> {
  const W = W0;
  const b = await buildStore(`mh-${name}`, (fw) => {
    fw.task({ ts: W - 500 * MS, pid: 300, tid: 301, event: TaskEvent.NAME, startTime: 1, comm: 'back', pcomm: 'back' });
    fw.blockIo({ ts: W + 59 * MS, pid: 300, tid: 301, startNs: W + 19.5 * MS, issueNs: W + 19.6 * MS, sector: 8, dev: (8 << 20) | 1, bytes: 4096, flags: 1, comm: 'back' });
    fw.offcpu({ ts: W + 60 * MS, pid: 300, tid: 301, startNs: W + 20 * MS, runnableNs: W + 59 * MS, prevState: 2, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ });
  }, [span(3, W + 10 * MS, W + 70 * MS, { tid: 301, pid: 300, service: 'svc-c', name: 'backend', parentSpanId: '0000000000000002' })], undefined, { host: ident(name) });
  return { ...b, host: ident(name) };
}

/** A host whose store holds one span of trace `traceN` lasting `durMs`, on a thread that ran the whole time. */
export async function hostWithSpan(name: string, traceN: number, durMs: number): Promise<HostStore> {
  const W = W0;
  const b = await buildStore(`mh-${name}`, (fw) => {
    fw.task({ ts: W - 500 * MS, pid: 400, tid: 401, event: TaskEvent.NAME, startTime: 1, comm: 'svc', pcomm: 'svc' });
  }, [span(10 + traceN, W, W + durMs * MS, { traceId: tr(traceN), tid: 401, pid: 400, service: `svc-${name}`, name: 'work' })], undefined, { host: ident(name) });
  return { ...b, host: ident(name) };
}

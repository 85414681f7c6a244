import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, RecordView } from '../../src/capture/decoder.js';
import { CaptureState } from '../../src/capture/state.js';
import { TaskNames } from '../../src/capture/names.js';
import { fmtDur, isoNs, recordToJson, recordToText, type JsonRecord } from '../../src/capture/json.js';
import { CudaApi, FutexFlag, Group, IoFlag, OffcpuFlag, OwnerSrc, Ring, TaskEvent, stateLetters, futexOpName } from '../../src/capture/records.js';
import { FrameWriter, ipv4Bytes, ipv6Bytes } from '../helpers/frames.js';

const E = 1_763_730_000_000_000_000n; // 2025-11-21T13:00:00Z
const S = 1e9; // mono of the HELLO: epoch = E + (mono - S)
const ep = (mono: number): string => (E + BigInt(mono - S)).toString();

/** Decode `w`, feeding names from TASK records, and format every record. */
function format(w: FrameWriter): { json: JsonRecord[]; text: string[] } {
  const d = new FrameDecoder();
  const st = new CaptureState();
  const names = new TaskNames();
  const v = new RecordView();
  const json: JsonRecord[] = [];
  const text: string[] = [];
  for (const b of d.push(w.toBuffer())) {
    st.observe(b);
    names.observeBatch(b);
    for (let i = 0; i < b.count; i++) {
      v.set(b, i);
      json.push(recordToJson(v, st.clock, names));
      text.push(recordToText(v, st.clock, names));
    }
  }
  return { json, text };
}

function base(): FrameWriter {
  const w = new FrameWriter();
  w.hello({ ts: S, monoNs: S, realtimeNs: E, ncpu: 4, probePid: 77, bootIdHi: 0x0123456789abcdefn, bootIdLo: 0xfedcba9876543210n });
  w.task({ ts: S + 1, pid: 100, tid: 101, event: TaskEvent.NAME, comm: 'worker', pcomm: 'app' });
  w.task({ ts: S + 1, pid: 100, tid: 102, event: TaskEvent.FORK, comm: 'holder', pcomm: 'app', otherPid: 100, otherTid: 100, startTime: S - 10 });
  return w;
}

test('hello and task records', () => {
  const { json, text } = format(base());
  assert.deepEqual(json[0], {
    kind: 'hello', ts: E.toString(), pid: 0, tid: 0, comm: 'swapper', cpu: 0, abi_version: 1, ncpu: 4,
    mono_ns: '1000000000', realtime_ns: E.toString(), boot_id: '01234567-89ab-cdef-fedc-ba9876543210',
    offcpu_min_ns: 50000, probe_pid: 77,
  });
  assert.deepEqual(json[2], {
    kind: 'task', ts: ep(S + 1), pid: 100, tid: 102, comm: 'holder', cpu: 0, event: 'fork', pcomm: 'app',
    start_time: ep(S - 10), parent: { pid: 100, tid: 100, comm: null },
  });
  assert.equal(text[1], '2025-11-21T13:00:00.000000001Z task        worker[100/101] cpu0 name comm=worker pcomm=app');
});

test('offcpu: epoch strings, split, state letters, flag names, waker and preemptor with comms', () => {
  const w = base();
  w.offcpu({
    ts: 2e9, pid: 100, tid: 101, cpu: 1, startNs: 1.5e9, runnableNs: 1.9e9, prevState: 1,
    flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_FUTEX | OffcpuFlag.IN_FUTEX, wakerPid: 100, wakerTid: 102,
    wakerCpu: 3, wakerUaddr: 0x7f0012345678, lastPid: 5, lastTid: 5, outCpu: 0,
  });
  w.offcpu({ ts: 2e9, pid: 100, tid: 102, cpu: 1, startNs: 1.5e9, prevState: 0, flags: OffcpuFlag.PREEMPTED, preemptPid: 100, preemptTid: 101, outCpu: 1 });
  w.offcpu({ ts: 2e9, pid: 100, tid: 102, startNs: 1.9e9, prevState: 2, flags: OffcpuFlag.WOKEN | OffcpuFlag.WAKER_HARDIRQ, runnableNs: 1.95e9 });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'offcpu', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 1,
    start: ep(1.5e9), runnable: ep(1.9e9), duration_ns: 5e8, blocked_ns: 4e8, runqueue_ns: 1e8,
    state: 'S', prev_state: 1, flags: ['woken', 'waker_futex', 'in_futex'], out_cpu: 0,
    waker: { pid: 100, tid: 102, comm: 'holder', cpu: 3, context: 'task', uaddr: '0x7f0012345678' },
    preemptor: null, next: { pid: 0, tid: 0, comm: 'swapper' }, last: { pid: 5, tid: 5, comm: null },
  });
  assert.equal(json[4].state, 'R+');
  assert.deepEqual(json[4].preemptor, { pid: 100, tid: 101, comm: 'worker' });
  assert.equal(json[4].blocked_ns, 0);
  assert.equal(json[4].runqueue_ns, 5e8);
  assert.equal(json[4].waker, null);
  assert.equal(json[5].state, 'D');
  assert.equal((json[5].waker as { context: string }).context, 'hardirq');
  assert.equal((json[5].waker as { uaddr: string | null }).uaddr, null);
  assert.equal(text[3], '2025-11-21T13:00:01.000000000Z offcpu      worker[100/101] cpu1 S 500.0ms (blocked 400.0ms, runq 100.0ms) woken by holder[100/102] futex 0x7f0012345678 [woken,waker_futex,in_futex]');
  assert.match(text[4], / R\+ 500\.0ms .* preempted by worker\[100\/101\] \[preempted\]$/);
});

test('state letters follow task_state_index()', () => {
  assert.equal(stateLetters(0, true), 'R+');
  assert.equal(stateLetters(0, false), 'R');
  assert.equal(stateLetters(0x1, false), 'S');
  assert.equal(stateLetters(0x2, false), 'D');
  assert.equal(stateLetters(0x102, false), 'D'); // TASK_KILLABLE
  assert.equal(stateLetters(0x402, false), 'I'); // TASK_IDLE
  assert.equal(stateLetters(0x2001, false), 'S'); // TASK_FREEZABLE | S
  assert.equal(stateLetters(0x4, false), 'T');
  assert.equal(stateLetters(0x8, false), 't');
  assert.equal(stateLetters(0x40, false), 'P');
  assert.equal(stateLetters(0x1000, false), 'D'); // TASK_RTLOCK_WAIT
});

test('futex wait / wake: hex uaddr, op names, errno, owner', () => {
  const w = base();
  w.futexWait({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, uaddr: 0x7f0012345678, op: 128, ret: -110, val: 2, ownerTid: 102, ownerSrc: OwnerSrc.GLIBC_MUTEX });
  w.futexWait({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, uaddr: 0x1000, op: 6 | 128 | 256, ret: 0 });
  w.futexWake({ ts: 2e9, pid: 100, tid: 102, startNs: 1.9e9, uaddr: 0x7f0012345678, uaddr2: 0x2000, op: 129, ret: 1 });
  const { json } = format(w);
  assert.deepEqual(json[3], {
    kind: 'futex_wait', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 0, start: ep(1.5e9),
    duration_ns: 5e8, uaddr: '0x7f0012345678', op: 'FUTEX_WAIT_PRIVATE', op_raw: 128, ret: -110,
    error: 'ETIMEDOUT', ret_source: 'syscall', val: 2, owner: { tid: 102, comm: 'holder', src: 'glibc_mutex' },
  });
  assert.equal(json[4].op, 'FUTEX_LOCK_PI_PRIVATE|FUTEX_CLOCK_REALTIME');
  assert.equal(json[4].owner, null);
  assert.equal(json[4].error, null);
  assert.deepEqual(json[5], {
    kind: 'futex_wake', ts: ep(2e9), pid: 100, tid: 102, comm: 'holder', cpu: 0, start: ep(1.9e9),
    duration_ns: 1e8, uaddr: '0x7f0012345678', uaddr2: '0x2000', op: 'FUTEX_WAKE_PRIVATE', op_raw: 129,
    woken: 1, ret: 1, error: null,
  });
  assert.equal(futexOpName(0xffff0001), 'futex2:1');
});

test('blocked (a snapshot of an interval still open): time so far, not woken / woken, the futex wait it is in', () => {
  const w = base();
  w.blocked({ ts: 2e9, pid: 100, tid: 101, cpu: 1, startNs: 1.5e9, prevState: 1, flags: OffcpuFlag.IN_FUTEX, uaddr: 0x7f0012345678, op: 128, val: 2, ownerTid: 102, ownerSrc: OwnerSrc.GLIBC_MUTEX });
  w.blocked({ ts: 2e9, pid: 100, tid: 102, startNs: 1.9e9, runnableNs: 1.95e9, prevState: 2, flags: OffcpuFlag.WOKEN, wakerPid: 100, wakerTid: 101 });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'blocked', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 1, start: ep(1.5e9), off_cpu_ns: 5e8, runnable: null,
    state: 'S', prev_state: 1, flags: ['in_futex'], waker: null,
    futex: { uaddr: '0x7f0012345678', op: 'FUTEX_WAIT_PRIVATE', owner: { tid: 102, comm: 'holder', src: 'glibc_mutex' } },
  });
  assert.match(text[3], /blocked +worker\[100\/101\] cpu1 S off CPU 500\.0ms so far, not woken yet in FUTEX_WAIT_PRIVATE 0x7f0012345678 owner=holder\[102\] \(glibc_mutex\) \[in_futex\]/);
  assert.equal(json[4].runnable, ep(1.95e9));
  assert.deepEqual(json[4].waker, { pid: 100, tid: 101, comm: 'worker' });
  assert.equal(json[4].futex, null);
  assert.match(text[4], /D off CPU 100\.0ms so far, runnable since .* \(woken by worker\[100\/101\]\)/);
});

test('futex wait from registers: ret inferred or unknown', () => {
  const w = base();
  w.futexWait({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, uaddr: 0x1000, op: 128, ret: -110, flags: FutexFlag.FROM_REGS | FutexFlag.RET_INFERRED });
  w.futexWait({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, uaddr: 0x1000, op: 128, ret: 0, flags: FutexFlag.FROM_REGS | FutexFlag.RET_UNKNOWN });
  const { json, text } = format(w);
  assert.equal(json[3].ret_source, 'inferred');
  assert.equal(json[3].error, 'ETIMEDOUT');
  assert.equal(json[4].ret_source, 'unknown');
  assert.match(text[3], /ret=ETIMEDOUT \(inferred\)$/);
  assert.match(text[4], /ret=\?$/);
});

test('block io: direction, dev, flags, queue/device split', () => {
  const w = base();
  w.blockIo({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, issueNs: 1.6e9, sector: 123456, dev: (259 << 20) | 3, bytes: 4096, flags: IoFlag.WRITE | IoFlag.SYNC | IoFlag.FUA, comm: 'worker' });
  w.blockIo({ ts: 2e9, pid: 7, tid: 7, startNs: 1.5e9, bytes: 512, comm: 'kworker/0:1H' });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'block_io', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 0, start: ep(1.5e9), issue: ep(1.6e9),
    duration_ns: 5e8, queue_ns: 1e8, device_ns: 4e8, dev: '259:3', sector: 123456, bytes: 4096,
    direction: 'write', flags: ['write', 'sync', 'fua'], error: 0,
  });
  assert.equal(json[4].direction, 'read');
  assert.equal(json[4].comm, 'kworker/0:1H'); // the issuer comm from the record
  assert.equal(json[4].issue, null);
  assert.equal(json[4].queue_ns, null);
  assert.match(text[3], /write 4096B dev 259:3 sector 123456 500\.0ms \(device 400\.0ms\) \[write,sync,fua\]$/);
});

test('tcp retransmit: IPv4 dotted, IPv6 compressed', () => {
  const w = base();
  w.tcpRetrans({ ts: 2e9, family: 10, saddr: ipv6Bytes('2001:db8:0:0:0:0:0:1'), daddr: ipv6Bytes('0:0:0:0:0:ffff:a00:2'), sport: 443, dport: 50000, state: 1, inIrq: 1, sockIno: 987654 });
  w.tcpRetrans({ ts: 2e9, pid: 100, tid: 101, family: 2, saddr: ipv4Bytes('10.0.0.1'), daddr: ipv4Bytes('192.168.1.20'), sport: 8080, dport: 40000, state: 4, err: -11 });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'tcp_retrans', ts: ep(2e9), pid: 0, tid: 0, comm: 'swapper', cpu: 0, family: 'ipv6', saddr: '2001:db8::1',
    sport: 443, daddr: '::ffff:10.0.0.2', dport: 50000, state: 'ESTABLISHED', in_irq: true, err: 0, sock_ino: 987654,
  });
  assert.equal(json[4].saddr, '10.0.0.1');
  assert.equal(json[4].daddr, '192.168.1.20');
  assert.equal(json[4].state, 'FIN_WAIT1');
  assert.equal(json[4].family, 'ipv4');
  assert.match(text[3], /\[2001:db8::1\]:443 -> \[::ffff:10\.0\.0\.2\]:50000 ESTABLISHED \(irq\)$/);
  assert.match(text[4], /10\.0\.0\.1:8080 -> 192\.168\.1\.20:40000 FIN_WAIT1 err=-11$/);
});

test('cuda call: api symbol name, arg by meaning', () => {
  const w = base();
  w.cudaCall({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, api: CudaApi.CUDA_STREAM_SYNC, arg: 0x5555aaaa0000 });
  w.cudaCall({ ts: 2e9, pid: 100, tid: 101, startNs: 1.9e9, api: CudaApi.CU_MEMCPY, arg: 1 << 20, ret: 700 });
  w.cudaCall({ ts: 2e9, pid: 100, tid: 101, startNs: 1.9e9, api: CudaApi.CU_EVENT_SYNC, arg: 0xabc });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'cuda_call', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 0, start: ep(1.5e9), duration_ns: 5e8,
    api: 'cudaStreamSynchronize', api_id: 4, arg: '0x5555aaaa0000', ret: 0, stream: '0x5555aaaa0000',
  });
  assert.equal(json[4].api, 'cuMemcpy');
  assert.equal(json[4].bytes, 1048576);
  assert.equal(json[4].ret, 700);
  assert.equal(json[5].api, 'cuEventSynchronize');
  assert.equal(json[5].event, '0xabc');
  assert.match(text[3], /cudaStreamSynchronize 500\.0ms stream=0x5555aaaa0000 ret=0$/);
});

test('stack, clock, drops, status, ack, exit', () => {
  const w = base();
  w.stack({ ts: 2e9, pid: 100, tid: 101, startNs: 1.5e9, user: [0x401000, 0x401234], kernel: [0xffffffff81000010n] });
  w.clock({ ts: 3e9, realtimeNs: E + 2_000_000_000n + 5n, errorNs: 25, stepped: 1 });
  w.drops({ ts: 3e9, ring: Ring.CUDA, lost: 5, records: 1000, bytes: 48000 });
  w.status({ ts: 3e9, group: Group.CUDA, err: -2, nFailed: 6, detail: '/usr/lib/libcudart.so.12' });
  w.status({ ts: 3e9, group: Group.TCP, err: 1, detail: 'detached on request' });
  w.ack({ ts: 3e9, seq: 4, err: -22, msg: 'unknown command: x' });
  w.task({ ts: 3e9, pid: 100, tid: 102, event: TaskEvent.EXIT, exitCode: 256, comm: 'holder', pcomm: 'app' });
  const { json, text } = format(w);
  assert.deepEqual(json[3], {
    kind: 'stack', ts: ep(2e9), pid: 100, tid: 101, comm: 'worker', cpu: 0, start: ep(1.5e9), n_user: 2, n_kernel: 1,
    user: ['0x401000', '0x401234'], kernel: ['0xffffffff81000010'],
  });
  // a stepped CLOCK sample applies from its own time on
  assert.equal(json[4].ts, (E + 2_000_000_005n).toString());
  assert.equal(json[4].realtime_ns, (E + 2_000_000_005n).toString());
  assert.equal(json[4].stepped, true);
  assert.equal(json[4].error_ns, 25);
  assert.deepEqual([json[5].ring, json[5].lost, json[5].records, json[5].bytes], ['cuda', 5, 1000, 48000]);
  assert.deepEqual([json[6].group, json[6].error, json[6].n_failed, json[6].detail], ['cuda', 'ENOENT', 6, '/usr/lib/libcudart.so.12']);
  assert.equal(json[7].error, 'detached');
  assert.deepEqual([json[8].seq, json[8].error, json[8].msg], [4, 'EINVAL', 'unknown command: x']);
  assert.equal(json[9].event, 'exit');
  assert.equal(json[9].exit_code, 256);
  assert.equal(json[9].comm, 'holder');
  assert.match(text[4], /realtime=2025-11-21T13:00:02\.000000005Z ±25ns STEPPED$/);
  assert.match(text[6], /cuda: ENOENT attached 0 failed 6 \(\/usr\/lib\/libcudart\.so\.12\)$/);
});

test('JSON lines round-trip through JSON.stringify (no BigInt left in)', () => {
  const w = base();
  w.offcpu({ ts: 2e9, tid: 101, startNs: 1.5e9 });
  for (const j of format(w).json) assert.deepEqual(JSON.parse(JSON.stringify(j)), j);
});

test('TaskNames: renames win, exit keeps the name, size is bounded', async () => {
  const { TaskNames: TN } = await import('../../src/capture/names.js');
  const w = new FrameWriter();
  w.task({ tid: 5, pid: 5, event: TaskEvent.NAME, comm: 'a', pcomm: 'a' });
  w.task({ tid: 5, pid: 5, event: TaskEvent.RENAME, comm: 'b', pcomm: 'b' });
  w.task({ tid: 5, pid: 5, event: TaskEvent.EXIT, comm: 'zzz' });
  for (let t = 10; t < 20; t++) w.task({ tid: t, pid: 10, event: TaskEvent.NAME, comm: `t${t}`, pcomm: 'p' });
  const names = new TN(8);
  for (const b of new FrameDecoder().push(w.toBuffer())) names.observeBatch(b);
  assert.equal(names.size, 8);
  assert.equal(names.get(5), undefined); // evicted: oldest
  assert.equal(names.get(19), 't19');
  assert.equal(names.get(11), undefined);
  assert.equal(names.get(12), 't12');
  assert.equal(names.process(10), 'p');
  const n2 = new TN();
  n2.set(5, 'x');
  for (const b of new FrameDecoder().push(w.toBuffer())) n2.observeBatch(b);
  assert.equal(n2.get(5), 'b');
});

test('formatting helpers', () => {
  assert.equal(isoNs(1_763_730_000_123_456_789n), '2025-11-21T13:00:00.123456789Z');
  assert.equal(fmtDur(999), '999ns');
  assert.equal(fmtDur(1500), '1.50µs');
  assert.equal(fmtDur(2_500_000), '2.50ms');
  assert.equal(fmtDur(3e9), '3.00s');
});

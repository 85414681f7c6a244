import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClockHistory } from '../../src/capture/clock.js';
import { CaptureState } from '../../src/capture/state.js';
import { FrameDecoder } from '../../src/capture/decoder.js';
import { FrameWriter } from '../helpers/frames.js';

// 2025-11-21T13:00:00Z in ns: beyond 2^53, so only BigInt holds it exactly.
const EPOCH = 1_763_730_000_000_000_000n;

test('conversion is exact in BigInt (epoch ns > 2^53)', () => {
  const c = new ClockHistory();
  const mono = 86_400_000_000_123; // one day of uptime, odd ns
  c.add(mono, EPOCH + 7n, 12);
  assert.equal(c.offsetAt(mono), EPOCH + 7n - BigInt(mono));
  assert.equal(c.toEpochNs(mono), EPOCH + 7n);
  assert.equal(c.toEpochNs(mono + 1), EPOCH + 8n);
  assert.equal(c.toEpochNs(mono + 999_999_999), EPOCH + 7n + 999_999_999n);
  assert.ok(Number(EPOCH) > Number.MAX_SAFE_INTEGER);
  // ms as a double: right to well under a microsecond
  const ms = c.toEpochMs(mono + 1_500);
  assert.ok(Math.abs(ms - (Number(EPOCH / 1000n) / 1000 + 0.001507)) < 1e-3, String(ms));
  assert.equal(c.errorAt(mono), 12);
});

test('the sample in force is the latest with mono <= t; before the first, the first', () => {
  const c = new ClockHistory();
  c.add(1_000, EPOCH, 0); // offset EPOCH - 1000
  c.add(5_000, EPOCH + 4_000n + 50n, 0); // offset grew by 50 (slew)
  c.add(9_000, EPOCH + 8_000n + 60n, 0);
  assert.equal(c.toEpochNs(500), EPOCH - 500n); // before the first sample: first sample's offset
  assert.equal(c.toEpochNs(1_000), EPOCH);
  assert.equal(c.toEpochNs(4_999), EPOCH + 3_999n);
  assert.equal(c.toEpochNs(5_000), EPOCH + 4_050n);
  assert.equal(c.toEpochNs(8_999), EPOCH + 8_049n);
  assert.equal(c.toEpochNs(9_000), EPOCH + 8_060n);
  assert.equal(c.toEpochNs(1e12), EPOCH + BigInt(1e12) - 1_000n + 60n);
  // lookups in any order (cached index must not leak)
  assert.equal(c.toEpochNs(2_000), EPOCH + 1_000n);
  assert.equal(c.toEpochNs(9_500), EPOCH + 8_560n);
  assert.equal(c.toEpochNs(600), EPOCH - 400n);
});

test('a realtime step is just a new sample: earlier times keep the old offset', () => {
  const c = new ClockHistory();
  c.add(10_000_000_000, EPOCH, 0);
  // someone ran `date -s` one hour back at mono 20 s
  const HOUR = 3_600_000_000_000n;
  c.add(20_000_000_000, EPOCH + 10_000_000_000n - HOUR, 0);
  assert.equal(c.toEpochNs(19_999_999_999), EPOCH + 9_999_999_999n);
  assert.equal(c.toEpochNs(20_000_000_000), EPOCH + 10_000_000_000n - HOUR);
  assert.equal(c.toEpochNs(25_000_000_000), EPOCH + 15_000_000_000n - HOUR);
  assert.equal(c.offsetAt(15_000_000_000) - c.offsetAt(25_000_000_000), HOUR);
});

test('samples added out of order are kept sorted; duplicates keep the more precise', () => {
  const c = new ClockHistory();
  c.add(3_000, EPOCH + 3_000n, 5);
  c.add(1_000, EPOCH + 1_000n + 7n, 5);
  c.add(2_000, EPOCH + 2_000n + 9n, 5);
  assert.deepEqual(c.samples().map((s) => s.monoNs), [1_000, 2_000, 3_000]);
  assert.equal(c.toEpochNs(1_500), EPOCH + 1_507n);
  assert.equal(c.toEpochNs(2_500), EPOCH + 2_509n);
  c.add(2_000, EPOCH + 2_000n + 1n, 1); // more precise
  c.add(2_000, EPOCH + 2_000n + 99n, 50); // less precise: ignored
  assert.equal(c.size, 3);
  assert.equal(c.toEpochNs(2_500), EPOCH + 2_501n);
});

test('no samples: offset 0; toEpochMs stays consistent with toEpochNs', () => {
  const c = new ClockHistory();
  assert.equal(c.offsetAt(123), 0n);
  assert.equal(c.toEpochNs(123), 123n);
  c.add(1e9, EPOCH, 0);
  for (const t of [0, 1e9, 1e9 + 123_456_789, 3.6e12]) {
    const ns = c.toEpochNs(t);
    assert.ok(Math.abs(c.toEpochMs(t) - Number(ns) / 1e6) < 1e-3, `t=${t}`);
  }
  assert.equal(c.toMonoNs(EPOCH + 5n), 1e9 + 5);
});

test('CaptureState builds the history from HELLO and CLOCK records', () => {
  const w = new FrameWriter();
  w.hello({ ts: 1e9, monoNs: 1e9, realtimeNs: EPOCH });
  w.clock({ ts: 2e9, realtimeNs: EPOCH + 1_000_000_100n, errorNs: 30 });
  w.clock({ ts: 3e9, realtimeNs: EPOCH - 5_000_000_000n, errorNs: 20, stepped: 1 });
  const st = new CaptureState();
  let steps = 0;
  st.onClockStep = () => steps++;
  let hello = 0;
  st.onHello = () => hello++;
  for (const b of new FrameDecoder().push(w.toBuffer())) st.observe(b);
  assert.equal(hello, 1);
  assert.equal(steps, 1);
  assert.equal(st.clock.size, 3);
  assert.equal(st.clock.toEpochNs(1.5e9), EPOCH + 500_000_000n);
  assert.equal(st.clock.toEpochNs(2.5e9), EPOCH + 1_500_000_100n);
  assert.equal(st.clock.toEpochNs(3e9 + 1), EPOCH - 5_000_000_000n + 1n);
  assert.equal(st.clock.errorAt(2.5e9), 30);
});

// `kspan demo`: the quickstart's main command (src/demo runs it).

import { parseArgs } from 'node:util';
import { ProbeError, runDoctor } from '../capture/index.js';
import { runDemo, type DemoOptions } from '../demo/index.js';

export const DEMO_HELP = `usage: kspan demo [--duration S] [--json] [--data DIR] [--python PATH] [--protocol grpc|http/protobuf]

Runs a vLLM-shaped service (examples/vllm) under kspan on a temporary store:
capture (eBPF, needs root) + an OTLP receiver, ~S seconds of requests while a
CPU-bound neighbour, a tokenizer thread holding a lock and CUDA syncs slow the
engine down, then the slowest requests and why the worst one was slow.
  --duration S   seconds of load (default 12)
  --json         print the explanation (explain JSON contract + "demo") on stdout
  --data DIR     keep the store in DIR (default: a new temporary directory; kept)
  --python PATH  interpreter with the OTel SDK (default .venv/bin/python)
  --protocol P   OTLP protocol of the workload's exporter (default grpc)
  -- ARGS        passed to examples/vllm/serve.py (e.g. -- --rate 20 --tok-hold-ms 20)`;

/** `kspan demo [options]`; returns the exit code. */
export async function cmdDemo(argv: string[]): Promise<number> {
  const dd = argv.indexOf('--');
  const own = dd >= 0 ? argv.slice(0, dd) : argv;
  let v;
  try {
    v = parseArgs({
      args: own, strict: true, allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' }, duration: { type: 'string', short: 'd' },
        data: { type: 'string' }, python: { type: 'string' }, protocol: { type: 'string' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`kspan demo: ${(e as Error).message}\n${DEMO_HELP}\n`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(DEMO_HELP + '\n');
    return 0;
  }
  const durationS = v.duration !== undefined ? Number(v.duration) : 12;
  if (!(durationS >= 1 && durationS <= 3600)) {
    process.stderr.write(`kspan demo: --duration wants seconds between 1 and 3600, got "${v.duration}"\n`);
    return 2;
  }
  if (v.protocol !== undefined && v.protocol !== 'grpc' && v.protocol !== 'http/protobuf') {
    process.stderr.write(`kspan demo: --protocol is grpc or http/protobuf, got "${v.protocol}"\n`);
    return 2;
  }
  // Capture first: no point building and starting anything when the probe cannot run here.
  const doc = await runDoctor({ noProbe: true });
  if (!doc.ready) {
    process.stderr.write(`kspan demo: capture cannot run here: ${doc.reason ?? 'see kspan doctor'}\n`);
    for (const c of doc.checks) if (c.status === 'fail' && !(doc.reason ?? '').includes(c.detail)) process.stderr.write(`  ${c.name}: ${c.detail}\n`);
    process.stderr.write('kspan demo: `kspan doctor` checks what capture needs (the demo needs root, or CAP_BPF + CAP_PERFMON)\n');
    return 1;
  }
  try {
    const r = await runDemo({
      durationS, dataDir: v.data, python: v.python, protocol: v.protocol as DemoOptions['protocol'],
      workloadArgs: dd >= 0 ? argv.slice(dd + 1) : [],
    });
    process.stdout.write(v.json ? JSON.stringify(r.explanation) + '\n' : r.report);
    return r.explanation.found ? 0 : 1;
  } catch (e) {
    if (e instanceof ProbeError) {
      process.stderr.write(`kspan demo: capture cannot run: ${e.message}\n`);
      if (e.reason !== 'not_built') process.stderr.write('kspan demo: `kspan doctor` checks what capture needs\n');
      else process.stderr.write('kspan demo: build the probe with `make -s probe` (npm run build)\n');
      return 1;
    }
    process.stderr.write(`kspan demo: ${(e as Error).message}\n`);
    return 1;
  }
}

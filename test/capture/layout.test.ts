// Checks src/capture/records.ts against bpf/kspan.h with the C compiler:
// the struct and enum lists come from parsing the header, their sizes,
// offsets and values from a compiled program, so a field or enumerator
// added to the header without a TS counterpart fails here too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/probe.js';
import * as R from '../../src/capture/records.js';

const header = readFileSync(join(REPO_ROOT, 'bpf', 'kspan.h'), 'utf8');
const noComments = header.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

function parseStructs(src: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of src.matchAll(/struct\s+(kspan_\w+)\s*\{([\s\S]*?)\};/g)) {
    const fields: string[] = [];
    for (const decl of m[2].split(';')) {
      const d = decl.trim();
      if (!d) continue;
      const f = /(\w+)\s*(\[[^\]]*\])?\s*$/.exec(d);
      assert.ok(f, `cannot parse field "${d}" of ${m[1]}`);
      fields.push(f[1]);
    }
    out.set(m[1], fields);
  }
  return out;
}

function parseEnums(src: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of src.matchAll(/enum\s+(kspan_\w+)\s*\{([\s\S]*?)\};/g)) {
    out.set(m[1], [...m[2].matchAll(/(KSPAN_\w+)\s*=/g)].map((x) => x[1]));
  }
  return out;
}

const structs = parseStructs(noComments);
const enums = parseEnums(noComments);
const defines = ['KSPAN_ABI_VERSION', 'KSPAN_REC_MAGIC', 'KSPAN_COMM_LEN', 'KSPAN_MAX_STACK', 'KSPAN_MAX_REC'];

interface CLayout {
  structs: Record<string, { sizeof: number; fields: Record<string, [number, number]> }>;
  consts: Record<string, number>;
}

function compileLayout(): CLayout {
  const lines: string[] = [
    '#include <stdio.h>', '#include <stddef.h>', '#include <linux/types.h>', '#include "kspan.h"',
    'int main(void) {', '  int first = 1;', '  printf("{\\"structs\\":{");',
  ];
  let si = 0;
  for (const [name, fields] of structs) {
    lines.push(`  printf("%s\\"${name}\\":{\\"sizeof\\":%zu,\\"fields\\":{", ${si++ ? '","' : '""'}, sizeof(struct ${name}));`);
    fields.forEach((f, i) => {
      lines.push(`  printf("%s\\"${f}\\":[%zu,%zu]", ${i ? '","' : '""'}, offsetof(struct ${name}, ${f}), sizeof(((struct ${name} *)0)->${f}));`);
    });
    lines.push('  printf("}}");');
  }
  lines.push('  printf("},\\"consts\\":{");');
  const names = [...defines, ...[...enums.values()].flat()];
  names.forEach((n, i) => lines.push(`  printf("%s\\"${n}\\":%lld", ${i ? '","' : '""'}, (long long)(${n}));`));
  lines.push('  printf("}}\\n");', '  (void)first;', '  return 0;', '}');
  const dir = mkdtempSync(join(tmpdir(), 'kspan-layout-'));
  try {
    writeFileSync(join(dir, 'layout.c'), lines.join('\n'));
    execFileSync('gcc', ['-Wall', '-I', join(REPO_ROOT, 'bpf'), '-o', join(dir, 'layout'), join(dir, 'layout.c')], { stdio: 'pipe' });
    return JSON.parse(execFileSync(join(dir, 'layout'), { encoding: 'utf8' })) as CLayout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const c = compileLayout();

test('every struct in kspan.h is mirrored with identical sizeof, offsets and sizes', () => {
  assert.ok(structs.size >= 14, `parsed ${structs.size} structs`);
  assert.deepEqual(Object.keys(R.STRUCTS).sort(), [...structs.keys()].sort());
  for (const [name, cs] of Object.entries(c.structs)) {
    const ts = R.STRUCTS[name as keyof typeof R.STRUCTS];
    assert.equal(ts.sizeof, cs.sizeof, `sizeof(struct ${name})`);
    assert.deepEqual(
      Object.fromEntries(Object.entries(ts.fields).map(([k, v]) => [k, [v[0], v[1]]])),
      cs.fields,
      `fields of struct ${name}`,
    );
  }
});

test('per-kind offset tables and MIN_SIZE follow the structs', () => {
  assert.equal(R.OFFCPU.SIZE, c.structs.kspan_offcpu.sizeof);
  assert.equal(R.OFFCPU.waker_cpu, c.structs.kspan_offcpu.fields.waker_cpu[0]);
  assert.equal(R.TCP_RETRANS.sock_ino, c.structs.kspan_tcp_retrans.fields.sock_ino[0]);
  assert.equal(R.STACK_FIXED, c.structs.kspan_stack.fields.ips[0]);
  assert.equal(R.STATUS_DETAIL_LEN, c.structs.kspan_status.fields.detail[1]);
  assert.equal(R.ACK_MSG_LEN, c.structs.kspan_ack.fields.msg[1]);
  assert.equal(R.HDR_SIZE, c.structs.kspan_hdr.sizeof);
  for (const [k, s] of [[R.Kind.HELLO, 'kspan_hello'], [R.Kind.OFFCPU, 'kspan_offcpu'], [R.Kind.ACK, 'kspan_ack'], [R.Kind.CLOCK, 'kspan_clock']] as const) {
    assert.equal(R.MIN_SIZE[k], c.structs[s].sizeof, s);
  }
  // every record size is a multiple of 8 (hdr.size contract)
  for (const [name, s] of Object.entries(c.structs)) assert.equal(s.sizeof % 8, 0, name);
});

test('#defines match', () => {
  assert.equal(c.consts.KSPAN_ABI_VERSION, R.ABI_VERSION);
  assert.equal(c.consts.KSPAN_REC_MAGIC, R.REC_MAGIC);
  assert.equal(c.consts.KSPAN_COMM_LEN, R.COMM_LEN);
  assert.equal(c.consts.KSPAN_MAX_STACK, R.MAX_STACK);
  assert.equal(c.consts.KSPAN_MAX_REC, R.MAX_REC);
  assert.equal(c.structs.kspan_stack.fields.ips[1], 2 * R.MAX_STACK * 8);
});

// C enumerator prefix -> TS table (names after the prefix must match).
const ENUM_MAP: Record<string, { prefix: string; table: Record<string, number>; extra?: Record<string, number> }> = {
  kspan_kind: { prefix: 'KSPAN_', table: R.Kind, extra: { KSPAN_KIND_MAX: R.KIND_MAX } },
  kspan_offcpu_flags: { prefix: 'KSPAN_OFF_', table: R.OffcpuFlag },
  kspan_owner_src: { prefix: 'KSPAN_OWNER_', table: R.OwnerSrc },
  kspan_futex_flags: { prefix: 'KSPAN_FUTEX_', table: R.FutexFlag },
  kspan_io_flags: { prefix: 'KSPAN_IO_', table: R.IoFlag },
  kspan_cuda_api: { prefix: 'KSPAN_', table: R.CudaApi },
  kspan_task_event: { prefix: 'KSPAN_TASK_', table: R.TaskEvent },
  kspan_ring: { prefix: 'KSPAN_RING_', table: R.Ring, extra: { KSPAN_RING_MAX: R.RING_MAX } },
  kspan_group: { prefix: 'KSPAN_GROUP_', table: R.Group, extra: { KSPAN_GROUP_MAX: R.GROUP_MAX } },
};

test('every enum in kspan.h matches its TS table, both ways', () => {
  assert.deepEqual([...enums.keys()].sort(), Object.keys(ENUM_MAP).sort());
  for (const [ename, names] of enums) {
    const m = ENUM_MAP[ename];
    const seen = new Set<string>();
    for (const n of names) {
      const want = c.consts[n];
      if (m.extra && n in m.extra) {
        assert.equal(m.extra[n], want, n);
        continue;
      }
      assert.ok(n.startsWith(m.prefix), `${n} prefix`);
      const key = n.slice(m.prefix.length);
      assert.equal(m.table[key], want, `${ename}: ${n} = ${want}, records.ts has ${m.table[key]}`);
      seen.add(key);
    }
    assert.deepEqual(Object.keys(m.table).sort(), [...seen].sort(), `${ename}: TS has entries the header lacks`);
  }
});

test('name tables cover every enumerator', () => {
  for (const [k, v] of Object.entries(R.Kind)) assert.equal(R.kindName(v), k.toLowerCase());
  assert.equal(R.kindName(99), 'kind99');
  for (const v of Object.values(R.CudaApi)) assert.match(R.cudaApiName(v), /^cu(da)?[A-Z]/);
  assert.equal(R.cudaApiName(R.CudaApi.CUDA_STREAM_SYNC), 'cudaStreamSynchronize');
  assert.equal(R.cudaApiName(R.CudaApi.CU_CTX_SYNC), 'cuCtxSynchronize');
  for (const v of Object.values(R.TaskEvent)) assert.ok(R.TASK_EVENT_NAMES[v]);
  for (const v of Object.values(R.OwnerSrc)) assert.ok(R.OWNER_SRC_NAMES[v]);
  assert.deepEqual(R.RING_NAMES.length, R.RING_MAX);
  assert.deepEqual(R.GROUP_NAMES.length, R.GROUP_MAX);
  assert.equal(R.groupName(R.Group.CUDA), 'cuda');
});

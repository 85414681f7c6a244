// The deploy/ files (issue 15, item 4), checked by real tools:
//   - deploy/kubernetes/*.yaml decoded into the Kubernetes API types by
//     test/deploy/k8scheck (k8s.io/api + sigs.k8s.io/json strict decoding,
//     built with the machine's Go into build/k8scheck), then the decoded
//     objects are checked against each other and kspan's own flags;
//   - deploy/systemd/kspan.service by `systemd-analyze verify` (when installed);
//   - deploy/collector/*.yaml by the collector's own `validate`
//     (build/otelcol/otelcol-kspan, built by `npm run setup`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/capture/index.js';
import { OTELCOL_BIN, requireBuilt } from '../helpers/jaeger.js';

const SRC = join(REPO_ROOT, 'test', 'deploy', 'k8scheck');
const BIN_DIR = join(REPO_ROOT, 'build', 'k8scheck');
const BIN = join(BIN_DIR, 'k8scheck');
const K8S = join(REPO_ROOT, 'deploy', 'kubernetes');

function goBinary(): string {
  for (const p of ['/usr/local/go/bin/go', '/usr/bin/go']) if (existsSync(p)) return p;
  const w = spawnSync('sh', ['-c', 'command -v go']);
  if (w.status === 0) return w.stdout.toString().trim();
  throw new Error('Go is not installed (needed to build test/deploy/k8scheck: Go 1.26+ in PATH or /usr/local/go/bin)');
}

/** Builds k8scheck when its sources changed (stamp: their hash). */
function k8scheck(): string {
  const hash = createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) hash.update(readFileSync(join(SRC, f)));
  const stamp = hash.digest('hex');
  const stampFile = join(BIN_DIR, '.stamp');
  if (existsSync(BIN) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return BIN;
  mkdirSync(BIN_DIR, { recursive: true });
  const r = spawnSync(goBinary(), ['build', '-o', BIN, '.'], {
    cwd: SRC, env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' }, timeout: 600_000,
  });
  if (r.status !== 0) throw new Error(`go build k8scheck failed:\n${r.stderr}`);
  writeFileSync(stampFile, stamp);
  return BIN;
}

interface Decoded { file: string; kind: string; object: any }

function decode(files: string[]): { status: number | null; objects: Decoded[]; stderr: string } {
  const r = spawnSync(k8scheck(), files, { encoding: 'utf8' });
  return { status: r.status, objects: r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Decoded), stderr: r.stderr };
}

test('k8scheck refuses what the API server would: a misspelt field, a duplicate key, a wrong type, an unknown kind', { timeout: 700_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kspan-k8scheck-'));
  try {
    const bad = {
      misspelt: 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIp: None\n',
      duplicate: 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIP: None\n  clusterIP: None\n',
      type: 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostPID: "yes"\n',
      kind: 'apiVersion: v1\nkind: Pod2\nmetadata: {name: x}\n',
    };
    for (const [name, yaml] of Object.entries(bad)) {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(f, yaml);
      const r = decode([f]);
      assert.equal(r.status, 1, `${name} refused: ${r.stderr}`);
    }
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIP: None\n');
    assert.equal(decode([good]).status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deploy/kubernetes: every manifest decodes strictly into the API types, and they fit together', { timeout: 700_000 }, () => {
  const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml')).map((f) => join(K8S, f));
  const r = decode(files);
  assert.equal(r.status, 0, r.stderr);
  const by = (kind: string, name?: string): any => r.objects.find((o) => o.kind === kind && (!name || o.object.metadata.name === name))?.object;
  const ds = by('DaemonSet', 'kspan');
  const svc = by('Service', 'kspan-peers');
  const secret = by('Secret', 'kspan-mcp-token');
  const ns = by('Namespace', 'kspan');
  assert.ok(ds && svc && secret && ns, `DaemonSet, headless Service, Secret, Namespace: ${r.objects.map((o) => o.kind).join(', ')}`);
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];
  // least privilege: not privileged, only the capabilities the probe needs
  assert.equal(pod.hostPID, true);
  assert.notEqual(pod.hostNetwork, true, 'no host network: hostPorts for OTLP');
  assert.equal(c.securityContext.privileged, false);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.deepEqual([...c.securityContext.capabilities.add].sort(), ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_RESOURCE']);
  // the host mounts BPF needs, read-only, and the store on a hostPath
  const vol = (mountPath: string): { mount: any; volume: any } => {
    const mount = c.volumeMounts.find((m: any) => m.mountPath === mountPath);
    assert.ok(mount, `a mount at ${mountPath}`);
    return { mount, volume: pod.volumes.find((v: any) => v.name === mount.name) };
  };
  for (const p of ['/sys/kernel/btf', '/sys/kernel/tracing', '/sys/fs/cgroup']) {
    const { mount, volume } = vol(p);
    assert.equal(volume.hostPath?.path, p);
    assert.equal(mount.readOnly, true, `${p} read-only`);
  }
  const store = vol('/var/lib/kspan');
  assert.equal(store.volume.hostPath?.path, '/var/lib/kspan');
  // kspan's flags, as the CLI parses them
  const args: string[] = c.args;
  assert.equal(args[0], 'run');
  const flag = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const help = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'kspan.js'), 'help'], { encoding: 'utf8' }).stdout + spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'kspan.js'), 'mcp', '--help'], { encoding: 'utf8' }).stdout;
  for (const a of args.slice(1)) assert.ok(help.includes(a.split('=')[0]), `kspan knows ${a.split('=')[0]}`);
  assert.equal(flag('data'), '/var/lib/kspan');
  assert.equal(flag('host-name'), '$(NODE_NAME)');
  assert.equal(c.env.find((e: any) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName');
  // the token Secret, mounted where --mcp-token-file reads it
  const tokenMount = vol(flag('mcp-token-file')!.replace(/\/[^/]+$/, ''));
  assert.equal(tokenMount.volume.secret.secretName, secret.metadata.name);
  assert.ok(Object.hasOwn(secret.stringData ?? secret.data, flag('mcp-token-file')!.split('/').pop()!), 'the Secret has the key the file is named after');
  // peers: the headless Service's DNS name and MCP port
  assert.equal(svc.spec.clusterIP, 'None');
  assert.deepEqual(svc.spec.selector, ds.spec.selector.matchLabels);
  assert.deepEqual(ds.spec.template.metadata.labels, ds.spec.selector.matchLabels);
  const mcpPort = c.ports.find((p: any) => p.name === 'mcp');
  assert.equal(flag('mcp-http'), `0.0.0.0:${mcpPort.containerPort}`);
  assert.equal(svc.spec.ports[0].targetPort, 'mcp');
  assert.equal(flag('peers-dns'), `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local:${svc.spec.ports[0].port}`);
  // apps reach the node's kspan at status.hostIP: hostPorts for OTLP
  const grpc = c.ports.find((p: any) => p.name === 'otlp-grpc');
  assert.equal(grpc.hostPort, 4317);
  assert.equal(flag('otlp-grpc'), '0.0.0.0:4317');
  const app = by('Deployment', 'checkout');
  const env = app.spec.template.spec.containers[0].env;
  const nodeIp = env.find((e: any) => e.valueFrom?.fieldRef?.fieldPath === 'status.hostIP');
  assert.ok(nodeIp, 'the example app reads status.hostIP');
  assert.equal(env.find((e: any) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT').value, `http://$(${nodeIp.name}):${grpc.hostPort}`);
  // $(VAR) references must name variables defined earlier in the list
  env.forEach((e: any, i: number) => {
    for (const m of String(e.value ?? '').matchAll(/\$\((\w+)\)/g)) assert.ok(env.slice(0, i).some((x: any) => x.name === m[1]), `${e.name}: $(${m[1]}) is defined before it`);
  });
  // everything in the kspan namespace, which admits it
  for (const o of [ds, svc, secret]) assert.equal(o.metadata.namespace, ns.metadata.name);
  assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
});

test('deploy/systemd/kspan.service: systemd-analyze verify; the same capabilities as the DaemonSet; a state directory and a restart policy', (t) => {
  const unit = join(REPO_ROOT, 'deploy', 'systemd', 'kspan.service');
  const text = readFileSync(unit, 'utf8');
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(text)![1].split(/\s+/).map((x) => x.replace(/^CAP_/, '')).sort();
  assert.deepEqual(caps, ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_RESOURCE']);
  assert.match(text, /^StateDirectory=kspan$/m);
  assert.match(text, /^Restart=on-failure$/m);
  assert.match(text, /--data \/var\/lib\/kspan/);
  assert.match(text, /^NoNewPrivileges=yes$/m);
  const which = spawnSync('sh', ['-c', 'command -v systemd-analyze']);
  if (which.status !== 0) {
    t.skip('systemd-analyze is not installed');
    return;
  }
  const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', `no warnings: ${r.stderr}`);
});

test('deploy/collector: the gateway and agent configs pass the collector\'s own validation', { timeout: 120_000 }, () => {
  requireBuilt(OTELCOL_BIN);
  const env = { ...process.env, KSPAN_GATEWAY_LISTEN: '127.0.0.1:0', KSPAN_BACKEND: '127.0.0.1:4317', KSPAN_AGENT_LISTEN: '127.0.0.1:0', KSPAN_ENDPOINT: '127.0.0.1:14317' };
  for (const f of ['gateway.yaml', 'agent.yaml']) {
    const r = spawnSync(OTELCOL_BIN, ['validate', `--config=${join(REPO_ROOT, 'deploy', 'collector', f)}`], { encoding: 'utf8', env });
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
  }
  // and a broken one is refused (the check is real)
  const dir = mkdtempSync(join(tmpdir(), 'kspan-otelcol-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(join(REPO_ROOT, 'deploy', 'collector', 'gateway.yaml'), 'utf8').replace('otlp/backend]', 'otlp/nowhere]'));
    assert.notEqual(spawnSync(OTELCOL_BIN, ['validate', `--config=${bad}`], { env }).status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

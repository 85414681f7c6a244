// "Hosts" on one machine for tests: network namespaces joined by a bridge.
//
//   <p>-gw   the bridge <p>br (10.213.S.254/24): where shared services run
//   <p>-h1   10.213.S.1/24, veth to the bridge
//   <p>-h2   10.213.S.2/24 ...
//
// Private addresses exist only inside these namespaces (the root namespace
// gets no address or route). Commands run in a namespace through
// `nsenter --net=/run/netns/NAME` (the network namespace only: mounts such as
// tracefs and the cgroup hierarchy stay as they are, unlike `ip netns exec`,
// which remounts /sys). remove() deletes the namespaces, and with them the
// veths and the bridge; kill the processes inside first.

import { spawnSync } from 'node:child_process';

export interface NsHost {
  name: string;
  ns: string;
  ip: string;
}

export interface NsNet {
  gw: NsHost;
  hosts: NsHost[];
  /** argv that runs cmd args in namespace ns */
  exec(ns: string, cmd: string, args: string[]): [string, string[]];
  remove(): void;
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** n hosts and a gateway namespace on a bridge; names start with `prefix` (short: interface names have 15 chars). */
export function nsNet(prefix: string, n: number): NsNet {
  const sub = 10 + (process.pid % 240);
  const base = `10.213.${sub}`;
  const gw: NsHost = { name: 'gw', ns: `${prefix}-gw`, ip: `${base}.254` };
  const hosts: NsHost[] = Array.from({ length: n }, (_, i) => ({ name: `h${i + 1}`, ns: `${prefix}-h${i + 1}`, ip: `${base}.${i + 1}` }));
  const made: string[] = [];
  const remove = (): void => {
    for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    made.length = 0;
  };
  try {
    const br = `${prefix}br`.slice(0, 15);
    for (const h of [gw, ...hosts]) {
      ip(['netns', 'add', h.ns]);
      made.push(h.ns);
      ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
    }
    ip(['-n', gw.ns, 'link', 'add', br, 'type', 'bridge']);
    ip(['-n', gw.ns, 'addr', 'add', `${gw.ip}/24`, 'dev', br]);
    ip(['-n', gw.ns, 'link', 'set', br, 'up']);
    hosts.forEach((h, i) => {
      const v = `${prefix}v${i + 1}`.slice(0, 13);
      ip(['-n', h.ns, 'link', 'add', v, 'type', 'veth', 'peer', 'name', `${v}b`, 'netns', gw.ns]);
      ip(['-n', gw.ns, 'link', 'set', `${v}b`, 'master', br, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', v]);
      ip(['-n', h.ns, 'link', 'set', v, 'up']);
    });
  } catch (e) {
    remove();
    throw e;
  }
  return {
    gw, hosts,
    exec: (ns, cmd, args) => ['nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args]],
    remove,
  };
}

// A private cgroup v2 tree for tests: under the host's cgroup2 mount (this
// machine mounts cgroup v1 controllers and a cgroup2 hierarchy beside them at
// /sys/fs/cgroup/unified), or, without one, a cgroup2 mount of our own in a
// temporary directory. remove() moves every process still inside back to the
// root, removes the directories deepest first and unmounts what it mounted.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CgroupTree {
  /** the cgroup2 mount point */
  mount: string;
  /** our directory under it */
  base: string;
  /** a child directory (created) */
  dir(...parts: string[]): string;
  /** move a process (all its threads) into a cgroup directory */
  move(pid: number, dir: string): void;
  remove(): void;
}

function cgroup2Mount(): string | null {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2') return f[1];
  }
  return null;
}

export function cgroupTree(name: string): CgroupTree {
  let mount = cgroup2Mount();
  let mounted: string | null = null;
  if (!mount) {
    mounted = mkdtempSync(join(tmpdir(), 'kspan-cg2-'));
    const r = spawnSync('mount', ['-t', 'cgroup2', 'none', mounted]);
    if (r.status !== 0) throw new Error(`mount -t cgroup2: ${r.stderr}`);
    mount = mounted;
  }
  const base = join(mount, `${name}-${process.pid}`);
  mkdirSync(base, { recursive: true });
  const made: string[] = [base];
  const tree: CgroupTree = {
    mount, base,
    dir(...parts) {
      let d = base;
      for (const p of parts) {
        d = join(d, p);
        if (!existsSync(d)) {
          mkdirSync(d);
          made.push(d);
        }
      }
      return d;
    },
    move(pid, dir) {
      writeFileSync(join(dir, 'cgroup.procs'), `${pid}\n`);
    },
    remove() {
      const rootProcs = join(mount!, 'cgroup.procs');
      const all = (d: string): string[] => [d, ...readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => all(join(d, e.name)))];
      const dirs = existsSync(base) ? all(base).sort((a, b) => b.length - a.length) : [];
      for (const d of dirs) {
        for (const pid of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try { writeFileSync(rootProcs, `${pid}\n`); } catch { /* exited */ }
        }
      }
      for (const d of dirs) {
        for (let i = 0; i < 50; i++) {
          try { rmdirSync(d); break; } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
            spawnSync('sleep', ['0.05']);
          }
        }
      }
      if (mounted) {
        spawnSync('umount', [mounted]);
        try { rmdirSync(mounted); } catch { /* */ }
      }
    },
  };
  return tree;
}

/** argv that runs `cmd args` inside cgroup `dir`: the shell moves itself, then execs (same pid). */
export function inCgroup(dir: string, cmd: string, args: string[]): [string, string[]] {
  return ['/bin/sh', ['-c', `echo $$ > '${join(dir, 'cgroup.procs')}' && exec "$@"`, 'sh', cmd, ...args]];
}

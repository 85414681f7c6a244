// A small tmpfs for disk-full tests (root only): `mount -t tmpfs -o size=Nm`,
// a ballast file to fill it up to a point, unmounted by cleanup().

import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  /** write a ballast file of `mb` MiB (the disk fills that much sooner) */
  ballast(mb: number): string;
  /** remove the ballast: the space comes back */
  freeBallast(): void;
  cleanup(): void;
}

export function mountTmpfs(sizeMb: number): Tmpfs {
  if ((process.geteuid?.() ?? -1) !== 0) throw new Error('disk-full tests mount a small tmpfs: run them as root (npm test does in CI)');
  const dir = mkdtempSync(join(tmpdir(), 'kspan-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'none', dir]);
  const ballastPath = join(dir, 'ballast');
  let mounted = true;
  return {
    dir,
    ballast(mb: number): string {
      const fd = openSync(ballastPath, 'w');
      const chunk = Buffer.alloc(1 << 20, 0x5a);
      try {
        for (let i = 0; i < mb; i++) writeSync(fd, chunk);
      } finally {
        closeSync(fd);
      }
      return ballastPath;
    },
    freeBallast(): void {
      rmSync(ballastPath, { force: true });
    },
    cleanup(): void {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync('umount', [dir]);
      } catch {
        // still busy (a child that has not exited yet): lazy unmount, it goes when the last user does
        execFileSync('umount', ['-l', dir]);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

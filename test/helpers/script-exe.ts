// An executable wrapper around a TypeScript script of this repo (KSPAN_PROBE
// wants a path to an executable): one per script and process, removed when
// the process exits.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const made = new Map<string, string>();

/** A path that runs `script` (a file path) with node + tsx from the repo root, passing its arguments on. */
export function scriptExecutable(script: string, name = 'kspan-probe'): string {
  const have = made.get(script);
  if (have) return have;
  const dir = mkdtempSync(join(tmpdir(), 'kspan-script-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\ncd '${repo}' && exec '${process.execPath}' --import tsx '${script}' "$@"\n`);
  chmodSync(path, 0o755);
  made.set(script, path);
  return path;
}

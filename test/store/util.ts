import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FrameDecoder } from '../../src/capture/decoder.js';
import type { CaptureSink } from '../../src/capture/state.js';
import { ClockHistory } from '../../src/capture/clock.js';

export const TMP_ROOT = '/var/tmp/kspan-store-tests';

export function tempDir(name: string): { dir: string; cleanup: () => void } {
  mkdirSync(TMP_ROOT, { recursive: true });
  const dir = mkdtempSync(join(TMP_ROOT, `${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Decode `buf` with FrameDecoder (same path as live capture) and feed every batch to the sink. */
export async function feed(sink: CaptureSink, buf: Buffer, chunk = 65536): Promise<FrameDecoder> {
  const d = new FrameDecoder();
  const clock = new ClockHistory();
  for (let i = 0; i < buf.length; i += chunk) {
    for (const b of d.push(buf.subarray(i, i + chunk))) {
      const r = sink.onBatch(b, clock);
      if (r) await r;
    }
  }
  d.finish();
  return d;
}

// ---------------------------------------------------------------------------
// child processes (reader / writer scripts under test/store/)

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface Child {
  proc: ChildProcess;
  /** every stdout line so far */
  lines: string[];
  stderr: () => string;
  /** resolves with the first line (from `from` on) matching `re`; rejects on exit or timeout */
  waitLine(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  send(line: string): void;
}

/** Run a TypeScript script of test/store/ (through tsx) in its own node process. */
export function spawnTsx(script: string, args: string[]): Child {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', path, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: fileURLToPath(new URL('../..', import.meta.url)) });
  const lines: string[] = [];
  let err = '';
  let partial = '';
  const waiters: (() => void)[] = [];
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    if (parts.length) {
      lines.push(...parts);
      for (const w of waiters.splice(0)) w();
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    proc.on('exit', (code, signal) => {
      done = true;
      for (const w of waiters.splice(0)) w();
      res({ code, signal });
    });
  });
  proc.stdin!.on('error', () => {});
  return {
    proc, lines, exited, stderr: () => err,
    send: (line: string) => void proc.stdin!.write(line + '\n'),
    waitLine(re: RegExp, timeoutMs = 30_000, from = 0): Promise<string> {
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`timeout waiting for ${re} (stderr: ${err.slice(-2000)})`)), timeoutMs);
        const check = (): void => {
          for (let i = from; i < lines.length; i++) if (re.test(lines[i])) { clearTimeout(t); res(lines[i]); return; }
          if (done) { clearTimeout(t); rej(new Error(`child exited before ${re} (stderr: ${err.slice(-2000)})`)); return; }
          waiters.push(check);
        };
        check();
      });
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Benchmarks that run their parts as processes (a driver, kspan, a sink)
// fork their own script with `--role NAME` and talk to each part over IPC:
// the part sends one message when it is ready ({ port }), then answers
// { cmd } messages.

import { execFileSync, fork, type ChildProcess } from 'node:child_process';

export interface RoleOptions {
  /** pin the process (and its threads) to this CPU (or CPU list, "0-1") with taskset */
  cpu?: number | string;
  /** extra node flags (e.g. --cpu-prof) */
  execArgv?: string[];
}

/** Fork `script --role role ...args` (through tsx); resolves with its ready message's port. */
export function startRole(script: string, role: string, args: string[], o: RoleOptions = {}): Promise<{ cp: ChildProcess; port: number }> {
  const cp = fork(script, ['--role', role, ...args], { execArgv: ['--import', 'tsx', ...(o.execArgv ?? [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (o.cpu !== undefined) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', String(o.cpu), String(cp.pid)], { stdio: 'ignore' });
    } catch {
      console.log(`(taskset failed for the ${role} process: not pinned)`);
    }
  }
  return new Promise((resolve, reject) => {
    cp.once('message', (m: { port: number }) => resolve({ cp, port: m.port }));
    cp.once('exit', (c) => reject(new Error(`${role} exited ${c}`)));
  });
}

/** Send { cmd } and resolve with the next message. */
export function ask<T>(cp: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    cp.once('message', (m) => resolve(m as T));
    cp.send({ cmd });
  });
}

// The host a store's data comes from (DESIGN §9: every stored session and
// explained span names its host). `host.name` is os.hostname() unless
// overridden (`kspan run --host-name`: containers sharing a node's kernel,
// or the tests' network-namespace "hosts" that share one kernel and one
// hostname); the boot id is the kernel's (/proc/sys/kernel/random/boot_id).

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface HostIdentity {
  /** host.name */
  name: string;
  /** /proc/sys/kernel/random/boot_id (with dashes), null when unreadable */
  bootId: string | null;
}

/** A host record in the store's meta (one per writer open, keyed by wall time). */
export interface HostMeta extends HostIdentity {
  /** wall clock (ISO) when this writer opened the store */
  since: string;
  /** epoch ms of `since` (the key) */
  sinceMs: number;
}

let cachedBoot: string | null | undefined;

export function bootId(): string | null {
  if (cachedBoot !== undefined) return cachedBoot;
  try {
    cachedBoot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    cachedBoot = null;
  }
  return cachedBoot;
}

/** A host name: 1-253 chars of letters, digits, '.', '-', '_' (what --host-name accepts). */
export function checkHostName(name: string): string {
  const n = name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(n)) throw new Error(`a host name is 1-253 letters, digits, '.', '-' or '_', got "${name}"`);
  return n;
}

/** This process's host: os.hostname() (or the override) and the kernel's boot id. */
export function localHost(nameOverride?: string | null): HostIdentity {
  return { name: nameOverride ? checkHostName(nameOverride) : hostname(), bootId: bootId() };
}

// Where a kspan's peers are (DESIGN §9: the cluster view is a fan-out): a
// static list (`--peers URL,...`), a file (`--peers-file F`, one URL per
// line, re-read when it changes) and DNS names (`--peers-dns NAME:PORT`,
// every A and AAAA record: a Kubernetes headless Service names every pod).
//
// A peer is the MCP Streamable HTTP endpoint of another kspan
// (`kspan run --mcp-http` or `kspan mcp --http`): http://HOST:PORT/mcp.
// "HOST:PORT" and "http://HOST:PORT" are completed to that.

import { promises as dnsp } from 'node:dns';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

export interface PeerOptions {
  /** --peers: URLs (or HOST:PORT) */
  urls?: string[];
  /** --peers-file: one URL per line, `#` comments; re-read when its mtime, size or inode changes */
  file?: string;
  /** --peers-dns: NAME:PORT, each resolved to every A and AAAA record */
  dns?: string[];
  /** DNS servers to ask instead of the system's (tests) */
  dnsServers?: string[];
  /** how long resolved DNS names are reused, ms (default 5000) */
  dnsTtlMs?: number;
  /** bearer token sent to every peer (null: none; peers off loopback require one) */
  token?: string | null;
  /** per-peer deadline for the whole call (connect included), ms (default 2000) */
  timeoutMs?: number;
  /** peers asked at once (default 16) */
  concurrency?: number;
}

export const DEFAULT_PEER_TIMEOUT_MS = 2000;
export const DEFAULT_PEER_CONCURRENCY = 16;

/** "HOST:PORT", "[v6]:PORT", "http://HOST:PORT", "http://HOST:PORT/mcp" -> a normalized http(s) URL ending in /mcp (unless another path is given). */
export function peerUrl(s: string): string {
  const t = s.trim();
  if (!t) throw new Error('empty peer');
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(t);
  const withScheme = hasScheme ? t : `http://${t}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new Error(`a peer is http://HOST:PORT/mcp or HOST:PORT, got "${s}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`a peer URL is http or https, got "${s}"`);
  if (!u.port && !hasScheme) throw new Error(`a peer needs a port (the MCP HTTP port, e.g. :7799), got "${s}"`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/mcp';
  u.hash = '';
  return u.toString();
}

/** "NAME:PORT" -> [name, port] */
export function parseDnsPeer(s: string): [string, number] {
  const m = /^([A-Za-z0-9_.-]+):(\d{1,5})$/.exec(s.trim());
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`--peers-dns wants NAME:PORT (e.g. kspan-peers.kspan.svc.cluster.local:7799), got "${s}"`);
  return [m[1], Number(m[2])];
}

/** The peer URLs of a file's text: one per line, blank lines and `#` comments ignored. */
export function parsePeersFile(text: string): { urls: string[]; errors: string[] } {
  const urls: string[] = [];
  const errors: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    for (const item of line.split(/[\s,]+/).filter(Boolean)) {
      try {
        urls.push(peerUrl(item));
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  }
  return { urls, errors };
}

export interface PeerList {
  urls: string[];
  /** sources that could not be read or resolved (the list is still what the others gave) */
  errors: string[];
}

/** The current peers from every source; file and DNS results are cached until they change or expire. */
export class PeerSet {
  private readonly staticUrls: string[];
  private fileState: { key: string; urls: string[]; errors: string[] } | null = null;
  private readonly dnsCache = new Map<string, { at: number; urls: string[] }>();
  private readonly resolver: InstanceType<typeof dnsp.Resolver> | null;

  constructor(private readonly o: PeerOptions) {
    this.staticUrls = (o.urls ?? []).map(peerUrl);
    for (const d of o.dns ?? []) parseDnsPeer(d);
    if (o.dnsServers?.length) {
      this.resolver = new dnsp.Resolver({ timeout: 1000, tries: 1 });
      this.resolver.setServers(o.dnsServers);
    } else this.resolver = null;
  }

  get configured(): boolean {
    return this.staticUrls.length > 0 || !!this.o.file || !!this.o.dns?.length;
  }

  async list(): Promise<PeerList> {
    const errors: string[] = [];
    const urls = [...this.staticUrls];
    if (this.o.file) {
      const f = this.readFile(this.o.file);
      urls.push(...f.urls);
      errors.push(...f.errors);
    }
    for (const d of this.o.dns ?? []) {
      try {
        urls.push(...(await this.resolve(d)));
      } catch (e) {
        errors.push(`--peers-dns ${d}: ${(e as Error).message}`);
      }
    }
    return { urls: [...new Set(urls)], errors };
  }

  private readFile(path: string): { urls: string[]; errors: string[] } {
    let key: string;
    try {
      const st = statSync(path);
      key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (e) {
      // a file that went away: no peers from it (it may come back)
      this.fileState = null;
      return { urls: [], errors: [`--peers-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`] };
    }
    if (this.fileState?.key !== key) {
      try {
        const p = parsePeersFile(readFileSync(path, 'utf8'));
        this.fileState = { key, urls: p.urls, errors: p.errors.map((m) => `--peers-file ${path}: ${m}`) };
      } catch (e) {
        return { urls: [], errors: [`--peers-file ${path}: ${(e as Error).message}`] };
      }
    }
    return { urls: this.fileState.urls, errors: this.fileState.errors };
  }

  private async resolve(spec: string): Promise<string[]> {
    const [name, port] = parseDnsPeer(spec);
    const ttl = this.o.dnsTtlMs ?? 5000;
    const hit = this.dnsCache.get(spec);
    if (hit && Date.now() - hit.at < ttl) return hit.urls;
    const r = this.resolver ?? dnsp;
    let addrs: string[];
    if (isIP(name)) addrs = [name];
    else {
      const [v4, v6] = await Promise.allSettled([r.resolve4(name), r.resolve6(name)]);
      addrs = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
      if (!addrs.length) {
        // keep the last answer while DNS is unreachable; a name that resolves to nothing has no peers
        const why = v4.status === 'rejected' ? (v4.reason as NodeJS.ErrnoException).code ?? String(v4.reason) : 'no A/AAAA records';
        if (hit && why !== 'ENOTFOUND' && why !== 'ENODATA') return hit.urls;
        throw new Error(why);
      }
    }
    const urls = addrs.map((a) => `http://${isIP(a) === 6 ? `[${a}]` : a}:${port}/mcp`);
    this.dnsCache.set(spec, { at: Date.now(), urls });
    return urls;
  }
}

/**
 * The URLs that would reach this server itself (its port on one of this
 * machine's addresses): skipped, so that a DNS name listing every pod, this
 * one included, does not ask itself.
 */
export function selfUrlMatcher(port: number, boundHost: string): (url: string) => boolean {
  const mine = new Set<string>(['localhost', '127.0.0.1', '::1']);
  const h = boundHost.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === '0.0.0.0' || h === '::' || h === '') {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) mine.add(a.address.toLowerCase());
  } else mine.add(h);
  return (url: string): boolean => {
    try {
      const u = new URL(url);
      const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
      const p = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
      return p === port && mine.has(host);
    } catch {
      return false;
    }
  };
}

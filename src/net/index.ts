// Public interface of the net module: the listen-address grammar that every
// kspan server shares (the OTLP/HTTP and OTLP/gRPC receivers, the MCP HTTP
// server). It imports nothing of kspan, so any module may use it.
//
//   ADDR := HOST ":" PORT      127.0.0.1:4318, localhost:7799, 0.0.0.0:4317
//         | "[" HOST6 "]" ":" PORT   [::1]:7799, [::]:4317, [fe80::1%eth0]:7799
//         | ":" PORT           :7799 (host 127.0.0.1)
//   HOST has no ':', '[' or ']' (an IPv6 address goes in brackets);
//   PORT is decimal, 0-65535 (0: an ephemeral port). Blanks around ADDR are ignored.

export interface ListenAddr {
  host: string;
  port: number;
}

/** The host of ":PORT". */
const DEFAULT_LISTEN_HOST = '127.0.0.1';

const EXAMPLES = 'HOST:PORT, [IPv6]:PORT or :PORT (e.g. 127.0.0.1:7799, [::1]:7799, :7799)';

/** Parse a listen address (grammar above); the error names what is wrong and the forms accepted. */
export function parseListenAddr(addr: string): ListenAddr {
  const s = addr.trim();
  const bad = (why: string): Error => new Error(`listen address "${addr}": ${why}; want ${EXAMPLES}`);
  let host: string;
  let port: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw bad('no "]" after "[IPv6"');
    host = s.slice(1, close);
    if (!host) throw bad('empty brackets');
    if (s[close + 1] !== ':') throw bad('no ":PORT" after "[IPv6]"');
    port = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) throw bad('no ":PORT"');
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(':')) throw bad('an IPv6 host goes in brackets');
    if (/[[\]]/.test(host)) throw bad('brackets go around an IPv6 host only');
    host ||= DEFAULT_LISTEN_HOST;
  }
  if (!/^\d+$/.test(port)) throw bad(port ? `port "${port}" is not a decimal number` : 'no port after ":"');
  const n = Number(port);
  if (n > 65535) throw bad(`port ${port} is out of range (0-65535)`);
  return { host, port: n };
}

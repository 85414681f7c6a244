// The one listen-address grammar (src/net): every form the OTLP receivers or
// the MCP HTTP server accepted before they shared it, and the errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseListenAddr } from '../../src/net/index.js';

const ACCEPTED: [string, string, number][] = [
  ['127.0.0.1:4318', '127.0.0.1', 4318],
  ['0.0.0.0:4317', '0.0.0.0', 4317],
  ['localhost:7799', 'localhost', 7799],
  ['my-host.example.com:80', 'my-host.example.com', 80],
  [':7799', '127.0.0.1', 7799], // no host: loopback
  ['127.0.0.1:0', '127.0.0.1', 0], // port 0: ephemeral
  [':0', '127.0.0.1', 0],
  ['[::1]:7799', '::1', 7799],
  ['[::]:4317', '::', 4317],
  ['[::ffff:127.0.0.1]:80', '::ffff:127.0.0.1', 80],
  ['[fe80::1%eth0]:7799', 'fe80::1%eth0', 7799], // zone id (the OTLP receivers took any bracketed text)
  ['[localhost]:80', 'localhost', 80],
  ['127.0.0.1:65535', '127.0.0.1', 65535],
  ['127.0.0.1:004318', '127.0.0.1', 4318], // leading zeros (any number of digits: the OTLP receivers)
  ['  127.0.0.1:4318\n', '127.0.0.1', 4318], // blanks around
];

const REJECTED: [string, RegExp][] = [
  ['', /no ":PORT"/],
  ['nonsense', /listen address "nonsense": no ":PORT"; want HOST:PORT, \[IPv6\]:PORT or :PORT \(e\.g\. 127\.0\.0\.1:7799, \[::1\]:7799, :7799\)/],
  ['7799', /no ":PORT"/], // a port alone: neither accepted it
  ['127.0.0.1', /no ":PORT"/],
  ['127.0.0.1:', /no port after ":"/],
  ['127.0.0.1:http', /port "http" is not a decimal number/],
  ['127.0.0.1:-1', /port "-1" is not a decimal number/],
  ['127.0.0.1: 80', /port " 80" is not a decimal number/],
  ['127.0.0.1:65536', /port 65536 is out of range \(0-65535\)/],
  ['127.0.0.1:99999999999', /out of range/],
  ['::1:7799', /an IPv6 host goes in brackets/],
  ['::1', /an IPv6 host goes in brackets/],
  ['[::1]', /no ":PORT" after "\[IPv6\]"/],
  ['[::1]7799', /no ":PORT" after "\[IPv6\]"/],
  ['[::1:7799', /no "\]" after "\[IPv6"/],
  ['[]:80', /empty brackets/],
  ['[::1]:', /no port after ":"/],
  ['a]b:80', /brackets go around an IPv6 host only/],
  ['x[::1]:80', /an IPv6 host goes in brackets/],
];

test('listen addresses accepted: host:port, :port, [IPv6]:port', () => {
  for (const [addr, host, port] of ACCEPTED) assert.deepEqual(parseListenAddr(addr), { host, port }, JSON.stringify(addr));
});

test('listen addresses rejected, with what is wrong and the forms accepted', () => {
  for (const [addr, re] of REJECTED) {
    assert.throws(() => parseListenAddr(addr), (e: Error) => {
      assert.match(e.message, re, JSON.stringify(addr));
      assert.ok(e.message.startsWith(`listen address ${JSON.stringify(addr)}: `), e.message);
      assert.match(e.message, /want HOST:PORT, \[IPv6\]:PORT or :PORT/);
      return true;
    }, JSON.stringify(addr));
  }
});

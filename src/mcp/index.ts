// Public interface of the MCP module: kspan's read-only investigation tools
// for AI agents (README.md). Embedders (the `kspan run` daemon):
//
//   const h = await startMcpHttpServer({ dataDir, addr: '127.0.0.1:7799', tracer });
//   ... h.url ... await h.close();
//
// In-process (tests, other transports):
//   const server = createKspanMcpServer({ reader: openStoreReader(dir) });
//   await server.connect(auditTransport(transport, { log: process.stderr }));

export { auditTransport, createKspanMcpServer, leanSchema, runStdioServer, SERVER_INSTRUCTIONS, type AuditOptions, type AuditRecord, type StdioOptions } from './server.js';
export { isPeerCall, registerTools, serverHost, TOOL_NAMES, type ToolContext } from './tools.js';
export { FanOut, HOST_META, PEER_META, mergeExplanations, mergeSlowRequests, type FanOutOptions, type PeerAnswer } from './fanout.js';
export { DEFAULT_PEER_CONCURRENCY, DEFAULT_PEER_TIMEOUT_MS, PeerSet, parseDnsPeer, parsePeersFile, peerUrl, selfUrlMatcher, type PeerOptions } from './peers.js';
export { DRILL_DOWN, investigationPrompt, registerGuide } from './guide.js';
export { Budget, callsRunning, turnsWaiting, DEFAULT_MAX_EVENTS, DEFAULT_TIME_MS, SLICE_MS, type BudgetLimits } from './budget.js';
export { parseTimeArg, resolveWindow, TIME_HELP, ToolInputError } from './time.js';
export { isLoopback, startMcpHttpServer, type McpHttpHandle, type McpHttpOptions } from './http.js';

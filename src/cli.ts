// The `kspan` command. bin/kspan.js imports dist/cli.js and calls main();
// `tsx src/cli.ts ...` runs it from source. One file per command under
// src/cli/ (each owns its help text), argument parsing in src/cli/args.ts.
// Each command returns its exit code (2 = usage error).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './capture/index.js';
import { isUsageError } from './cli/args.js';
import { DEMO_HELP, cmdDemo } from './cli/demo.js';
import { DOCTOR_HELP, cmdDoctor } from './cli/doctor.js';
import { DUMP_HELP, cmdDump } from './cli/dump.js';
import { EXPLAIN_HELP, cmdExplain } from './cli/explain.js';
import { EXPORT_HELP, cmdExport } from './cli/export.js';
import { MCP_HELP, cmdMcp } from './cli/mcp.js';
import { RECORD_HELP, cmdRecord } from './cli/record.js';
import { RUN_HELP, cmdRun } from './cli/run.js';
import { STATS_HELP, cmdStats } from './cli/stats.js';

interface Command {
  run: (argv: string[]) => Promise<number>;
  /** `kspan help COMMAND` */
  help: string;
  /** its lines in `kspan help` (default: its help without the usage line) */
  summary?: string;
}

const COMMANDS: Record<string, Command> = {
  record: { run: cmdRecord, help: RECORD_HELP },
  run: { run: cmdRun, help: RUN_HELP },
  stats: { run: cmdStats, help: STATS_HELP },
  explain: { run: cmdExplain, help: EXPLAIN_HELP },
  dump: { run: cmdDump, help: DUMP_HELP },
  doctor: { run: cmdDoctor, help: DOCTOR_HELP },
  mcp: {
    run: cmdMcp, help: MCP_HELP,
    summary: `  mcp --data DIR [--http ADDR]                MCP server for AI agents: read-only tools (explain_request, find_slow_requests,
                                              distributions, off-CPU, who_woke, futex contention, status) over stdio,
                                              or Streamable HTTP at ADDR/mcp (token from KSPAN_MCP_TOKEN or --token-file,
                                              required off loopback); \`kspan mcp --help\`, src/mcp/README.md`,
  },
  demo: {
    run: cmdDemo, help: DEMO_HELP,
    summary: `  demo [--duration S] [--json] [--data DIR]   capture + OTLP around a vLLM-shaped example (examples/vllm) on a
                                              temporary store, then the slowest requests and why (needs root)`,
  },
  export: {
    run: cmdExport, help: EXPORT_HELP,
    summary: `  export perfetto --data DIR (--trace-id ID | --pid P|--tid T --from A --to B) [--out FILE] [--max-events N]
                                              Chrome trace-event JSON for ui.perfetto.dev: threads as tracks,
                                              on/off-CPU slices, wakeup flows, CUDA/futex/I/O calls, the spans
                                              (stdout unless --out; exits 3 when the trace is not stored)`,
  },
};

const HELP = `kspan — kernel causes inside OpenTelemetry spans

usage: kspan <command> [options]

commands:
${Object.values(COMMANDS).map((c) => c.summary ?? c.help.replace(/^usage: kspan\n/, '')).join('\n')}
  help [COMMAND] | --help | --version

Capture needs root (or CAP_BPF + CAP_PERFMON) for build/kspan-probe; see \`kspan doctor\`.`;

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h') {
    (cmd === undefined ? process.stderr : process.stdout).write(HELP + '\n');
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`kspan ${version()}\n`);
    return 0;
  }
  if (cmd === 'help') {
    const c = rest[0] !== undefined && Object.hasOwn(COMMANDS, rest[0]) ? COMMANDS[rest[0]] : undefined;
    process.stdout.write((c ? c.help : HELP) + '\n');
    return 0;
  }
  const c = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!c) {
    process.stderr.write(`kspan: unknown command "${cmd}" (try \`kspan help\`)\n`);
    return 2;
  }
  try {
    return await c.run(rest);
  } catch (e) {
    process.stderr.write(`kspan ${cmd}: ${(e as Error).message}\n`);
    return isUsageError(e) ? 2 : 1;
  }
}

// Run directly (`tsx src/cli.ts ...`): bin/kspan.js imports instead.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (e: unknown) => {
    process.stderr.write(`kspan: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  });
}

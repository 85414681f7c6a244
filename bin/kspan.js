#!/usr/bin/env node
// Entry point for `npx kspan` / `npm start`: runs the compiled CLI from dist/.
// `npm run build` (run by scripts/setup.sh) produces dist/; from a source
// checkout without a build, say so instead of failing obscurely.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli.js');
if (!existsSync(cli)) {
  process.stderr.write('kspan: not built yet; run `npm run setup` (installs packages and builds) first\n');
  process.exit(2);
}
const { main } = await import(pathToFileURL(cli).href);
process.exitCode = await main(process.argv.slice(2));

// `kspan doctor`: can capture run here, and why not.

import { formatDoctor, runDoctor } from '../capture/index.js';
import { parse } from './args.js';

export const DOCTOR_HELP = `usage: kspan
  doctor [--json] [--cuda-lib PATH]...        check that capture can run here, and why not`;

export async function cmdDoctor(argv: string[]): Promise<number> {
  const { values: o } = parse(argv, {
    json: { type: 'boolean' },
    'cuda-lib': { type: 'string', multiple: true },
    'no-probe': { type: 'boolean' },
  });
  if (o.help) {
    process.stdout.write(DOCTOR_HELP + '\n');
    return 0;
  }
  const r = await runDoctor({ cudaLibs: o['cuda-lib'], noProbe: o['no-probe'] });
  process.stdout.write((o.json ? JSON.stringify(r, null, 2) : formatDoctor(r)) + '\n');
  return r.ready ? 0 : 1;
}

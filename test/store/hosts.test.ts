// Host rows: one per change of host identity (name or boot), not one per writer
// open, and a reader that stays open sees rows added after it read them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openStoreReader, openStoreWriter } from '../../src/store/index.js';
import { REPO_ROOT } from '../../src/capture/index.js';
import { tempDir } from './util.js';

test('host rows: a reopen on the same host and boot adds none; a new name or boot adds one; a long-lived reader sees them', async () => {
  const { dir, cleanup } = tempDir('hosts');
  const open = async (name: string, bootId: string): Promise<void> => {
    const w = openStoreWriter(dir, { host: { name, bootId } });
    await w.close();
  };
  await open('node-a', 'boot-1');
  for (let i = 0; i < 5; i++) await open('node-a', 'boot-1');
  await open('node-a', 'boot-2'); // a reboot
  await open('node-b', 'boot-2'); // renamed
  await open('node-b', 'boot-2');
  const r = openStoreReader(dir);
  try {
    const rows = r.hosts();
    assert.deepEqual(rows.map((h) => `${h.name}/${h.bootId}`), ['node-a/boot-1', 'node-a/boot-2', 'node-b/boot-2'], 'five restarts on one host and boot add no row');
    for (let i = 1; i < rows.length; i++) assert.ok(rows[i].sinceMs > rows[i - 1].sinceMs, 'rows in time order');
    assert.equal(r.hostAt(rows[1].sinceMs)?.bootId, 'boot-2');
    assert.equal(r.hostAt(rows[2].sinceMs + 1000)?.name, 'node-b');
    assert.equal(r.hostAt(rows[0].sinceMs - 1)?.name, 'node-a', 'before the first row: the first host');
    assert.equal(r.hosts(), rows, 'unchanged rows are not read again');
    // another process opens the store as a new host while this reader stays open
    const script = `import { openStoreWriter } from ${JSON.stringify(join(REPO_ROOT, 'src', 'store', 'index.ts'))};
      const w = openStoreWriter(process.argv[1], { host: { name: 'node-c', bootId: 'boot-3' } }); await w.close();`;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(r.hosts().map((h) => h.name), ['node-a', 'node-a', 'node-b', 'node-c'], 'the open reader sees the new row');
  } finally {
    await r.root.close();
    cleanup();
  }
});

// What an lmdb-js commit failure was. lmdb-js rejects every write of a
// transaction that did not commit with "Commit failed (see commitError for
// details)"; `commitError` is a promise rejected with the cause (errno), and
// it must be handled, or it is an unhandled rejection.

const SPACE_CODES = new Set([5, 27, 28, 122, -30792]);
const ERRNO: Record<number, string> = { 5: 'EIO', 27: 'EFBIG', 28: 'ENOSPC', 122: 'EDQUOT', '-30792': 'MDB_MAP_FULL' };

/** The cause of an lmdb-js "Commit failed" (its commitError promise), classified. */
export async function describeCommitError(e: unknown): Promise<{ message: string; space: boolean }> {
  let err = e as Error & { commitError?: Promise<unknown>; code?: number | string };
  if (err && err.commitError && typeof err.commitError.then === 'function') {
    try {
      await err.commitError;
    } catch (cause) {
      err = cause as typeof err;
    }
  }
  const msg = String(err?.message ?? err);
  const code = typeof err?.code === 'number' ? err.code : null;
  const name = code !== null ? ERRNO[code] ?? `error ${code}` : null;
  const space = (code !== null && SPACE_CODES.has(code)) || /no space|MAP_FULL|quota|Input\/output/i.test(msg);
  return { message: name && !msg.includes(name) ? `${msg} (${name})` : msg, space };
}

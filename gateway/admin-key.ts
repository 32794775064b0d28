// The admin key: made at first start, written to $KILN_STATE_DIR/admin-key (mode 0600), and
// registered (hashed) in Redis at every start, so a fresh Redis still knows it.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ApiKeyStore, newApiKey } from '../common/store/apikeys';
import { ADMIN_NAMESPACE } from './auth';

export async function ensureAdminKey(file: string, keys: ApiKeyStore): Promise<string> {
  let key = (await fsp.readFile(file, 'utf8').catch(() => '')).trim();
  if (!key) {
    key = newApiKey();
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, key + '\n', { mode: 0o600, flag: 'wx' }).catch(async (e) => {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      key = (await fsp.readFile(file, 'utf8')).trim(); // another gateway made it first
    });
  }
  await keys.add(key, { namespace: ADMIN_NAMESPACE, admin: true });
  return key;
}

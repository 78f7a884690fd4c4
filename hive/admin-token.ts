import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import { generateSecret } from './tokens.js';

/**
 * The admin token: from configuration, else the one stored in the data
 * directory, else a new one written there (mode 0600). `created` tells the
 * caller to show it, once.
 */
export async function resolveAdminToken(configured: string | undefined, dataDir: string): Promise<{ token: string; created: boolean; path?: string }> {
  if (configured) return { token: configured, created: false };
  const path = join(dataDir, 'admin-token');
  try {
    const token = (await readFile(path, 'utf8')).trim();
    if (token) return { token, created: false, path };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const token = generateSecret(TokenScope.ADMIN);
  await writeFile(path, token + '\n', { mode: 0o600, flag: 'wx' });
  return { token, created: true, path };
}

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

// A throwaway PKI made with openssl in a temp dir: CAs, a server
// certificate for 127.0.0.1/localhost and client certificates whose CN
// (and SAN) is a worker id.

const run = promisify(execFile);

export interface Pki {
  dir: string;
  /** CA certificate path. */
  ca(name: string): string;
  /** Creates a CA (self-signed). */
  makeCa(name: string): Promise<void>;
  /** Issues a leaf signed by ca; returns its cert and key paths. */
  issue(ca: string, name: string, o: { cn: string; san?: string; server?: boolean }): Promise<{ cert: string; key: string }>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

export function pki(dir: string): Pki {
  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: (name) => p(`${name}.crt`),
    async makeCa(name) {
      await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`)], dir);
    },
    async issue(ca, name, o) {
      const ext = p(`${name}.ext`);
      const lines = ['basicConstraints=CA:FALSE', `extendedKeyUsage=${o.server ? 'serverAuth' : 'clientAuth'}`];
      if (o.san) lines.push(`subjectAltName=${o.san}`);
      await writeFile(ext, lines.join('\n') + '\n');
      await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${o.cn}`, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`)], dir);
      await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.crt`), '-CAkey', p(`${ca}.key`), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', p(`${name}.crt`)], dir);
      return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
    },
  };
}

import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { readFileSync } from 'node:fs';
import { ControlService } from '../gen/hive/v1/control_pb.js';
import { RegistryService } from '../gen/hive/v1/registry_pb.js';
import { loadClientTls, type ClientTls } from '../lib/tls-client.js';
import { CliError, EXIT } from './errors.js';

// hivectl speaks the Connect protocol to the hive's HTTP port (the same
// port as curl and the status page): plain HTTP/1.1, so it passes through
// any proxy in front of the hive.

export const DEFAULT_HIVE_URL = 'http://127.0.0.1:8080';

export interface Connection {
  url: string;
  token: string | undefined;
  timeoutMs: number;
  tls?: ClientTls;
}

export interface Clients {
  registry: Client<typeof RegistryService>;
  control: Client<typeof ControlService>;
}

/** The hive URL and token from flags, then environment: --token beats --token-file beats HIVE_TOKEN beats HIVE_TOKEN_FILE. */
export function resolveConnection(
  opts: { hiveUrl?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; timeoutMs: number },
  env: NodeJS.ProcessEnv,
): Connection {
  const nonEmpty = (s: string | undefined) => (s === undefined || s === '' ? undefined : s);
  const url = nonEmpty(opts.hiveUrl) ?? nonEmpty(env.HIVE_URL) ?? DEFAULT_HIVE_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(`hive URL "${url}" is not a URL (for example ${DEFAULT_HIVE_URL})`, EXIT.USAGE);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new CliError(`hive URL "${url}" must be http:// or https://`, EXIT.USAGE);
  let token = nonEmpty(opts.token);
  const file = token === undefined ? (nonEmpty(opts.tokenFile) ?? (nonEmpty(env.HIVE_TOKEN) === undefined ? nonEmpty(env.HIVE_TOKEN_FILE) : undefined)) : undefined;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new CliError(`cannot read the token file ${file}: ${(err as Error).message}`, EXIT.AUTH);
    }
  }
  token ??= nonEmpty(env.HIVE_TOKEN);
  const paths = {
    tlsCa: nonEmpty(opts.tlsCa) ?? nonEmpty(env.HIVE_TLS_CA),
    tlsCert: nonEmpty(opts.tlsCert) ?? nonEmpty(env.HIVE_TLS_CLIENT_CERT),
    tlsKey: nonEmpty(opts.tlsKey) ?? nonEmpty(env.HIVE_TLS_CLIENT_KEY),
  };
  if (!!paths.tlsCert !== !!paths.tlsKey) throw new CliError('--tls-cert and --tls-key go together', EXIT.USAGE);
  let tls: ClientTls | undefined;
  try {
    tls = loadClientTls(paths);
  } catch (err) {
    throw new CliError(`cannot read a TLS file: ${(err as Error).message}`, EXIT.USAGE);
  }
  if (tls && parsed.protocol !== 'https:') throw new CliError(`TLS files are given but the hive URL "${url}" is not https://`, EXIT.USAGE);
  return { url: url.replace(/\/+$/, ''), token, timeoutMs: opts.timeoutMs, tls };
}

export function createClients(conn: Connection): Clients {
  if (!conn.token) throw new CliError('no token: set HIVE_TOKEN, or pass --token or --token-file (a read token is enough for reading)', EXIT.AUTH);
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${conn.token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: conn.url,
    httpVersion: '1.1',
    interceptors: [bearer],
    nodeOptions: conn.tls ? { ca: conn.tls.ca, cert: conn.tls.cert, key: conn.tls.key } : undefined,
  });
  return { registry: createClient(RegistryService, transport), control: createClient(ControlService, transport) };
}

import { readFileSync } from 'node:fs';

// The client side of the hive's TLS, shared by the agent, the monitor and
// hivectl: which CA to trust for the hive's certificate and, for mutual
// TLS, the client's own certificate and key. Node verifies the hive's
// certificate and host name against the CA on every connection.

export interface ClientTlsPaths {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export interface ClientTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export function clientTlsProblems(p: ClientTlsPaths, env: { cert: string; key: string }): string[] {
  return !!p.tlsCert !== !!p.tlsKey ? [`${env.cert} and ${env.key} must be given together`] : [];
}

/** Reads the PEM files; undefined when none is configured (plaintext, or TLS with the system's CAs via https://). */
export function loadClientTls(p: ClientTlsPaths): ClientTls | undefined {
  if (!p.tlsCa && !p.tlsCert && !p.tlsKey) return undefined;
  return {
    ca: p.tlsCa ? readFileSync(p.tlsCa) : undefined,
    cert: p.tlsCert ? readFileSync(p.tlsCert) : undefined,
    key: p.tlsKey ? readFileSync(p.tlsKey) : undefined,
  };
}

/** "host:port" or a URL as a base URL: https:// when TLS is configured, http:// otherwise. */
export function hiveBaseUrl(addr: string, tls: ClientTls | undefined): string {
  if (/^https?:\/\//.test(addr)) return addr;
  return `${tls ? 'https' : 'http'}://${addr}`;
}

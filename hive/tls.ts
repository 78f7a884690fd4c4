import { createContextKey } from '@connectrpc/connect';
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';

// Transport security of both hive ports. With a certificate and key the
// ports speak TLS only; with a client CA as well, every client must show a
// certificate signed by that CA (mutual TLS), and a worker's certificate
// names the one worker it may speak for (its CN or a DNS/URI SAN), on top
// of the token: a stolen token is useless without the matching key.

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  /** Set for mutual TLS: the CA that signs client certificates. */
  clientCa?: Buffer;
}

export interface TlsSettings {
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
}

/** Reads the configured PEM files; undefined when TLS is off. */
export function loadTlsFiles(s: TlsSettings): TlsFiles | undefined {
  if (!s.tlsCert && !s.tlsKey) return undefined;
  if (!s.tlsCert || !s.tlsKey) throw new Error('TLS needs both --tls-cert and --tls-key');
  return {
    cert: readFileSync(s.tlsCert),
    key: readFileSync(s.tlsKey),
    clientCa: s.tlsClientCa ? readFileSync(s.tlsClientCa) : undefined,
  };
}

/** Cross-setting checks, reported with the other configuration problems. */
export function tlsProblems(s: TlsSettings): string[] {
  const problems: string[] = [];
  if (!!s.tlsCert !== !!s.tlsKey) problems.push('--tls-cert / HIVE_TLS_CERT and --tls-key / HIVE_TLS_KEY must be given together');
  if (s.tlsClientCa && !s.tlsCert) problems.push('--tls-client-ca / HIVE_TLS_CLIENT_CA needs --tls-cert and --tls-key (mutual TLS runs over TLS)');
  return problems;
}

/** The verified client certificate of a call, when the port runs mutual TLS. */
export interface PeerIdentity {
  /** Names the certificate vouches for: its subject CN and its DNS and URI SANs. */
  names: string[];
}

export const peerKey = createContextKey<PeerIdentity | undefined>(undefined, { description: 'verified client certificate' });

export function identityOf(cert: PeerCertificate | undefined | null): PeerIdentity | undefined {
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const names = new Set<string>();
  const cn = cert.subject?.CN;
  for (const n of Array.isArray(cn) ? cn : cn ? [cn] : []) names.add(n);
  for (const part of (cert.subjectaltname ?? '').split(/,\s*/)) {
    const m = /^(DNS|URI):(.+)$/.exec(part.trim());
    if (m) names.add(m[2]);
  }
  return { names: [...names] };
}

/** Whether a certificate speaks for the worker: its CN or a SAN is the id, or a URI SAN ends in "/<id>" (SPIFFE style). */
export function certNamesWorker(peer: PeerIdentity, workerId: string): boolean {
  return peer.names.some((n) => n === workerId || (n.includes('://') && n.endsWith(`/${workerId}`)));
}

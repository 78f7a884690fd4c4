import { randomBytes, timingSafeEqual, hash } from 'node:crypto';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import type { TokenRow } from './store/store.js';

// Tokens are 256-bit random secrets with a readable prefix. Only their
// SHA-256 is stored or kept in memory; a presented secret is hashed and
// looked up, then the hashes compared in constant time.

export interface Principal {
  scope: TokenScope;
  tokenId: string;
  /** Set for worker tokens: the only worker this caller may speak for. */
  workerId?: string;
}

const PREFIX: Record<number, string> = {
  [TokenScope.ADMIN]: 'hive_adm',
  [TokenScope.JOIN]: 'hive_join',
  [TokenScope.WORKER]: 'hive_wkr',
  [TokenScope.MONITOR]: 'hive_mon',
  [TokenScope.READ]: 'hive_read',
};

export function generateSecret(scope: TokenScope): string {
  return `${PREFIX[scope] ?? 'hive'}_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(secret: string): string {
  // One-shot hashing (Node >= 20.12) is a third of a Hash object's cost; it runs per unary call.
  return hash('sha256', secret, 'hex');
}

export function newTokenId(): string {
  return `tok_${randomBytes(8).toString('hex')}`;
}

export function newTokenRow(scope: TokenScope, now: number, opts: { workerId?: string; description?: string } = {}): { row: TokenRow; secret: string } {
  const secret = generateSecret(scope);
  return {
    secret,
    row: {
      tokenId: newTokenId(),
      hash: hashToken(secret),
      scope,
      workerId: opts.workerId ?? null,
      description: opts.description ?? '',
      createdAt: now,
      revokedAt: null,
    },
  };
}

/** The active tokens, by hash. */
export class TokenIndex {
  // One entry per worker of the fleet: the hash is held once, as hex (the
  // key and the entry's hash are one string), not also as a Buffer.
  private byHash = new Map<string, Principal & { hash: string }>();
  private byId = new Map<string, string>();

  add(row: Pick<TokenRow, 'tokenId' | 'hash' | 'scope' | 'workerId'>): void {
    this.byHash.set(row.hash, { scope: row.scope, tokenId: row.tokenId, workerId: row.workerId ?? undefined, hash: row.hash });
    this.byId.set(row.tokenId, row.hash);
  }

  removeById(tokenId: string): void {
    const hash = this.byId.get(tokenId);
    if (hash === undefined) return;
    this.byId.delete(tokenId);
    this.byHash.delete(hash);
  }

  removeWorker(workerId: string): void {
    for (const [hash, p] of this.byHash) {
      if (p.workerId === workerId) {
        this.byHash.delete(hash);
        this.byId.delete(p.tokenId);
      }
    }
  }

  /** Whether the token is still valid (not revoked, not replaced by a rotation). */
  isActive(tokenId: string): boolean {
    return this.byId.has(tokenId);
  }

  /**
   * Replaces every token that came from the store with the given rows (a
   * reread after another replica created, rotated or revoked some); tokens
   * for which keep says true (from configuration) stay.
   */
  replaceStored(rows: Array<Pick<TokenRow, 'tokenId' | 'hash' | 'scope' | 'workerId'>>, keep: (tokenId: string) => boolean): void {
    for (const [id] of this.byId) if (!keep(id)) this.removeById(id);
    for (const r of rows) this.add(r);
  }

  /** The id of the worker's active token, if it has one. */
  workerTokenId(workerId: string): string | undefined {
    for (const p of this.byHash.values()) if (p.workerId === workerId) return p.tokenId;
    return undefined;
  }

  hasWorkerToken(workerId: string): boolean {
    for (const p of this.byHash.values()) if (p.workerId === workerId) return true;
    return false;
  }

  lookup(secret: string): Principal | undefined {
    const hex = hashToken(secret);
    const found = this.byHash.get(hex);
    if (!found) return undefined;
    // The map lookup already matched; the constant-time compare keeps the
    // final check free of data-dependent early exits.
    if (!timingSafeEqual(Buffer.from(found.hash, 'hex'), Buffer.from(hex, 'hex'))) return undefined;
    return { scope: found.scope, tokenId: found.tokenId, workerId: found.workerId };
  }
}

import { TokenScope } from '../../gen/hive/v1/registry_pb.js';
import type { Principal } from '../../hive/tokens.js';

/**
 * A worker's caller as the auth guard would make it: the id of the token the
 * registry issued that worker (a revoked or rotated one is refused).
 */
export function workerPrincipal(r: { tokens: { workerTokenId(id: string): string | undefined } }, workerId: string): Principal {
  return { scope: TokenScope.WORKER, tokenId: r.tokens.workerTokenId(workerId) ?? `unissued-${workerId}`, workerId };
}

/** The gRPC code a call ends with, or 'ok'. */
export async function codeOf<C>(p: unknown): Promise<C | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { code: C }).code;
  }
}

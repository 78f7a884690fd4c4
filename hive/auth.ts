import { createContextKey, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { DescService } from '@bufbuild/protobuf';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import type { Logger } from '../lib/logger.js';
import { permissionDenied, resourceExhausted, toConnectError, unauthenticated } from './errors.js';
import type { RateLimiter } from './rate-limit.js';
import { certNamesWorker, peerKey } from './tls.js';
import type { Principal, TokenIndex } from './tokens.js';

// The one place where callers are authenticated and authorised, and where
// errors are turned into wire codes. Both transports serve the guarded
// implementation, so no handler repeats auth or error mapping.

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'authenticated caller' });
/** Charges one streamed message against the caller's rate limit (throws ResourceExhausted); set on limited streams. */
export const meterKey = createContextKey<(() => void) | undefined>(undefined, { description: 'per-message rate limit' });
/** The authorization header as the transport read it, where it can hand it over without building Headers (the grpc-js port). */
export const authorizationKey = createContextKey<string | null | undefined>(undefined, { description: 'authorization header' });

export function principalOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw unauthenticated('no caller on this request');
  return p;
}

/** Method name -> scopes allowed to call it; a method absent here is public. */
export type ScopeRules = Record<string, readonly TokenScope[]>;

export function bearer(header: string | null): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

export function authenticate(tokens: TokenIndex, header: string | null): Principal {
  const secret = bearer(header);
  if (!secret) throw unauthenticated('missing "authorization: Bearer <token>" metadata');
  const p = tokens.lookup(secret);
  if (!p) throw unauthenticated('unknown or revoked token');
  return p;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = (...args: any[]) => unknown;

export interface GuardOptions {
  tokens: TokenIndex;
  rules: ScopeRules;
  log: Logger;
  onRejected?: (method: string, err: unknown) => void;
  /** Per-token request budget of agents' tokens (worker and join scope); every streamed message counts. */
  limiter?: RateLimiter;
}

const LIMITED = new Set([TokenScope.WORKER, TokenScope.JOIN]);

/**
 * Under mutual TLS, a worker's certificate must name the worker the call
 * speaks for: its own token's worker, or the worker a join token registers.
 * Admin, monitor and read callers need a certificate from the CA but speak
 * for no worker.
 */
function checkPeer(ctx: HandlerContext, p: Principal, req: unknown): void {
  const peer = ctx.values.get(peerKey);
  if (!peer) return;
  let workerId: string | undefined;
  if (p.scope === TokenScope.WORKER) workerId = p.workerId;
  else if (p.scope === TokenScope.JOIN && req && typeof (req as { workerId?: unknown }).workerId === 'string') workerId = (req as { workerId: string }).workerId;
  else return;
  if (workerId === undefined || !certNamesWorker(peer, workerId))
    throw permissionDenied(`the client certificate does not name worker "${workerId ?? ''}"`);
}

const overLimit = (limiter: RateLimiter, p: Principal) => resourceExhausted(`rate limit of this token exceeded; retry in ${limiter.retryAfterMs(p.tokenId)} ms`);

function charge(limiter: RateLimiter | undefined, p: Principal): void {
  if (!limiter || !LIMITED.has(p.scope)) return;
  if (!limiter.take(p.tokenId)) throw overLimit(limiter, p);
}

export function guardService<S extends DescService>(service: S, impl: ServiceImpl<S>, opts: GuardOptions): ServiceImpl<S> {
  const out: Record<string, AnyFn> = {};
  for (const method of service.methods) {
    const name = method.localName;
    const fn = (impl as unknown as Record<string, AnyFn>)[name];
    const allowed = opts.rules[method.name];
    const fullName = `${service.typeName}/${method.name}`;
    const streamsIn = method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming';
    const admit = (ctx: HandlerContext, req: unknown): Principal | undefined => {
      if (!allowed) return undefined;
      try {
        const raw = ctx.values.get(authorizationKey);
        const p = authenticate(opts.tokens, raw !== undefined ? raw : ctx.requestHeader.get('authorization'));
        if (!allowed.includes(p.scope)) throw permissionDenied(`a ${TokenScope[p.scope].toLowerCase()} token may not call ${method.name}`);
        checkPeer(ctx, p, streamsIn ? undefined : req);
        // A stream's opening is free; each message it carries is charged.
        if (!streamsIn) charge(opts.limiter, p);
        ctx.values.set(principalKey, p);
        return p;
      } catch (err) {
        opts.onRejected?.(method.name, err);
        throw err;
      }
    };
    // Streamed messages are charged by the handler through the context, so
    // the request stream reaches it as the transport made it (the grpc-js
    // port hands over a queue it consumes without a promise per message).
    const meter = (ctx: HandlerContext, p: Principal | undefined): void => {
      const limiter = opts.limiter;
      if (!p || !limiter || !LIMITED.has(p.scope)) return;
      const take = limiter.meterFor(p.tokenId);
      ctx.values.set(meterKey, () => {
        if (take()) return;
        const err = overLimit(limiter, p);
        opts.onRejected?.(method.name, err);
        throw err;
      });
    };
    const fail = (err: unknown) => toConnectError(err, opts.log, fullName);
    if (method.methodKind === 'unary' || method.methodKind === 'client_streaming') {
      out[name] = async (req: unknown, ctx: HandlerContext) => {
        try {
          const p = admit(ctx, req);
          if (streamsIn) meter(ctx, p);
          return await fn(req, ctx);
        } catch (err) {
          throw fail(err);
        }
      };
    } else {
      out[name] = async function* (req: unknown, ctx: HandlerContext) {
        try {
          const p = admit(ctx, req);
          // A heartbeat stream is checked by the registry at each heartbeat
          // (the hot path pays one lookup, not a second generator).
          if (streamsIn) {
            meter(ctx, p);
            yield* fn(req, ctx) as AsyncIterable<unknown>;
            return;
          }
          for await (const msg of fn(req, ctx) as AsyncIterable<unknown>) {
            // A stream authenticates once; a token revoked since ends it.
            if (p && !opts.tokens.isActive(p.tokenId)) throw unauthenticated('the token was revoked');
            yield msg;
          }
        } catch (err) {
          throw fail(err);
        }
      };
    }
  }
  return out as unknown as ServiceImpl<S>;
}

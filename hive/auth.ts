import { createContextKey, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { DescService } from '@bufbuild/protobuf';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import type { Logger } from '../lib/logger.js';
import { permissionDenied, toConnectError, unauthenticated } from './errors.js';
import type { Principal, TokenIndex } from './tokens.js';

// The one place where callers are authenticated and authorised, and where
// errors are turned into wire codes. Both transports serve the guarded
// implementation, so no handler repeats auth or error mapping.

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'authenticated caller' });

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

export function guardService<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  opts: { tokens: TokenIndex; rules: ScopeRules; log: Logger; onRejected?: (method: string, err: unknown) => void },
): ServiceImpl<S> {
  const out: Record<string, AnyFn> = {};
  for (const method of service.methods) {
    const name = method.localName;
    const fn = (impl as unknown as Record<string, AnyFn>)[name];
    const allowed = opts.rules[method.name];
    const fullName = `${service.typeName}/${method.name}`;
    const admit = (ctx: HandlerContext) => {
      if (!allowed) return;
      try {
        const p = authenticate(opts.tokens, ctx.requestHeader.get('authorization'));
        if (!allowed.includes(p.scope)) throw permissionDenied(`a ${TokenScope[p.scope].toLowerCase()} token may not call ${method.name}`);
        ctx.values.set(principalKey, p);
      } catch (err) {
        opts.onRejected?.(method.name, err);
        throw err;
      }
    };
    const fail = (err: unknown) => toConnectError(err, opts.log, fullName);
    if (method.methodKind === 'unary' || method.methodKind === 'client_streaming') {
      out[name] = async (req: unknown, ctx: HandlerContext) => {
        try {
          admit(ctx);
          return await fn(req, ctx);
        } catch (err) {
          throw fail(err);
        }
      };
    } else {
      out[name] = async function* (req: unknown, ctx: HandlerContext) {
        try {
          admit(ctx);
          const p = ctx.values.get(principalKey);
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

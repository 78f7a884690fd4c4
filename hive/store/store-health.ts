import { Counter, Gauge, type Registry as PromRegistry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import { StoreUnavailableError } from '../errors.js';
import type { Store } from './store.js';

// Whether the database takes writes, as the hive last found out. A full or
// read-only disk answers reads and SELECT 1 happily, so a ping alone would
// call the hive healthy while every write fails: the outcome of real
// writes is tracked instead and shown on /healthz, in metrics and in the
// log (one line when writes start failing, one when they work again).

const WRITES = [
  'registerWorker', 'deleteWorker', 'transition', 'flushSnapshots', 'setPolicy', 'appendEvents', 'pruneEvents',
  'createToken', 'revokeToken', 'putDefaultPolicy', 'deleteDefaultPolicy', 'putSilence', 'deleteSilence',
] as const satisfies ReadonlyArray<keyof Store>;

export interface StoreHealth {
  /** null while writes work; otherwise why the last one failed. */
  problem(): string | null;
}

export function watchStoreWrites(store: Store, deps: { log: Logger; prom: PromRegistry }): { store: Store; health: StoreHealth } {
  let problem: string | null = null;
  const failures = new Counter({ name: 'hive_store_write_failures_total', help: 'Durable writes the database refused because it was unreachable or could not write (disk full, read-only, I/O error).', registers: [deps.prom] });
  new Gauge({
    name: 'hive_store_writable',
    help: '1 when the last durable write succeeded, 0 when the database refused it (see /healthz for why).',
    registers: [deps.prom],
    collect() {
      this.set(problem === null ? 1 : 0);
    },
  });
  const wrapped: Store = { ...store };
  for (const name of WRITES) {
    const fn = store[name] as (...a: unknown[]) => Promise<unknown>;
    (wrapped as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      try {
        const r = await fn.apply(store, args);
        if (problem !== null) {
          deps.log.warn({ was: problem }, 'database takes writes again');
          problem = null;
        }
        return r;
      } catch (err) {
        if (err instanceof StoreUnavailableError) {
          failures.inc();
          if (problem === null) deps.log.error({ err: err.message, write: name }, 'database refuses writes; acknowledged writes wait in the outbox, registrations fail with Unavailable');
          problem = err.message;
        }
        throw err;
      }
    };
  }
  return { store: wrapped, health: { problem: () => problem } };
}

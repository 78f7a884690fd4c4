import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, flushMicrotasks } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { createRetentionSweep } from '../../hive/retention.js';
import type { Store } from '../../hive/store/store.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';

describe('event retention sweep', () => {
  const schema = uniqueSchema('hive_ret');
  let store: Store;
  beforeAll(async () => {
    store = await openTestStore(schema);
  });
  afterAll(async () => {
    await store.close();
    await dropSchema(schema);
  });

  it('deletes events older than the retention at start and then periodically', async () => {
    const day = 86_400_000;
    const clock = new ManualClock(100 * day);
    const ev = (at: number) => ({ workerId: 'w', at, kind: 'state_changed', fromState: 2, toState: 3, actor: 'hive', reason: '' });
    await store.appendEvents([ev(clock.now() - 31 * day), ev(clock.now() - 29.5 * day), ev(clock.now() - 1000)]);
    const swept: number[] = [];
    const sweep = createRetentionSweep({ store, clock, log: createLogger('t', 'silent'), retentionMs: 30 * day, everyMs: day, onSwept: (n) => swept.push(n) });
    sweep.start();
    while (swept.length < 1) await flushMicrotasks();
    expect(swept).toEqual([1]);
    expect(await store.listEvents({ limit: 10 })).toHaveLength(2);
    await clock.advance(day + 1);
    while (swept.length < 2) await flushMicrotasks();
    expect(swept[1]).toBe(1); // the 29.5-day-old one is 30.5 days old at the next sweep
    await sweep.stop();
    await sweep.stop(); // idempotent
  });
});

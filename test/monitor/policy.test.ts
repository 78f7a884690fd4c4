import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { DefaultPolicySchema } from '../../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { compileDefaults, effectivePolicy, PolicyBook, resolvePolicy, triggersOn } from '../../monitor/policy.js';
import { worker } from './support.js';

// Effective restart policies: the worker's own, else the highest-priority
// matching default by label, else never; unset fields take the defaults.

const def = (name: string, labelSelector: string, priority: number, mode: RestartMode, action = RestartAction.EXEC) =>
  create(DefaultPolicySchema, { name, labelSelector, priority, policy: create(RestartPolicySchema, { mode, action, execArgv: [`/bin/${name}`] }) });

describe('restart policy', () => {
  it('fills the documented defaults from the worker interval', () => {
    const p = effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_UNHEALTHY }), 5000, 'worker');
    expect(p).toMatchObject({
      mode: RestartMode.ON_UNHEALTHY,
      action: 'agent', // on_unhealthy defaults to the agent
      restartAfterMs: 5000, // 1x interval
      maxAttempts: 5,
      windowMs: 600_000,
      backoffInitialMs: 10_000,
      backoffMaxMs: 300_000,
      verifyTimeoutMs: 30_000, // 3x interval, at least 30 s
      actionTimeoutMs: 30_000,
    });
    expect(effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_UNHEALTHY }), 20_000, 'worker').verifyTimeoutMs).toBe(60_000);
    const explicit = effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.WEBHOOK, restartAfter: msToDuration(0), maxAttempts: 2 }), 1000, 'worker');
    expect(explicit).toMatchObject({ action: 'webhook', restartAfterMs: 0, maxAttempts: 2 });
  });

  it('on_stale has no default action: a silent agent cannot be told anything', () => {
    expect(effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_STALE }), 1000, 'worker').action).toBeNull();
    expect(effectivePolicy(undefined, 1000, 'none')).toMatchObject({ mode: RestartMode.NEVER, action: null });
  });

  it('which triggers each mode answers', () => {
    const p = (mode: RestartMode) => effectivePolicy(create(RestartPolicySchema, { mode }), 1000, 'x');
    expect([triggersOn(p(RestartMode.NEVER), 'stale'), triggersOn(p(RestartMode.NEVER), 'unhealthy')]).toEqual([false, false]);
    expect([triggersOn(p(RestartMode.ON_STALE), 'stale'), triggersOn(p(RestartMode.ON_STALE), 'unhealthy')]).toEqual([true, false]);
    expect([triggersOn(p(RestartMode.ON_UNHEALTHY), 'stale'), triggersOn(p(RestartMode.ON_UNHEALTHY), 'unhealthy')]).toEqual([false, true]);
    expect([triggersOn(p(RestartMode.ALWAYS), 'stale'), triggersOn(p(RestartMode.ALWAYS), 'unhealthy')]).toEqual([true, true]);
    expect(triggersOn(p(RestartMode.UNSPECIFIED), 'stale')).toBe(false);
  });

  it('defaults by label: highest priority wins, ties by name; the worker\'s own policy beats any default', () => {
    const defaults = compileDefaults([
      def('b-catch-all', 'pool', 0, RestartMode.NEVER),
      def('a-gpu', 'pool=gpu', 10, RestartMode.ON_STALE),
      def('z-gpu-east', 'pool=gpu,zone=east', 10, RestartMode.ALWAYS),
      def('c-gpu-hi', 'pool=gpu,tier=prod', 20, RestartMode.ON_UNHEALTHY),
    ]);
    expect(defaults.map((d) => d.name)).toEqual(['c-gpu-hi', 'a-gpu', 'z-gpu-east', 'b-catch-all']);
    const src = (labels: Record<string, string>) => resolvePolicy(worker({ id: 'w', labels }), defaults).source;
    expect(src({ pool: 'gpu', tier: 'prod' })).toBe('default:c-gpu-hi');
    expect(src({ pool: 'gpu', zone: 'east' })).toBe('default:a-gpu');
    expect(src({ pool: 'cpu' })).toBe('default:b-catch-all');
    expect(src({})).toBe('none');
    const own = worker({ id: 'w', labels: { pool: 'gpu' }, policy: create(RestartPolicySchema, { mode: RestartMode.NEVER }) });
    expect(resolvePolicy(own, defaults)).toMatchObject({ source: 'worker', mode: RestartMode.NEVER });
  });

  it('skips a default with a bad selector and says which', () => {
    const bad: string[] = [];
    const book = new PolicyBook();
    book.set([def('ok', 'pool=gpu', 1, RestartMode.ON_STALE), def('broken', '=oops', 2, RestartMode.ON_STALE)], (name) => bad.push(name));
    expect(bad).toEqual(['broken']);
    expect(book.size).toBe(1);
    expect(book.resolve(worker({ id: 'w', labels: { pool: 'gpu' } })).source).toBe('default:ok');
  });
});

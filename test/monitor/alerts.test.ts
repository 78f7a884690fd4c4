import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { SilenceSchema } from '../../gen/hive/v1/control_pb.js';
import { WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToTimestamp } from '../../lib/duration.js';
import { alertRules, createAlerter, genericBody, slackBody, type Receiver, type Severity } from '../../monitor/alerts.js';
import type { PostResult } from '../../monitor/post-json.js';
import { SilenceBook } from '../../monitor/silences.js';
import { silentLog, T0, worker } from './support.js';

// Alert rules and delivery: severities, cooldown per rule and worker,
// silences, start-up grace, both body formats, crash vs clean shutdown.

function setup(o: { receivers?: Receiver[]; cooldownMs?: number; startupGraceMs?: number; minSeverity?: Severity; fail?: boolean } = {}) {
  const clock = new ManualClock(T0);
  const posted: Array<{ url: string; body: Record<string, unknown> }> = [];
  const sent: Severity[] = [];
  const silences = new SilenceBook();
  const alerter = createAlerter({
    clock,
    log: silentLog,
    receivers: o.receivers ?? [{ url: 'http://hooks.example/generic', format: 'generic' }],
    post: async (url, body): Promise<PostResult> => {
      posted.push({ url, body: body as Record<string, unknown> });
      return o.fail ? { ok: false, tries: 3, detail: 'HTTP 500 after 3 tries' } : { ok: true, status: 200, tries: 1, detail: 'HTTP 200' };
    },
    cooldownMs: o.cooldownMs ?? 300_000,
    startupGraceMs: o.startupGraceMs ?? 0,
    minSeverity: o.minSeverity ?? 'info',
    silences,
    metrics: { sent: (s) => sent.push(s) },
  });
  return { clock, posted, sent, silences, alerter };
}

const w = worker({ id: 'gpu-1', labels: { pool: 'a100', zone: 'east' }, lastSeen: T0 - 2000, state: WorkerState.STALE });

describe('alerts', () => {
  it('tells a crash from a clean shutdown', () => {
    const crash = alertRules.stale(w, 2004);
    const clean = alertRules.left(worker({ id: 'gpu-1', state: WorkerState.LEFT }));
    expect(crash).toMatchObject({ rule: 'worker_stale', severity: 'warning' });
    expect(crash.text).toMatch(/no clean shutdown was announced: it crashed, hung or lost its network/);
    expect(crash.text).toMatch(/2\.0 s/);
    expect(clean).toMatchObject({ rule: 'worker_left', severity: 'info' });
    expect(clean.text).toMatch(/clean shutdown .*not a crash.*will not be restarted/);
    expect(alertRules.gaveUp(w, 'gpu-1', '5 attempts failed').severity).toBe('critical');
    expect(alertRules.massStale({ stale: 6, fleet: 10, share: 0.6, recent: 6, windowMs: 2000 })).toMatchObject({ severity: 'critical', rule: 'mass_stale' });
  });

  it('formats Slack-compatible and generic bodies', () => {
    const a = alertRules.gaveUp(w, 'gpu-1', '5 restart attempts within 10m failed');
    const slack = slackBody(a, T0);
    expect(slack.text).toMatch(/^:rotating_light: \[CRITICAL\] Gave up restarting worker gpu-1: /);
    expect(slack.blocks[0]).toMatchObject({ type: 'section', text: { type: 'mrkdwn' } });
    expect(JSON.stringify(slack.blocks[1])).toContain('pool=a100, zone=east');
    expect(genericBody(a, T0)).toEqual({
      source: 'hive-monitor',
      rule: 'worker_failed',
      severity: 'critical',
      title: 'Gave up restarting worker gpu-1',
      text: a.text,
      worker_id: 'gpu-1',
      labels: { pool: 'a100', zone: 'east' },
      time: new Date(T0).toISOString(),
      details: {},
    });
  });

  it('delivers to every receiver in its format and counts by severity', async () => {
    const { posted, sent, alerter } = setup({
      receivers: [
        { url: 'http://hooks.example/slack', format: 'slack' },
        { url: 'http://hooks.example/generic', format: 'generic' },
      ],
    });
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('sent');
    expect(posted.map((p) => [p.url, 'blocks' in p.body, 'rule' in p.body])).toEqual([
      ['http://hooks.example/slack', true, false],
      ['http://hooks.example/generic', false, true],
    ]);
    expect(sent).toEqual(['warning']);
  });

  it('one alert per rule and worker per cooldown', async () => {
    const { clock, posted, alerter } = setup({ cooldownMs: 60_000 });
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('sent');
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('cooldown');
    expect(await alerter.fire(alertRules.left(w))).toBe('sent'); // another rule
    expect(await alerter.fire(alertRules.stale(worker({ id: 'gpu-2' }), 2000))).toBe('sent'); // another worker
    await clock.advance(60_000);
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('sent');
    expect(posted).toHaveLength(4);
  });

  it('silences by worker or label selector, until they expire', async () => {
    const { clock, silences, alerter } = setup();
    silences.set([
      create(SilenceSchema, { silenceId: 's1', workerId: 'gpu-1', expiresAt: msToTimestamp(T0 + 10_000) }),
      create(SilenceSchema, { silenceId: 's2', labelSelector: 'zone=west', expiresAt: msToTimestamp(T0 + 10_000) }),
    ]);
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('silenced');
    expect(await alerter.fire(alertRules.stale(worker({ id: 'gpu-9', labels: { zone: 'west' } }), 2000))).toBe('silenced');
    expect(await alerter.fire(alertRules.stale(worker({ id: 'gpu-8', labels: { zone: 'east' } }), 2000))).toBe('sent');
    // A fleet-wide alert is never muted by a worker's silence.
    expect(await alerter.fire(alertRules.massStale({ stale: 6, fleet: 10, share: 0.6, recent: 6, windowMs: 2000 }))).toBe('sent');
    await clock.advance(10_000);
    expect(await alerter.fire(alertRules.stale(w, 2000))).toBe('sent');
  });

  it('sends nothing during the start-up grace (a restarting stack does not page)', async () => {
    const { clock, posted, alerter } = setup({ startupGraceMs: 90_000 });
    expect(await alerter.fire(alertRules.gaveUp(w, 'gpu-1', 'x'))).toBe('startup_grace');
    await clock.advance(90_000);
    expect(await alerter.fire(alertRules.gaveUp(w, 'gpu-1', 'x'))).toBe('sent');
    expect(posted).toHaveLength(1);
  });

  it('drops what is below the minimum severity; reports a failed delivery', async () => {
    const { alerter } = setup({ minSeverity: 'warning' });
    expect(await alerter.fire(alertRules.left(w))).toBe('below_min');
    const failing = setup({ fail: true });
    expect(await failing.alerter.fire(alertRules.stale(w, 2000))).toBe('failed');
    expect(failing.sent).toEqual([]);
    expect(await setup({ receivers: [] }).alerter.fire(alertRules.stale(w, 2000))).toBe('no_receivers');
  });
});

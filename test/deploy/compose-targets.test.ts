import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../support/procs.js';

// What compose's Prometheus scrapes against what compose runs: every target
// is a compose service, and the only one that is not there by default (a
// service in a profile) is the demo agent, which the compose file says
// runs only with --profile demo.

type Obj = Record<string, unknown>;
const DEPLOY = join(ROOT, 'deploy');

describe('deploy/compose.yaml and its Prometheus', () => {
  const composeText = readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
  const services = (parseYaml(composeText) as Obj).services as Record<string, Obj>;
  const prom = parseYaml(readFileSync(join(DEPLOY, 'prometheus/prometheus.yml'), 'utf8')) as Obj;
  const targets = (prom.scrape_configs as Obj[]).flatMap((job) =>
    ((job.static_configs as Obj[]) ?? []).flatMap((sc) => (sc.targets as string[]).map((t) => ({ job: job.job_name as string, host: t.split(':')[0] }))),
  );

  it('scrapes only compose services', () => {
    for (const t of targets) expect(services[t.host], `${t.job}: ${t.host}`).toBeDefined();
  });

  it('only the demo agent is outside the default profile, and the file says so', () => {
    const optional = targets.filter((t) => services[t.host].profiles !== undefined);
    expect(optional).toEqual([{ job: 'hive-agent', host: 'agent' }]);
    expect(services.agent.profiles).toEqual(['demo']);
    // The comment block right above the prometheus service.
    const before = composeText.slice(0, composeText.indexOf('\n  prometheus:'));
    expect(before.slice(before.lastIndexOf('\n\n'))).toMatch(/\(agent:9465\), which runs only with --profile demo/);
  });
});

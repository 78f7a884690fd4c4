import { Registry as PromRegistry } from 'prom-client';
import { CommandType } from '../gen/hive/v1/registry_pb.js';
import { systemClock } from '../lib/clock.js';
import { ConfigError } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { loadClientTls } from '../lib/tls-client.js';
import { createAgent } from './agent.js';
import { createCheck } from './check.js';
import { createDiskCollector } from './collectors/disk.js';
import { createGpuCollector } from './collectors/gpu.js';
import { createLoadCollector } from './collectors/load.js';
import { createMemoryCollector } from './collectors/memory.js';
import { loadAgentConfig } from './config.js';
import { createHealthEvaluator } from './health.js';
import { createRegistryClient } from './hive-client.js';
import { LatencyWindow } from './latency-window.js';
import { createAgentMetrics, serveMetrics } from './metrics.js';
import { createHttpProbe } from './probe.js';
import { createSampler } from './sampler.js';
import { createSupervisor, type Supervisor } from './supervisor.js';

let config;
try {
  config = loadAgentConfig(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`worker-agent: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const log = createLogger('worker-agent', config.logLevel).child({ workerId: config.workerId });
const clock = systemClock;
const prom = new PromRegistry();
const metrics = createAgentMetrics(prom, config.workerId);

let supervisor: Supervisor | undefined;
if (config.command.length > 0) {
  supervisor = createSupervisor({ command: config.command[0], args: config.command.slice(1), clock, logger: log, stopGraceMs: config.stopGrace });
  await supervisor.start();
}

const collectors = [
  createGpuCollector({ command: config.nvidiaSmi }),
  createMemoryCollector(),
  createDiskCollector({ paths: config.disks }),
  createLoadCollector(),
];
const probe = config.probe ? createHttpProbe({ url: config.probe, clock, timeoutMs: config.probeTimeout, slowMs: config.probeSlow }) : undefined;

const agent = createAgent({
  client: createRegistryClient(config.hive, loadClientTls(config)),
  clock,
  log,
  workerId: config.workerId,
  intervalMs: config.interval,
  labels: config.labels,
  dependsOn: config.dependsOn,
  dependsOnSelector: config.dependsOnSelector,
  joinToken: config.joinToken,
  tokenFile: config.tokenFile,
  events: metrics.events,
  check: createCheck({ clock, collectors, probe }),
  sample: createSampler({
    clock,
    collectors,
    health: createHealthEvaluator({ diskFreeMinRatio: config.diskFreeMin, memoryUsedMaxRatio: config.memoryUsedMax, probeSlowMs: config.probeSlow }),
    probe,
    latency: config.probe ? new LatencyWindow() : undefined,
    supervisor,
    onSample: metrics.sample,
  }),
  async onCommand(cmd) {
    if (cmd.type === CommandType.RESTART) {
      if (!supervisor) return { success: false, message: 'this agent does not supervise a process' };
      const r = await supervisor.restart(cmd.reason || 'restart command from the hive');
      return { success: r.ok, message: r.message };
    }
    if (cmd.type === CommandType.DRAIN) return { success: true, message: 'drain acknowledged' };
    return { success: false, message: `unknown command ${cmd.type}` };
  },
});

const metricsServer = await serveMetrics(prom, config.metricsAddr.host, config.metricsAddr.port, () => agent.state.connected).catch((err) => {
  log.warn({ err: (err as Error).message }, 'agent metrics endpoint not started');
  return undefined;
});
agent.start();
const metricsAt = metricsServer?.address();
log.info(
  {
    hive: config.hive,
    intervalMs: config.interval,
    supervising: config.command.join(' ') || undefined,
    metrics: metricsAt && typeof metricsAt === 'object' ? `${metricsAt.address}:${metricsAt.port}` : undefined,
  },
  'worker-agent started',
);

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'stopping: leaving the hive');
    const force = setTimeout(() => process.exit(1), config.stopGrace + 5000);
    force.unref();
    void (async () => {
      await agent.stop({ leave: true, reason: `agent received ${sig}` });
      await supervisor?.stop();
      metricsServer?.close();
      process.exit(0);
    })();
  });
}

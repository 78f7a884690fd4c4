import { create, fromBinary } from '@bufbuild/protobuf';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetWorkerRequestSchema,
  GetWorkerResponseSchema,
  type Worker,
} from '../../gen/hive/v1/registry_pb.js';
import type { Scenario, Value } from '../lib/context.js';
import { newSchemaName, trackSchema } from '../lib/pg.js';
import { processCpuSeconds, processMemory, sleep, waitForIdle } from '../lib/procfs.js';
import { startHive } from '../lib/servers.js';
import { freePort, spawnNode } from '../lib/spawn.js';
import { spread } from '../lib/stats.js';
import { bearer, clients, gpuUuid, PATHS, serializer, unary } from '../lib/wire.js';

// The agent's own cost: the real bin/worker-agent.mjs heartbeating a real
// hive every second, with nvidia-smi replaced by a script that prints 8 GPUs
// (its process is a child of the agent, so its CPU is not the agent's:
// /proc/<pid>/stat's utime/stime exclude children).

/** nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu,temperature.gpu --format=csv,noheader,nounits */
export function fakeNvidiaSmiOutput(): string {
  return Array.from({ length: 8 }, (_, i) => `${i}, ${gpuUuid(7, i)}, NVIDIA H100 80GB HBM3, ${30_000 + i * 1117}, 81559, ${80 + i}, ${55 + i}`).join('\n') + '\n';
}

export async function getWorker(addr: string, adminToken: string, workerId: string): Promise<Worker | undefined> {
  const [client] = clients(addr, 1);
  try {
    const res = await unary(
      client,
      PATHS.getWorker,
      serializer(GetWorkerRequestSchema),
      (b: Buffer) => fromBinary(GetWorkerResponseSchema, b),
      create(GetWorkerRequestSchema, { workerId }),
      bearer(adminToken),
      5000,
    );
    return res.worker;
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

/** Reads hive_agent_heartbeat_bytes{form} from the agent's /metrics: the size of what it really sent. */
export async function agentHeartbeatBytes(metricsAddr: string): Promise<{ full?: number; compact?: number }> {
  const res = await fetch(`http://${metricsAddr}/metrics`);
  const text = await res.text();
  const out: { full?: number; compact?: number } = {};
  for (const m of text.matchAll(/^hive_agent_heartbeat_bytes\{form="(full|compact)"\} (\d+)/gm)) out[m[1] as 'full' | 'compact'] = Number(m[2]);
  return out;
}

export const agentScenario: Scenario = {
  name: 'agent',
  title: 'worker-agent at a 1 s interval (8 fake GPUs)',
  quick: true,
  async run(ctx) {
    const dir = await mkdtemp(join(tmpdir(), 'hive-bench-agent-'));
    const schema = newSchemaName();
    trackSchema(schema);
    const hive = await startHive({ databaseUrl: ctx.opts.databaseUrl, schema });
    try {
      const smi = join(dir, 'nvidia-smi');
      await writeFile(join(dir, 'gpus.csv'), fakeNvidiaSmiOutput());
      await writeFile(smi, `#!/bin/sh\nexec cat '${join(dir, 'gpus.csv')}'\n`);
      await chmod(smi, 0o755);
      const workerId = 'bench-agent';
      const metricsAddr = `127.0.0.1:${await freePort()}`;
      const agent = spawnNode(
        'worker-agent',
        'bin/worker-agent.mjs',
        ['--hive', hive.addr, '--join-token', hive.joinToken, '--worker-id', workerId, '--interval', '1s', '--nvidia-smi', smi, '--token-file', join(dir, 'token'), '--metrics-addr', metricsAddr, '--disk', '/'],
        { env: { LOG_LEVEL: 'warn' } },
      );
      try {
        // Warm: a few heartbeats acknowledged, the JIT past the start-up.
        const deadline = Date.now() + 60_000;
        let w: Worker | undefined;
        for (;;) {
          if (!agent.alive()) throw new Error(`worker-agent exited:\n${agent.tail()}`);
          w = await getWorker(hive.addr, hive.adminToken, workerId);
          if (w && w.lastSeq >= 5n) break;
          if (Date.now() > deadline) throw new Error(`worker-agent did not heartbeat 5 times within 60 s:\n${agent.tail()}`);
          await sleep(500);
        }
        const shares: number[] = [];
        const rss: number[] = [];
        let beats = 0;
        let seconds = 0;
        for (let r = 0; r < ctx.opts.repeat; r++) {
          await waitForIdle(ctx.opts.idleThreshold, ctx.opts.idleMaxWaitMs);
          const before = (await getWorker(hive.addr, hive.adminToken, workerId))?.lastSeq ?? 0n;
          const c0 = processCpuSeconds(agent.pid);
          const t0 = Date.now();
          await sleep(ctx.opts.agentWindowMs);
          const c1 = processCpuSeconds(agent.pid);
          const t1 = Date.now();
          const after = await getWorker(hive.addr, hive.adminToken, workerId);
          const mem = processMemory(agent.pid);
          const share = ((c1 - c0) / ((t1 - t0) / 1000)) * 100;
          shares.push(share);
          rss.push(mem.rssBytes);
          beats += Number((after?.lastSeq ?? 0n) - before);
          seconds += (t1 - t0) / 1000;
          ctx.log(`  agent #${r + 1}: ${share.toFixed(2)}% of one core over ${((t1 - t0) / 1000).toFixed(0)} s, RSS ${(mem.rssBytes / 2 ** 20).toFixed(1)} MiB, ${Number((after?.lastSeq ?? 0n) - before)} heartbeats`);
        }
        const last = await getWorker(hive.addr, hive.adminToken, workerId);
        const sent = await agentHeartbeatBytes(metricsAddr);
        const peak = processMemory(agent.pid).peakRssBytes;
        const cpu = spread(shares);
        const r = spread(rss.map((b) => b / 2 ** 20));
        const values: Record<string, Value> = {
          cpuPercent: { value: cpu.median, min: cpu.min, max: cpu.max, unit: '% of one core', note: `over ${ctx.opts.agentWindowMs / 1000} s windows, nvidia-smi (a child process) excluded` },
          rssMiB: { value: r.median, min: r.min, max: r.max, unit: 'MiB' },
          peakRssMiB: { value: peak / 2 ** 20, unit: 'MiB' },
          heartbeatsPerSec: { value: beats / seconds, unit: '/s' },
          heartbeatBytes: {
            value: sent.compact ?? sent.full ?? NaN,
            unit: 'B',
            note: `the agent's last ${sent.compact === undefined ? 'full' : 'compact'} heartbeat as sent (hive_agent_heartbeat_bytes; 8 GPUs, ${last?.stats?.disks.length ?? 0} disk(s), ${last?.stats?.collectors.length ?? 0} collectors)`,
          },
          fullHeartbeatBytes: { value: sent.full ?? NaN, unit: 'B', note: 'its full heartbeat (the first of the session: the inventory)' },
        };
        return { status: 'ok', values, notes: ['Real bin/worker-agent.mjs against a real hive; the fake nvidia-smi is `cat` of 8 captured-format lines.'] };
      } finally {
        await agent.stop();
      }
    } finally {
      await hive.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};

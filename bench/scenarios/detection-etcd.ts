import { Skip, type Scenario } from '../lib/context.js';
import type { EtcdFleetSpec, FleetResult, LoadSpec, MeasureResult } from '../lib/ipc.js';
import { closeLoadgen, startLoadgen } from '../lib/measure.js';
import { processCpuSeconds } from '../lib/procfs.js';
import { etcdMissing, startEtcd } from '../lib/servers.js';
import { percentile } from '../lib/stats.js';
import { fleetSilences, lagValues, markStats } from './detection.js';
import { ETCD_PROTO } from './throughput.js';

// The industrial peer's detection under the same load: the detection
// fleet on etcd (a lease per worker with a TTL of 2 x interval, a key on
// it, a keep-alive every interval), beside the closed-loop LeaseKeepAlive
// load of the throughput scenario. etcd checks for expired leases every
// 500 ms and revokes them through raft, deleting their keys; a watch of
// the keys reports each expiry. No monitor and no PostgreSQL run beside
// it: etcd is the whole of its detection.

const INTERVAL_MS = 1000;

export const detectionEtcdScenario: Scenario = {
  name: 'detection-etcd',
  title: 'etcd lease expiry lag, the same fleet under the same stream load',
  quick: false,
  async run(ctx) {
    const missing = etcdMissing();
    if (missing) throw new Skip(`skipped: ${missing}`);
    const n = ctx.opts.detectionWorkers;
    const started: Array<{ stop(): Promise<void> }> = [];
    const etcd = await startEtcd();
    started.push(etcd);
    try {
      const load = await startLoadgen('loadgen-stream');
      started.push({ stop: () => closeLoadgen(load) });
      const fleetGen = await startLoadgen('loadgen-fleet');
      started.push({ stop: () => closeLoadgen(fleetGen) });
      const spec: LoadSpec = { target: 'etcd', addr: etcd.addr, mode: 'stream', concurrency: ctx.opts.streams, conns: ctx.opts.conns, etcd: { protoPath: ETCD_PROTO, ttlSeconds: 60 } };
      await load.call({ type: 'setup', spec }, 300_000);
      const fleetSpec: EtcdFleetSpec = {
        addr: etcd.addr,
        protoPath: ETCD_PROTO,
        count: n,
        prefix: 'bench-d/',
        intervalMs: INTERVAL_MS,
        // The hive's deadline: 2 x interval.
        ttlSeconds: Math.ceil((2 * INTERVAL_MS) / 1000),
        conns: 20,
        silence: fleetSilences(n),
        settleMs: 10_000,
        runMs: 20_000,
      };
      // The leases are granted and their keys written before the stream load
      // starts: under it a grant can answer after its lease's TTL, and etcd
      // holds every later keep-alive on a stream behind one for an expired
      // lease until that lease is revoked, which would expire the whole fleet.
      await fleetGen.call({ type: 'etcd-fleet', spec: fleetSpec }, 300_000);
      await load.call({ type: 'resume', warmupMs: 1000 });
      const c0 = processCpuSeconds(etcd.child.pid);
      const t0 = Date.now();
      const measuring = load.call<MeasureResult>({ type: 'measure', windowMs: 20_000 }, 120_000);
      const result = await fleetGen.call<FleetResult>({ type: 'etcd-fleet-result' }, 180_000);
      const streamLoad = await measuring;
      const etcdCores = (processCpuSeconds(etcd.child.pid) - c0) / ((Date.now() - t0) / 1000);
      await load.call({ type: 'pause' });
      const { lags, falseMarks, lateSenderMarks } = markStats(result, fleetSpec.intervalMs);
      ctx.log(
        `  etcd detection: ${lags.length}/${result.silenced} silent leases expired, p50 ${percentile(lags, 0.5).toFixed(0)} ms, p99 ${percentile(lags, 0.99).toFixed(0)} ms, ` +
          `${falseMarks} kept alive in time and expired anyway (${lateSenderMarks} more the load generator kept alive late), stream load ${Math.round(streamLoad.opsPerSec)} ops/s beside it, etcd ${etcdCores.toFixed(2)} cores`,
      );
      return {
        // Leases kept alive that expired anyway are etcd's doing, reported as measured; only leases never seen to expire mean the run failed.
        status: result.missed > 0 ? 'failed' : 'ok',
        reason: result.missed > 0 ? `${result.missed} silent leases never seen to expire` : undefined,
        values: {
          ...lagValues(lags, "the delete's arrival - the last keep-alive's answer - TTL (load generator's clock)"),
          expired: { value: lags.length, unit: `of ${result.silenced}` },
          falseMarks: { value: falseMarks, unit: 'leases', note: 'leases kept alive under 2 x interval before they expired' },
          lateSenderMarks: { value: lateSenderMarks, unit: 'leases', note: 'not silenced, but the load generator (starved of CPU) sent no keep-alive for 2 x interval' },
          fleetBeatsPerSec: { value: result.beats / 20, unit: '/s' },
          streamLoadOpsPerSec: { value: streamLoad.opsPerSec, unit: 'ops/s', note: 'the closed-loop LeaseKeepAlive load running beside the fleet' },
          etcdCores: { value: etcdCores, unit: 'cores' },
        },
        notes: [
          `${n} leases (TTL ${fleetSpec.ttlSeconds} s) kept alive every ${INTERVAL_MS / 1000} s (±10% jitter, random phase) over 20 connections, one LeaseKeepAlive stream each; ${fleetSpec.silence.length} of them go silent between 10 s and 15 s.`,
          "etcd's events carry no time: a lag is read on the load generator's clock, from the answer to the last keep-alive (after the renewal: in etcd's favour) to the delete's arrival (after the revocation: against it).",
        ],
        data: { fleetErrors: result.errors, lastError: result.lastError },
      };
    } finally {
      for (const p of started.reverse()) await p.stop();
    }
  },
};

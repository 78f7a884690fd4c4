import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Skip, type Ctx, type LoadOutcome, type Scenario } from '../lib/context.js';
import { packageDiffMarkdown, profileMarkdown, summarizeProfile, type CpuProfile, type ProfileSummary } from '../lib/cpuprofile.js';
import type { LoadSpec } from '../lib/ipc.js';
import { measureLoad } from '../lib/measure.js';
import { newSchemaName, trackSchema } from '../lib/pg.js';
import { etcdMissing, startEtcd, startHive, startNoop, type Server } from '../lib/servers.js';
import { ROOT } from '../lib/spawn.js';

// Throughput against the three servers with the same load generator: the
// no-op grpc-js floor, etcd's LeaseKeepAlive, and the hive's full path.

export const ETCD_PROTO = resolve(ROOT, 'bench/proto/etcdserverpb/rpc.proto');

async function withServer<T>(start: () => Promise<Server>, fn: (s: Server) => Promise<T>): Promise<T> {
  const s = await start();
  try {
    return await fn(s);
  } finally {
    await s.stop();
  }
}

function hiveSpec(ctx: Ctx, addr: string, adminToken: string, mode: 'stream' | 'unary', prefix: string, payload: LoadSpec['payload'] = ctx.opts.payload): LoadSpec {
  const concurrency = mode === 'stream' ? ctx.opts.streams : ctx.opts.unaryInFlight;
  return {
    target: 'hive',
    addr,
    mode,
    concurrency,
    conns: ctx.opts.conns,
    payload,
    hive: {
      adminToken,
      workers: { mode: 'register', prefix, count: concurrency, intervalMs: 5000 },
      watchers: mode === 'stream' ? ctx.opts.watchers : 0,
    },
  };
}

export const noopStream: Scenario = {
  name: 'noop-stream',
  title: 'grpc-js no-op bidi stream (floor)',
  quick: true,
  async run(ctx) {
    return withServer(startNoop, async (s) => {
      const load = await measureLoad(ctx, s.child.pid, { target: 'noop', addr: s.addr, mode: 'stream', concurrency: ctx.opts.streams, conns: ctx.opts.conns, payload: ctx.opts.payload }, { label: 'noop stream' });
      return { status: 'ok', load, values: {}, notes: ['Same method path and protobuf-es (de)serialisers as the hive; the reply is an ack with ack_seq only.'] };
    });
  },
};

export const etcdStream: Scenario = {
  name: 'etcd-stream',
  title: `etcd LeaseKeepAlive (${'1,000'} leases)`,
  quick: true,
  async run(ctx) {
    const missing = etcdMissing();
    if (missing) throw new Skip(`skipped: ${missing}`);
    return withServer(startEtcd, async (s) => {
      const load = await measureLoad(
        ctx,
        s.child.pid,
        { target: 'etcd', addr: s.addr, mode: 'stream', concurrency: ctx.opts.streams, conns: ctx.opts.conns, etcd: { protoPath: ETCD_PROTO, ttlSeconds: 60 } },
        { label: 'etcd keepalive' },
      );
      return { status: 'ok', load, values: {}, notes: ['One lease per stream (TTL 60 s), granted first; each stream renews its lease in a closed loop.'] };
    });
  },
};

export const hiveStream: Scenario = {
  name: 'hive-stream',
  title: 'hive HeartbeatStream (full path)',
  quick: true,
  async run(ctx) {
    const schema = newSchemaName();
    trackSchema(schema);
    return withServer(
      () => startHive({ databaseUrl: ctx.opts.databaseUrl, schema }),
      async (s) => {
        const hive = s as Awaited<ReturnType<typeof startHive>>;
        const load = await measureLoad(ctx, s.child.pid, hiveSpec(ctx, s.addr, hive.adminToken, 'stream', 'bench-s-'), { label: 'hive stream' });
        return {
          status: 'ok',
          load,
          values: {},
          notes: [
            `Workers registered with RegisterWorker (admin token) before the load; each stream authenticates with its own worker token.`,
            `${ctx.opts.watchers} WatchWorkers subscriber(s) (admin) receive the changes, as a monitor would.`,
            'Server CPU is the hive process only; PostgreSQL (write-behind every 2 s) shows under "other".',
          ],
        };
      },
    );
  },
};

export const noopStreamMinimal: Scenario = {
  name: 'noop-stream-minimal',
  title: 'grpc-js no-op bidi stream, minimal heartbeat',
  quick: false,
  optIn: true,
  async run(ctx) {
    return withServer(startNoop, async (s) => {
      const load = await measureLoad(ctx, s.child.pid, { target: 'noop', addr: s.addr, mode: 'stream', concurrency: ctx.opts.streams, conns: ctx.opts.conns, payload: 'minimal' }, { label: 'noop stream minimal' });
      return { status: 'ok', load, values: {}, notes: ['Informational (--extras): the floor with a heartbeat of worker id, session, seq and status only (~40 bytes), i.e. the stack without the message.'] };
    });
  },
};

export const hiveStreamMinimal: Scenario = {
  name: 'hive-stream-minimal',
  title: 'hive HeartbeatStream, minimal heartbeat',
  quick: false,
  optIn: true,
  async run(ctx) {
    const schema = newSchemaName();
    trackSchema(schema);
    return withServer(
      () => startHive({ databaseUrl: ctx.opts.databaseUrl, schema }),
      async (s) => {
        const hive = s as Awaited<ReturnType<typeof startHive>>;
        const load = await measureLoad(ctx, s.child.pid, hiveSpec(ctx, s.addr, hive.adminToken, 'stream', 'bench-m-', 'minimal'), { label: 'hive stream minimal' });
        return { status: 'ok', load, values: {}, notes: ['Informational (--extras): the full path with a heartbeat of worker id, session, seq and status only: what the hive costs once the message is small.'] };
      },
    );
  },
};

export const noopUnary: Scenario = {
  name: 'noop-unary',
  title: 'grpc-js no-op unary (floor)',
  quick: false,
  async run(ctx) {
    return withServer(startNoop, async (s) => {
      const load = await measureLoad(ctx, s.child.pid, { target: 'noop', addr: s.addr, mode: 'unary', concurrency: ctx.opts.unaryInFlight, conns: ctx.opts.conns, payload: ctx.opts.payload }, { label: 'noop unary' });
      return { status: 'ok', load, values: {}, notes: [] };
    });
  },
};

export const hiveUnary: Scenario = {
  name: 'hive-unary',
  title: 'hive Heartbeat unary (full path)',
  quick: false,
  async run(ctx) {
    const schema = newSchemaName();
    trackSchema(schema);
    return withServer(
      () => startHive({ databaseUrl: ctx.opts.databaseUrl, schema }),
      async (s) => {
        const hive = s as Awaited<ReturnType<typeof startHive>>;
        const load = await measureLoad(ctx, s.child.pid, hiveSpec(ctx, s.addr, hive.adminToken, 'unary', 'bench-u-'), { label: 'hive unary' });
        return { status: 'ok', load, values: {}, notes: [`${ctx.opts.unaryInFlight} requests in flight, one worker (and token) per slot.`] };
      },
    );
  },
};

/**
 * Runs a server under node --cpu-prof with the stream load (one window) and
 * summarises the main thread's profile over that window. Node writes one
 * profile per thread (tsx's loader hooks run on a thread of their own), so
 * it names them (CPU.<date>.<time>.<pid>.<tid>.<seq>) in a scratch folder
 * and the main thread's (tid 0) is kept.
 */
async function profiled(ctx: Ctx, which: 'hive' | 'noop', name: string, mode: 'stream' | 'unary' = 'stream'): Promise<{ load: LoadOutcome; summary: ProfileSummary; file: string }> {
  const dir = resolve(ctx.opts.outDir);
  const scratch = await mkdtemp(join(dir, 'cpuprof-'));
  const nodeArgs = ['--cpu-prof', '--cpu-prof-dir', scratch];
  let server: Server;
  let spec: LoadSpec;
  if (which === 'hive') {
    const schema = newSchemaName();
    trackSchema(schema);
    const hive = await startHive({ databaseUrl: ctx.opts.databaseUrl, schema, nodeArgs });
    server = hive;
    spec = hiveSpec(ctx, hive.addr, hive.adminToken, mode, 'bench-p-');
  } else {
    server = await startNoop({ nodeArgs });
    spec = { target: 'noop', addr: server.addr, mode, concurrency: mode === 'stream' ? ctx.opts.streams : ctx.opts.unaryInFlight, conns: ctx.opts.conns, payload: ctx.opts.payload };
  }
  let load: LoadOutcome;
  try {
    load = await measureLoad(ctx, server.child.pid, spec, { label: `${which} ${mode} (profiled)`, repeat: 1 });
  } finally {
    await server.stop();
  }
  const main = (await readdir(scratch)).find((f) => f.includes(`.${server.child.pid}.0.`) && f.endsWith('.cpuprofile'));
  if (!main) throw new Error(`no main-thread profile of pid ${server.child.pid} in ${scratch}`);
  const file = join(dir, name);
  await rename(join(scratch, main), file);
  await rm(scratch, { recursive: true, force: true });
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const run = load.runs[0];
  // The profile starts with the process: window offsets are measured from the spawn.
  const summary = summarizeProfile(profile, { fromMs: run.startedAt - server.spawnedAt, toMs: run.endedAt - server.spawnedAt }, run.ops, 40);
  return { load, summary, file };
}

/** The hive (and the floor, for comparison) under the stream load again, with node --cpu-prof; these runs' numbers are not used elsewhere (the profiler costs CPU). */
export const profileHive: Scenario = {
  name: 'profile',
  title: 'hive and no-op HeartbeatStream under --cpu-prof',
  quick: false,
  optIn: true,
  async run(ctx) {
    const hive = await profiled(ctx, 'hive', 'hive-stream.cpuprofile');
    const noop = await profiled(ctx, 'noop', 'noop-stream.cpuprofile');
    const hiveUnary = await profiled(ctx, 'hive', 'hive-unary.cpuprofile', 'unary');
    const noopUnary = await profiled(ctx, 'noop', 'noop-unary.cpuprofile', 'unary');
    const md = [
      profileMarkdown('hive under HeartbeatStream load (node --cpu-prof)', hive.summary, 20),
      packageDiffMarkdown(hive.summary, noop.summary),
      profileMarkdown('no-op floor under the same load (node --cpu-prof)', noop.summary, 10),
      profileMarkdown('hive under unary Heartbeat load (node --cpu-prof)', hiveUnary.summary, 20),
      packageDiffMarkdown(hiveUnary.summary, noopUnary.summary),
    ].join('\n');
    return {
      status: 'ok',
      load: hive.load,
      values: {},
      notes: [`Profiles: ${hive.file}, ${noop.file}, ${hiveUnary.file} and ${noopUnary.file} (Chrome DevTools or speedscope); summary in profile-summary.md.`],
      data: { profile: hive.summary, noopProfile: noop.summary, unaryProfile: hiveUnary.summary, profileMarkdown: md, profileFiles: [hive.file, noop.file, hiveUnary.file, noopUnary.file] },
    };
  },
};

import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import {
  EventSchema,
  RegistryService,
  TokenInfoSchema,
  TokenScope,
  WorkerChangeType,
  type Command,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
  type WatchWorkersResponse,
  type WorkerState,
} from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { msToTimestamp, timestampToMs } from '../lib/duration.js';
import { AsyncQueue } from './async-queue.js';
import { meterKey, principalOf } from './auth.js';
import { invalidArgument, notFound, permissionDenied, resourceExhausted } from './errors.js';
import { decodePageToken, encodePageToken, pageSize } from './paging.js';
import type { Registry } from './registry.js';
import { heartbeatResultOf, type HeartbeatResult } from './metrics.js';
import { matchesSelector, parseSelector } from './selector.js';
import type { EventRow, Store, TokenRow } from './store/store.js';
import { newTokenRow } from './tokens.js';
import type { WatchFilter } from './watch-hub.js';
import { checkProgressIntervalMs, checkString, checkWorkerId } from './validate.js';
import { toHeartbeatDelta, toWorkerMessage } from './worker.js';

// RegistryService handlers, written once and served by both transports.

export interface HandlerDeps {
  registry: Registry;
  store: Store;
  clock: Clock;
  log: Logger;
  /** Called when a HeartbeatStream opens (+1) or closes (-1). */
  onStream?: (delta: number) => void;
  /** Called once per heartbeat with its outcome and how long handling it took (metrics). */
  onHeartbeat?: (result: HeartbeatResult, seconds: number) => void;
  /** Answers to CHECK commands on an accepted heartbeat. */
  onCheckReports?: (workerId: string, reports: HeartbeatRequest['checkReports']) => void;
  /** Open HeartbeatStreams one worker may hold; 0 or absent: no limit. */
  maxStreamsPerWorker?: number;
}

export const toEventMessage = (e: EventRow) =>
  create(EventSchema, {
    eventId: e.eventId ?? 0n,
    workerId: e.workerId,
    time: msToTimestamp(e.at),
    kind: e.kind,
    fromState: e.fromState,
    toState: e.toState,
    actor: e.actor,
    reason: e.reason,
  });

export const toTokenInfo = (t: TokenRow) =>
  create(TokenInfoSchema, {
    tokenId: t.tokenId,
    scope: t.scope,
    workerId: t.workerId ?? '',
    description: t.description,
    createdAt: msToTimestamp(t.createdAt),
    revokedAt: t.revokedAt === null ? undefined : msToTimestamp(t.revokedAt),
  });

function watchFilter(states: WorkerState[], selector: string): WatchFilter | null {
  if (states.length === 0 && !selector) return null;
  return { states: states.length ? new Set(states) : null, selector: parseSelector(selector) };
}

/**
 * Changes per WatchWorkers message: about 0.5 MB (a worker with its stats
 * is ~1 KB), under the 4 MB that gRPC clients accept by default. A
 * liveness-only watcher (omit_stats: ~100 B a worker, ~40 B a heartbeat
 * delta) gets its snapshot 5,000 at a time and then everything pending,
 * up to 20,000 changes (~2 MB), in one message: the monitor's view keeps up
 * with a busy registry only if each turn of the event loop drains what the
 * turn brought (four 1,000-change messages a turn fell behind 18,000
 * heartbeats a second when the turns ran ~200 ms).
 */
const WATCH_BATCH = 500;
const WATCH_SNAPSHOT_BATCH_LIVENESS = 5000;
export const WATCH_BATCH_LIVENESS = 20_000;
const TOKEN_ID = /^tok_[0-9a-f]{16}$/;

export function createRegistryHandlers(deps: HandlerDeps): ServiceImpl<typeof RegistryService> {
  const { registry, store, clock } = deps;
  const counted = deps.onHeartbeat ?? (() => {});
  /** Per worker, how to end each of its open HeartbeatStreams (insertion order: oldest first). */
  const openStreams = new Map<string, Set<() => void>>();
  // The hot path: one clock read on each side, nothing allocated for metrics.
  const beat = (p: ReturnType<typeof principalOf>, hb: HeartbeatRequest, streamed = false) => {
    const t0 = performance.now();
    try {
      const r = registry.heartbeat(p, hb, streamed);
      // Reaching here, the heartbeat was accepted: its check answers count.
      if (hb.checkReports.length > 0) deps.onCheckReports?.(hb.workerId, hb.checkReports);
      if (!(r instanceof Promise)) {
        counted('ok', (performance.now() - t0) / 1000);
        return r;
      }
      return r.then(
        (v) => (counted('ok', (performance.now() - t0) / 1000), v),
        (err) => {
          counted(heartbeatResultOf(err), (performance.now() - t0) / 1000);
          throw err;
        },
      );
    } catch (err) {
      counted(heartbeatResultOf(err), (performance.now() - t0) / 1000);
      throw err;
    }
  };

  return {
    async registerWorker(req, ctx) {
      const { worker, token } = await registry.register(principalOf(ctx), req);
      return { worker: toWorkerMessage(worker), workerToken: token };
    },

    heartbeat(req, ctx) {
      return beat(principalOf(ctx), req);
    },

    heartbeatStream(requests: AsyncIterable<HeartbeatStreamRequest>, ctx: HandlerContext): AsyncIterable<HeartbeatStreamResponse> {
      // Replies to heartbeats and commands pushed unasked share one outbox,
      // a hand-written async iterator rather than a generator: each
      // heartbeat passes through it without a generator frame or a wake-up
      // closure. Its close hook releases the stream, however it ends.
      let workerId: string;
      let p: ReturnType<typeof principalOf>;
      try {
        p = principalOf(ctx);
        if (p.scope !== TokenScope.WORKER || !p.workerId) throw permissionDenied('HeartbeatStream needs a worker token');
        workerId = p.workerId;
        registry.get(workerId);
      } catch (err) {
        const refused = new AsyncQueue<HeartbeatStreamResponse>();
        refused.fail(err);
        return refused;
      }
      const onAbort = () => out.end();
      const out = new AsyncQueue<HeartbeatStreamResponse>(undefined, () => {
        ctx.signal.removeEventListener('abort', onAbort);
        mine.delete(evict);
        if (mine.size === 0 && openStreams.get(workerId) === mine) openStreams.delete(workerId);
        unlisten();
        registry.streamClosed(workerId);
        deps.onStream?.(-1);
      });
      const push = (commands: Command[]) => {
        const w = registry.workers.get(workerId);
        if (commands.length && w) {
          out.push({ $typeName: 'hive.v1.HeartbeatStreamResponse', heartbeat: { $typeName: 'hive.v1.HeartbeatResponse', ackSeq: 0n, commands, state: w.state, inventoryRequired: false } });
        }
      };
      // Commands for this worker, whichever replica they were sent to.
      const unlisten = registry.live.listenCommands(workerId, () => {
        const taken = registry.live.takeCommands(workerId);
        if (taken instanceof Promise) void taken.then(push, () => undefined);
        else push(taken);
      });
      // A worker needs one stream; a few more cover reconnects racing the
      // teardown of connections that died silently (half-open TCP lingers
      // until keepalive notices). Past the limit the oldest stream is
      // ended, not the new one: the newest is the one the agent is using.
      const maxStreams = deps.maxStreamsPerWorker ?? 0;
      const evict = () => out.fail(resourceExhausted(`replaced by a newer heartbeat stream of worker "${workerId}" (limit ${maxStreams} per worker)`));
      const mine = openStreams.get(workerId) ?? new Set<() => void>();
      openStreams.set(workerId, mine);
      mine.add(evict);
      if (maxStreams > 0) for (const old of [...mine].slice(0, Math.max(0, mine.size - maxStreams))) old();
      registry.streamOpened(workerId);
      deps.onStream?.(1);
      ctx.signal.addEventListener('abort', onAbort);
      if (ctx.signal.aborted) out.end();
      const reply = (heartbeat: HeartbeatResponse): HeartbeatStreamResponse => ({ $typeName: 'hive.v1.HeartbeatStreamResponse', heartbeat });
      // The guard's per-message charge against the token's rate limit.
      const meter = ctx.values.get(meterKey);
      if (requests instanceof AsyncQueue) {
        // The grpc-js port: heartbeats are handled as they arrive. One that
        // changes the worker's state waits for its durable write; the ones
        // behind it wait in the request queue, so replies stay in order.
        const queue = requests as AsyncQueue<HeartbeatStreamRequest>;
        let resume: () => void = () => {};
        resume = queue.consume({
          item(msg) {
            if (out.closed) return true;
            try {
              if (!msg.heartbeat) throw invalidArgument('heartbeat is required');
              meter?.();
              const r = beat(p, msg.heartbeat, true);
              if (!(r instanceof Promise)) {
                out.push(reply(r));
                return true;
              }
              r.then(
                (v) => {
                  out.push(reply(v));
                  resume();
                },
                (err) => out.fail(err),
              );
              return false;
            } catch (err) {
              out.fail(err);
              return true;
            }
          },
          end: () => out.end(),
          fail: (err) => out.fail(err),
        });
        return out;
      }
      void (async () => {
        try {
          for await (const msg of requests) {
            if (out.closed) break;
            if (!msg.heartbeat) throw invalidArgument('heartbeat is required');
            meter?.();
            const r = beat(p, msg.heartbeat, true);
            out.push(reply(r instanceof Promise ? await r : r));
          }
          out.end();
        } catch (err) {
          out.fail(err);
        }
      })();
      return out;
    },

    async leave(req, ctx) {
      // The reason lands in the event log: the same rules as any other text.
      checkString('reason', req.reason);
      const w = await registry.leave(principalOf(ctx), req.workerId, req.reason);
      return { worker: toWorkerMessage(w) };
    },

    getWorker(req) {
      const w = registry.workers.get(req.workerId);
      if (!w) throw notFound(`worker "${req.workerId}" is not registered`);
      return { worker: toWorkerMessage(w) };
    },

    listWorkers(req) {
      const size = pageSize(req.pageSize);
      const after = decodePageToken('w', req.pageToken);
      const filter = watchFilter(req.states, req.labelSelector);
      const ids = [...registry.workers.keys()].sort();
      const matching = ids.filter((id) => {
        const w = registry.workers.get(id)!;
        if (!filter) return true;
        if (filter.states && !filter.states.has(w.state)) return false;
        return filter.selector.length === 0 || matchesSelector(filter.selector, w.labels);
      });
      const start = after === null ? 0 : lowerBound(matching, after);
      const page = matching.slice(start, start + size);
      const more = start + size < matching.length;
      return {
        workers: page.map((id) => toWorkerMessage(registry.workers.get(id)!)),
        nextPageToken: more ? encodePageToken('w', page[page.length - 1]) : '',
        totalSize: matching.length,
      };
    },

    async *watchWorkers(req, ctx): AsyncIterable<WatchWorkersResponse> {
      const filter = watchFilter(req.states, req.labelSelector);
      const progressMs = checkProgressIntervalMs(req.progressInterval);
      const idle = progressMs === null ? undefined : { clock, ms: progressMs };
      const sub = registry.hub.subscribe(filter);
      const view = { omitStats: req.omitStats };
      const batch = req.omitStats ? WATCH_BATCH_LIVENESS : WATCH_BATCH;
      const snapshotBatch = req.omitStats ? WATCH_SNAPSHOT_BATCH_LIVENESS : WATCH_BATCH;
      const startedAt = msToTimestamp(registry.startedAt);
      // The view is complete through the snapshot's time once the snapshot
      // is out (it holds every change before the subscription), then
      // through the oldest change a message leaves pending, or the message's
      // own time when it leaves none (one thread: nothing is published
      // between the take and the stamp).
      let through: number | null = null;
      const msg = (changes: WatchWorkersResponse['changes'], synced: boolean): WatchWorkersResponse => {
        const now = clock.now();
        if (through !== null) through = Math.max(through, sub.completeThrough(now));
        return {
          $typeName: 'hive.v1.WatchWorkersResponse',
          changes,
          synced,
          hiveTime: msToTimestamp(now),
          hiveStartedAt: startedAt,
          completeThrough: through === null ? undefined : msToTimestamp(through),
        };
      };
      try {
        // Snapshot first: everything matching now, in batches; then changes.
        const subscribedAt = clock.now();
        const snapshot = [...registry.workers.values()].filter((w) => sub.matches(w));
        for (const w of snapshot) sub.markVisible(w.workerId);
        for (let i = 0; i < snapshot.length || i === 0; i += snapshotBatch) {
          const part = snapshot.slice(i, i + snapshotBatch);
          const last = i + snapshotBatch >= snapshot.length;
          if (last) through = subscribedAt;
          yield msg(
            part.map((w) => ({ $typeName: 'hive.v1.WorkerChange', type: WorkerChangeType.ADDED, worker: toWorkerMessage(w, view) })),
            last,
          );
        }
        while (!ctx.signal.aborted && !sub.closed) {
          await sub.waitForChanges(ctx.signal, idle);
          if (ctx.signal.aborted || sub.closed) break;
          const changes = sub.take(batch);
          // Quiet for progress_interval: a message without changes moves complete_through on.
          if (changes.length === 0 && !idle) continue;
          yield msg(
            changes.map((c) =>
              req.heartbeatDeltas && c.touch
                ? { $typeName: 'hive.v1.WorkerChange', type: WorkerChangeType.HEARTBEAT, worker: toHeartbeatDelta(c.worker, view) }
                : { $typeName: 'hive.v1.WorkerChange', type: c.type, worker: toWorkerMessage(c.worker, view) },
            ),
            false,
          );
        }
      } finally {
        registry.hub.unsubscribe(sub);
      }
    },

    async deregisterWorker(req) {
      checkString('reason', req.reason);
      await registry.deregister(req.workerId, 'admin', req.reason);
      return {};
    },

    async listEvents(req) {
      const size = pageSize(req.pageSize);
      const before = decodePageToken('e', req.pageToken);
      let beforeId: bigint | undefined;
      try {
        beforeId = before === null ? undefined : BigInt(before);
      } catch {
        throw invalidArgument('page_token is not valid for this call');
      }
      if (req.workerId) checkWorkerId(req.workerId);
      const rows = await store.listEvents({ workerId: req.workerId || undefined, beforeId, since: timestampToMs(req.since), limit: size + 1 });
      const more = rows.length > size;
      const page = rows.slice(0, size);
      return {
        events: page.map(toEventMessage),
        nextPageToken: more ? encodePageToken('e', String(page[page.length - 1].eventId)) : '',
      };
    },

    async createToken(req) {
      if (req.scope !== TokenScope.JOIN && req.scope !== TokenScope.READ && req.scope !== TokenScope.MONITOR)
        throw invalidArgument('scope must be JOIN, READ or MONITOR (worker tokens come from RegisterWorker)');
      checkString('description', req.description);
      const { row, secret } = newTokenRow(req.scope, clock.now(), { description: req.description });
      await store.createToken(row);
      registry.tokens.add(row);
      registry.tokensChanged();
      deps.log.info({ tokenId: row.tokenId, scope: TokenScope[row.scope] }, 'token created');
      return { info: toTokenInfo(row), token: secret };
    },

    async revokeToken(req) {
      // Ids are ours (tok_ and hex); anything else cannot exist and never reaches the database.
      if (!TOKEN_ID.test(req.tokenId)) throw notFound('no such token');
      const row = await store.revokeToken(req.tokenId, clock.now());
      if (!row) throw notFound(`token "${req.tokenId}" does not exist`);
      registry.tokens.removeById(req.tokenId);
      registry.tokensChanged();
      deps.log.info({ tokenId: row.tokenId }, 'token revoked');
      return { info: toTokenInfo(row) };
    },

    async listTokens(req) {
      return { tokens: (await store.listTokens(req.includeRevoked)).map(toTokenInfo) };
    },
  };
}

function lowerBound(sorted: string[], after: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

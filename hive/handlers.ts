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
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
  type WatchWorkersResponse,
  type WorkerState,
} from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { msToTimestamp, timestampToMs } from '../lib/duration.js';
import { principalOf } from './auth.js';
import { invalidArgument, notFound, permissionDenied } from './errors.js';
import { decodePageToken, encodePageToken, pageSize } from './paging.js';
import type { Registry } from './registry.js';
import { heartbeatResultOf, type HeartbeatResult } from './metrics.js';
import { matchesSelector, parseSelector } from './selector.js';
import type { EventRow, Store, TokenRow } from './store/store.js';
import { newTokenRow } from './tokens.js';
import type { WatchFilter } from './watch-hub.js';
import { toWorkerMessage } from './worker.js';

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

const WATCH_BATCH = 500;

export function createRegistryHandlers(deps: HandlerDeps): ServiceImpl<typeof RegistryService> {
  const { registry, store, clock } = deps;
  const counted = deps.onHeartbeat ?? (() => {});
  // The hot path: one clock read on each side, nothing allocated for metrics.
  const beat = (p: ReturnType<typeof principalOf>, hb: HeartbeatRequest, streamed = false) => {
    const t0 = performance.now();
    try {
      const r = registry.heartbeat(p, hb, streamed);
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

    async *heartbeatStream(requests: AsyncIterable<HeartbeatStreamRequest>, ctx: HandlerContext): AsyncIterable<HeartbeatStreamResponse> {
      const p = principalOf(ctx);
      if (p.scope !== TokenScope.WORKER || !p.workerId) throw permissionDenied('HeartbeatStream needs a worker token');
      const workerId = p.workerId;
      registry.get(workerId);
      // Replies to heartbeats and commands pushed unasked share one outbox.
      const out: HeartbeatStreamResponse[] = [];
      let wake: (() => void) | null = null;
      let done = false;
      let failure: unknown = null;
      const notify = () => {
        const w = wake;
        wake = null;
        w?.();
      };
      const push = (commands: Command[]) => {
        const w = registry.workers.get(workerId);
        if (commands.length && w) {
          out.push({ $typeName: 'hive.v1.HeartbeatStreamResponse', heartbeat: { $typeName: 'hive.v1.HeartbeatResponse', ackSeq: 0n, commands, state: w.state } });
          notify();
        }
      };
      const unlisten = registry.live.listenCommands(workerId, () => {
        const taken = registry.live.takeCommands(workerId);
        if (taken instanceof Promise) void taken.then(push, () => undefined);
        else push(taken);
      });
      registry.streamOpened(workerId);
      deps.onStream?.(1);
      const reader = (async () => {
        try {
          for await (const msg of requests) {
            if (!msg.heartbeat) throw invalidArgument('heartbeat is required');
            const r = beat(p, msg.heartbeat, true);
            const reply = r instanceof Promise ? await r : r;
            out.push({ $typeName: 'hive.v1.HeartbeatStreamResponse', heartbeat: reply });
            notify();
          }
        } catch (err) {
          failure = err;
        } finally {
          done = true;
          notify();
        }
      })();
      try {
        for (;;) {
          while (out.length) yield out.shift()!;
          if (failure) throw failure;
          if (done || ctx.signal.aborted) break;
          await new Promise<void>((resolve) => {
            wake = resolve;
            if (out.length || done || failure) notify();
          });
        }
      } finally {
        unlisten();
        registry.streamClosed(workerId);
        deps.onStream?.(-1);
        await reader.catch(() => undefined);
      }
    },

    async leave(req, ctx) {
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
      const sub = registry.hub.subscribe(filter);
      const startedAt = msToTimestamp(registry.startedAt);
      const msg = (changes: WatchWorkersResponse['changes'], synced: boolean): WatchWorkersResponse => ({
        $typeName: 'hive.v1.WatchWorkersResponse',
        changes,
        synced,
        hiveTime: msToTimestamp(clock.now()),
        hiveStartedAt: startedAt,
      });
      try {
        // Snapshot first: everything matching now, in batches; then changes.
        const snapshot = [...registry.workers.values()].filter((w) => sub.matches(w));
        for (const w of snapshot) sub.markVisible(w.workerId);
        for (let i = 0; i < snapshot.length || i === 0; i += WATCH_BATCH) {
          const part = snapshot.slice(i, i + WATCH_BATCH);
          const last = i + WATCH_BATCH >= snapshot.length;
          yield msg(
            part.map((w) => ({ $typeName: 'hive.v1.WorkerChange', type: WorkerChangeType.ADDED, worker: toWorkerMessage(w) })),
            last,
          );
        }
        while (!ctx.signal.aborted && !sub.closed) {
          await sub.waitForChanges(ctx.signal);
          const changes = sub.take(WATCH_BATCH);
          if (changes.length === 0) continue;
          yield msg(
            changes.map((c) => ({ $typeName: 'hive.v1.WorkerChange', type: c.type, worker: toWorkerMessage(c.worker) })),
            false,
          );
        }
      } finally {
        registry.hub.unsubscribe(sub);
      }
    },

    async deregisterWorker(req) {
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
      const { row, secret } = newTokenRow(req.scope, clock.now(), { description: req.description.slice(0, 256) });
      await store.createToken(row);
      registry.tokens.add(row);
      registry.tokensChanged();
      deps.log.info({ tokenId: row.tokenId, scope: TokenScope[row.scope] }, 'token created');
      return { info: toTokenInfo(row), token: secret };
    },

    async revokeToken(req) {
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

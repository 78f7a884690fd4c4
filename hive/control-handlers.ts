import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { randomBytes } from 'node:crypto';
import { ControlService, DefaultPolicySchema, SilenceSchema } from '../gen/hive/v1/control_pb.js';
import { RestartPolicySchema } from '../gen/hive/v1/policy_pb.js';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { CommandType, TokenScope } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { durationToMs, msToTimestamp } from '../lib/duration.js';
import { principalOf } from './auth.js';
import { invalidArgument, notFound } from './errors.js';
import { createHealthCheckHandlers } from './health-check-handlers.js';
import type { HealthChecks } from './health-checks.js';
import { toEventMessage } from './handlers.js';
import { validatePolicy } from './policy.js';
import type { Registry } from './registry.js';
import { parseSelector } from './selector.js';
import type { SilenceRow, Store } from './store/store.js';
import { checkString, checkWorkerId } from './validate.js';
import { toWorkerMessage } from './worker.js';

// ControlService: the monitor's (and an admin's) levers on the registry.

export interface ControlDeps {
  registry: Registry;
  store: Store;
  clock: Clock;
  healthChecks: HealthChecks;
}

const actorOf = (scope: TokenScope) => (scope === TokenScope.ADMIN ? 'admin' : 'monitor');

/** The monitor's identity in the event log: its leadership term when it has one. */
const actorWithFence = (scope: TokenScope, fence: bigint) => (fence > 0n ? `${actorOf(scope)}#${fence}` : actorOf(scope));

const toSilence = (s: SilenceRow) =>
  create(SilenceSchema, {
    silenceId: s.silenceId,
    workerId: s.workerId,
    labelSelector: s.labelSelector,
    expiresAt: msToTimestamp(s.expiresAt),
    comment: s.comment,
    createdBy: s.createdBy,
    createdAt: msToTimestamp(s.createdAt),
  });

export function createControlHandlers(deps: ControlDeps): ServiceImpl<typeof ControlService> {
  const { registry, store, clock } = deps;
  return {
    ...createHealthCheckHandlers(deps),

    async markStale(req, ctx) {
      checkString('reason', req.reason);
      const scope = principalOf(ctx).scope;
      // A leader that lost its lease (paused, partitioned) must not act after its successor.
      await registry.live.checkFence(req.fencingToken, scope !== TokenScope.ADMIN);
      const { worker, applied } = await registry.markStale(req.workerId, req.observedSeq, req.observedSessionId, actorWithFence(scope, req.fencingToken), req.reason, {
        signal: ctx.signal,
        // A mark that waited for the hive to read up to the deadline: its sender may have lost the lead meanwhile.
        after: () => registry.live.checkFence(req.fencingToken, scope !== TokenScope.ADMIN),
      });
      return { worker: toWorkerMessage(worker), applied };
    },

    async setWorkerState(req, ctx) {
      checkString('reason', req.reason);
      const scope = principalOf(ctx).scope;
      await registry.live.checkFence(req.fencingToken, scope !== TokenScope.ADMIN);
      const w = await registry.setState(req.workerId, req.state, req.observedSeq, req.observedSessionId, actorWithFence(scope, req.fencingToken), req.reason);
      return { worker: toWorkerMessage(w) };
    },

    async sendCommand(req, ctx) {
      checkString('reason', req.reason);
      // An agent acts only on types it knows; anything else would sit in its queue.
      if (!(req.type in CommandType) || req.type === CommandType.UNSPECIFIED) throw invalidArgument(`command type ${req.type} is not a CommandType`);
      await registry.live.checkFence(req.fencingToken, principalOf(ctx).scope !== TokenScope.ADMIN);
      const { command, delivered } = await registry.sendCommand(req.workerId, req.type, req.reason);
      return { command, delivered };
    },

    async recordEvent(req, ctx) {
      checkWorkerId(req.workerId);
      if (!/^[a-z][a-z0-9_]{0,63}$/.test(req.kind)) throw invalidArgument('kind must be lower_snake_case, at most 64 characters');
      checkString('reason', req.reason, { allowControl: false });
      const row = await registry.recordEvent(req.workerId, req.kind, actorWithFence(principalOf(ctx).scope, req.fencingToken), req.reason);
      return { event: toEventMessage(row) };
    },

    async setRestartPolicy(req) {
      const w = await registry.setPolicy(req.workerId, req.policy ?? null, 'admin');
      return { worker: toWorkerMessage(w) };
    },

    async setDefaultPolicy(req) {
      const d = req.defaultPolicy;
      if (!d || !d.name) throw invalidArgument('default_policy.name is required');
      checkString('default_policy.name', d.name);
      if (req.delete) {
        if (!(await store.deleteDefaultPolicy(d.name))) throw notFound(`default policy "${d.name}" does not exist`);
        return {};
      }
      parseSelector(d.labelSelector);
      if (!d.policy) throw invalidArgument('default_policy.policy is required');
      validatePolicy(d.policy);
      await store.putDefaultPolicy({ name: d.name, labelSelector: d.labelSelector, priority: d.priority, policy: toBinary(RestartPolicySchema, d.policy) });
      return {};
    },

    async listDefaultPolicies() {
      // Precedence order: highest priority first, then by name.
      const rows = (await store.listDefaultPolicies()).sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return {
        defaultPolicies: rows.map((r) =>
          create(DefaultPolicySchema, { name: r.name, labelSelector: r.labelSelector, priority: r.priority, policy: fromBinary(RestartPolicySchema, r.policy) }),
        ),
      };
    },

    async addSilence(req, ctx) {
      if (!req.workerId && !req.labelSelector) throw invalidArgument('a silence needs a worker_id or a label_selector');
      if (req.workerId) checkWorkerId(req.workerId);
      parseSelector(req.labelSelector);
      checkString('comment', req.comment);
      const ms = durationToMs(req.duration);
      if (ms === undefined || ms <= 0 || ms > 90 * 86_400_000) throw invalidArgument('duration must be between 0 and 90 days');
      const now = clock.now();
      const row: SilenceRow = {
        silenceId: `sil_${randomBytes(6).toString('hex')}`,
        workerId: req.workerId,
        labelSelector: req.labelSelector,
        expiresAt: now + ms,
        comment: req.comment,
        createdBy: actorOf(principalOf(ctx).scope),
        createdAt: now,
      };
      await store.putSilence(row);
      return { silence: toSilence(row) };
    },

    async listSilences(req) {
      const now = clock.now();
      const rows = await store.listSilences();
      return { silences: rows.filter((s) => req.includeExpired || s.expiresAt > now).map(toSilence) };
    },

    async removeSilence(req) {
      // Ids are ours (sil_ and hex); anything else cannot exist and never reaches the database.
      if (!/^sil_[0-9a-f]{12}$/.test(req.silenceId)) throw notFound('no such silence');
      if (!(await store.deleteSilence(req.silenceId))) throw notFound(`silence "${req.silenceId}" does not exist`);
      return {};
    },
  };
}

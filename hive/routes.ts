import type { DescService } from '@bufbuild/protobuf';
import type { ConnectRouter, ServiceImpl } from '@connectrpc/connect';
import { ControlService } from '../gen/hive/v1/control_pb.js';
import { RegistryService, TokenScope } from '../gen/hive/v1/registry_pb.js';
import { Health } from '../gen/grpc/health/v1/health_pb.js';
import type { Logger } from '../lib/logger.js';
import { guardService, type ScopeRules } from './auth.js';
import { createControlHandlers, type ControlDeps } from './control-handlers.js';
import { createRegistryHandlers, type HandlerDeps } from './handlers.js';
import { createHealthHandlers, type HealthState } from './health-service.js';
import { heartbeatResultOf, type HeartbeatResult } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';
import { createReflectionHandlers, ReflectionV1, ReflectionV1Alpha } from './reflection.js';

// Every service the hive serves, guarded, as one list: the gRPC port and
// the HTTP (Connect, gRPC-Web) port mount exactly the same objects.

const { ADMIN, JOIN, WORKER, MONITOR, READ } = TokenScope;
const READERS = [ADMIN, READ, MONITOR] as const;

export const REGISTRY_RULES: ScopeRules = {
  RegisterWorker: [ADMIN, JOIN],
  Heartbeat: [WORKER],
  HeartbeatStream: [WORKER],
  Leave: [WORKER, ADMIN],
  GetWorker: READERS,
  ListWorkers: READERS,
  WatchWorkers: READERS,
  ListEvents: READERS,
  DeregisterWorker: [ADMIN],
  CreateToken: [ADMIN],
  RevokeToken: [ADMIN],
  ListTokens: [ADMIN],
};

export const CONTROL_RULES: ScopeRules = {
  MarkStale: [MONITOR, ADMIN],
  SetWorkerState: [MONITOR, ADMIN],
  SendCommand: [MONITOR, ADMIN],
  RecordEvent: [MONITOR, ADMIN],
  SetRestartPolicy: [ADMIN],
  SetDefaultPolicy: [ADMIN],
  ListDefaultPolicies: READERS,
  AddSilence: [ADMIN],
  ListSilences: READERS,
  RemoveSilence: [ADMIN],
  // The monitor may start only scheduled runs (checked in the handler).
  StartHealthCheck: [ADMIN, MONITOR],
  GetHealthCheck: READERS,
  ListHealthChecks: READERS,
  WatchHealthCheck: READERS,
  CreateHealthCheckSchedule: [ADMIN],
  UpdateHealthCheckSchedule: [ADMIN],
  DeleteHealthCheckSchedule: [ADMIN],
  ListHealthCheckSchedules: READERS,
};

export interface Mounted {
  service: DescService;
  impl: ServiceImpl<DescService>;
}

export type ServiceDeps = Omit<HandlerDeps, 'onHeartbeat'> &
  ControlDeps & {
    health: HealthState;
    log: Logger;
    limiter?: RateLimiter;
    /** As in HandlerDeps, but called without seconds for a heartbeat the auth guard refused (it was never handled). */
    onHeartbeat?: (result: HeartbeatResult, seconds?: number) => void;
  };

export function createServices(deps: ServiceDeps): Mounted[] {
  // Heartbeats refused at the door (no token, wrong scope) count as heartbeat
  // results too, but have no handling time to observe.
  const onRejected = (method: string, err: unknown) => {
    if (method === 'Heartbeat' || method === 'HeartbeatStream') deps.onHeartbeat?.(heartbeatResultOf(err));
  };
  const guard = <S extends DescService>(service: S, impl: ServiceImpl<S>, rules: ScopeRules): Mounted => ({
    service,
    impl: guardService(service, impl, { tokens: deps.registry.tokens, rules, log: deps.log, onRejected, limiter: deps.limiter }) as unknown as ServiceImpl<DescService>,
  });
  const reflection = createReflectionHandlers([RegistryService, ControlService, Health]);
  return [
    guard(RegistryService, createRegistryHandlers(deps), REGISTRY_RULES),
    guard(ControlService, createControlHandlers(deps), CONTROL_RULES),
    guard(Health, createHealthHandlers(deps.health), {}),
    guard(ReflectionV1, reflection.v1, {}),
    guard(ReflectionV1Alpha, reflection.v1alpha, {}),
  ];
}

export function connectRoutes(mounted: Mounted[]) {
  return (router: ConnectRouter) => {
    for (const m of mounted) router.service(m.service, m.impl);
  };
}

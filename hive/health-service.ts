import type { ServiceImpl } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus as Serving } from '../gen/grpc/health/v1/health_pb.js';
import { notFound } from './errors.js';

// grpc.health.v1.Health, so load balancers and grpc_health_probe work
// without our .proto. The overall status ("") follows the hive's own
// readiness; named services are those this hive serves.

export interface HealthState {
  services: readonly string[];
  /** Whether the hive serves (false while starting or shutting down). */
  serving(): boolean;
  /** Resolves on the next change of serving(), or when the signal aborts. */
  changed(signal: AbortSignal): Promise<void>;
}

export function createHealthState(services: readonly string[]) {
  let up = false;
  let waiters: Array<() => void> = [];
  const state: HealthState & { set(up: boolean): void } = {
    services,
    serving: () => up,
    set(next: boolean) {
      if (next === up) return;
      up = next;
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    },
    changed(signal) {
      return new Promise((resolve) => {
        if (signal.aborted) return resolve();
        waiters.push(resolve);
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
  };
  return state;
}

export function createHealthHandlers(state: HealthState): ServiceImpl<typeof Health> {
  const statusOf = (service: string): Serving | undefined => {
    if (service !== '' && !state.services.includes(service)) return undefined;
    return state.serving() ? Serving.SERVING : Serving.NOT_SERVING;
  };
  return {
    check(req) {
      const status = statusOf(req.service);
      if (status === undefined) throw notFound(`unknown service "${req.service}"`);
      return { status };
    },
    list() {
      const statuses: Record<string, { status: Serving }> = {};
      for (const s of ['', ...state.services]) statuses[s] = { status: statusOf(s)! };
      return { statuses };
    },
    async *watch(req, ctx) {
      let last: Serving | undefined;
      while (!ctx.signal.aborted) {
        const status = statusOf(req.service) ?? Serving.SERVICE_UNKNOWN;
        if (status !== last) yield { status };
        last = status;
        await state.changed(ctx.signal);
      }
    },
  };
}

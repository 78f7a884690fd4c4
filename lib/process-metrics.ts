import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * prom-client's process and Node.js metrics on a process's own registry,
 * minus the three gauges it names `_total`: promtool rejects a `_total`
 * suffix on anything but a counter. The per-type gauges stay.
 */
export function registerProcessMetrics(prom: Registry): void {
  collectDefaultMetrics({ register: prom });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    if (prom.getSingleMetric(name)) prom.removeSingleMetric(name);
  }
}

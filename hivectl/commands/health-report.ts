import { Option, type Command } from 'commander';
import { EventSchema, WorkerState, type Event, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { formatDurationMs, timestampToMs } from '../../lib/duration.js';
import { durationArg, messageJson, outputOption, positiveInt, printData, type Ctx, type OutputFormat } from '../context.js';
import { formatAge, formatBytes, formatTime, lastSeenAge, renderTable, stateColour, stateName, stateSeverity } from '../format.js';
import { bandOf, scoreOf, scoreText, worstFirst } from '../score.js';
import { EVENT_HEADER, eventRows, fetchEvents } from './events.js';
import { listAllWorkers } from './workers.js';

// `hivectl health-report`: the fleet on one screen, as the "worker-bee"
// health report has it: counts by state, the worst workers, recent incidents.

const BAD = new Set([WorkerState.DEGRADED, WorkerState.UNHEALTHY, WorkerState.STALE, WorkerState.RESTARTING, WorkerState.FAILED]);

/** An event worth an operator's eye: a move into a bad state, or a restart/alert step. */
export function isIncident(e: Event): boolean {
  if (e.fromState !== e.toState && BAD.has(e.toState)) return true;
  return /stale|restart|fail|alert/.test(e.kind);
}

export interface HealthReport {
  generatedAt: string;
  window: string;
  total: number;
  connected: number;
  byState: Record<string, number>;
  byBand: Record<string, number>;
  gpus: { count: number; vramUsedBytes: string; vramTotalBytes: string };
  worst: Array<{ workerId: string; state: string; score: number | null; lastSeen: string; detail: string }>;
  incidents: unknown[];
}

export function buildReport(workers: Worker[], incidents: Event[], now: number, windowMs: number, top: number): HealthReport {
  const byState: Record<string, number> = {};
  const byBand: Record<string, number> = { healthy: 0, degraded: 0, unhealthy: 0, critical: 0, unscored: 0 };
  let gpuCount = 0;
  let vramUsed = 0n;
  let vramTotal = 0n;
  for (const w of workers) {
    byState[stateName(w.state)] = (byState[stateName(w.state)] ?? 0) + 1;
    byBand[bandOf(w)]++;
    for (const g of w.stats?.gpus ?? []) {
      gpuCount++;
      vramUsed += g.memoryUsedBytes;
      vramTotal += g.memoryTotalBytes;
    }
  }
  const worst = [...workers]
    .filter((w) => (scoreOf(w) ?? 1) < 0.9 || stateSeverity(w.state) >= stateSeverity(WorkerState.DEGRADED))
    .sort(worstFirst)
    .slice(0, top);
  return {
    generatedAt: new Date(now).toISOString(),
    window: formatDurationMs(windowMs),
    total: workers.length,
    connected: workers.filter((w) => w.connected).length,
    byState,
    byBand,
    gpus: { count: gpuCount, vramUsedBytes: String(vramUsed), vramTotalBytes: String(vramTotal) },
    worst: worst.map((w) => ({
      workerId: w.workerId,
      state: stateName(w.state),
      score: scoreOf(w) ?? null,
      lastSeen: lastSeenAge(w, now),
      detail: w.statusDetail,
    })),
    incidents: incidents.map((e) => messageJson(EventSchema, e)),
  };
}

export function registerHealthReportCommand(program: Command, ctx: Ctx): void {
  program
    .command('health-report')
    .description('fleet summary: workers by state and health band, the worst workers, recent incidents')
    .addOption(new Option('--since <duration>', 'incidents from this long ago').argParser(durationArg).default(86_400_000, '24h'))
    .option('--top <n>', 'how many of the worst workers and incidents to show', positiveInt, 10)
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { since: number; top: number; output: OutputFormat }) => {
      const now = ctx.clock.now();
      const [workers, { events }] = await Promise.all([listAllWorkers(ctx), fetchEvents(ctx, { since: now - opts.since, limit: 5000 })]);
      const incidents = events.filter(isIncident).slice(0, opts.top);
      const report = buildReport(workers, incidents, now, opts.since, opts.top);
      if (opts.output !== 'table') return printData(ctx, opts.output, report);

      const paint = ctx.paint();
      const states = Object.values(WorkerState)
        .filter((v): v is WorkerState => typeof v === 'number' && v !== WorkerState.UNSPECIFIED)
        .filter((s) => report.byState[stateName(s)])
        .map((s) => `${paint(stateColour(s), stateName(s).toLowerCase())} ${report.byState[stateName(s)]}`);
      let text = `${paint('bold', 'Fleet health')}  ${ctx.conn().url}  ${formatTime(now)}\n\n`;
      text += `Workers:   ${report.total} (${report.connected} connected)${states.length ? '  ' + states.join('  ') : ''}\n`;
      text += `Health:    ${(['healthy', 'degraded', 'unhealthy', 'critical'] as const).map((b) => `${b} ${report.byBand[b]}`).join('  ')}${report.byBand.unscored ? `  (not scored: ${report.byBand.unscored})` : ''}\n`;
      if (report.gpus.count) text += `GPUs:      ${report.gpus.count}, VRAM ${formatBytes(BigInt(report.gpus.vramUsedBytes))} used of ${formatBytes(BigInt(report.gpus.vramTotalBytes))}\n`;
      const worst = [...workers].filter((w) => report.worst.some((x) => x.workerId === w.workerId)).sort(worstFirst);
      text += `\nWorst workers${worst.length ? '' : ': none, every worker is healthy'}\n`;
      if (worst.length) {
        text += renderTable(
          ['WORKER', 'STATE', 'HEALTH', 'LAST SEEN', 'FOR', 'DETAIL'],
          worst.map((w) => {
            const since = timestampToMs(w.stateSince);
            return [w.workerId, paint(stateColour(w.state), stateName(w.state)), scoreText(w, paint), lastSeenAge(w, now), since === undefined ? '-' : formatAge(now - since), w.statusDetail || '-'];
          }),
          paint,
        );
      }
      text += `\nIncidents in the last ${report.window}${incidents.length ? ` (newest ${incidents.length})` : ': none'}\n`;
      if (incidents.length) text += renderTable(EVENT_HEADER, eventRows([...incidents].reverse(), paint), paint);
      ctx.out(text);
    });
}

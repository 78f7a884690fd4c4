import { Option, type Command } from 'commander';
import {
  CheckOutcome,
  GetHealthCheckResponseSchema,
  HealthBand,
  HealthCheckSchema,
  HealthCheckState,
  HealthCheckTrigger,
  ListHealthCheckSchedulesResponseSchema,
  ListHealthChecksResponseSchema,
  type HealthCheck,
  type HealthCheckSchedule,
} from '../../gen/hive/v1/health_check_pb.js';
import { durationToMs, formatDurationMs, msToDuration, timestampToMs } from '../../lib/duration.js';
import { durationArg, messageJson, outputOption, positiveInt, printData, type Ctx, type OutputFormat } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { formatTime, renderTable, type Colour, type Paint } from '../format.js';

// `hivectl check`: start a health-check run (and follow it with --wait),
// `hivectl checks`: the run history, `hivectl check show ID`: one run with
// its per-worker results, `hivectl schedule ...`: the schedules that start
// runs. Rendering is pure; the commands only fetch and print.

const BAND_NAME: Record<number, string> = {
  [HealthBand.UNSPECIFIED]: '-',
  [HealthBand.HEALTHY]: 'healthy',
  [HealthBand.DEGRADED]: 'degraded',
  [HealthBand.UNHEALTHY]: 'unhealthy',
  [HealthBand.CRITICAL]: 'critical',
};
const BAND_COLOUR: Record<number, Colour | undefined> = { [HealthBand.HEALTHY]: 'green', [HealthBand.DEGRADED]: 'yellow', [HealthBand.UNHEALTHY]: 'red', [HealthBand.CRITICAL]: 'red' };
const OUTCOME: Record<number, string> = { [CheckOutcome.PENDING]: 'pending', [CheckOutcome.ANSWERED]: 'answered', [CheckOutcome.NO_ANSWER]: 'no answer' };
const TRIGGER: Record<number, string> = { [HealthCheckTrigger.MANUAL]: 'manual', [HealthCheckTrigger.SCHEDULED]: 'scheduled' };

const score = (c: { score: number; band: HealthBand }, paint: Paint) => (c.band === HealthBand.UNSPECIFIED ? '-' : paint(BAND_COLOUR[c.band], `${c.score.toFixed(2)} ${BAND_NAME[c.band]}`));
const stateText = (c: HealthCheck) => (c.state === HealthCheckState.RUNNING ? `running ${c.completed}/${c.total}` : 'done');

export const CHECKS_HEADER = ['CHECK', 'STARTED', 'TRIGGER', 'SELECTOR', 'STATE', 'WORKERS', 'FAILED', 'SCORE'];

export function checkRows(checks: readonly HealthCheck[], paint: Paint): string[][] {
  return checks.map((c) => [
    c.checkId,
    formatTime(timestampToMs(c.startedAt)),
    c.scheduleId ? `${TRIGGER[c.trigger]} (${c.scheduleId})` : (TRIGGER[c.trigger] ?? '-'),
    c.labelSelector || '(all)',
    stateText(c),
    String(c.total),
    String(c.failed),
    c.state === HealthCheckState.DONE ? score(c, paint) : '-',
  ]);
}

export const RESULTS_HEADER = ['WORKER', 'OUTCOME', 'SCORE', 'PROBE', 'RTT', 'UPTIME', 'REASON'];

export function resultRows(check: HealthCheck, paint: Paint): string[][] {
  return check.results.map((r) => {
    const rep = r.report;
    return [
      r.workerId,
      OUTCOME[r.outcome] ?? '-',
      r.outcome === CheckOutcome.PENDING ? '-' : score(r, paint),
      rep && rep.probeStatus ? `${Math.round(rep.probeLatencySeconds * 1000)} ms` : '-',
      rep?.hiveRttSeconds !== undefined ? `${Math.round(rep.hiveRttSeconds * 1000)} ms` : '-',
      rep ? formatDurationMs(Math.round(rep.uptimeSeconds) * 1000) : '-',
      r.reason || '-',
    ];
  });
}

/** The one-run report: a heading, the summary, the per-worker table. */
export function renderCheck(c: HealthCheck, paint: Paint): string {
  const lines = [
    `Check      ${c.checkId} (${TRIGGER[c.trigger] ?? '-'}${c.scheduleId ? `, schedule ${c.scheduleId}` : ''}, by ${c.startedBy || '-'})`,
    `Selector   ${c.labelSelector || '(all workers)'}, timeout ${formatDurationMs(durationToMs(c.timeout) ?? 0)}`,
    `Started    ${formatTime(timestampToMs(c.startedAt))}${c.finishedAt ? `, finished ${formatTime(timestampToMs(c.finishedAt))}` : ''}`,
    `State      ${stateText(c)}, ${c.failed} failed of ${c.total}`,
    `Score      ${c.state === HealthCheckState.DONE ? score(c, paint) : '-'}`,
  ];
  if (c.summary) lines.push(`Summary    ${c.summary}`);
  const table = c.results.length ? '\n' + renderTable(RESULTS_HEADER, resultRows(c, paint), paint) : '';
  return lines.join('\n') + '\n' + table;
}

const TRIGGERS: Record<string, HealthCheckTrigger> = { manual: HealthCheckTrigger.MANUAL, scheduled: HealthCheckTrigger.SCHEDULED };

export function scheduleRows(list: readonly HealthCheckSchedule[]): string[][] {
  return list.map((s) => [s.scheduleId, s.cron, s.enabled ? 'yes' : 'no', s.labelSelector || '(all)', formatDurationMs(durationToMs(s.timeout) ?? 0), s.description || '-']);
}

export function registerCheckCommands(program: Command, ctx: Ctx): void {
  const followed = async (checkId: string, quiet: boolean): Promise<HealthCheck> => {
    let last: HealthCheck | undefined;
    for await (const m of ctx.clients().control.watchHealthCheck({ checkId }, { signal: ctx.signal })) {
      last = m.check;
      if (!quiet && last && last.state === HealthCheckState.RUNNING) ctx.note(`${checkId}: ${last.completed}/${last.total} answered`);
    }
    if (!last) throw new CliError(`the watch of ${checkId} ended without news`, EXIT.ERROR);
    return last;
  };

  const check = program
    .command('check')
    .description('start a health-check run on every worker (or a label selector); --wait follows it to the end (admin)')
    .option('-l, --selector <selector>', 'only workers matching this label selector')
    .addOption(new Option('--check-timeout <duration>', 'how long workers have to answer').argParser(durationArg).default(30_000, '30s'))
    .option('-w, --wait', 'follow the run and print its results; exit 7 when a worker failed')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { selector?: string; checkTimeout: number; wait?: boolean; output: OutputFormat }) => {
      const res = await ctx.clients().control.startHealthCheck({ labelSelector: opts.selector ?? '', timeout: msToDuration(opts.checkTimeout) }, ctx.unary());
      const started = res.check!;
      if (!opts.wait) {
        if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(HealthCheckSchema, started));
        ctx.note(`health check started on ${started.total} worker(s); follow it with \`hivectl check show ${started.checkId}\`; its id follows:`);
        ctx.out(`${started.checkId}\n`);
        return;
      }
      const done = started.state === HealthCheckState.DONE ? started : await followed(started.checkId, opts.output !== 'table');
      if (opts.output !== 'table') printData(ctx, opts.output, messageJson(HealthCheckSchema, done));
      else ctx.out(renderCheck(done, ctx.paint()));
      if (done.failed > 0) throw new CliError(`${done.failed} of ${done.total} worker(s) failed the health check`, EXIT.CHECK_FAILED);
    });

  check
    .command('show')
    .description('one run with its per-worker results (progress while it runs)')
    .argument('<check-id>', 'the run (see `hivectl checks`)')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (checkId: string, opts: { output: OutputFormat }) => {
      // `check` has -o too, and commander hands a trailing -o to the parent.
      const output = opts.output !== 'table' ? opts.output : check.opts<{ output: OutputFormat }>().output;
      const res = await ctx.clients().control.getHealthCheck({ checkId }, ctx.unary());
      if (output !== 'table') return printData(ctx, output, messageJson(GetHealthCheckResponseSchema, res));
      ctx.out(renderCheck(res.check!, ctx.paint()));
    });

  program
    .command('checks')
    .description('health-check runs, newest first')
    .addOption(new Option('--trigger <trigger>', 'only runs started this way').choices(Object.keys(TRIGGERS)))
    .option('--limit <n>', 'at most this many', positiveInt, 20)
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { trigger?: string; limit: number; output: OutputFormat }) => {
      const res = await ctx.clients().control.listHealthChecks({ trigger: opts.trigger ? TRIGGERS[opts.trigger] : HealthCheckTrigger.UNSPECIFIED, pageSize: opts.limit }, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(ListHealthChecksResponseSchema, res));
      if (res.checks.length === 0) return ctx.note('no health checks yet; start one with `hivectl check`');
      ctx.out(renderTable(CHECKS_HEADER, checkRows(res.checks, ctx.paint()), ctx.paint()));
      if (res.nextPageToken) ctx.note(`(the newest ${res.checks.length} shown; --limit for more)`);
    });

  const schedule = program.command('schedule').description('health-check schedules: cron expressions (UTC) the monitor leader fires');
  schedule
    .command('list')
    .description('list schedules')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { output: OutputFormat }) => {
      const res = await ctx.clients().control.listHealthCheckSchedules({}, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(ListHealthCheckSchedulesResponseSchema, res));
      if (res.schedules.length === 0) return ctx.note('no schedules');
      ctx.out(renderTable(['SCHEDULE', 'CRON', 'ENABLED', 'SELECTOR', 'TIMEOUT', 'DESCRIPTION'], scheduleRows(res.schedules), ctx.paint()));
    });
  const scheduleOptions = (c: Command) =>
    c
      .requiredOption('--cron <expr>', 'cron expression, UTC: "*/15 * * * *"')
      .option('-l, --selector <selector>', 'only workers matching this label selector', '')
      .addOption(new Option('--check-timeout <duration>', 'how long workers have to answer').argParser(durationArg).default(30_000, '30s'))
      .option('--disabled', 'store it without firing it')
      .option('--description <text>', 'what it is for', '');
  type ScheduleOpts = { cron: string; selector: string; checkTimeout: number; disabled?: boolean; description: string };
  const body = (id: string, o: ScheduleOpts) => ({ scheduleId: id, cron: o.cron, enabled: !o.disabled, labelSelector: o.selector, timeout: msToDuration(o.checkTimeout), description: o.description });
  scheduleOptions(schedule.command('add').description('add a schedule (admin)').argument('[schedule-id]', 'its id (generated when left out)')).action(async (id: string | undefined, o: ScheduleOpts) => {
    const res = await ctx.clients().control.createHealthCheckSchedule({ schedule: body(id ?? '', o) }, ctx.unary());
    ctx.note(`schedule added${o.disabled ? ' (disabled)' : ''}; its id follows:`);
    ctx.out(`${res.schedule?.scheduleId}\n`);
  });
  scheduleOptions(schedule.command('update').description('replace a schedule\'s settings (admin)').argument('<schedule-id>', 'the schedule')).action(async (id: string, o: ScheduleOpts) => {
    await ctx.clients().control.updateHealthCheckSchedule({ schedule: body(id, o) }, ctx.unary());
    ctx.note(`schedule "${id}" updated`);
  });
  schedule
    .command('remove')
    .alias('rm')
    .description('remove a schedule (admin)')
    .argument('<schedule-id>', 'the schedule')
    .action(async (id: string) => {
      await ctx.clients().control.deleteHealthCheckSchedule({ scheduleId: id }, ctx.unary());
      ctx.note(`schedule "${id}" removed`);
    });
}

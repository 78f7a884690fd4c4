import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Command } from 'commander';
import {
  ListWorkersResponseSchema,
  WorkerChangeSchema,
  WorkerChangeType,
  WorkerSchema,
  type Worker,
  type WorkerChange,
  type WorkerState,
} from '../../gen/hive/v1/registry_pb.js';
import { RestartAction, RestartMode } from '../../gen/hive/v1/policy_pb.js';
import { fullJitterBackoffMs } from '../../lib/backoff.js';
import { durationToMs, formatDurationMs, timestampToMs } from '../../lib/duration.js';
import { collect, messageJson, outputOption, printData, type Ctx, type OutputFormat } from '../context.js';
import { describeError, EXIT } from '../errors.js';
import {
  diskFreeSummary,
  formatAge,
  formatBytes,
  formatTime,
  formatUsedTotal,
  gpuDetail,
  gpuSummary,
  intervalText,
  labelsText,
  lastSeenAge,
  memorySummary,
  parseState,
  renderTable,
  stateColour,
  stateName,
  type Paint,
} from '../format.js';
import { bandOf, scoreOf, scoreText } from '../score.js';
import { toYaml } from '../yaml.js';
import { eventRows, EVENT_HEADER } from './events.js';

// `hivectl workers` (a table, or a live one with --watch) and `hivectl get`.

const HEADER = ['WORKER', 'STATE', 'LAST SEEN', 'INTERVAL', 'GPUS (VRAM)', 'MEMORY', 'DISK FREE', 'HEALTH'];
const WIDE_HEADER = [...HEADER, 'LOAD', 'CONNECTED', 'LABELS', 'DETAIL'];

export function workerRow(w: Worker, now: number, paint: Paint, wide: boolean): string[] {
  const row = [
    w.workerId,
    paint(stateColour(w.state), stateName(w.state)),
    lastSeenAge(w, now),
    intervalText(w),
    wide ? gpuDetail(w) : gpuSummary(w),
    memorySummary(w),
    diskFreeSummary(w),
    scoreText(w, paint),
  ];
  if (wide) row.push(w.stats ? w.stats.load1.toFixed(2) : '-', w.connected ? 'yes' : 'no', labelsText(w.labels), w.statusDetail || '-');
  return row;
}

export function workersTable(workers: Iterable<Worker>, now: number, paint: Paint, wide: boolean): string {
  const sorted = [...workers].sort((a, b) => a.workerId.localeCompare(b.workerId));
  return renderTable(wide ? WIDE_HEADER : HEADER, sorted.map((w) => workerRow(w, now, paint, wide)), paint);
}

export async function listAllWorkers(ctx: Ctx, filter: { states?: WorkerState[]; labelSelector?: string } = {}): Promise<Worker[]> {
  const all: Worker[] = [];
  let pageToken = '';
  do {
    const page = await ctx.clients().registry.listWorkers({ states: filter.states ?? [], labelSelector: filter.labelSelector ?? '', pageSize: 1000, pageToken }, ctx.unary());
    all.push(...page.workers);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

interface WorkersOpts {
  state?: WorkerState[];
  selector?: string;
  watch?: boolean;
  output: OutputFormat;
}

export function registerWorkerCommands(program: Command, ctx: Ctx): void {
  program
    .command('workers')
    .alias('ls')
    .description('list workers: state, last seen, heartbeat interval, VRAM per GPU, memory, free disk, health score')
    .option('--state <state>', 'only workers in this state (repeatable): healthy, degraded, unhealthy, stale, restarting, failed, pending, left', collect(parseState))
    .option('-l, --selector <selector>', 'label selector: k=v,k2!=v2,k3')
    .option('-w, --watch', 'keep the table up to date from WatchWorkers (Ctrl-C ends)')
    .addOption(outputOption())
    .addHelpText('after', '\nWith --watch on a terminal the table is redrawn in place; into a pipe, each change is one line (one JSON object per line with -o json).')
    .action(async (opts: WorkersOpts) => {
      const filter = { states: opts.state ?? [], labelSelector: opts.selector ?? '' };
      if (opts.watch) return watchWorkers(ctx, filter, opts.output);
      const workers = await listAllWorkers(ctx, filter);
      if (opts.output === 'json' || opts.output === 'yaml') {
        return printData(ctx, opts.output, messageJson(ListWorkersResponseSchema, create(ListWorkersResponseSchema, { workers, totalSize: workers.length })));
      }
      if (workers.length === 0) return ctx.note('no workers' + (filter.states.length || filter.labelSelector ? ' match' : ' registered'));
      ctx.out(workersTable(workers, ctx.clock.now(), ctx.paint(), opts.output === 'wide'));
    });

  program
    .command('get')
    .description('show one worker: state, stats per GPU and disk, collectors, restart policy, recent events')
    .argument('<worker>', 'worker id')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (workerId: string, opts: { output: OutputFormat }) => {
      const { worker } = await ctx.clients().registry.getWorker({ workerId }, ctx.unary());
      if (!worker) throw new ConnectError(`worker "${workerId}" is not registered`, Code.NotFound);
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(WorkerSchema, worker));
      const { events } = await ctx.clients().registry.listEvents({ workerId, pageSize: 5 }, ctx.unary());
      ctx.out(describeWorker(worker, ctx.clock.now(), ctx.paint()));
      if (events.length) {
        ctx.out('\nRecent events:\n');
        ctx.out(indent(renderTable(EVENT_HEADER, eventRows([...events].reverse(), ctx.paint()), ctx.paint())));
      }
    });
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');

export function describeWorker(w: Worker, now: number, paint: Paint): string {
  const lines: Array<[string, string]> = [];
  const since = timestampToMs(w.stateSince);
  const seen = timestampToMs(w.lastSeen);
  const score = scoreOf(w);
  lines.push(['Worker', paint('bold', w.workerId)]);
  lines.push(['State', `${paint(stateColour(w.state), stateName(w.state))}${since !== undefined ? ` for ${formatAge(now - since)} (since ${formatTime(since)})` : ''}`]);
  if (w.statusDetail) lines.push(['Detail', w.statusDetail]);
  lines.push(['Health score', score === undefined ? '- (not scored in this state)' : `${scoreText(w, paint)} (${bandOf(w)})`]);
  lines.push(['Labels', labelsText(w.labels)]);
  lines.push(['Interval', intervalText(w)]);
  lines.push(['Last seen', seen === undefined ? 'never' : `${formatAge(now - seen)} ago (seq ${w.lastSeq}, session ${w.sessionId || '-'})`]);
  lines.push(['Connected', w.connected ? 'yes (heartbeat stream open)' : 'no']);
  lines.push(['Registered', formatTime(timestampToMs(w.registeredAt))]);
  const grace = timestampToMs(w.graceUntil);
  if (grace !== undefined && grace > now) lines.push(['Grace until', formatTime(grace)]);
  if (w.dependsOn.length || w.dependsOnSelector) lines.push(['Depends on', [...w.dependsOn, ...(w.dependsOnSelector ? [`selector ${w.dependsOnSelector}`] : [])].join(', ')]);
  if (w.blockedBy.length) lines.push(['Blocked by', paint('red', `${w.blockedBy.join(', ')} (not restarted until they are healthy)`)]);
  lines.push(['Restart policy', policyText(w)]);
  const s = w.stats;
  if (s) {
    lines.push(['Memory', memorySummary(w)]);
    lines.push(['Load (1m)', s.load1.toFixed(2)]);
    if (s.probeLatencyP50Seconds !== undefined) {
      const ms = (v: number | undefined) => (v === undefined ? '-' : `${Math.round(v * 1000)}ms`);
      lines.push(['Probe latency', `p50 ${ms(s.probeLatencyP50Seconds)}  p95 ${ms(s.probeLatencyP95Seconds)}  p99 ${ms(s.probeLatencyP99Seconds)}`]);
    }
    if (s.collectors.length) {
      lines.push(['Collectors', s.collectors.map((c) => (c.success ? `${c.name} ok` : paint('red', `${c.name} FAILED: ${c.error}`))).join(', ')]);
    }
  }
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  let text = lines.map(([k, v]) => `${(k + ':').padEnd(width)}${v}`).join('\n') + '\n';
  if (s?.gpus.length) {
    text += '\nGPUs:\n';
    text += indent(
      renderTable(
        ['INDEX', 'NAME', 'VRAM', 'USED', 'UTIL', 'TEMP', 'UUID'],
        s.gpus.map((g) => [
          String(g.index),
          g.name || '-',
          formatUsedTotal(g.memoryUsedBytes, g.memoryTotalBytes),
          g.memoryTotalBytes > 0n ? `${Math.round((Number(g.memoryUsedBytes) / Number(g.memoryTotalBytes)) * 100)}%` : '-',
          g.utilization === undefined ? '-' : `${Math.round(g.utilization * 100)}%`,
          g.temperatureCelsius === undefined ? '-' : `${Math.round(g.temperatureCelsius)}C`,
          g.uuid || '-',
        ]),
        paint,
      ),
    );
  }
  if (s?.disks.length) {
    text += '\nDisks:\n';
    text += indent(
      renderTable(
        ['PATH', 'FREE', 'TOTAL', 'FREE %'],
        s.disks.map((d) => [d.path, formatBytes(d.freeBytes), formatBytes(d.totalBytes), d.totalBytes > 0n ? `${Math.round((Number(d.freeBytes) / Number(d.totalBytes)) * 100)}%` : '-']),
        paint,
      ),
    );
  }
  return text;
}

export function policyText(w: Worker): string {
  const p = w.restartPolicy;
  if (!p || p.mode === RestartMode.UNSPECIFIED || p.mode === RestartMode.NEVER) return 'none (never restarted)';
  const mode = (RestartMode[p.mode] ?? String(p.mode)).toLowerCase();
  const action = (RestartAction[p.action] ?? 'default').toLowerCase();
  const parts = [`${mode}, action ${action}`];
  if (p.action === RestartAction.EXEC) parts.push(`exec ${JSON.stringify(p.execArgv)}`);
  if (p.action === RestartAction.WEBHOOK) parts.push(`webhook ${p.webhookUrl}`);
  if (p.maxAttempts) parts.push(`max ${p.maxAttempts} attempts`);
  const win = durationToMs(p.window);
  if (win) parts.push(`window ${formatDurationMs(win)}`);
  return parts.join(', ');
}

// ---- --watch -------------------------------------------------------------

/**
 * Follows WatchWorkers: a snapshot, then changes. When the stream breaks
 * after it had synced, it reconnects with jittered backoff and takes a
 * fresh snapshot; a hive that cannot be reached at the start, or a token it
 * refuses, ends the command with its exit code instead.
 */
async function watchWorkers(ctx: Ctx, filter: { states: WorkerState[]; labelSelector: string }, format: OutputFormat): Promise<void> {
  const tty = ctx.io.stdout.isTTY === true && (format === 'table' || format === 'wide');
  const paint = ctx.paint();
  let workers = new Map<string, Worker>();
  let status = 'connecting';
  let offset = 0; // hive clock minus ours, so ages are the hive's
  const now = () => ctx.clock.now() + offset;

  const screen = tty ? createScreen(ctx) : null;
  let dirty = false;
  let drawnAt = 0;
  const draw = () => {
    if (!screen) return;
    dirty = false;
    drawnAt = ctx.clock.now();
    const count = `${workers.size} worker${workers.size === 1 ? '' : 's'}`;
    const head = `${paint('bold', 'hivectl workers --watch')}  ${ctx.conn().url}  ${count}  ${status === 'live' ? paint('green', 'live') : paint('yellow', status)}  ${formatTime(now())}`;
    screen.draw(head + '\n\n' + workersTable(workers.values(), now(), paint, format === 'wide'));
  };
  // Changes mark the screen dirty; the ticker draws at most 5 times a
  // second, and once a second regardless so that ages tick.
  const redraw = () => {
    dirty = true;
  };
  const emitChange = (c: WorkerChange, previous: Worker | undefined) => {
    if (format === 'json') ctx.out(JSON.stringify(messageJson(WorkerChangeSchema, c)) + '\n');
    else if (format === 'yaml') ctx.out('---\n' + toYaml(messageJson(WorkerChangeSchema, c)));
    else if (!tty && c.worker && (c.type !== WorkerChangeType.UPDATED || changedVisibly(previous, c.worker))) {
      // Into a pipe, a heartbeat that changes nothing but the time is noise.
      const type = WorkerChangeType[c.type] ?? String(c.type);
      ctx.out(`${formatTime(now())}  ${type.padEnd(7)}  ${workerRow(c.worker, now(), paint, format === 'wide').join('  ')}\n`);
    }
  };

  draw();
  const ticker = screen
    ? (async () => {
        while (!ctx.signal.aborted) {
          await ctx.clock.sleep(200, ctx.signal).catch(() => undefined);
          if (dirty || ctx.clock.now() - drawnAt >= 1000) draw();
        }
      })()
    : Promise.resolve();

  let attempt = 0;
  let everSynced = false;
  let outage: string | null = null; // told once per outage, on stderr
  try {
    while (!ctx.signal.aborted) {
      const pending = new Map<string, Worker>();
      let synced = false;
      try {
        for await (const res of ctx.clients().registry.watchWorkers(filter, { signal: ctx.signal })) {
          const hiveNow = timestampToMs(res.hiveTime);
          if (hiveNow !== undefined) offset = hiveNow - ctx.clock.now();
          for (const c of res.changes) {
            if (!c.worker) continue;
            if (!synced) {
              pending.set(c.worker.workerId, c.worker);
              continue;
            }
            const previous = workers.get(c.worker.workerId);
            if (c.type === WorkerChangeType.REMOVED) workers.delete(c.worker.workerId);
            else workers.set(c.worker.workerId, c.worker);
            if (!screen) emitChange(c, previous);
          }
          if (!synced && res.synced) {
            synced = everSynced = true;
            attempt = 0;
            // A snapshot after a reconnect is told as the difference to
            // what was shown before it.
            if (!screen) {
              for (const w of pending.values()) {
                const previous = workers.get(w.workerId);
                emitChange(create(WorkerChangeSchema, { type: previous ? WorkerChangeType.UPDATED : WorkerChangeType.ADDED, worker: w }), previous);
              }
              for (const w of workers.values()) if (!pending.has(w.workerId)) emitChange(create(WorkerChangeSchema, { type: WorkerChangeType.REMOVED, worker: w }), w);
            }
            workers = pending;
            status = 'live';
            if (outage !== null && !screen) ctx.note('hivectl: watching again');
            outage = null;
            if (!screen && format !== 'json' && format !== 'yaml' && workers.size === 0) ctx.note('no workers yet; waiting for changes');
          }
          redraw();
        }
        status = 'stream ended, reconnecting';
      } catch (err) {
        if (ctx.signal.aborted) break;
        const { exitCode, message } = describeError(err, ctx.conn().url);
        if (!everSynced || exitCode !== EXIT.UNREACHABLE) throw err;
        status = `reconnecting (${message})`;
        if (!screen && outage === null) ctx.note(`hivectl: ${message}; reconnecting`);
        outage = message;
      }
      redraw();
      await ctx.clock.sleep(500 + fullJitterBackoffMs(attempt++, 500, 30_000), ctx.signal).catch(() => undefined);
    }
  } finally {
    screen?.close();
    await ticker;
  }
}

function changedVisibly(a: Worker | undefined, b: Worker): boolean {
  return !a || a.state !== b.state || a.connected !== b.connected || a.statusDetail !== b.statusDetail || scoreOf(a) !== scoreOf(b);
}

/** Redraws in place: cursor home, each line cleared to its end, the rest of the screen cleared. */
function createScreen(ctx: Ctx) {
  const w = (s: string) => ctx.out(s);
  w('\x1b[?25l\x1b[2J\x1b[H');
  return {
    draw(text: string) {
      const lines = text.replace(/\n$/, '').split('\n');
      w('\x1b[H' + lines.map((l) => l + '\x1b[K').join('\n') + '\n\x1b[J');
    },
    close() {
      w('\x1b[?25h');
    },
  };
}

import { create } from '@bufbuild/protobuf';
import { Option, type Command } from 'commander';
import { EventSchema, ListEventsResponseSchema, WorkerState, type Event } from '../../gen/hive/v1/registry_pb.js';
import { msToTimestamp, parseDurationMs, timestampToMs } from '../../lib/duration.js';
import { durationArg, messageJson, outputOption, positiveInt, printData, type Ctx, type OutputFormat } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { formatTime, renderTable, stateColour, stateName, type Paint } from '../format.js';

// `hivectl events`: the event log, oldest first like a log file, with
// --follow printing new events as they are recorded. There is no event
// stream in the API, so --follow asks ListEvents again every --poll.

export const EVENT_HEADER = ['TIME', 'WORKER', 'KIND', 'STATE', 'ACTOR', 'REASON'];

export function eventRows(events: Event[], paint: Paint): string[][] {
  return events.map((e) => [formatTime(timestampToMs(e.time)), e.workerId, e.kind, transition(e, paint), e.actor, e.reason]);
}

function transition(e: Event, paint: Paint): string {
  if (e.fromState === e.toState) return e.toState === WorkerState.UNSPECIFIED ? '-' : paint(stateColour(e.toState), stateName(e.toState));
  const to = e.toState === WorkerState.UNSPECIFIED ? 'gone' : paint(stateColour(e.toState), stateName(e.toState));
  return e.fromState === WorkerState.UNSPECIFIED ? to : `${stateName(e.fromState)}->${to}`;
}

/** "1h", "30m" (that long ago) or an RFC 3339 time. */
export function parseSince(text: string, now: number): number {
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new CliError(`--since: "${text}" is not an RFC 3339 time`, EXIT.USAGE);
    return t;
  }
  try {
    return now - parseDurationMs(text);
  } catch (err) {
    throw new CliError(`--since: ${(err as Error).message}`, EXIT.USAGE);
  }
}

/** Newest first, up to limit, optionally since a time, following pages. */
export async function fetchEvents(ctx: Ctx, q: { workerId?: string; since?: number; limit: number }): Promise<{ events: Event[]; more: boolean }> {
  const events: Event[] = [];
  let pageToken = '';
  do {
    const page = await ctx.clients().registry.listEvents(
      { workerId: q.workerId ?? '', pageSize: Math.min(1000, q.limit - events.length), pageToken, since: q.since === undefined ? undefined : msToTimestamp(q.since) },
      ctx.unary(),
    );
    events.push(...page.events);
    pageToken = page.nextPageToken;
  } while (pageToken && events.length < q.limit);
  return { events, more: pageToken !== '' };
}

interface EventsOpts {
  since?: string;
  limit: number;
  follow?: boolean;
  poll: number;
  output: OutputFormat;
}

export function registerEventCommands(program: Command, ctx: Ctx): void {
  program
    .command('events')
    .description('the event log (state changes, stale marks, restarts, registrations), oldest first')
    .argument('[worker]', 'only this worker')
    .option('--since <when>', 'only events since then: a duration ago (1h, 30m) or an RFC 3339 time')
    .option('--limit <n>', 'at most this many (the newest)', positiveInt, 50)
    .option('-f, --follow', 'keep printing new events (Ctrl-C ends)')
    .addOption(new Option('--poll <duration>', 'how often --follow asks for new events').argParser(durationArg).default(2000, '2s'))
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (workerId: string | undefined, opts: EventsOpts) => {
      const pollMs = opts.poll;
      const since = opts.since === undefined ? undefined : parseSince(opts.since, ctx.clock.now());
      const { events, more } = await fetchEvents(ctx, { workerId, since, limit: opts.limit });
      const oldestFirst = [...events].reverse();
      const paint = ctx.paint();
      if (!opts.follow && (opts.output === 'json' || opts.output === 'yaml')) {
        return printData(ctx, opts.output, messageJson(ListEventsResponseSchema, create(ListEventsResponseSchema, { events })));
      }
      const printLines = (list: Event[], header: boolean) => {
        if (opts.output === 'json') for (const e of list) ctx.out(JSON.stringify(messageJson(EventSchema, e)) + '\n');
        else if (opts.output === 'yaml') for (const e of list) printData(ctx, 'yaml', [messageJson(EventSchema, e)]);
        else if (list.length) {
          const table = renderTable(EVENT_HEADER, eventRows(list, paint), paint);
          ctx.out(header ? table : table.slice(table.indexOf('\n') + 1));
        }
      };
      if (oldestFirst.length === 0 && opts.output === 'table') ctx.note(opts.follow ? 'no events yet; waiting' : 'no events');
      printLines(oldestFirst, true);
      if (more) ctx.note(`(the newest ${events.length} shown; --limit or --since for more)`);
      if (!opts.follow) return;

      // Events can commit slightly out of id order, so each poll looks back
      // a little and drops what was already printed.
      const seen = new Map<bigint, number>();
      for (const e of events) seen.set(e.eventId, timestampToMs(e.time) ?? 0);
      let latest = events.length ? (timestampToMs(events[0].time) ?? ctx.clock.now()) : (since ?? ctx.clock.now());
      while (!ctx.signal.aborted) {
        await ctx.clock.sleep(pollMs, ctx.signal).catch(() => undefined);
        if (ctx.signal.aborted) break;
        const from = latest - 10_000;
        const { events: fresh } = await fetchEvents(ctx, { workerId, since: from, limit: 10_000 });
        const news = fresh.filter((e) => !seen.has(e.eventId)).reverse();
        for (const e of news) {
          const t = timestampToMs(e.time) ?? 0;
          seen.set(e.eventId, t);
          if (t > latest) latest = t;
        }
        for (const [id, t] of seen) if (t < from - 60_000) seen.delete(id);
        printLines(news, false);
      }
    });
}

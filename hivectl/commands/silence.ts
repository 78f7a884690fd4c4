import { Option, type Command } from 'commander';
import { AddSilenceResponseSchema, ListSilencesResponseSchema } from '../../gen/hive/v1/control_pb.js';
import { msToDuration, timestampToMs } from '../../lib/duration.js';
import { durationArg, messageJson, outputOption, printData, type Ctx, type OutputFormat } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { formatAge, formatTime, renderTable } from '../format.js';

// `hivectl silence`: mute alerts for a worker or a label selector for a while.

export function registerSilenceCommands(program: Command, ctx: Ctx): void {
  const silence = program.command('silence').description('mute alerts for a worker or a label selector until it expires');

  silence
    .command('add')
    .description('add a silence (admin)')
    .option('--worker <worker>', 'the worker to silence')
    .option('-l, --selector <selector>', 'or every worker matching this label selector')
    .addOption(new Option('--for <duration>', 'how long').argParser(durationArg).default(3_600_000, '1h'))
    .option('--comment <text>', 'why', '')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { worker?: string; selector?: string; for: number; comment: string; output: OutputFormat }) => {
      if (!opts.worker && !opts.selector) throw new CliError('silence add needs --worker or --selector', EXIT.USAGE);
      const res = await ctx.clients().control.addSilence(
        { workerId: opts.worker ?? '', labelSelector: opts.selector ?? '', duration: msToDuration(opts.for), comment: opts.comment },
        ctx.unary(),
      );
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(AddSilenceResponseSchema, res));
      ctx.note(`silence added, expires ${formatTime(timestampToMs(res.silence?.expiresAt))}; its id follows:`);
      ctx.out(`${res.silence?.silenceId}\n`);
    });

  silence
    .command('list')
    .description('list silences')
    .option('-a, --all', 'include expired silences')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { all?: boolean; output: OutputFormat }) => {
      const res = await ctx.clients().control.listSilences({ includeExpired: opts.all === true }, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(ListSilencesResponseSchema, res));
      if (res.silences.length === 0) return ctx.note('no silences');
      const now = ctx.clock.now();
      const rows = res.silences.map((s) => {
        const exp = timestampToMs(s.expiresAt) ?? 0;
        return [s.silenceId, s.workerId || '-', s.labelSelector || '-', exp > now ? `in ${formatAge(exp - now)}` : 'expired', s.createdBy || '-', s.comment || '-'];
      });
      ctx.out(renderTable(['SILENCE ID', 'WORKER', 'SELECTOR', 'EXPIRES', 'BY', 'COMMENT'], rows, ctx.paint()));
    });

  silence
    .command('remove')
    .alias('rm')
    .description('remove a silence (admin)')
    .argument('<silence-id>', 'silence id (see `silence list`)')
    .action(async (silenceId: string) => {
      await ctx.clients().control.removeSilence({ silenceId }, ctx.unary());
      ctx.note(`silence "${silenceId}" removed`);
    });
}

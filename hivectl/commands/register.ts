import { Code, ConnectError } from '@connectrpc/connect';
import { Option, type Command } from 'commander';
import { RegisterWorkerResponseSchema } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { collect, durationArg, messageJson, outputOption, parseLabel, printData, type Ctx, type OutputFormat } from '../context.js';
import { CliError, EXIT } from '../errors.js';

// Registering and removing workers (admin token; a join token may
// register a new worker too).

interface RegisterOpts {
  label?: Array<[string, string]>;
  interval: number;
  dependsOn?: string[];
  dependsOnSelector?: string;
  output: OutputFormat;
}

export function registerRegisterCommands(program: Command, ctx: Ctx): void {
  program
    .command('register')
    .description('register a worker ahead of its agent and print its worker token (shown only this once)')
    .argument('<worker>', 'worker id')
    .option('--label <k=v>', 'label (repeatable)', collect(parseLabel))
    .addOption(new Option('--interval <duration>', 'heartbeat interval').argParser(durationArg).default(5000, '5s'))
    .option('--depends-on <worker>', 'a worker this one depends on (repeatable)', collect((s: string) => s))
    .option('--depends-on-selector <selector>', 'every worker matching this label selector is a dependency')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .addHelpText('after', '\nThe token alone goes to stdout (hivectl register gpu-7 > gpu-7.token); to replace the token of an existing worker use `hivectl tokens rotate`.')
    .action(async (workerId: string, opts: RegisterOpts) => {
      const { registry } = ctx.clients();
      // An admin's RegisterWorker on an existing worker silently replaces its
      // token and labels; refuse here and point at `tokens rotate` instead.
      const exists = await registry.getWorker({ workerId }, ctx.unary()).then(
        () => true,
        (err) => {
          const code = ConnectError.from(err).code;
          if (code === Code.NotFound) return false;
          if (code === Code.PermissionDenied) return false; // a join token may not read; the hive itself refuses a takeover
          throw err;
        },
      );
      if (exists) throw new CliError(`worker "${workerId}" is already registered; use \`hivectl tokens rotate ${workerId}\` for a new token`, EXIT.CONFLICT);
      const res = await registry.registerWorker(
        { workerId, labels: Object.fromEntries(opts.label ?? []), heartbeatInterval: msToDuration(opts.interval), dependsOn: opts.dependsOn ?? [], dependsOnSelector: opts.dependsOnSelector ?? '' },
        ctx.unary(),
      );
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(RegisterWorkerResponseSchema, res));
      ctx.note(`worker "${workerId}" registered; its token follows and is shown only this once:`);
      ctx.out(res.workerToken + '\n');
    });

  program
    .command('deregister')
    .description('remove a worker and its token (admin); its events stay in the log')
    .argument('<worker>', 'worker id')
    .option('--reason <text>', 'why (kept in the event log)', '')
    .action(async (workerId: string, opts: { reason: string }) => {
      await ctx.clients().registry.deregisterWorker({ workerId, reason: opts.reason }, ctx.unary());
      ctx.note(`worker "${workerId}" deregistered`);
    });
}

import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { Option, type Command } from 'commander';
import {
  CreateTokenResponseSchema,
  ListTokensResponseSchema,
  RegisterWorkerResponseSchema,
  TokenInfoSchema,
  TokenScope,
} from '../../gen/hive/v1/registry_pb.js';
import { timestampToMs } from '../../lib/duration.js';
import { messageJson, outputOption, printData, type Ctx, type OutputFormat } from '../context.js';
import { formatTime, renderTable } from '../format.js';

// Token administration (admin token). Secrets are printed once, alone on
// stdout, so they can be redirected into a file; everything else goes to
// stderr.

async function createToken(ctx: Ctx, scope: TokenScope, description: string, output: OutputFormat): Promise<void> {
  const res = await ctx.clients().registry.createToken({ scope, description }, ctx.unary());
  if (output !== 'table') return printData(ctx, output, messageJson(CreateTokenResponseSchema, res));
  ctx.note(`${TokenScope[scope].toLowerCase()} token "${res.info?.tokenId}" created; the secret follows and is shown only this once:`);
  ctx.out(res.token + '\n');
}

export function registerTokenCommands(program: Command, ctx: Ctx): void {
  const tokens = program.command('tokens').description('create, list, revoke and rotate tokens (admin)');

  tokens
    .command('create-join')
    .description('create a join token, for agents to register themselves')
    .option('--description <text>', 'what it is for', '')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action((opts: { description: string; output: OutputFormat }) => createToken(ctx, TokenScope.JOIN, opts.description, opts.output));

  tokens
    .command('create')
    .description('create a read (dashboards, the status page), monitor or join token')
    .addOption(new Option('--scope <scope>', 'what the token may do').choices(['read', 'monitor', 'join']).makeOptionMandatory())
    .option('--description <text>', 'what it is for', '')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action((opts: { scope: 'read' | 'monitor' | 'join'; description: string; output: OutputFormat }) =>
      createToken(ctx, { read: TokenScope.READ, monitor: TokenScope.MONITOR, join: TokenScope.JOIN }[opts.scope], opts.description, opts.output),
    );

  tokens
    .command('list')
    .description('list tokens (never their secrets)')
    .option('-a, --all', 'include revoked tokens')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (opts: { all?: boolean; output: OutputFormat }) => {
      const res = await ctx.clients().registry.listTokens({ includeRevoked: opts.all === true }, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(ListTokensResponseSchema, res));
      const rows = res.tokens.map((t) => [
        t.tokenId,
        (TokenScope[t.scope] ?? String(t.scope)).toLowerCase(),
        t.workerId || '-',
        t.description || '-',
        formatTime(timestampToMs(t.createdAt)),
        t.revokedAt ? formatTime(timestampToMs(t.revokedAt)) : '-',
      ]);
      ctx.out(renderTable(['TOKEN ID', 'SCOPE', 'WORKER', 'DESCRIPTION', 'CREATED', 'REVOKED'], rows, ctx.paint()));
    });

  tokens
    .command('revoke')
    .description('revoke a token by its id (see `tokens list`)')
    .argument('<token-id>', 'token id')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (tokenId: string, opts: { output: OutputFormat }) => {
      const res = await ctx.clients().registry.revokeToken({ tokenId }, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(TokenInfoSchema, res.info ?? create(TokenInfoSchema)));
      ctx.note(`token "${tokenId}" revoked`);
    });

  tokens
    .command('rotate')
    .description("replace a worker's token (the old one stops working at once) and print the new one")
    .argument('<worker>', 'worker id')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .addHelpText('after', "\nThe worker keeps its labels, interval, restart policy and dependencies. Put the new token in the agent's token file and restart the agent.")
    .action(async (workerId: string, opts: { output: OutputFormat }) => {
      const { registry } = ctx.clients();
      const { worker } = await registry.getWorker({ workerId }, ctx.unary());
      if (!worker) throw new ConnectError(`worker "${workerId}" is not registered`, Code.NotFound);
      const res = await registry.registerWorker(
        {
          workerId,
          labels: worker.labels,
          heartbeatInterval: worker.heartbeatInterval,
          restartPolicy: worker.restartPolicy,
          dependsOn: worker.dependsOn,
          rotateToken: true,
        },
        ctx.unary(),
      );
      if (opts.output !== 'table') return printData(ctx, opts.output, messageJson(RegisterWorkerResponseSchema, res));
      ctx.note(`worker "${workerId}" has a new token; it follows and is shown only this once:`);
      ctx.out(res.workerToken + '\n');
    });
}

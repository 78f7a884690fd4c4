import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { Option, type Command } from 'commander';
import { RestartAction, RestartMode, RestartPolicySchema, type RestartPolicy } from '../../gen/hive/v1/policy_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { durationArg, messageJson, outputOption, positiveInt, printData, type Ctx, type OutputFormat } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { policyText } from './workers.js';

// `hivectl policy`: a worker's restart policy (admin token to change it).

/**
 * Splits "cmd --flag 'two words' \"x y\"" into argv the way a POSIX shell
 * splits words (quotes and backslashes only: no variables, globs or
 * pipes). The monitor runs the argv without a shell.
 */
export function splitArgv(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1])) cur += text[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new CliError(`--exec: unterminated ${quote} quote`, EXIT.USAGE);
  if (inWord) out.push(cur);
  return out;
}

const MODES = { never: RestartMode.NEVER, on_stale: RestartMode.ON_STALE, on_unhealthy: RestartMode.ON_UNHEALTHY, always: RestartMode.ALWAYS };
const ACTIONS = { agent: RestartAction.AGENT, exec: RestartAction.EXEC, webhook: RestartAction.WEBHOOK };

interface SetOpts {
  mode: keyof typeof MODES;
  action?: keyof typeof ACTIONS;
  exec?: string;
  webhook?: string;
  restartAfter?: number;
  maxAttempts?: number;
  window?: number;
  backoffInitial?: number;
  backoffMax?: number;
  verifyTimeout?: number;
  actionTimeout?: number;
  output: OutputFormat;
}

export function policyFromOpts(opts: SetOpts): RestartPolicy {
  const action = opts.action ?? (opts.exec !== undefined ? 'exec' : opts.webhook !== undefined ? 'webhook' : undefined);
  if (action === 'exec' && opts.exec === undefined) throw new CliError('--action exec needs --exec "command args..."', EXIT.USAGE);
  if (action === 'webhook' && opts.webhook === undefined) throw new CliError('--action webhook needs --webhook URL', EXIT.USAGE);
  if (opts.exec !== undefined && action !== 'exec') throw new CliError('--exec goes with --action exec', EXIT.USAGE);
  if (opts.webhook !== undefined && action !== 'webhook') throw new CliError('--webhook goes with --action webhook', EXIT.USAGE);
  const d = (ms: number | undefined) => (ms === undefined ? undefined : msToDuration(ms));
  const execArgv = opts.exec === undefined ? [] : splitArgv(opts.exec);
  if (opts.exec !== undefined && execArgv.length === 0) throw new CliError('--exec is empty', EXIT.USAGE);
  return create(RestartPolicySchema, {
    mode: MODES[opts.mode],
    action: action ? ACTIONS[action] : RestartAction.UNSPECIFIED,
    execArgv,
    webhookUrl: opts.webhook ?? '',
    restartAfter: d(opts.restartAfter),
    maxAttempts: opts.maxAttempts ?? 0,
    window: d(opts.window),
    backoffInitial: d(opts.backoffInitial),
    backoffMax: d(opts.backoffMax),
    verifyTimeout: d(opts.verifyTimeout),
    actionTimeout: d(opts.actionTimeout),
  });
}

export function registerPolicyCommands(program: Command, ctx: Ctx): void {
  const policy = program.command('policy').description("show, set or clear a worker's restart policy");

  policy
    .command('set')
    .description('set a worker\'s restart policy (admin)')
    .argument('<worker>', 'worker id')
    .addOption(new Option('--mode <mode>', 'what triggers a restart').choices(Object.keys(MODES)).makeOptionMandatory())
    .addOption(new Option('--action <action>', 'how: a command down the agent\'s stream, a command the monitor runs, or a webhook').choices(Object.keys(ACTIONS)))
    .option('--exec <command>', 'with --action exec: the command, split into words like a shell would (no shell runs it); {worker_id} and {label:NAME} are substituted')
    .option('--webhook <url>', 'with --action webhook: the URL to POST to')
    .option('--restart-after <duration>', 'extra wait after the trigger (default 1x interval)', durationArg)
    .option('--max-attempts <n>', 'attempts within the window (default 5)', positiveInt)
    .option('--window <duration>', 'attempt-counting window (default 10m)', durationArg)
    .option('--backoff-initial <duration>', 'first backoff between attempts (default 10s)', durationArg)
    .option('--backoff-max <duration>', 'longest backoff (default 5m)', durationArg)
    .option('--verify-timeout <duration>', 'healthy heartbeats must return within this (default 3x interval, at least 30s)', durationArg)
    .option('--action-timeout <duration>', 'timeout of one exec or webhook call (default 30s)', durationArg)
    .addOption(outputOption(['table', 'json', 'yaml']))
    .addHelpText('after', "\nExample: hivectl policy set gpu-7 --mode on_stale --action exec --exec 'systemctl restart vllm@{worker_id}'")
    .action(async (workerId: string, opts: SetOpts) => {
      const { worker } = await ctx.clients().control.setRestartPolicy({ workerId, policy: policyFromOpts(opts) }, ctx.unary());
      if (opts.output !== 'table') return printData(ctx, opts.output, worker?.restartPolicy ? messageJson(RestartPolicySchema, worker.restartPolicy) : {});
      if (worker) ctx.note(`restart policy of "${workerId}": ${policyText(worker)}`);
    });

  policy
    .command('get')
    .description("show a worker's restart policy")
    .argument('<worker>', 'worker id')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (workerId: string, opts: { output: OutputFormat }) => {
      const { worker } = await ctx.clients().registry.getWorker({ workerId }, ctx.unary());
      if (!worker) throw new ConnectError(`worker "${workerId}" is not registered`, Code.NotFound);
      if (opts.output !== 'table') return printData(ctx, opts.output, worker.restartPolicy ? messageJson(RestartPolicySchema, worker.restartPolicy) : {});
      ctx.out(policyText(worker) + '\n');
    });

  policy
    .command('clear')
    .description("remove a worker's own restart policy (default policies by label still apply)")
    .argument('<worker>', 'worker id')
    .action(async (workerId: string) => {
      await ctx.clients().control.setRestartPolicy({ workerId }, ctx.unary());
      ctx.note(`restart policy of "${workerId}" cleared`);
    });
}

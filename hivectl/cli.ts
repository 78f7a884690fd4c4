import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import { DEFAULT_HIVE_URL } from './client.js';
import { registerCheckCommands } from './commands/checks.js';
import { registerEventCommands } from './commands/events.js';
import { registerHealthReportCommand } from './commands/health-report.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerRegisterCommands } from './commands/register.js';
import { registerSilenceCommands } from './commands/silence.js';
import { registerTokenCommands } from './commands/tokens.js';
import { registerWorkerCommands } from './commands/workers.js';
import { createCtx, durationArg, type Io } from './context.js';
import { describeError, EXIT } from './errors.js';

// hivectl: the operator's command line. The program is built per run from
// its inputs (argv, streams, environment, clock, an abort signal), so tests
// run it in-process or as the real bin alike.

const EXIT_CODES_HELP = `
Environment:
  HIVE_URL         the hive's HTTP port (default ${DEFAULT_HIVE_URL})
  HIVE_TOKEN       bearer token (a read token is enough for reading)
  HIVE_TOKEN_FILE  a file holding the token (e.g. the hive's data/admin-token)
  NO_COLOR         set to turn colours off (they are off when not on a terminal)

Exit codes:
  0  done
  1  unexpected error
  2  usage: bad flags or arguments, or a value the hive rejected as invalid
  3  the hive is unreachable, did not answer in time, or is not a hive
  4  authentication: no token, a refused token, or one without the scope needed
  5  not found: no such worker, token or silence
  6  conflict: already exists, or not possible in the worker's current state
  7  check --wait: the health check finished and at least one worker failed it
`;

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command('hivectl')
    .version(VERSION, '-V, --version')
    .description('hivectl: look after a hive of (GPU) workers: list and watch workers, events, tokens, restart policies, silences')
    .addOption(new Option('--hive-url <url>', `the hive's HTTP port (env HIVE_URL, default ${DEFAULT_HIVE_URL})`))
    .addOption(new Option('--token <token>', 'bearer token (env HIVE_TOKEN)'))
    .addOption(new Option('--token-file <path>', 'read the token from this file (env HIVE_TOKEN_FILE)'))
    .addOption(new Option('--tls-ca <path>', "PEM CA that signed the hive's certificate, for an https:// hive URL (env HIVE_TLS_CA)"))
    .addOption(new Option('--tls-cert <path>', 'PEM client certificate for a hive that runs mutual TLS (env HIVE_TLS_CLIENT_CERT)'))
    .addOption(new Option('--tls-key <path>', 'PEM private key of --tls-cert (env HIVE_TLS_CLIENT_KEY)'))
    .addOption(new Option('--timeout <duration>', 'how long to wait for each answer').argParser(durationArg).default(10_000, '10s'))
    .option('--no-color', 'no colours (NO_COLOR works too)')
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    .exitOverride();
  return program;
}

export async function runHivectl(argv: string[], io: Io, clock: Clock, signal: AbortSignal): Promise<number> {
  const program = buildProgram();
  program.configureOutput({
    writeOut: (s) => void io.stdout.write(s),
    writeErr: (s) => void io.stderr.write(s),
  });
  const ctx = createCtx(program, io, clock, signal);
  // Subcommands inherit exitOverride and the output configuration from the
  // program when created after them.
  registerWorkerCommands(program, ctx);
  registerEventCommands(program, ctx);
  registerRegisterCommands(program, ctx);
  registerTokenCommands(program, ctx);
  registerPolicyCommands(program, ctx);
  registerSilenceCommands(program, ctx);
  registerHealthReportCommand(program, ctx);
  registerCheckCommands(program, ctx);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other commander error is a usage
      // error, and commander has printed it already.
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    let url = DEFAULT_HIVE_URL;
    try {
      url = ctx.conn().url;
    } catch {
      /* the URL itself was the problem */
    }
    const { exitCode, message } = describeError(err, url);
    io.stderr.write(`hivectl: ${message}\n`);
    return exitCode;
  }
}

import { toJson, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Clock } from '../lib/clock.js';
import { parseDurationMs } from '../lib/duration.js';
import { createClients, resolveConnection, type Clients, type Connection } from './client.js';
import { painter, wantsColour, type Paint } from './format.js';
import { toYaml } from './yaml.js';

// What every command gets: where to write, the clock, the hive connection
// (resolved from the global flags when a command first needs it) and the
// signal that Ctrl-C raises.

export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface Io {
  stdout: OutStream;
  stderr: OutStream;
  env: NodeJS.ProcessEnv;
}

export interface Ctx {
  io: Io;
  clock: Clock;
  /** Aborted on SIGINT / SIGTERM: watches and follows end cleanly. */
  signal: AbortSignal;
  conn(): Connection;
  clients(): Clients;
  /** Options for one unary call: the --timeout and the Ctrl-C signal. */
  unary(): { timeoutMs: number; signal: AbortSignal };
  /** Colours for stdout (off for pipes, NO_COLOR and --no-color). */
  paint(): Paint;
  out(text: string): void;
  /** A note for the person at the terminal (stderr, so stdout stays parseable). */
  note(text: string): void;
}

export function createCtx(program: Command, io: Io, clock: Clock, signal: AbortSignal): Ctx {
  let conn: Connection | undefined;
  let clients: Clients | undefined;
  let paint: Paint | undefined;
  const globals = () => program.opts<{ hiveUrl?: string; token?: string; tokenFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; timeout: number; color: boolean }>();
  const ctx: Ctx = {
    io,
    clock,
    signal,
    conn: () => (conn ??= resolveConnection({ ...globals(), timeoutMs: globals().timeout }, io.env)),
    clients: () => (clients ??= createClients(ctx.conn())),
    unary: () => ({ timeoutMs: ctx.conn().timeoutMs, signal }),
    paint: () => (paint ??= painter(globals().color !== false && wantsColour(io.stdout, io.env))),
    out: (text) => void io.stdout.write(text),
    note: (text) => void io.stderr.write(text.endsWith('\n') ? text : text + '\n'),
  };
  return ctx;
}

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml';

export function outputOption(formats: OutputFormat[] = ['table', 'wide', 'json', 'yaml']): Option {
  return new Option('-o, --output <format>', 'output format').choices(formats).default('table');
}

/** Writes a value as JSON or YAML; tables are the command's own business. */
export function printData(ctx: Ctx, format: OutputFormat, value: unknown): void {
  ctx.out(format === 'yaml' ? toYaml(value) : JSON.stringify(value, null, 2) + '\n');
}

/** The API's own JSON form of a message (the same as curl gets from the Connect port). */
export function messageJson<D extends DescMessage>(schema: D, msg: MessageShape<D>): unknown {
  return toJson(schema, msg);
}

export function durationArg(text: string): number {
  try {
    return parseDurationMs(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function collect<T>(parse: (s: string) => T) {
  return (value: string, previous: T[] | undefined): T[] => {
    try {
      return [...(previous ?? []), parse(value)];
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

export function parseLabel(text: string): [string, string] {
  const i = text.indexOf('=');
  if (i <= 0) throw new Error(`label "${text}" is not key=value`);
  return [text.slice(0, i), text.slice(i + 1)];
}

export function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive whole number');
  return n;
}

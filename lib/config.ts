import { Command, Option } from 'commander';

// Configuration is read once, at start: every setting is a flag and an
// environment variable (an empty variable counts as unset), parsed and
// checked together so that a bad start reports every problem at once.

export interface Setting<T> {
  flag: string;
  env?: string;
  description: string;
  default?: T;
  /** Turns the raw text into the value; throws an Error with a readable message. */
  parse: (text: string) => T;
  required?: boolean;
  /** May be given several times (values collected in order). */
  repeatable?: boolean;
}

type Values<S> = { [K in keyof S]: S[K] extends Setting<infer T> ? (S[K] extends { repeatable: true } ? T[] : T) : never };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export const text = (s: string) => s;

export function setting<T>(s: Setting<T>): Setting<T> {
  return s;
}

/** A setting that may be given several times (env: comma separated). */
export function listSetting<T>(s: Omit<Setting<T>, 'repeatable' | 'default'>): Setting<T> & { repeatable: true } {
  return { ...s, repeatable: true };
}

export function loadConfig<S extends Record<string, Setting<unknown>>>(
  program: Command,
  spec: S,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { values: Values<S>; rest: string[] } {
  for (const s of Object.values(spec)) {
    const help = s.env ? `${s.description} (env ${s.env})` : s.description;
    const opt = new Option(`--${s.flag} <value>`, help);
    if (s.repeatable) opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (s.default !== undefined && !s.repeatable) opt.default(undefined, String(s.default));
    program.addOption(opt);
  }
  program.allowExcessArguments(true);
  program.parse(argv, { from: 'user' });
  const opts = program.opts();
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(spec)) {
    const attr = camel(s.flag);
    const fromFlag = opts[attr] as string | string[] | undefined;
    const fromEnv = s.env && env[s.env] !== undefined && env[s.env] !== '' ? env[s.env] : undefined;
    const name = s.env ? `--${s.flag} / ${s.env}` : `--${s.flag}`;
    if (s.repeatable) {
      const raw = fromFlag ?? (fromEnv !== undefined ? fromEnv.split(',').map((x) => x.trim()).filter(Boolean) : []);
      const list: unknown[] = [];
      for (const r of raw as string[]) {
        try {
          list.push(s.parse(r));
        } catch (err) {
          problems.push(`${name}: ${(err as Error).message}`);
        }
      }
      if (s.required && list.length === 0) problems.push(`${name} is required`);
      values[key] = list;
      continue;
    }
    const raw = (fromFlag as string | undefined) ?? fromEnv;
    if (raw === undefined) {
      if (s.required) problems.push(`${name} is required`);
      values[key] = s.default;
      continue;
    }
    try {
      values[key] = s.parse(raw);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { values: values as Values<S>, rest: program.args };
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** "host:port" with a numeric port (0 picks a free one). */
export function parseAddr(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not host:port`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

export function parseLogLevel(text: string): string {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(text)) throw new Error(`must be one of ${levels.join(', ')}`);
  return text;
}

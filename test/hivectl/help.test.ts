import { describe, expect, it } from 'vitest';
import { runHivectl } from '../../hivectl/cli.js';
import { ManualClock } from '../../lib/clock.js';

// --help on every command and subcommand hivectl offers, found by walking
// the "Commands:" lists of the help itself, so a command added later is
// covered without touching this file. No hive is needed.

async function help(path: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runHivectl(
    [...path, '--help'],
    { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env: {} },
    new ManualClock(),
    new AbortController().signal,
  );
  return { code, out, err };
}

/** The subcommand names a help text lists (aliases and the implicit `help` left out). */
function subcommands(text: string): string[] {
  const at = text.indexOf('\nCommands:\n');
  if (at < 0) return [];
  const names: string[] = [];
  for (const line of text.slice(at + '\nCommands:\n'.length).split('\n')) {
    if (!line.startsWith('  ')) break;
    const m = /^ {2}([a-z][\w-]*)(\|[\w-]+)?(\s|$)/.exec(line);
    if (m && m[1] !== 'help') names.push(m[1]);
  }
  return names;
}

describe('hivectl --help', () => {
  it('exits 0 and prints Usage: for every command and subcommand', async () => {
    const seen: string[] = [];
    const walk = async (path: string[]) => {
      const r = await help(path);
      const name = ['hivectl', ...path].join(' ');
      expect(r.code, `${name} --help exit code`).toBe(0);
      expect(r.out, `${name} --help`).toMatch(/^Usage: /);
      expect(r.err, `${name} --help stderr`).toBe('');
      seen.push(name);
      for (const sub of subcommands(r.out)) await walk([...path, sub]);
    };
    await walk([]);
    // The walk found the commands the operator documentation promises.
    for (const cmd of [
      'workers', 'get', 'events', 'register', 'deregister', 'health-report',
      'tokens create-join', 'tokens create', 'tokens list', 'tokens revoke', 'tokens rotate',
      'policy set', 'policy get', 'policy clear', 'silence add', 'silence list', 'silence remove',
    ]) {
      expect(seen, cmd).toContain(`hivectl ${cmd}`);
    }
  });

  it('shows durations as durations: events --poll defaults to 2s', async () => {
    const r = await help(['events']);
    expect(r.out).toMatch(/--poll <duration>\s+how often --follow asks for new events \(default: 2s\)/);
    expect(r.out).not.toContain('2000');
    const top = await help([]);
    expect(top.out).toContain('(default: 10s)');
  });
});

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { profileMarkdown, summarizeProfile, type CpuProfile } from './lib/cpuprofile.js';

// Summarises any .cpuprofile of this repository's processes (self time by
// function and package, inclusive time of our own functions), with .ts line
// numbers recovered from tsx's minified output.
// Usage: node bin/run-ts.mjs bench/summarize-profile.ts FILE [--from MS --to MS] [--ops N] [--top N]

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: { from: { type: 'string' }, to: { type: 'string' }, ops: { type: 'string' }, top: { type: 'string' } },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: summarize-profile.ts FILE.cpuprofile [--from MS --to MS] [--ops N] [--top N]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(positionals[0], 'utf8')) as CpuProfile;
const window = values.from !== undefined || values.to !== undefined ? { fromMs: Number(values.from ?? 0), toMs: Number(values.to ?? Infinity) } : null;
const top = Number(values.top ?? 20);
const summary = summarizeProfile(profile, window, Number(values.ops ?? 0), Math.max(top, 25));
process.stdout.write(`${profileMarkdown(positionals[0], summary, top)}\n`);

import { systemClock } from '../lib/clock.js';
import { runHivectl } from './cli.js';

// Entry point (bin/hivectl.mjs). Ctrl-C or SIGTERM ends a watch or a
// follow cleanly (exit 0); a second Ctrl-C exits at once.

const stop = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
  });
}
// A closed pipe (hivectl workers | head) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const code = await runHivectl(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }, systemClock, stop.signal);
process.exitCode = code;
// The keep-alive agent of the HTTP transport must not hold the process open.
process.stdout.write('', () => process.exit(code));

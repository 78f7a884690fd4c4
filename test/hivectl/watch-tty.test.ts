import { setMaxListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHivectl } from '../../hivectl/cli.js';
import { ManualClock } from '../../lib/clock.js';
import { eventually } from '../support/procs.js';
import { ADMIN, startTestHive, type TestHive } from './fixture.js';

// `hivectl workers --watch` on a terminal, in-process: stdout says it is a
// TTY, and the clock is a ManualClock, so the redraws (a ticker on that
// clock) and the ages in the table move only when the test advances time.

const HOME = '\x1b[H';
const CLEAR_LINE = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';

/** The frames drawn in place: each starts with cursor-home. */
const frames = (out: string) => out.split(HOME).slice(1).filter(Boolean);
/** The last frame as plain lines, without the clear-to-end-of-line codes. */
const lastFrame = (out: string) => frames(out).at(-1)!.replaceAll(CLEAR_LINE, '').replace(CLEAR_BELOW, '').split('\n');
const ageOf = (lines: string[], worker: string) => {
  const row = lines.find((l) => l.startsWith(worker + ' '));
  const m = row && /^\S+\s+\S+\s+(\d+)s\s/.exec(row);
  return m ? Number(m[1]) : undefined;
};

describe('hivectl workers --watch on a terminal', () => {
  let t: TestHive;

  beforeAll(async () => {
    t = await startTestHive('hivectl_tty');
    // One heartbeat each, then silence: only the clock moves their ages.
    await t.seed('gpu-1', { gpus: 1, intervalMs: 60_000 });
    await t.seed('gpu-2', { intervalMs: 60_000 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('redraws the table in place, and the ages advance with the clock', async () => {
    const clock = new ManualClock(Date.now());
    const stop = new AbortController();
    // ManualClock leaves an abort listener per finished sleep on the signal;
    // the ticker sleeps hundreds of times here.
    setMaxListeners(1000, stop.signal);
    let out = '';
    let err = '';
    const done = runHivectl(
      ['workers', '--watch'],
      {
        stdout: { write: (s: string) => (out += s), isTTY: true, columns: 160 },
        stderr: { write: (s: string) => (err += s) },
        env: { HIVE_URL: t.url, HIVE_TOKEN: ADMIN, NO_COLOR: '1' },
      },
      clock,
      stop.signal,
    );

    // The screen is taken once: cursor hidden, cleared, cursor home.
    expect(out.startsWith('\x1b[?25l\x1b[2J' + HOME)).toBe(true);
    // The ticker draws on the manual clock: nudge it until the snapshot is on screen.
    await eventually(
      async () => {
        await clock.advance(200);
        const lines = lastFrame(out);
        return lines[0].includes('live') && ageOf(lines, 'gpu-1') !== undefined && ageOf(lines, 'gpu-2') !== undefined;
      },
      10_000,
      'the live table',
    );
    const first = lastFrame(out);
    expect(first[0]).toMatch(/^hivectl workers --watch {2}http:\/\/127\.0\.0\.1:\d+ {2}2 workers {2}live/);
    expect(first[2]).toMatch(/^WORKER\s+STATE\s+LAST SEEN/);
    expect(first[3]).toMatch(/^gpu-1\s+HEALTHY\s+\d+s\s+1m\s+1x 40\/80G/);
    const age1 = ageOf(first, 'gpu-1')!;
    const age2 = ageOf(first, 'gpu-2')!;
    const drawn = frames(out).length;

    // Time passes, nothing else happens: the ticker redraws once a second
    // and the ages follow the clock.
    for (let i = 0; i < 35; i++) await clock.advance(200);
    const later = lastFrame(out);
    expect(ageOf(later, 'gpu-1')).toBe(age1 + 7);
    expect(ageOf(later, 'gpu-2')).toBe(age2 + 7);
    expect(frames(out).length - drawn).toBeGreaterThanOrEqual(7);
    expect(frames(out).length - drawn).toBeLessThanOrEqual(8);

    // In place: every frame goes home, clears each line to its end and
    // everything below it, and the screen is never cleared again.
    for (const f of frames(out)) {
      expect(f.endsWith('\n' + CLEAR_BELOW)).toBe(true);
      for (const line of f.replace(/\n\x1b\[J$/, '').split('\n')) expect(line.endsWith(CLEAR_LINE)).toBe(true);
    }
    expect(out.split('\x1b[2J')).toHaveLength(2);

    stop.abort();
    expect(await done).toBe(0);
    // The cursor comes back when the watch ends.
    expect(out.endsWith('\x1b[?25h')).toBe(true);
    expect(err).toBe('');
  });
});

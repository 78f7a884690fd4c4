import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { DeadlineQueue, Due } from './deadline-queue.js';

// One loop per deadline queue: it sleeps on the injected clock until the
// earliest deadline, or until poked because an earlier one arrived or a
// slot freed up, then hands the due entries to onDue. No timer per entry,
// no scan per tick.

export interface DueLoopOptions {
  clock: Clock;
  queue: DeadlineQueue;
  log: Logger;
  /** The time the deadlines are expressed in (the hive's clock for the stale detector). */
  now?: () => number;
  /** How many entries may be handed out now (in-flight bound); default unbounded. */
  capacity?: () => number;
  /** Called synchronously with the due entries; starts their work without awaiting it. */
  onDue: (due: Due[]) => void;
  /** Most entries popped per turn before yielding to I/O. */
  batch?: number;
  /**
   * now() is not a clock but something that moves by itself (a view's
   * watermark): no timer towards the head, only advanced() and poke() wake
   * the loop. (A timer would measure a gap in view time in clock time, and
   * spin while the view stands still.)
   */
  untimed?: boolean;
}

/** Why the loop is parked, which decides what a poke must wake it for. */
type Parked = 'disabled' | 'empty' | 'full' | 'sleeping';

/** The abort reason of a wake: a constant, so a wake builds no DOMException. */
const WOKEN = Symbol('woken');

export class DueLoop {
  private readonly o: DueLoopOptions;
  private readonly now: () => number;
  private stopped = false;
  private enabled = true;
  private loop: Promise<void> | null = null;
  /** Ends the current park; null while the loop runs. */
  private wake: (() => void) | null = null;
  private parked: Parked | null = null;
  /** The deadline the loop sleeps towards; null while parked with nothing to wait for. */
  private sleepingUntil: number | null = null;

  constructor(o: DueLoopOptions) {
    this.o = o;
    this.now = o.now ?? (() => o.clock.now());
  }

  start(): void {
    this.loop ??= this.run().catch((err) => this.o.log.error({ err }, 'due loop crashed'));
  }

  /** Stops the loop and waits for it; idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  /** While disabled nothing is handed out; deadlines keep their places. */
  setEnabled(on: boolean): void {
    this.enabled = on;
    this.wake?.();
  }

  /**
   * Tells the loop the queue changed or a slot freed up. It wakes only when
   * that matters: the head is now earlier than what it sleeps towards, an
   * empty queue got an entry, or a full loop got room. (Called for every
   * change the watch brings: a wake that finds nothing to do is not free.)
   */
  poke(): void {
    if (!this.wake) return;
    switch (this.parked) {
      case 'disabled':
        return;
      case 'empty':
        if (this.o.queue.peek()) this.wake();
        return;
      case 'full':
        if ((this.o.capacity?.() ?? 1) > 0) this.wake();
        return;
      case 'sleeping': {
        const head = this.o.queue.peek();
        if (head && this.sleepingUntil !== null && head.at < this.sleepingUntil) this.wake();
        return;
      }
    }
  }

  /**
   * Tells the loop that now() moved on by itself (a view's watermark, not a
   * clock): a sleeping loop wakes when its head is due by the new now.
   */
  advanced(): void {
    if (this.parked !== 'sleeping' || !this.wake) return;
    const head = this.o.queue.peek();
    if (head && head.at <= this.now()) this.wake();
  }

  private async park(why: Parked, ms: number | null): Promise<void> {
    this.parked = why;
    try {
      if (ms === null) {
        await new Promise<void>((resolve) => (this.wake = resolve));
      } else {
        const ctl = new AbortController();
        this.wake = () => ctl.abort(WOKEN);
        await this.o.clock.sleep(ms, ctl.signal);
      }
    } catch {
      /* woken */
    } finally {
      this.wake = null;
      this.parked = null;
      this.sleepingUntil = null;
    }
  }

  private async run(): Promise<void> {
    const batch = this.o.batch ?? 1000;
    while (!this.stopped) {
      const head = this.o.queue.peek();
      if (!this.enabled || !head) {
        await this.park(this.enabled ? 'empty' : 'disabled', null);
        continue;
      }
      const now = this.now();
      if (head.at > now) {
        this.sleepingUntil = head.at;
        await this.park('sleeping', this.o.untimed ? null : head.at - now);
        continue;
      }
      const room = Math.min(batch, this.o.capacity?.() ?? Infinity);
      if (room <= 0) {
        await this.park('full', null);
        continue;
      }
      const due = this.o.queue.popDue(now, room);
      try {
        this.o.onDue(due);
      } catch (err) {
        this.o.log.error({ err }, 'due handler threw');
      }
      // A full batch means more may be due: let I/O in before the next.
      if (due.length === batch) await new Promise<void>((r) => setImmediate(r));
    }
  }
}

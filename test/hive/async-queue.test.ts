import { describe, expect, it } from 'vitest';
import { AsyncQueue } from '../../hive/async-queue.js';

// The queue behind the grpc-js request streams and the HeartbeatStream
// outbox: order, end and failure after the queued items, the close hook,
// and the synchronous consumer with its suspend and resume.

describe('AsyncQueue', () => {
  it('yields in order, ends after the queued items, and closes once', async () => {
    let closed = 0;
    const q = new AsyncQueue<number>(undefined, () => closed++);
    q.push(1);
    q.push(2);
    setTimeout(() => {
      q.push(3);
      q.end();
      q.push(4);
    }, 0);
    const seen: number[] = [];
    for await (const v of q) seen.push(v);
    expect(seen).toEqual([1, 2, 3]);
    expect(closed).toBe(1);
    await q.return();
    expect(closed).toBe(1);
  });

  it('delivers a failure after the items queued before it, and a break closes it', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.fail(new Error('bad frame'));
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const v of q) seen.push(v);
      })(),
    ).rejects.toThrow('bad frame');
    expect(seen).toEqual([1]);

    let closed = 0;
    const r = new AsyncQueue<number>(undefined, () => closed++);
    r.push(1);
    r.push(2);
    for await (const _ of r) break;
    expect(closed).toBe(1);
    expect(r.closed).toBe(true);
  });

  it('hands items to a synchronous consumer, which can suspend and resume the delivery', () => {
    const taken: number[] = [];
    const q = new AsyncQueue<number>((left) => taken.push(left));
    q.push(1);
    const seen: number[] = [];
    let ended = false;
    let busy = false;
    const resume = q.consume({
      item(v) {
        seen.push(v);
        return !busy;
      },
      end: () => (ended = true),
      fail: () => {},
    });
    expect(seen).toEqual([1]);
    q.push(2);
    expect(seen).toEqual([1, 2]);
    busy = true;
    q.push(3);
    q.push(4);
    q.end();
    expect(seen).toEqual([1, 2, 3]);
    expect(ended).toBe(false);
    busy = false;
    resume();
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(ended).toBe(true);
    expect(taken.at(-1)).toBe(0);
  });

  it('gives a synchronous consumer the failure once the items before it are taken', () => {
    let closed = 0;
    const q = new AsyncQueue<number>(undefined, () => closed++);
    q.push(1);
    q.fail(new Error('boom'));
    const seen: unknown[] = [];
    q.consume({ item: (v) => (seen.push(v), true), end: () => seen.push('end'), fail: (e) => seen.push((e as Error).message) });
    expect(seen).toEqual([1, 'boom']);
    expect(closed).toBe(1);
  });
});

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import type { Store, WorkerSnapshot } from '../../hive/store/store.js';
import { createWriteBehind } from '../../hive/write-behind.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';

// The write-behind flusher against a real PostgreSQL store: a flush of many
// dirty workers goes a chunk per statement, each chunk snapshotted just
// before it is written (the event loop is never held for the whole fleet),
// and a chunk that fails leaves itself and the rest dirty for the next one.

const log = createLogger('test', 'silent');
const N = 25;
const CHUNK = 10;
const ids = Array.from({ length: N }, (_, i) => `w-${String(i).padStart(2, '0')}`);

describe('write-behind flush', () => {
  const schema = uniqueSchema('hive_wb');
  let store: Store;
  let seq = 0n;
  /** What the flusher did, in order: a snapshot taken or a chunk written. */
  let trace: string[];
  let failOnWrite: number | null;

  const recording = (): Store => {
    let writes = 0;
    return {
      ...store,
      async flushSnapshots(snaps: WorkerSnapshot[]) {
        writes++;
        trace.push(`write ${snaps.length}`);
        if (writes === failOnWrite) throw new Error('connection reset');
        await store.flushSnapshots(snaps);
      },
    };
  };

  const writeBehind = () =>
    createWriteBehind({
      store: recording(),
      clock: new ManualClock(),
      log,
      chunkSize: CHUNK,
      snapshot: (workerId) => {
        trace.push('snap');
        return { workerId, lastSeen: 1_700_000_000_000, lastSeq: seq, sessionId: 's', status: 1, statusDetail: '', stats: null };
      },
    });

  const storedSeqs = async () => (await store.loadWorkers()).map((w) => Number(w.lastSeq));

  beforeAll(async () => {
    store = await openTestStore(schema);
    for (const id of ids) {
      await store.registerWorker(
        { workerId: id, labels: {}, intervalMs: 1000, registeredAt: 0, state: 2, stateSince: 0, lastSeen: null, lastSeq: 0n, sessionId: '', status: 0, statusDetail: '', stats: null, policy: null, dependsOn: [], dependsOnSelector: '' },
        null,
        false,
        { workerId: id, at: 0, kind: 'registered', fromState: 0, toState: 2, actor: 'test', reason: '' },
      );
    }
  });

  afterAll(async () => {
    await store?.close();
    await dropSchema(schema);
  });

  beforeEach(() => {
    trace = [];
    failOnWrite = null;
  });

  it('writes the dirty workers a chunk per statement, each chunk snapshotted just before it is written', async () => {
    const wb = writeBehind();
    seq = 7n;
    for (const id of ids) wb.touch(id);
    await wb.flush();

    const snaps = (k: number) => Array<string>(k).fill('snap');
    expect(trace).toEqual([...snaps(10), 'write 10', ...snaps(10), 'write 10', ...snaps(5), 'write 5']);
    expect(wb.backlog()).toBe(0);
    expect(wb.stats.lastBatchSize).toBe(N);
    expect(await storedSeqs()).toEqual(Array(N).fill(7));
  });

  it('a chunk that fails stays dirty with the chunks after it; the next flush writes them with their latest state', async () => {
    const wb = writeBehind();
    seq = 8n;
    for (const id of ids) wb.touch(id);
    failOnWrite = 2;
    await wb.flush();

    expect(trace.filter((t) => t !== 'snap')).toEqual(['write 10', 'write 10']);
    expect(wb.stats.failures).toBe(1);
    expect(wb.backlog()).toBe(N - CHUNK);
    expect(await storedSeqs()).toEqual([...Array(CHUNK).fill(8), ...Array(N - CHUNK).fill(7)]);

    trace = [];
    seq = 9n;
    await wb.flush();
    expect(trace.filter((t) => t !== 'snap')).toEqual(['write 10', 'write 5']);
    expect(wb.backlog()).toBe(0);
    expect(await storedSeqs()).toEqual([...Array(CHUNK).fill(8), ...Array(N - CHUNK).fill(9)]);
  });
});

// Group commit: writes that arrive while one is on its way to the database
// are written together next, in one transaction, in the order they came.
// A burst of N (a rack of workers going stale at once) costs a few round
// trips instead of N transactions queued on a small connection pool, and
// each caller still hears back only once its own write is committed.

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Returns a function that writes one item through writeMany. writeMany gets
 * the items in arrival order and returns one result per item; if it throws,
 * nothing of that batch was committed: when `isolate(err)` says the error
 * may be one item's, each item is written again alone, in order, and fails
 * or succeeds on its own; otherwise every item of the batch fails with that
 * error. The next batch is tried on its own either way.
 */
export function groupCommit<I, O>(writeMany: (items: I[]) => Promise<O[]>, maxBatch = 1000, isolate: (err: unknown) => boolean = () => false): (item: I) => Promise<O> {
  let queue: Array<Pending<I, O>> = [];
  let writing = false;

  async function drain(): Promise<void> {
    writing = true;
    // Whatever else this turn of the event loop brings joins the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (queue.length > 0) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      try {
        const out = await writeMany(batch.map((p) => p.item));
        batch.forEach((p, i) => p.resolve(out[i]));
      } catch (err) {
        if (batch.length === 1 || !isolate(err)) {
          for (const p of batch) p.reject(err);
          continue;
        }
        for (const p of batch) {
          try {
            p.resolve((await writeMany([p.item]))[0]);
          } catch (itemErr) {
            p.reject(itemErr);
          }
        }
      }
    }
    writing = false;
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!writing) void drain();
    });
}

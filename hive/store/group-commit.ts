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
 * every item of that batch fails with the same error (nothing of it was
 * committed), and the next batch is tried on its own.
 */
export function groupCommit<I, O>(writeMany: (items: I[]) => Promise<O[]>, maxBatch = 1000): (item: I) => Promise<O> {
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
        for (const p of batch) p.reject(err);
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

// A single-consumer queue read with `for await`, fed from events. It
// implements the async iterator protocol by hand: a message that is already
// queued is handed over without a generator frame or a wake-up closure, and
// a consumer that waits costs one promise. It backs the grpc-js adapter's
// request streams and the HeartbeatStream outbox, where every heartbeat
// passes once each way.

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

/** A synchronous consumer (see AsyncQueue.consume). */
export interface QueueSink<T> {
  /** Takes one item; false stops the delivery until resume() is called. */
  item(value: T): boolean;
  end(): void;
  fail(err: unknown): void;
}

export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private head = 0;
  private resolve: ((r: IteratorResult<T>) => void) | null = null;
  private reject: ((err: unknown) => void) | null = null;
  private ended = false;
  private failed = false;
  private failure: unknown = undefined;
  private sink: QueueSink<T> | null = null;
  private suspended = false;
  private delivering = false;

  /**
   * @param onTake called after each take with how many items are still queued (flow control).
   * @param onClose called once when the consumer is done: it stopped early (break, throw), or it was handed the end or the failure.
   */
  constructor(
    private readonly onTake?: (queued: number) => void,
    private onClose?: () => void,
  ) {}

  private closeOnce(): void {
    const onClose = this.onClose;
    this.onClose = undefined;
    onClose?.();
  }

  get size(): number {
    return this.items.length - this.head;
  }

  get closed(): boolean {
    return this.ended || this.failed;
  }

  push(item: T): void {
    if (this.ended || this.failed) return;
    const sink = this.sink;
    if (sink) {
      if (!this.suspended && !this.delivering && this.head === this.items.length) {
        this.delivering = true;
        if (!sink.item(item)) this.suspended = true;
        this.delivering = false;
        // What the sink caused meanwhile (more items, the end) goes out now.
        if (!this.suspended) this.deliver();
      } else {
        this.items.push(item);
        this.deliver();
      }
      return;
    }
    const resolve = this.resolve;
    if (resolve) {
      this.resolve = this.reject = null;
      resolve({ value: item, done: false });
      return;
    }
    this.items.push(item);
  }

  /** No more items: the consumer's loop ends once the queue is drained. */
  end(): void {
    if (this.ended || this.failed) return;
    this.ended = true;
    if (this.sink) return this.deliver();
    const resolve = this.resolve;
    if (resolve) {
      this.resolve = this.reject = null;
      this.closeOnce();
      resolve(DONE);
    }
  }

  /** The consumer gets err once the items queued before it are drained. */
  fail(err: unknown): void {
    if (this.ended || this.failed) return;
    this.failed = true;
    this.failure = err;
    if (this.sink) return this.deliver();
    const reject = this.reject;
    if (reject) {
      // Handed over now: the consumer sees the failure once, then the end.
      this.resolve = this.reject = null;
      this.failed = false;
      this.failure = undefined;
      this.ended = true;
      this.closeOnce();
      reject(err);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined as T;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      this.onTake?.(this.size);
      return Promise.resolve({ value, done: false });
    }
    if (this.failed) {
      const err = this.failure;
      this.failure = undefined;
      this.ended = true;
      this.failed = false;
      this.closeOnce();
      return Promise.reject(err);
    }
    if (this.ended) {
      this.closeOnce();
      return Promise.resolve(DONE);
    }
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /**
   * Hands the items to `sink` synchronously as they come, instead of through
   * next(): no promise and no microtask per item. Returns resume(), for a
   * sink that stopped the delivery by returning false.
   */
  consume(sink: QueueSink<T>): () => void {
    this.sink = sink;
    this.deliver();
    return () => {
      this.suspended = false;
      this.deliver();
    };
  }

  private deliver(): void {
    const sink = this.sink;
    if (!sink || this.suspended || this.delivering) return;
    this.delivering = true;
    try {
      while (this.head < this.items.length) {
        const value = this.items[this.head];
        this.items[this.head++] = undefined as T;
        if (this.head === this.items.length) {
          this.items.length = 0;
          this.head = 0;
        }
        this.onTake?.(this.size);
        if (!sink.item(value)) {
          this.suspended = true;
          return;
        }
        if (this.sink !== sink) return;
      }
      if (this.failed) {
        const err = this.failure;
        this.failure = undefined;
        this.failed = false;
        this.ended = true;
        this.sink = null;
        this.closeOnce();
        sink.fail(err);
      } else if (this.ended) {
        this.sink = null;
        this.closeOnce();
        sink.end();
      }
    } finally {
      this.delivering = false;
    }
  }

  return(): Promise<IteratorResult<T>> {
    this.sink = null;
    this.ended = true;
    this.items.length = 0;
    this.head = 0;
    const resolve = this.resolve;
    this.resolve = this.reject = null;
    resolve?.(DONE);
    this.closeOnce();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

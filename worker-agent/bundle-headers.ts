// The `Headers` class the agent's bundle gives @connectrpc/connect in place
// of the global one (bin/bundle.mjs injects it). Node's global Headers is
// undici's: touching it loads all of undici, ~5 MB resident in a process
// that never uses fetch. Connect only keeps request/response metadata in it
// (create, append, set, get, has, delete, iterate), which is all this does.
// Names are case-insensitive; repeated values are joined with ", " as the
// Fetch standard does. The global stays untouched for anyone else.

type Init = HeadersInit | LightHeaders | undefined;

export class LightHeaders {
  readonly #values = new Map<string, string>();

  constructor(init?: Init) {
    if (init === undefined) return;
    if (Array.isArray(init)) for (const [k, v] of init) this.append(k, v);
    else if (typeof (init as LightHeaders).forEach === 'function') (init as LightHeaders).forEach((v, k) => this.append(k, v));
    else for (const [k, v] of Object.entries(init as Record<string, string>)) this.append(k, v);
  }

  append(name: string, value: string): void {
    const key = String(name).toLowerCase();
    const prev = this.#values.get(key);
    this.#values.set(key, prev === undefined ? String(value) : `${prev}, ${value}`);
  }

  set(name: string, value: string): void {
    this.#values.set(String(name).toLowerCase(), String(value));
  }

  get(name: string): string | null {
    return this.#values.get(String(name).toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#values.has(String(name).toLowerCase());
  }

  delete(name: string): void {
    this.#values.delete(String(name).toLowerCase());
  }

  forEach(fn: (value: string, name: string, headers: LightHeaders) => void): void {
    for (const [k, v] of this.#values) fn(v, k, this);
  }

  entries(): IterableIterator<[string, string]> {
    return this.#values.entries();
  }

  keys(): IterableIterator<string> {
    return this.#values.keys();
  }

  values(): IterableIterator<string> {
    return this.#values.values();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.#values.entries();
  }
}

export { LightHeaders as Headers };

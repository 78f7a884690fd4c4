// Key layout in Redis, shared by the hive (live state, fencing check) and
// the monitor (leader lease). Every key starts with the configured prefix,
// so several fleets or test runs share one Redis.
//
// Redis Cluster: a script may only touch keys of one hash slot. The keys a
// per-worker script touches (the worker's hash, its shard's deadline index,
// its command list, its connection key) carry the same hash tag
// `{<prefix>:s<shard>}`; workers spread over SHARDS tags so the fleet is
// not pinned to one slot. The lease and its fencing counter live together
// under `{<prefix>:leader}`.

/** Number of hash-tag shards of the worker keys. Changing it moves every key: it is part of the format. */
export const SHARDS = 16;

/** FNV-1a of the worker id, folded to a shard (stable across processes and versions). */
export function shardOf(workerId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < workerId.length; i++) {
    h ^= workerId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % SHARDS;
}

/** A prefix may not contain braces (they would change the hash tags) nor whitespace. */
export function checkPrefix(prefix: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) throw new Error('must be 1-64 characters of letters, digits, _ . : -');
  return prefix;
}

export function liveKeys(prefix: string) {
  const tag = (id: string) => `{${prefix}:s${shardOf(id)}}`;
  return {
    /** Hash: seq, session, seen, status, state, since, ver. */
    worker: (id: string) => `${tag(id)}:w:${id}`,
    /** Sorted set of the worker's shard: member worker id, score its deadline (ms). */
    deadlines: (id: string) => `${tag(id)}:due`,
    deadlinesOfShard: (shard: number) => `{${prefix}:s${shard}}:due`,
    /** List of pending commands (protobuf binary, base64). */
    commands: (id: string) => `${tag(id)}:cmd:${id}`,
    /** The replica holding the worker's heartbeat stream, expiring with the stream's silence. */
    connection: (id: string) => `${tag(id)}:conn:${id}`,
    /** Pub/sub channel of registry changes. */
    channel: `${prefix}:changes`,
  };
}

export function leaderKeys(prefix: string) {
  return {
    /** "<holder>|<fencing token>", with the lease's expiry. */
    lease: `{${prefix}:leader}:lease`,
    /** The highest fencing token handed out. */
    fence: `{${prefix}:leader}:fence`,
  };
}

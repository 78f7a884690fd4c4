// The Lua scripts of the Redis live state. Each touches only keys of one
// worker's hash tag (see lib/redis-keys.ts), so each runs on one Cluster
// node, atomically. Publishing from a script is allowed and keeps the
// change and its announcement in one step.
//
// Worker hash fields: seq (uint64 as text), session, seen (ms), status,
// state, since (ms), ver (bumped by every state change: receivers apply a
// state message only when its ver is newer than the one they hold).

/**
 * The heartbeats of many workers of one shard in one call. KEYS: the
 * shard's deadlines, then per worker its hash and its connection key.
 * ARGV: replica, then per worker id, seq, session, seen, status, due,
 * connTtlMs (0: not on a stream).
 */
export const BEATS = `
local n = (#KEYS - 1) / 2
for i = 0, n - 1 do
  local a = 2 + 7 * i
  redis.call('HSET', KEYS[2 + 2 * i], 'seq', ARGV[a + 1], 'session', ARGV[a + 2], 'seen', ARGV[a + 3], 'status', ARGV[a + 4])
  redis.call('ZADD', KEYS[1], ARGV[a + 5], ARGV[a])
  if ARGV[a + 6] ~= '0' then redis.call('SET', KEYS[3 + 2 * i], ARGV[1], 'PX', ARGV[a + 6]) end
end
return n
`;

/**
 * Compare-and-set of the state on the last heartbeat (a late heartbeat
 * must win over a stale mark, hence the seq check in the same step as the
 * write). KEYS: worker. ARGV: expected seq, expected session ('' = any),
 * allowed current states (",1,2,"; '' = any), new state, now.
 * Returns {'ok', ver} | {'seq', seq, session} | {'state', state}. The
 * change is announced by the caller once it is durable, so that what other
 * replicas do in reply is written after it.
 */
export const CAS = `
local h = redis.call('HMGET', KEYS[1], 'seq', 'session', 'state')
local seq = h[1] or '0'
local session = h[2] or ''
if seq ~= ARGV[1] or (ARGV[2] ~= '' and session ~= ARGV[2]) then return {'seq', seq, session} end
if ARGV[3] ~= '' and h[3] and not string.find(ARGV[3], ',' .. h[3] .. ',', 1, true) then return {'state', h[3]} end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'since', ARGV[5])
return {'ok', tostring(ver)}
`;

/** Unconditional state change (reported by the worker, or a clean leave). KEYS: worker. ARGV: state, since, channel, message head. Returns ver. */
export const SET_STATE = `
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'since', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ver .. '}')
return ver
`;

/**
 * Seeds a worker's live fields from the durable registry unless Redis
 * already has them (another replica, or this one before a restart, is
 * ahead of the write-behind snapshot); with force, overwrites (this
 * replica's memory is newer: it kept accepting heartbeats during an
 * outage). KEYS: worker, deadlines. ARGV: id, seq, session, seen, status,
 * state, since, due, force. Returns the fields as Redis now holds them.
 */
export const SEED = `
if ARGV[9] == '1' or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'session', ARGV[3], 'seen', ARGV[4], 'status', ARGV[5], 'state', ARGV[6], 'since', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
end
return redis.call('HMGET', KEYS[1], 'seq', 'session', 'seen', 'status', 'state', 'since', 'ver')
`;

/** Drops a deregistered worker's keys. KEYS: worker, deadlines, commands, connection. ARGV: id. */
export const FORGET = `
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`;

/** Queues a command (bounded) and announces it. KEYS: commands, connection. ARGV: command, max, channel, message. Returns 1 when a stream is open somewhere. */
export const PUSH_COMMAND = `
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return redis.call('EXISTS', KEYS[2])
`;

/** Takes every pending command at once, so exactly one replica delivers each. KEYS: commands. */
export const TAKE_COMMANDS = `
local all = redis.call('LRANGE', KEYS[1], 0, -1)
if #all > 0 then redis.call('DEL', KEYS[1]) end
return all
`;

/** Clears the connection key if this replica still holds it. KEYS: connection. ARGV: replica. */
export const RELEASE_CONNECTION = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

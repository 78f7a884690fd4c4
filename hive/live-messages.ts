import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { HeartbeatRequestSchema, type HeartbeatRequest } from '../gen/hive/v1/registry_pb.js';

// What replicas tell each other over the change channel, as JSON text.
// Every message names its sender (r) so a replica skips its own. A state
// message is built by a script that appends the state version, so the
// head ends right before that number.

export type LiveMessage =
  | { t: 'b'; r: string; id: string; at: number; hb: HeartbeatRequest }
  /** seq/s: the heartbeat the state was decided on (a newer one there makes a stale mark moot). */
  | { t: 's'; r: string; id: string; st: number; since: number; seq: bigint; s: string; ver: number }
  | { t: 'r'; r: string }
  | { t: 'c'; r: string; id: string };

export function encodeBeat(replica: string, id: string, at: number, hb: HeartbeatRequest): string {
  return JSON.stringify({ t: 'b', r: replica, id, at, hb: Buffer.from(toBinary(HeartbeatRequestSchema, hb)).toString('base64') });
}

/** The state message without its version and closing brace (the script adds them). */
export function stateHead(replica: string, id: string, state: number, since: number, seq: bigint, session: string): string {
  return `{"t":"s","r":${JSON.stringify(replica)},"id":${JSON.stringify(id)},"st":${state},"since":${since},"seq":"${seq}","s":${JSON.stringify(session)},"ver":`;
}

export function encodeReload(replica: string): string {
  return JSON.stringify({ t: 'r', r: replica });
}

export function encodeCommandNotice(replica: string, id: string): string {
  return JSON.stringify({ t: 'c', r: replica, id });
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Parses a message; anything malformed (another version, a stray publisher) is null and ignored. */
export function parseMessage(text: string): LiveMessage | null {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!m || typeof m !== 'object' || !isStr(m.r)) return null;
  switch (m.t) {
    case 'b':
      if (!isStr(m.id) || !isNum(m.at) || !isStr(m.hb)) return null;
      try {
        return { t: 'b', r: m.r, id: m.id, at: m.at, hb: fromBinary(HeartbeatRequestSchema, Buffer.from(m.hb, 'base64')) };
      } catch {
        return null;
      }
    case 's':
      if (!isStr(m.id) || !isNum(m.st) || !isNum(m.since) || !isNum(m.ver) || !isStr(m.seq) || !/^\d{1,20}$/.test(m.seq) || !isStr(m.s)) return null;
      return { t: 's', r: m.r, id: m.id, st: m.st, since: m.since, seq: BigInt(m.seq), s: m.s, ver: m.ver };
    case 'r':
      return { t: 'r', r: m.r };
    case 'c':
      return isStr(m.id) ? { t: 'c', r: m.r, id: m.id } : null;
    default:
      return null;
  }
}

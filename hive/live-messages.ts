import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { HeartbeatRequestSchema, type HeartbeatRequest } from '../gen/hive/v1/registry_pb.js';
import type { RegistryChange } from './live-state.js';

// What replicas tell each other over the change channel, as JSON text.
// Messages a replica must skip when they are its own begin with their
// sender (r), so that skipping costs a prefix test, not a parse; command
// notices begin with their type, as the sender's own stream may want them.
// A state message is built by a script that appends the state version, so
// the head ends right before that number. Heartbeats travel in batches.

/**
 * A heartbeat heard from another replica: what the registry needs at once
 * in plain fields, the whole request (stats) still encoded, decoded only
 * if somebody reads it before the next one supersedes it.
 */
export interface RemoteBeat {
  seq: bigint;
  sessionId: string;
  status: number;
  statusDetail: string;
  /** hive.v1.HeartbeatRequest, protobuf binary in base64. */
  encoded: string;
}

export interface BeatEntry extends RemoteBeat {
  id: string;
  at: number;
}

export type LiveMessage =
  | { t: 'B'; r: string; beats: BeatEntry[] }
  /** seq/s: the heartbeat the state was decided on (a newer one there makes a stale mark moot). */
  | { t: 's'; r: string; id: string; st: number; since: number; seq: bigint; s: string; ver: number }
  | { t: 'r'; r: string; change?: RegistryChange }
  | { t: 'c'; r: string; id: string };

/** The prefix of every message of this replica that it skips when it hears it back. */
export function ownPrefix(replica: string): string {
  return `{"r":${JSON.stringify(replica)},`;
}

/** One heartbeat of a batch, encoded once when accepted (from its wire bytes when the transport kept them). */
export function encodeBeatEntry(id: string, at: number, hb: HeartbeatRequest, wire?: Uint8Array): string {
  const bytes = wire ?? toBinary(HeartbeatRequestSchema, hb);
  return `{"id":${JSON.stringify(id)},"at":${at},"seq":"${hb.seq}","s":${JSON.stringify(hb.sessionId)},"st":${hb.status},"d":${JSON.stringify(hb.statusDetail)},"hb":"${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}"}`;
}

export function decodeBeat(encoded: string): HeartbeatRequest {
  return fromBinary(HeartbeatRequestSchema, Buffer.from(encoded, 'base64'));
}

export function encodeBeats(replica: string, entries: readonly string[]): string {
  return `${ownPrefix(replica)}"t":"B","b":[${entries.join(',')}]}`;
}

/** The state message without its version and closing brace (the script adds them). */
export function stateHead(replica: string, id: string, state: number, since: number, seq: bigint, session: string): string {
  return `${ownPrefix(replica)}"t":"s","id":${JSON.stringify(id)},"st":${state},"since":${since},"seq":"${seq}","s":${JSON.stringify(session)},"ver":`;
}

export function encodeReload(replica: string, change?: RegistryChange): string {
  if (!change) return `${ownPrefix(replica)}"t":"r"}`;
  return `${ownPrefix(replica)}"t":"r","ids":${JSON.stringify(change.workerIds ?? [])},"tok":${change.tokens === true}}`;
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
    case 'B': {
      if (!Array.isArray(m.b)) return null;
      const beats: BeatEntry[] = [];
      for (const e of m.b as Array<Record<string, unknown>>) {
        // A malformed entry is skipped; the rest stand.
        if (!e || !isStr(e.id) || !isNum(e.at) || !isStr(e.hb) || !isStr(e.seq) || !/^\d{1,20}$/.test(e.seq) || !isStr(e.s) || !isNum(e.st) || !isStr(e.d)) continue;
        beats.push({ id: e.id, at: e.at, seq: BigInt(e.seq), sessionId: e.s, status: e.st, statusDetail: e.d, encoded: e.hb });
      }
      return { t: 'B', r: m.r, beats };
    }
    case 's':
      if (!isStr(m.id) || !isNum(m.st) || !isNum(m.since) || !isNum(m.ver) || !isStr(m.seq) || !/^\d{1,20}$/.test(m.seq) || !isStr(m.s)) return null;
      return { t: 's', r: m.r, id: m.id, st: m.st, since: m.since, seq: BigInt(m.seq), s: m.s, ver: m.ver };
    case 'r': {
      if (m.ids === undefined) return { t: 'r', r: m.r };
      if (!Array.isArray(m.ids) || !m.ids.every(isStr)) return null;
      return { t: 'r', r: m.r, change: { workerIds: m.ids as string[], tokens: m.tok === true } };
    }
    case 'c':
      return isStr(m.id) ? { t: 'c', r: m.r, id: m.id } : null;
    default:
      return null;
  }
}

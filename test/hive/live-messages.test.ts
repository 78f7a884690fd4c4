import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { HealthStatus, HeartbeatRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import { decodeBeat, encodeBeatEntry, encodeBeats, encodeCommandNotice, encodeReload, ownPrefix, parseMessage, stateHead } from '../../hive/live-messages.js';

// The change channel's messages: what one replica writes, another reads
// back the same; a replica recognises its own by their first bytes; and
// anything malformed is ignored rather than applied.

const hb = create(HeartbeatRequestSchema, { workerId: 'w "1"', sessionId: 's\n1', seq: 18446744073709551615n, status: HealthStatus.DEGRADED, statusDetail: 'probe slow', load1: 1.5 });

describe('live messages', () => {
  it('round-trips a batch of heartbeats, keeping the request encoded until asked', () => {
    const text = encodeBeats('a', [encodeBeatEntry('w "1"', 1234, hb), encodeBeatEntry('w-2', 99, hb)]);
    const m = parseMessage(text);
    expect(m?.t).toBe('B');
    if (m?.t !== 'B') return;
    expect(m.r).toBe('a');
    expect(m.beats.map((b) => [b.id, b.at, b.seq, b.sessionId, b.status, b.statusDetail])).toEqual([
      ['w "1"', 1234, 18446744073709551615n, 's\n1', HealthStatus.DEGRADED, 'probe slow'],
      ['w-2', 99, 18446744073709551615n, 's\n1', HealthStatus.DEGRADED, 'probe slow'],
    ]);
    expect(decodeBeat(m.beats[0].encoded).load1).toBe(1.5);
    expect(text.startsWith(ownPrefix('a'))).toBe(true);
    expect(text.startsWith(ownPrefix('b'))).toBe(false);
  });

  it('reads a state message completed by the script with its version', () => {
    const m = parseMessage(`${stateHead('a', 'w-1', 5, 1000, 7n, 's1')}${42}}`);
    expect(m).toEqual({ t: 's', r: 'a', id: 'w-1', st: 5, since: 1000, seq: 7n, s: 's1', ver: 42 });
  });

  it('reads reloads with and without a scope, and command notices (which start with their type, not their sender)', () => {
    expect(parseMessage(encodeReload('a'))).toEqual({ t: 'r', r: 'a' });
    expect(parseMessage(encodeReload('a', { workerIds: ['w-1'] }))).toEqual({ t: 'r', r: 'a', change: { workerIds: ['w-1'], tokens: false } });
    expect(parseMessage(encodeReload('a', { tokens: true }))).toEqual({ t: 'r', r: 'a', change: { workerIds: [], tokens: true } });
    const notice = encodeCommandNotice('a', 'w-1');
    expect(parseMessage(notice)).toEqual({ t: 'c', r: 'a', id: 'w-1' });
    expect(notice.startsWith(ownPrefix('a'))).toBe(false);
  });

  it('ignores what it cannot read', () => {
    for (const bad of ['', 'not json', '[]', '{"t":"s","r":"a"}', '{"r":"a","t":"s","id":"w","st":1,"since":1,"seq":"-1","s":"","ver":1}', '{"r":"a","t":"r","ids":[1]}', '{"r":"a","t":"x"}', '{"t":"c","id":"w"}']) {
      expect(parseMessage(bad), bad).toBeNull();
    }
    // A batch keeps its good entries.
    const m = parseMessage(`{"r":"a","t":"B","b":[{"id":"w"},${encodeBeatEntry('w-2', 1, hb)}]}`);
    expect(m?.t === 'B' && m.beats.map((b) => b.id)).toEqual(['w-2']);
  });
});

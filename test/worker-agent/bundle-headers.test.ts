import { describe, expect, it } from 'vitest';
import { LightHeaders } from '../../worker-agent/bundle-headers.js';

describe('LightHeaders (the Headers of the agent bundle)', () => {
  it('matches the global Headers for what connect does with metadata', () => {
    for (const init of [undefined, { Authorization: 'Bearer x', 'Grpc-Timeout': '10000m' }, [['a', '1'], ['A', '2']] as [string, string][]]) {
      const ours = new LightHeaders(init);
      const theirs = new Headers(init);
      ours.append('X-Seq', '1');
      theirs.append('X-Seq', '1');
      ours.append('x-seq', '2');
      theirs.append('x-seq', '2');
      ours.set('Content-Type', 'application/grpc');
      theirs.set('Content-Type', 'application/grpc');
      ours.delete('grpc-timeout');
      theirs.delete('grpc-timeout');
      const sorted = (h: { forEach(fn: (v: string, k: string) => void): void }) => {
        const all: [string, string][] = [];
        h.forEach((v, k) => all.push([k, v]));
        return all.sort(([a], [b]) => a.localeCompare(b));
      };
      expect(sorted(ours)).toEqual(sorted(theirs));
      expect([...ours]).toEqual([...ours.entries()]);
      expect(ours.get('X-SEQ')).toBe(theirs.get('X-SEQ'));
      expect(ours.get('missing')).toBeNull();
      expect(ours.has('CONTENT-TYPE')).toBe(true);
    }
  });

  it('copies another instance', () => {
    const a = new LightHeaders({ k: 'v' });
    const b = new LightHeaders(a);
    b.set('k', 'w');
    expect(a.get('k')).toBe('v');
    expect(b.get('k')).toBe('w');
  });
});

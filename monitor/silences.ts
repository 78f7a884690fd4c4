import type { Silence } from '../gen/hive/v1/control_pb.js';
import { timestampToMs } from '../lib/duration.js';
import { matchesSelector, parseSelector, type Selector } from '../hive/selector.js';

// Alert silences, as last read from the hive (ListSilences): by worker id or
// by label selector, each until it expires.

interface Compiled {
  id: string;
  workerId: string;
  selector: Selector | null;
  expiresAt: number;
}

export class SilenceBook {
  private list: Compiled[] = [];

  set(silences: readonly Silence[], onBad?: (id: string, err: Error) => void): void {
    const out: Compiled[] = [];
    for (const s of silences) {
      let selector: Selector | null = null;
      try {
        selector = s.labelSelector ? parseSelector(s.labelSelector) : null;
      } catch (err) {
        onBad?.(s.silenceId, err as Error);
        continue;
      }
      out.push({ id: s.silenceId, workerId: s.workerId, selector, expiresAt: timestampToMs(s.expiresAt) ?? 0 });
    }
    this.list = out;
  }

  get size(): number {
    return this.list.length;
  }

  /** The id of a live silence covering the worker, if any. Alerts about no worker are never silenced here. */
  match(workerId: string | undefined, labels: Record<string, string> | undefined, now: number): string | undefined {
    if (!workerId) return undefined;
    for (const s of this.list) {
      if (s.expiresAt <= now) continue;
      if (s.workerId && s.workerId !== workerId) continue;
      if (s.selector && !matchesSelector(s.selector, labels ?? {})) continue;
      if (!s.workerId && !s.selector) continue;
      return s.id;
    }
    return undefined;
  }
}

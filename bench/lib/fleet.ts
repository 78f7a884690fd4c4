import { createHash } from 'node:crypto';

// Workers the benchmark creates without RegisterWorker (rows inserted into
// PostgreSQL directly, for 10^4..10^5 workers): ids and worker-token secrets
// are derived from a seed, so the load generator knows every token without
// being told 100,000 of them over IPC. The hive only ever sees the SHA-256.

export interface DerivedFleet {
  prefix: string;
  seed: string;
  count: number;
  /** Index of the first worker (fleets inserted side by side use distinct ranges). */
  offset?: number;
}

export function workerIdOf(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(6, '0')}`;
}

export function derivedSecret(seed: string, i: number): string {
  return `hive_wkr_bench${seed}_${i}`;
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function fleetMembers(f: DerivedFleet): Array<{ workerId: string; token: string; index: number }> {
  const off = f.offset ?? 0;
  return Array.from({ length: f.count }, (_, k) => ({ workerId: workerIdOf(f.prefix, off + k), token: derivedSecret(f.seed, off + k), index: off + k }));
}

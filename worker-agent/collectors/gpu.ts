// GPUs as nvidia-smi reports them. Parsing is pure and tested on real captures;
// the collector only runs the binary. A host without nvidia-smi simply has no
// GPUs: that is a fact about the host, not a failing collector.

import type { Logger } from '../../lib/logger.js';
import type { Clock } from '../../lib/clock.js';
import { execBounded } from './bounded-exec.js';
import type { Collector } from './collector.js';

/** The columns we ask for, in the order nvidia-smi prints them. */
export const NVIDIA_SMI_FIELDS = [
  'index',
  'uuid',
  'name',
  'memory.used',
  'memory.total',
  'utilization.gpu',
  'temperature.gpu',
] as const;

export const NVIDIA_SMI_ARGS: readonly string[] = [
  `--query-gpu=${NVIDIA_SMI_FIELDS.join(',')}`,
  '--format=csv,noheader,nounits',
];

/** One GPU, in the init shape of hive.v1.GpuStats. */
export interface GpuReading {
  index: number;
  uuid: string;
  name: string;
  memoryUsedBytes: bigint;
  memoryTotalBytes: bigint;
  /** 0..1; absent when the driver does not report it (MIG, old GeForce). */
  utilization?: number;
  temperatureCelsius?: number;
}

export interface NvidiaSmiParse {
  gpus: GpuReading[];
  /** Values nvidia-smi could not give us and what we sent instead. */
  notes: string[];
}

export class NvidiaSmiParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvidiaSmiParseError';
  }
}

const MIB = 1024n * 1024n;
const UNSIGNED = /^\d+(?:\.\d+)?$/;
const SIGNED = /^-?\d+(?:\.\d+)?$/;

/**
 * nvidia-smi writes an unreadable value as `N/A` or as a bracketed reason:
 * `[N/A]`, `[Not Supported]`, `[Insufficient Permissions]`, `[Unknown Error]`.
 */
export function isUnavailable(field: string): boolean {
  return field === 'N/A' || (field.startsWith('[') && field.endsWith(']'));
}

/** Output of `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`. */
export function parseNvidiaSmiCsv(text: string): GpuReading[] {
  return parseNvidiaSmiCsvWithNotes(text).gpus;
}

export function parseNvidiaSmiCsvWithNotes(text: string): NvidiaSmiParse {
  const gpus: GpuReading[] = [];
  const notes: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const where = `nvidia-smi output line ${i + 1} (${JSON.stringify(line)})`;
    // nvidia-smi separates with ", "; names contain spaces but never commas.
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length !== NVIDIA_SMI_FIELDS.length) {
      throw new NvidiaSmiParseError(
        `${where}: expected ${NVIDIA_SMI_FIELDS.length} fields (${NVIDIA_SMI_FIELDS.join(', ')}), got ${fields.length}`,
      );
    }
    const [index, uuid, name, used, total, util, temp] = fields as [string, string, string, string, string, string, string];
    if (!/^\d+$/.test(index)) throw new NvidiaSmiParseError(`${where}: index ${JSON.stringify(index)} is not a number`);
    const label = `GPU ${index}${isUnavailable(uuid) ? '' : ` (${uuid})`}`;

    const mib = (field: string, column: string): bigint => {
      if (isUnavailable(field)) {
        notes.push(`${label}: ${column} is ${field}; reported as 0`);
        return 0n;
      }
      if (!UNSIGNED.test(field)) {
        throw new NvidiaSmiParseError(`${where}: ${column} ${JSON.stringify(field)} is not a number of MiB`);
      }
      return BigInt(Math.round(Number(field))) * MIB;
    };
    const optional = (field: string, column: string, shape: RegExp): number | undefined => {
      if (isUnavailable(field)) return undefined;
      if (!shape.test(field)) throw new NvidiaSmiParseError(`${where}: ${column} ${JSON.stringify(field)} is not a number`);
      return Number(field);
    };

    const reading: GpuReading = {
      index: Number(index),
      uuid: isUnavailable(uuid) ? '' : uuid,
      name,
      memoryUsedBytes: mib(used, 'memory.used'),
      memoryTotalBytes: mib(total, 'memory.total'),
    };
    const percent = optional(util, 'utilization.gpu', UNSIGNED);
    if (percent !== undefined) reading.utilization = percent / 100;
    const celsius = optional(temp, 'temperature.gpu', SIGNED);
    if (celsius !== undefined) reading.temperatureCelsius = celsius;
    gpus.push(reading);
  }
  return { gpus, notes };
}

export interface GpuCollectorOptions {
  command?: string;
  args?: readonly string[];
  /** A hung nvidia-smi is killed after this long; the agent never waits on it. */
  timeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export function createGpuCollector(options: GpuCollectorOptions = {}): Collector {
  const { command = 'nvidia-smi', args = NVIDIA_SMI_ARGS, timeoutMs = 5000, clock, logger } = options;
  let lastNotes = '';
  return {
    name: 'gpu',
    async collect(signal) {
      let stdout: string;
      try {
        ({ stdout } = await execBounded(command, args, { timeoutMs, clock, signal }));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { gpus: [] };
        throw err;
      }
      const { gpus, notes } = parseNvidiaSmiCsvWithNotes(stdout);
      // The same N/A repeats every heartbeat; say it when it changes.
      const key = notes.join('\n');
      if (key !== lastNotes) {
        lastNotes = key;
        if (notes.length > 0) logger?.warn({ notes }, 'nvidia-smi left values unreported');
      }
      return { gpus };
    },
  };
}

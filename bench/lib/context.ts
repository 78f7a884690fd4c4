import type { IdleWait } from './procfs.js';
import type { SetupResult } from './ipc.js';
import type { Spread } from './stats.js';

// Types shared by the scenarios, the report and main.

export interface BenchOptions {
  quick: boolean;
  repeat: number;
  only: string[] | null;
  outDir: string;
  profile: boolean;
  extras: boolean;
  windowMs: number;
  warmupMs: number;
  streams: number;
  conns: number;
  unaryInFlight: number;
  watchers: number;
  idleThreshold: number;
  idleMaxWaitMs: number;
  databaseUrl: string;
  fleetSize: number;
  agentWindowMs: number;
  detectionWorkers: number;
  /** Heartbeat payload of the stream and unary loads (see LoadSpec.payload). */
  payload: 'agent' | 'full';
}

export interface Ctx {
  opts: BenchOptions;
  log(line: string): void;
  /** Results of scenarios that already ran, by name (later scenarios may compare against them). */
  results: Map<string, ScenarioResult>;
}

/** One measurement window of a load scenario. */
export interface Run {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU (utime + stime of its process) per acknowledged operation, microseconds. */
  cpuUsPerOp: number;
  /** Server CPU over the window in cores (1.0 = one core busy all the time). */
  serverCores: number;
  serverRssBytes: number;
  loadgenCores: number;
  /** Machine busy cores minus server and load generator: PostgreSQL, other tenants, noise. */
  otherCores: number;
  idleBefore: IdleWait;
  ops: number;
  errors: number;
  lastError: string | null;
  mismatches: number;
  watchMessages: number;
  /** Date.now() at the window's start and end (for profile windows). */
  startedAt: number;
  endedAt: number;
}

export const RUN_NUMBERS = ['opsPerSec', 'p50Ms', 'p99Ms', 'cpuUsPerOp', 'serverCores', 'serverRssBytes', 'loadgenCores', 'otherCores'] as const;
export type RunNumber = (typeof RUN_NUMBERS)[number];

export interface LoadOutcome {
  setup: SetupResult;
  runs: Run[];
  summary: Record<RunNumber, Spread>;
  spec: { target: string; mode: string; concurrency: number; conns: number; windowMs: number; warmupMs: number; watchers?: number };
}

export interface Value {
  value: number;
  unit: string;
  min?: number;
  max?: number;
  note?: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  load?: LoadOutcome;
  values: Record<string, Value>;
  notes: string[];
  durationMs: number;
  /** Scenario-specific data for results.json. */
  data?: Record<string, unknown>;
}

export interface Scenario {
  name: string;
  title: string;
  /** Part of `--quick`. */
  quick: boolean;
  /** Only with --profile / --extras (or --only). */
  optIn?: boolean;
  run(ctx: Ctx): Promise<Omit<ScenarioResult, 'name' | 'title' | 'durationMs'>>;
}

export class Skip extends Error {}

// The durable registry: workers, tokens, policies, silences and the event
// log. Implemented once in SQL (sql-store.ts) over two executors: real
// PostgreSQL (pg) and embedded PGlite. Every method that returns has made
// its write durable (committed) before it resolves.

/** Numeric values of hive.v1.WorkerState / HealthStatus / TokenScope. */
export type StateCode = number;

export interface StoredWorker {
  workerId: string;
  labels: Record<string, string>;
  intervalMs: number;
  registeredAt: number; // ms since epoch
  state: StateCode;
  stateSince: number;
  lastSeen: number | null;
  lastSeq: bigint;
  sessionId: string;
  status: number;
  statusDetail: string;
  /** hive.v1.WorkerStats in protobuf binary, or null before the first heartbeat. */
  stats: Uint8Array | null;
  /** hive.v1.RestartPolicy in protobuf binary, or null for none. */
  policy: Uint8Array | null;
  dependsOn: string[];
  /** Every worker matching this label selector is a dependency too ('' for none). */
  dependsOnSelector?: string;
}

/** The write-behind part of a worker: what a heartbeat changes. */
export interface WorkerSnapshot {
  workerId: string;
  lastSeen: number;
  lastSeq: bigint;
  sessionId: string;
  status: number;
  statusDetail: string;
  stats: Uint8Array | null;
}

export interface TokenRow {
  tokenId: string;
  /** hex sha256 of the secret; the secret itself is never stored. */
  hash: string;
  scope: number;
  workerId: string | null;
  description: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface EventRow {
  eventId?: bigint;
  workerId: string;
  at: number;
  kind: string;
  fromState: StateCode;
  toState: StateCode;
  actor: string;
  reason: string;
}

export interface DefaultPolicyRow {
  name: string;
  labelSelector: string;
  priority: number;
  policy: Uint8Array;
}

export interface SilenceRow {
  silenceId: string;
  workerId: string;
  labelSelector: string;
  expiresAt: number;
  comment: string;
  createdBy: string;
  createdAt: number;
}

/** One health-check run (hive.v1.HealthCheck without its results). */
export interface HealthCheckRow {
  checkId: string;
  trigger: number;
  scheduleId: string;
  labelSelector: string;
  timeoutMs: number;
  state: number;
  startedAt: number;
  finishedAt: number | null;
  total: number;
  completed: number;
  failed: number;
  score: number;
  band: number;
  summary: string;
  startedBy: string;
}

/** One worker's result in a run. */
export interface HealthCheckResultRow {
  checkId: string;
  workerId: string;
  outcome: number;
  score: number;
  band: number;
  reason: string;
  /** hive.v1.CheckReport in protobuf binary, or null without an answer. */
  report: Uint8Array | null;
  answeredAt: number | null;
}

export interface HealthCheckQuery {
  /** Only runs of this trigger. */
  trigger?: number;
  /** Only runs in this state. */
  state?: number;
  /** Paging, newest first: only runs started before this (started_at, check_id). */
  before?: { startedAt: number; checkId: string };
  limit: number;
}

export interface ScheduleRow {
  scheduleId: string;
  cron: string;
  enabled: boolean;
  labelSelector: string;
  timeoutMs: number;
  description: string;
  createdAt: number;
  updatedAt: number;
}

export interface EventQuery {
  workerId?: string;
  /** Only events with event_id < beforeId (paging, newest first). */
  beforeId?: bigint;
  /** Only events at or after this time. */
  since?: number;
  limit: number;
}

export interface Store {
  /** Applies pending migrations (idempotent, safe to run concurrently from several hives). */
  migrate(): Promise<void>;
  /** Every worker, or only those with the given ids (a replica rereading what another changed). */
  loadWorkers(ids?: readonly string[]): Promise<StoredWorker[]>;
  /**
   * Every worker, a page at a time, all pages read in one snapshot: the
   * caller keeps what it needs of a page before the next is read, so a
   * cold start never holds the whole fleet twice (rows and live workers).
   */
  forEachWorkerPage(onPage: (page: StoredWorker[]) => void): Promise<void>;
  /** Tokens not revoked; with workerIds, only the worker tokens of those workers. */
  loadTokens(workerIds?: readonly string[]): Promise<TokenRow[]>;

  /**
   * In one transaction: upserts the worker (all columns), revokes the
   * worker's previous worker tokens when revokeOld, inserts the new token
   * (if given) and the event. Returns the event with its id.
   */
  registerWorker(worker: StoredWorker, token: TokenRow | null, revokeOld: boolean, event: EventRow): Promise<EventRow>;
  /** In one transaction: deletes the worker, revokes its tokens, inserts the event. */
  deleteWorker(workerId: string, at: number, event: EventRow): Promise<EventRow>;
  /**
   * In one transaction: sets state/stateSince and the snapshot columns of
   * the worker and inserts the events (a state transition is durable
   * before it is acknowledged).
   */
  transition(snapshot: WorkerSnapshot & { state: StateCode; stateSince: number }, events: EventRow[]): Promise<EventRow[]>;
  /** Write-behind: updates the snapshot columns of many workers in one statement. Unknown ids are ignored. */
  flushSnapshots(snapshots: WorkerSnapshot[]): Promise<void>;
  setPolicy(workerId: string, policy: Uint8Array | null, event: EventRow): Promise<EventRow>;

  appendEvents(events: EventRow[]): Promise<EventRow[]>;
  /** Newest first. */
  listEvents(query: EventQuery): Promise<EventRow[]>;
  /** Deletes events older than the cutoff; returns how many. */
  pruneEvents(olderThan: number): Promise<number>;

  createToken(token: TokenRow): Promise<void>;
  revokeToken(tokenId: string, at: number): Promise<TokenRow | null>;
  listTokens(includeRevoked: boolean): Promise<TokenRow[]>;

  putDefaultPolicy(row: DefaultPolicyRow): Promise<void>;
  deleteDefaultPolicy(name: string): Promise<boolean>;
  listDefaultPolicies(): Promise<DefaultPolicyRow[]>;

  putSilence(row: SilenceRow): Promise<void>;
  deleteSilence(silenceId: string): Promise<boolean>;
  listSilences(): Promise<SilenceRow[]>;

  /** In one transaction: upserts the run and the given results (a run is durable before it is acknowledged). */
  saveHealthCheck(run: HealthCheckRow, results: HealthCheckResultRow[]): Promise<void>;
  /** The run and its results ordered by worker_id, or null. */
  getHealthCheck(checkId: string): Promise<{ run: HealthCheckRow; results: HealthCheckResultRow[] } | null>;
  /** Newest first. */
  listHealthChecks(query: HealthCheckQuery): Promise<HealthCheckRow[]>;

  putSchedule(row: ScheduleRow): Promise<void>;
  getSchedule(scheduleId: string): Promise<ScheduleRow | null>;
  deleteSchedule(scheduleId: string): Promise<boolean>;
  /** Ordered by schedule_id. */
  listSchedules(): Promise<ScheduleRow[]>;

  /** Round trip to the database (health checks). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

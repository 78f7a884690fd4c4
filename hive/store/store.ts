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

  /** Round trip to the database (health checks). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

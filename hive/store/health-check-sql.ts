// Health-check runs and their per-worker results in SQL (PostgreSQL and
// PGlite alike). Same conventions as sql-store.ts: ms in JS, timestamptz
// in SQL, protobuf binary in bytea.

import type { Db } from './db.js';
import type { HealthCheckQuery, HealthCheckResultRow, HealthCheckRow } from './store.js';

interface RunRecord {
  check_id: string;
  trigger: number;
  schedule_id: string;
  label_selector: string;
  timeout_ms: number;
  state: number;
  started_at: Date;
  finished_at: Date | null;
  total: number;
  completed: number;
  failed: number;
  score: number;
  band: number;
  summary: string;
  started_by: string;
}

interface ResultRecord {
  check_id: string;
  worker_id: string;
  outcome: number;
  score: number;
  band: number;
  reason: string;
  report: Uint8Array | null;
  answered_at: Date | null;
}

const RUN_COLUMNS = `check_id, trigger, schedule_id, label_selector, timeout_ms, state, started_at, finished_at,
  total, completed, failed, score, band, summary, started_by`;
const RESULT_COLUMNS = 'check_id, worker_id, outcome, score, band, reason, report, answered_at';

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));
const bytes = (v: Uint8Array | null) => (v === null ? null : Buffer.isBuffer(v) ? new Uint8Array(v) : v);
const hexOrNull = (v: Uint8Array | null) => (v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex'));

function toRun(r: RunRecord): HealthCheckRow {
  return {
    checkId: r.check_id,
    trigger: r.trigger,
    scheduleId: r.schedule_id,
    labelSelector: r.label_selector,
    timeoutMs: r.timeout_ms,
    state: r.state,
    startedAt: r.started_at.getTime(),
    finishedAt: r.finished_at === null ? null : r.finished_at.getTime(),
    total: r.total,
    completed: r.completed,
    failed: r.failed,
    score: Number(r.score),
    band: r.band,
    summary: r.summary,
    startedBy: r.started_by,
  };
}

function toResult(r: ResultRecord): HealthCheckResultRow {
  return {
    checkId: r.check_id,
    workerId: r.worker_id,
    outcome: r.outcome,
    score: Number(r.score),
    band: r.band,
    reason: r.reason,
    report: bytes(r.report),
    answeredAt: r.answered_at === null ? null : r.answered_at.getTime(),
  };
}

export async function saveHealthCheck(db: Db, run: HealthCheckRow, results: HealthCheckResultRow[]): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO health_checks (${RUN_COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
       ON CONFLICT (check_id) DO UPDATE SET
         state = EXCLUDED.state, finished_at = EXCLUDED.finished_at, total = EXCLUDED.total,
         completed = EXCLUDED.completed, failed = EXCLUDED.failed, score = EXCLUDED.score,
         band = EXCLUDED.band, summary = EXCLUDED.summary`,
      [
        run.checkId, run.trigger, run.scheduleId, run.labelSelector, run.timeoutMs, run.state, iso(run.startedAt),
        isoOrNull(run.finishedAt), run.total, run.completed, run.failed, run.score, run.band, run.summary, run.startedBy,
      ],
    );
    if (results.length === 0) return;
    // One statement for every result; a run over a large fleet is one round trip.
    await tx.query(
      `INSERT INTO health_check_results (${RESULT_COLUMNS})
       SELECT check_id, worker_id, outcome, score, band, reason, decode(report_hex, 'hex'), answered_at
       FROM unnest($1::text[], $2::text[], $3::smallint[], $4::float8[], $5::smallint[], $6::text[], $7::text[], $8::timestamptz[])
         AS r(check_id, worker_id, outcome, score, band, reason, report_hex, answered_at)
       ON CONFLICT (check_id, worker_id) DO UPDATE SET
         outcome = EXCLUDED.outcome, score = EXCLUDED.score, band = EXCLUDED.band, reason = EXCLUDED.reason,
         report = EXCLUDED.report, answered_at = EXCLUDED.answered_at`,
      [
        results.map((r) => r.checkId),
        results.map((r) => r.workerId),
        results.map((r) => r.outcome),
        results.map((r) => r.score),
        results.map((r) => r.band),
        results.map((r) => r.reason),
        results.map((r) => hexOrNull(r.report)),
        results.map((r) => isoOrNull(r.answeredAt)),
      ],
    );
  });
}

export async function getHealthCheck(db: Db, checkId: string): Promise<{ run: HealthCheckRow; results: HealthCheckResultRow[] } | null> {
  const { rows } = await db.query<RunRecord>(`SELECT ${RUN_COLUMNS} FROM health_checks WHERE check_id = $1`, [checkId]);
  if (rows.length === 0) return null;
  const res = await db.query<ResultRecord>(`SELECT ${RESULT_COLUMNS} FROM health_check_results WHERE check_id = $1 ORDER BY worker_id`, [checkId]);
  return { run: toRun(rows[0]), results: res.rows.map(toResult) };
}

export async function listHealthChecks(db: Db, q: HealthCheckQuery): Promise<HealthCheckRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (q.trigger !== undefined) {
    params.push(q.trigger);
    where.push(`trigger = $${params.length}`);
  }
  if (q.state !== undefined) {
    params.push(q.state);
    where.push(`state = $${params.length}`);
  }
  if (q.before !== undefined) {
    params.push(iso(q.before.startedAt), q.before.checkId);
    where.push(`(started_at, check_id) < ($${params.length - 1}::timestamptz, $${params.length})`);
  }
  params.push(q.limit);
  const { rows } = await db.query<RunRecord>(
    `SELECT ${RUN_COLUMNS} FROM health_checks ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY started_at DESC, check_id DESC LIMIT $${params.length}`,
    params,
  );
  return rows.map(toRun);
}

// Health-check schedules in SQL (PostgreSQL and PGlite alike).

import type { Db } from './db.js';
import type { ScheduleRow } from './store.js';

interface ScheduleRecord {
  schedule_id: string;
  cron: string;
  enabled: boolean;
  label_selector: string;
  timeout_ms: number;
  description: string;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'schedule_id, cron, enabled, label_selector, timeout_ms, description, created_at, updated_at';

function toSchedule(r: ScheduleRecord): ScheduleRow {
  return {
    scheduleId: r.schedule_id,
    cron: r.cron,
    enabled: r.enabled,
    labelSelector: r.label_selector,
    timeoutMs: r.timeout_ms,
    description: r.description,
    createdAt: r.created_at.getTime(),
    updatedAt: r.updated_at.getTime(),
  };
}

export async function putSchedule(db: Db, s: ScheduleRow): Promise<void> {
  await db.query(
    `INSERT INTO health_check_schedules (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (schedule_id) DO UPDATE SET
       cron = EXCLUDED.cron, enabled = EXCLUDED.enabled, label_selector = EXCLUDED.label_selector,
       timeout_ms = EXCLUDED.timeout_ms, description = EXCLUDED.description, updated_at = EXCLUDED.updated_at`,
    [s.scheduleId, s.cron, s.enabled, s.labelSelector, s.timeoutMs, s.description, new Date(s.createdAt).toISOString(), new Date(s.updatedAt).toISOString()],
  );
}

export async function getSchedule(db: Db, scheduleId: string): Promise<ScheduleRow | null> {
  const { rows } = await db.query<ScheduleRecord>(`SELECT ${COLUMNS} FROM health_check_schedules WHERE schedule_id = $1`, [scheduleId]);
  return rows.length ? toSchedule(rows[0]) : null;
}

export async function deleteSchedule(db: Db, scheduleId: string): Promise<boolean> {
  const { rows } = await db.query('DELETE FROM health_check_schedules WHERE schedule_id = $1 RETURNING schedule_id', [scheduleId]);
  return rows.length > 0;
}

export async function listSchedules(db: Db): Promise<ScheduleRow[]> {
  const { rows } = await db.query<ScheduleRecord>(`SELECT ${COLUMNS} FROM health_check_schedules ORDER BY schedule_id`);
  return rows.map(toSchedule);
}

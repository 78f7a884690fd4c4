-- hive schema v2: dependencies by label selector, health-check runs with
-- their per-worker results, and health-check schedules.
ALTER TABLE workers ADD COLUMN depends_on_selector text NOT NULL DEFAULT '';

CREATE TABLE health_checks (
  check_id        text PRIMARY KEY,
  trigger         smallint NOT NULL,
  schedule_id     text NOT NULL DEFAULT '',
  label_selector  text NOT NULL DEFAULT '',
  timeout_ms      integer NOT NULL,
  state           smallint NOT NULL,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz,
  total           integer NOT NULL,
  completed       integer NOT NULL DEFAULT 0,
  failed          integer NOT NULL DEFAULT 0,
  score           double precision NOT NULL DEFAULT 0,
  band            smallint NOT NULL DEFAULT 0,
  summary         text NOT NULL DEFAULT '',
  started_by      text NOT NULL DEFAULT ''
);
CREATE INDEX health_checks_started_idx ON health_checks (started_at DESC, check_id DESC);
CREATE INDEX health_checks_trigger_idx ON health_checks (trigger, started_at DESC, check_id DESC);

CREATE TABLE health_check_results (
  check_id     text NOT NULL REFERENCES health_checks (check_id) ON DELETE CASCADE,
  worker_id    text NOT NULL,
  outcome      smallint NOT NULL,
  score        double precision NOT NULL DEFAULT 0,
  band         smallint NOT NULL DEFAULT 0,
  reason       text NOT NULL DEFAULT '',
  report       bytea,
  answered_at  timestamptz,
  PRIMARY KEY (check_id, worker_id)
);

CREATE TABLE health_check_schedules (
  schedule_id     text PRIMARY KEY,
  cron            text NOT NULL,
  enabled         boolean NOT NULL,
  label_selector  text NOT NULL DEFAULT '',
  timeout_ms      integer NOT NULL,
  description     text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);

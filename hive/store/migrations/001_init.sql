-- hive schema v1. Timestamps are timestamptz; the store converts to ms.
CREATE TABLE workers (
  worker_id      text PRIMARY KEY,
  labels         jsonb NOT NULL DEFAULT '{}',
  interval_ms    integer NOT NULL,
  registered_at  timestamptz NOT NULL,
  state          smallint NOT NULL,
  state_since    timestamptz NOT NULL,
  last_seen      timestamptz,
  last_seq       numeric(20, 0) NOT NULL DEFAULT 0,
  session_id     text NOT NULL DEFAULT '',
  status         smallint NOT NULL DEFAULT 0,
  status_detail  text NOT NULL DEFAULT '',
  stats          bytea,
  policy         bytea,
  depends_on     text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE tokens (
  token_id     text PRIMARY KEY,
  hash         text NOT NULL UNIQUE,
  scope        smallint NOT NULL,
  worker_id    text,
  description  text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL,
  revoked_at   timestamptz
);
CREATE INDEX tokens_worker_idx ON tokens (worker_id) WHERE revoked_at IS NULL;

CREATE TABLE events (
  event_id    bigserial PRIMARY KEY,
  worker_id   text NOT NULL,
  at          timestamptz NOT NULL,
  kind        text NOT NULL,
  from_state  smallint NOT NULL DEFAULT 0,
  to_state    smallint NOT NULL DEFAULT 0,
  actor       text NOT NULL,
  reason      text NOT NULL DEFAULT ''
);
CREATE INDEX events_worker_idx ON events (worker_id, event_id DESC);
CREATE INDEX events_at_idx ON events (at);

CREATE TABLE default_policies (
  name            text PRIMARY KEY,
  label_selector  text NOT NULL,
  priority        integer NOT NULL DEFAULT 0,
  policy          bytea NOT NULL
);

CREATE TABLE silences (
  silence_id      text PRIMARY KEY,
  worker_id       text NOT NULL DEFAULT '',
  label_selector  text NOT NULL DEFAULT '',
  expires_at      timestamptz NOT NULL,
  comment         text NOT NULL DEFAULT '',
  created_by      text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL
);

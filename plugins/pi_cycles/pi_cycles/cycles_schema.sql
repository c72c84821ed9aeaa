-- cycles_schema.sql -- Plane's cycle tables, as Plane's migrations create them (PostgreSQL), for pi_cycles' tests.
--
-- Source: makeplane/plane apps/api/plane/db/models/cycle.py (Cycle, CycleIssue; both ProjectBaseModel =
-- BaseModel + workspace + project) and apps/api/plane/db/mixins.py. Same conventions as the core's
-- pi_framework/plane/plane_schema.sql: Django sets NO server-side defaults (model defaults in comments),
-- FKs are DEFERRABLE INITIALLY DEFERRED and named <field>_id, rows are soft-deleted through deleted_at.
-- Index names are descriptive, not Django's hashed ones. Needs users, workspaces, projects and issues
-- (the core's reference schema) to exist first.
--   * cycles.start_date / end_date / archived_at are TIMESTAMPTZ (issues.archived_at is a DATE).
--   * A cycle without dates is a draft cycle in Plane's UI.
--   * Plane counts a cycle's work items through cycle_issues rows with deleted_at IS NULL whose issue is not
--     deleted, not archived and not a draft; "completed" ones are those whose state group is 'completed'.

-- ---------------------------------------------------------------- cycles (model Cycle, db_table "cycles")
CREATE TABLE cycles (
    id                uuid PRIMARY KEY,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    deleted_at        timestamptz,
    created_by_id     uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    updated_by_id     uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    workspace_id      uuid NOT NULL REFERENCES workspaces(id) DEFERRABLE INITIALLY DEFERRED,
    project_id        uuid NOT NULL REFERENCES projects(id) DEFERRABLE INITIALLY DEFERRED,
    name              varchar(255) NOT NULL,
    description       text NOT NULL,                    -- dj default '' (blank=True)
    start_date        timestamptz,
    end_date          timestamptz,
    owned_by_id       uuid NOT NULL REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    view_props        jsonb NOT NULL,                   -- dj default {}
    sort_order        double precision NOT NULL,        -- dj default 65535 (save(): smallest of the project - 10000)
    external_source   varchar(255),
    external_id       varchar(255),
    progress_snapshot jsonb NOT NULL,                   -- dj default {}
    archived_at       timestamptz,                      -- NB: timestamptz, unlike issues.archived_at
    logo_props        jsonb NOT NULL,                   -- dj default {}
    manual_status     varchar(20),                      -- started | completed (manual sprint control)
    started_at        timestamptz,
    completed_at      timestamptz,
    timezone          varchar(255) NOT NULL,            -- dj default 'UTC'
    version           integer NOT NULL                  -- dj default 1
);
CREATE INDEX cycles_workspace_id ON cycles (workspace_id);
CREATE INDEX cycles_project_id ON cycles (project_id);
CREATE INDEX cycles_owned_by_id ON cycles (owned_by_id);

-- ---------------------------------------------------------------- cycle_issues (model CycleIssue, db_table "cycle_issues")
CREATE TABLE cycle_issues (
    id            uuid PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    created_by_id uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    updated_by_id uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) DEFERRABLE INITIALLY DEFERRED,
    project_id    uuid NOT NULL REFERENCES projects(id) DEFERRABLE INITIALLY DEFERRED,
    issue_id      uuid NOT NULL REFERENCES issues(id) DEFERRABLE INITIALLY DEFERRED,
    cycle_id      uuid NOT NULL REFERENCES cycles(id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT cycle_issues_issue_id_cycle_id_deleted_at_uniq UNIQUE (issue_id, cycle_id, deleted_at)
);
CREATE UNIQUE INDEX cycle_issue_when_deleted_at_null ON cycle_issues (cycle_id, issue_id) WHERE deleted_at IS NULL;
CREATE INDEX cycle_issues_workspace_id ON cycle_issues (workspace_id);
CREATE INDEX cycle_issues_project_id ON cycle_issues (project_id);
CREATE INDEX cycle_issues_issue_id ON cycle_issues (issue_id);
CREATE INDEX cycle_issues_cycle_id ON cycle_issues (cycle_id);

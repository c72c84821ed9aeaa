-- comments_schema.sql -- Plane's work-item comments table, as Plane's migrations create it (PostgreSQL), for
-- pi_comments' tests.
--
-- Source: makeplane/plane apps/api/plane/db/models/issue.py (IssueComment: ChangeTrackerMixin + ProjectBaseModel =
-- BaseModel + workspace + project), as in the shared reference schema (plane_schema.sql, "issue_comments"). Same
-- conventions as the core's pi_framework/plane/plane_schema.sql: Django sets NO server-side defaults (model defaults
-- in comments), FKs are DEFERRABLE INITIALLY DEFERRED and named <field>_id, rows are soft-deleted through deleted_at.
-- Needs users, workspaces, projects and issues (the core's reference schema) to exist first.
--   * A comment belongs to one work item; Plane shows it to whoever can see the work item, so a comment on a
--     deleted, archived, draft or triage work item (or one in an archived or deleted project) is not visible.
--   * comment_stripped is computed in save() from comment_html ('' for an empty comment).
--   * access is INTERNAL (project members) or EXTERNAL (also shown on published/intake views).
--   * parent_id threads replies. save() also writes a row in `descriptions` (omitted here).
--   * Like issues, no index on updated_at.

-- ---------------------------------------------------------------- issue_comments (model IssueComment, db_table "issue_comments")
CREATE TABLE issue_comments (
    id                   uuid PRIMARY KEY,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    deleted_at           timestamptz,
    created_by_id        uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    updated_by_id        uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) DEFERRABLE INITIALLY DEFERRED,
    project_id           uuid NOT NULL REFERENCES projects(id) DEFERRABLE INITIALLY DEFERRED,
    issue_id             uuid NOT NULL REFERENCES issues(id) DEFERRABLE INITIALLY DEFERRED,
    actor_id             uuid REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,  -- NULL: written by the system
    parent_id            uuid REFERENCES issue_comments(id) DEFERRABLE INITIALLY DEFERRED,
    description_id       uuid,                         -- OneToOne descriptions (omitted)
    comment_stripped     text NOT NULL,                -- dj blank=True; '' for an empty comment
    comment_json         jsonb NOT NULL,               -- dj default {}
    comment_html         text NOT NULL,                -- dj default '<p></p>'
    attachments          varchar(200)[] NOT NULL,      -- ArrayField(URLField, size=10), dj default []
    access               varchar(100) NOT NULL,        -- INTERNAL | EXTERNAL; dj default 'INTERNAL'
    external_source      varchar(255),
    external_id          varchar(255),
    edited_at            timestamptz
);
CREATE INDEX issue_comments_issue_id     ON issue_comments (issue_id);
CREATE INDEX issue_comments_project_id   ON issue_comments (project_id);
CREATE INDEX issue_comments_workspace_id ON issue_comments (workspace_id);

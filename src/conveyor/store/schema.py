"""The store's tables (SQLAlchemy Core). Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

#: The Alembic revision this code expects; a test checks it is the migrations' head.
SCHEMA_REVISION = "0012"

metadata = MetaData()

#: The states of a run that is not over: at most one such run per key.
OPEN = text("state IN ('pending', 'running')")

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("target", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("key", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("workdir", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error", Text),
    Column("owner", String(200)),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("lease_expires", Float),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("partitions", Integer, nullable=False, server_default="0"),  # >0: submitted to schedulers
    Column("cancel_requested", Float),  # when `conveyor cancel` asked a submitted run to stop
    Column("executor", String(64)),  # where its tasks run unless they say (None: the scheduler's)
    Column("team", String(100)),  # the team of the project it was created through (``auth``)
    Column("created_by", String(100)),  # the user who created it (None: no user, or a schedule)
    Column("image", Text),  # the container image its attempts ran in (``conveyor image build``)
    Index("ix_runs_key", "key"),
    Index("ix_runs_created", "created_at"),
    Index("ix_runs_pipeline", "pipeline", "created_at"),
    Index("ix_runs_team", "team", "created_at"),
    # One unfinished run per key: two `conveyor run` of the same command never both create one.
    Index("ux_runs_open_key", "key", unique=True, sqlite_where=OPEN, postgresql_where=OPEN),
)

task_instances = Table(
    "task_instances",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("task", String(200), nullable=False),
    Column("label", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("upstream", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("lost", Integer, nullable=False, server_default="0"),
    Column("not_before", Float, nullable=False, server_default="0"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("targets", Text, nullable=False, server_default="[]"),
    Column("result", Text),
    Column("error", Text),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("partition", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("run_id", "id"),
    Index("ix_instances_partition", "run_id", "partition"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("error", Text),
    Column("log_path", Text),
    Column("worker", String(64)),
    Column("heartbeat", Float),  # written by the runner while the attempt runs
    Column("waited_for", String(32)),  # took the outcome of this run's attempt (see ``claims``)
    Column("outputs", Text),  # JSON: what its targets hold (rows, size, checksum), once it succeeded
    Column("placement", Text),  # where its engine has it, in the engine's terms (``port.Placed``)
    PrimaryKeyConstraint("run_id", "instance_id", "number"),
)

#: Which attempt executes each task instance id now, across every run: a runner claims the id
#: before it executes, renews the claim as it beats, and ends it with its end (kept with the
#: result on success). A runner that finds the id claimed waits for that attempt and takes its
#: outcome, as it takes a success recorded after its own run was created (``store.claims``).
claims = Table(
    "claims",
    metadata,
    Column("instance_id", String(32), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("owner", String(200), nullable=False),  # host:pid of the runner
    Column("claimed_at", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("state", String(16), nullable=False, server_default="running"),  # running | succeeded
    Column("result", Text),  # a succeeded attempt's result: runs that overlapped it take it
    Column("ended_at", Float),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("old", String(16), nullable=False),
    Column("new", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("cause", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Index("ix_transitions_instance", "run_id", "instance_id"),
    Index("ix_transitions_run", "run_id", "id"),  # a run's changes after a cursor (the web UI)
)

#: A submitted run's graph in parts, each leased by one scheduler at a time (``conveyor submit``).
partitions = Table(
    "partitions",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("needs", Text, nullable=False, server_default="[]"),  # partitions it depends on
    Column("state", String(16), nullable=False),  # open | done | failed | blocked | cancelled
    Column("owner", String(200)),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("lease_expires", Float),
    Column("takeovers", Integer, nullable=False, server_default="0"),
    Column("taken_from", String(200)),
    Column("taken_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error", Text),
    PrimaryKeyConstraint("run_id", "number"),
    Index("ix_partitions_state", "state"),
)

#: Scheduler daemons, as they register and beat (``conveyor schedulers``).
schedulers = Table(
    "schedulers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("state", String(16), nullable=False),  # running | stopped
    Column("workers", Integer, nullable=False, server_default="0"),
)

#: Each scheduled pipeline's cursor: the last tick fired (``schedules``), advanced exactly once.
schedules = Table(
    "schedules",
    metadata,
    Column("pipeline", String(400), primary_key=True),  # its target: file.py:name or module:name
    Column("last_tick", Float, nullable=False),
    Column("paused_at", Float),  # paused (``conveyor schedules pause``): no tick fires
)

#: Backfills: one run per logical date of a range, at most ``max_parallel`` going at once. The
#: schedulers step them; ``version`` makes each step happen once however many step at a time.
backfills = Table(
    "backfills",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("target", Text, nullable=False),
    Column("params", Text, nullable=False),  # JSON: the parameters besides logical_date
    Column("every", String(8), nullable=False),
    Column("max_parallel", Integer, nullable=False),
    Column("workdir", Text, nullable=False, server_default=""),
    Column("state", String(16), nullable=False),  # running | succeeded | failed | cancelled
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("slots", Text, nullable=False),  # JSON: each date with its run key, run and state
    Index("ix_backfills_created", "created_at"),
)

#: The keys that sign the execution API's attempt tokens (``conveyor.execution.tokens``): kept in
#: the store so that every server verifies what any other minted. The newest signs; all verify.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),  # hex, 32 random bytes
    Column("created_at", Float, nullable=False),
    Index("ix_signing_keys_created", "created_at"),
)

# -- team quotas (``conveyor.quotas``) -------------------------------------------------------
#: What each admitted attempt holds of its team's quota until it ends. Taking one and moving the
#: team's counters (``quota_use``) happen in one transaction, conditional on the limit, so no
#: number of schedulers can admit past a quota; releasing deletes the row first, so a holding
#: returns exactly once, whoever releases it (the scheduler that took it, or any other's sweep
#: once the attempt's end is recorded).
quota_holdings = Table(
    "quota_holdings",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("team", String(100), nullable=False),
    Column("user", String(100), nullable=False, server_default=""),
    Column("amounts", Text, nullable=False),  # JSON: resource -> amount
    Column("borrowed", Text, nullable=False, server_default="{}"),  # JSON: the part over its own limits
    Column("ledgers", Text, nullable=False, server_default="[]"),  # JSON: where it is counted
    Column("scheduler", String(200), nullable=False),
    Column("taken_at", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "instance_id", "attempt"),
    Index("ix_quota_holdings_team", "team"),
)

#: In use now, per team and resource (team "*": the whole cluster's capacity).
quota_use = Table(
    "quota_use",
    metadata,
    Column("team", String(100), nullable=False),
    Column("resource", String(100), nullable=False),
    Column("in_use", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("team", "resource"),
)

#: What each scheduler has waiting for quota, per team and user, refreshed as it turns: the
#: picture every scheduler's fair-share order is computed from.
quota_demands = Table(
    "quota_demands",
    metadata,
    Column("scheduler", String(200), nullable=False),
    Column("team", String(100), nullable=False),
    Column("user", String(100), nullable=False, server_default=""),
    Column("waiting", Integer, nullable=False),
    Column("amounts", Text, nullable=False),  # JSON: one waiting attempt's typical amounts
    Column("oldest", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("scheduler", "team", "user"),
)

#: Why a ready task instance waits (a team's quota, fair share, borrowing), written when the
#: reason changes and removed when it is admitted: ``conveyor show``, the API and the UI read it.
quota_waits = Table(
    "quota_waits",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("since", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "instance_id"),
)

#: Decayed usage per team (user "") and per user of a team, in dominant-share seconds.
team_usage = Table(
    "team_usage",
    metadata,
    Column("team", String(100), nullable=False),
    Column("user", String(100), nullable=False, server_default=""),
    Column("usage", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("team", "user"),
)

# -- people: users, their tokens, teams and roles, and what they did (``conveyor.auth``) -----------
#: Who may sign in. Users are disabled, never deleted: the audit names them.
users = Table(
    "users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("admin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", Float, nullable=False),
    Column("disabled_at", Float),
)

#: API and session tokens: only the sha256 of the secret is kept (a token is 256 random bits).
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("user", String(100), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("label", String(200), nullable=False, server_default=""),
    Column("kind", String(16), nullable=False, server_default="api"),  # api | session
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    UniqueConstraint("hash", name="ux_tokens_hash"),
    Index("ix_tokens_user", "user"),
)

#: Teams own runs and quota. ``quota`` is JSON: {"limits": {...}, "runs": N, "borrow": {...},
#: "users": {"alice": 2.0}} (``conveyor teams quota``).
teams = Table(
    "teams",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("weight", Float, nullable=False, server_default="1"),
    Column("quota", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
)

#: Who is in which team, as what: lead | member | viewer.
memberships = Table(
    "memberships",
    metadata,
    Column("team", String(100), nullable=False),
    Column("user", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    PrimaryKeyConstraint("team", "user"),
    Index("ix_memberships_user", "user"),
)

#: What was done, by whom: every change of people, teams and quota, and every action on runs.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("team", String(100)),
    Column("target", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Index("ix_audit_team", "team", "id"),
)

#: What a run ran with, to reproduce it (``conveyor reproduce``): the code's commit and any
#: uncommitted diff, the Python, the platform and a hash of the installed environment.
run_provenance = Table(
    "run_provenance",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("git_commit", String(64)),  # None: not run from a git working copy
    Column("diff_hash", String(64)),  # the uncommitted diff's SHA-256, None when clean
    Column("diff", Text),  # its text
    Column("python", String(64), nullable=False),
    Column("platform", String(200), nullable=False),
    Column("env_hash", String(64), nullable=False),
    Column("env_kind", String(32), nullable=False),  # "lock:<file>" or "distributions"
    Column("source_date_epoch", Float),  # the commit's time: figures' timestamps
    Column("created_at", Float, nullable=False),
)

#: Per task instance of a run: its inputs' fingerprints (upstream targets and declared external
#: inputs), its cache key, and the run whose outputs it reused instead of executing.
instance_provenance = Table(
    "instance_provenance",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("inputs", Text, nullable=False, server_default="[]"),  # JSON list of fingerprints
    Column("cache_key", String(64)),
    Column("reused_from", String(32)),
    PrimaryKeyConstraint("run_id", "instance_id"),
)

#: The result cache (``conveyor.cache``): a task instance's key (its code, parameters, inputs'
#: fingerprints and environment) -> the outputs and result of the attempt that made them.
cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("result", Text),
    Column("outputs", Text),
    Column("created_at", Float, nullable=False),
)

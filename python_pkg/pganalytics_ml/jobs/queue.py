"""The job worker and the job kinds.

``run_jobs`` is the body of the procedure pganalytics_ml.run_jobs: it rescues jobs whose worker
died, then claims ready jobs one at a time. The claim (status, attempt, advisory lock) is committed
before the work starts; progress is committed as the work goes, so other sessions see it; the
outcome is committed at the end. An error rolls back the attempt's work and is recorded with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pganalytics_ml import jsontext
from pganalytics_ml.errors import (
    INVALID_TRANSACTION_TERMINATION,
    PgmlError,
    invalid,
    not_found,
    null_argument,
    shown,
    sql_entry,
)

KINDS = ("train", "snapshot", "validate", "cleanup", "sleep", "patterns", "plans", "forecast")
CLEANUP_DEFAULTS = {
    "job_ttl": "7 days",
    "keep_models": 5,
    "prediction_retention": "30 days",
    "history_retention": "90 days",
}
CLEANUP_RETENTIONS = ("job_ttl", "prediction_retention", "history_retention")
MAX_KEEP_MODELS = 1_000_000
MAX_RETENTION = "100 years"  # pgml_schedule accepts the same ranges: its clean-up jobs must queue
SLEEP_ARGUMENTS = ("seconds", "step", "checkpoints", "fail")
ARGUMENTS_HINT = 'Job arguments are a flat JSON object of names and values, e.g. {"seconds": 5} for a sleep job.'


class JobStopped(Exception):
    """Raised at a checkpoint when the job must stop: cancelled, or past its soft time limit. Not retried."""


# The claim, with the soft deadline (epoch) its checkpoints compare with; and a checkpoint's progress update.
CLAIM_SQL = (
    "SELECT j.*, extract(epoch FROM j.started_at + j.soft_limit) AS soft_deadline FROM pganalytics_ml._claim_job($1) j"
)
PROGRESS_SQL = (
    "UPDATE pganalytics_ml.jobs SET progress = jsonb_build_object('phase', $2::text, 'percent', $3::float8,"
    " 'at', now()), updated_at = now() WHERE job_id = $1 RETURNING cancel_requested, extract(epoch FROM now())"
    " AS now"
)


class Checkpoint:
    """The progress callback of one running job: records progress, then stops the job if it must.

    ``job`` is the row CLAIM_SQL returned; ``update`` the prepared PROGRESS_SQL, shared by a drain's jobs.
    """

    def __init__(self, plpy: Any, job: dict[str, Any], update: Any):
        self.plpy = plpy
        self.job_id = job["job_id"]
        self.soft_deadline = job["soft_deadline"]
        self.soft_limit = job["soft_limit"]
        self._update = update

    def __call__(self, phase: str, percent: float) -> None:
        state = self.plpy.execute(self._update, [self.job_id, phase, round(float(percent), 1)])[0]
        self.plpy.commit()  # other sessions see the progress now
        if state["cancel_requested"]:
            raise JobStopped(f"cancelled during {phase}")
        if state["now"] > self.soft_deadline:
            raise JobStopped(f"soft time limit of {self.soft_limit} exceeded during {phase}")


# What the PL/Python functions pin with SET clauses (plpython/*.sql): search_path, and every setting that
# changes how values reach Python as text. The committing procedures pin them for the session instead.
PINNED_SETTINGS = {
    "search_path": "pg_catalog, pg_temp",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "lc_numeric": "C",
}


class WorkerSession:
    """What a committing procedure (run_jobs, run_snapshots) needs before it starts: no enclosing transaction
    block, a superuser, and PINNED_SETTINGS for the session, since a procedure that commits cannot use a
    SET clause. The caller's settings come back when it ends."""

    def __init__(self, plpy: Any):
        self.plpy = plpy

    def __enter__(self) -> None:
        try:
            self.plpy.commit()  # fails at once inside a transaction block, before anything is done
        except self.plpy.SPIError as exc:
            if getattr(exc, "sqlstate", None) != INVALID_TRANSACTION_TERMINATION:
                raise
            raise PgmlError(
                "this procedure commits as it goes, so it cannot run inside a transaction block",
                sqlstate=INVALID_TRANSACTION_TERMINATION,
                hint="CALL it on its own, not between BEGIN and COMMIT nor from a function (pg_cron calls it so).",
            ) from None
        superuser = self.plpy.execute(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER"
        )
        if not superuser[0]["rolsuper"]:
            raise PgmlError(
                "the job worker must run as a superuser",
                sqlstate="42501",
                hint="pg_cron runs it as the extension owner (pgml_schedule() is SECURITY DEFINER); by hand, CALL it "
                "as a superuser.",
            )
        names = list(PINNED_SETTINGS)
        current = self.plpy.prepare(
            "SELECT n, pg_catalog.current_setting(n) AS v FROM pg_catalog.unnest($1::text[]) n", ["text[]"]
        )
        self.saved = {r["n"]: r["v"] for r in self.plpy.execute(current, [names])}
        self._set(PINNED_SETTINGS)

    def _set(self, settings: dict[str, str]) -> None:
        plan = self.plpy.prepare(
            "SELECT pg_catalog.set_config(n, v, false)"
            " FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) s(n, v)",
            ["text[]", "text[]"],
        )
        self.plpy.execute(plan, [list(settings), list(settings.values())])

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self._set(self.saved)
            return
        # A setting made in the failing transaction would be undone with it, back to the pinned value an
        # earlier commit kept: end that transaction here and restore the caller's settings in one of its own.
        self.plpy.rollback()
        self._set(self.saved)
        self.plpy.commit()


@sql_entry
def run_jobs(plpy: Any, max_jobs: int | None, max_seconds: float | None, kinds: list[str] | None) -> None:
    with WorkerSession(plpy):
        _drain(plpy, max_jobs, max_seconds, kinds)


def _drain(plpy: Any, max_jobs: int, max_seconds: float, kinds: list[str] | None) -> None:
    """The drain; pganalytics_ml.run_jobs (PL/pgSQL) checked its caller and arguments before calling it."""
    rescued = plpy.execute("SELECT * FROM pganalytics_ml.rescue_jobs()")[0]
    plpy.commit()
    outcomes = {"completed": 0, "retry": 0, "failed": 0}
    started = time.monotonic()
    claim = plpy.prepare(CLAIM_SQL, ["text[]"])
    progress = plpy.prepare(PROGRESS_SQL, ["text", "text", "float8"])
    finish = plpy.prepare(
        "SELECT job_id, status FROM pganalytics_ml._finish_job($1, $2::jsonb, $3, $4)",
        ["text", "text", "text", "boolean"],
    )
    deadline = time.monotonic() + max_seconds
    for _ in range(max_jobs):
        if time.monotonic() > deadline:
            break
        claimed = plpy.execute(claim, [kinds])
        if not len(claimed):
            plpy.commit()
            break
        job = dict(claimed[0])
        plpy.commit()  # the claim is durable before the work starts
        result, error, retry = None, None, False
        try:
            result = run_one(plpy, job, Checkpoint(plpy, job, progress))
        except JobStopped as exc:
            error = str(exc)
        except PgmlError as exc:  # bad arguments or data: another attempt would fail the same way
            error = exc.message
        except plpy.SPIError as exc:
            error, retry = _spi_message(exc), True
        except Exception as exc:  # any failure of the job's code is recorded with the job
            error, retry = f"{type(exc).__name__}: {exc}", True
        if error is not None:
            plpy.rollback()
        done = plpy.execute(finish, [job["job_id"], None if result is None else json.dumps(result), error, retry])
        plpy.commit()
        outcomes[_outcome(done[0]["status"] if len(done) else None)] += 1
    plpy.notice(_summary(plpy, outcomes, rescued, time.monotonic() - started))


def _outcome(status: str | None) -> str:
    return {"completed": "completed", "pending": "retry"}.get(status or "", "failed")


def _summary(plpy: Any, outcomes: dict[str, int], rescued: dict[str, Any], seconds: float) -> str:
    """What a drain did, as its closing NOTICE says it."""
    pending = plpy.execute("SELECT count(*) AS n FROM pganalytics_ml.jobs WHERE status = 'pending'")[0]["n"]
    ran = sum(outcomes.values())
    text = (
        f"run_jobs: {ran} job{'' if ran == 1 else 's'} run in {seconds:.1f} s ({outcomes['completed']} completed, "
        f"{outcomes['retry']} to retry, {outcomes['failed']} failed); {pending} pending"
    )
    lost = rescued["requeued"] + rescued["dead_lettered"] + rescued["terminated"]
    if lost:
        text += (
            f"; watchdog: {rescued['requeued']} requeued, {rescued['dead_lettered']} dead-lettered, "
            f"{rescued['terminated']} terminated"
        )
    return text


def _spi_message(exc: Exception) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{exc} (SQLSTATE {sqlstate})" if sqlstate else str(exc)


def run_one(plpy: Any, job: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    arguments = job["arguments"]
    if isinstance(arguments, str):
        arguments = jsontext.loads(arguments, "job arguments", ARGUMENTS_HINT)
    return RUNNERS[job["kind"]](plpy, arguments, checkpoint)


def _train(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    from pganalytics_ml.forecasting import training

    return training.train(plpy, arguments, progress=checkpoint)


def _snapshot(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    from pganalytics_ml.capture import counters

    checkpoint("capturing", 10)
    row = counters.snapshot(plpy)[0]
    return {k: row[k] for k in ("captured_at", "statements", "new_statements", "active_statements")}


def _validate(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    from pganalytics_ml.forecasting import forecasts

    checkpoint("validating", 10)
    return forecasts.validate_observed(plpy)


def _cleanup(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    from pganalytics_ml.forecasting import models

    settings = CLEANUP_DEFAULTS | arguments
    checkpoint("removing old jobs, predictions and history", 10)
    plan = plpy.prepare(
        "SELECT * FROM pganalytics_ml._cleanup($1::interval, $2::interval, $3::interval)", ["text", "text", "text"]
    )
    removed = dict(
        plpy.execute(plan, [settings["job_ttl"], settings["prediction_retention"], settings["history_retention"]])[0]
    )
    checkpoint("removing old models", 60)
    removed["models"] = models.cleanup_models(plpy, int(settings["keep_models"]))
    return removed


def _patterns(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    from pganalytics_ml.patterns import detection

    checkpoint("reading history", 5)
    return detection.refresh(plpy, arguments, checkpoint)


def _plans(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    """Plan capture (capture/plans.py): each attempt committed before it starts, so one that stalls is skipped."""
    from pganalytics_ml.capture import plans

    return plans.capture(plpy, only_new=bool(arguments.get("only_new", False)), commit=plpy.commit, progress=checkpoint)


def _forecast(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    """The forecasts of one server's statements that ran since their last refresh (queued by its pushes)."""
    from pganalytics_ml.forecasting import forecasts

    checkpoint("refreshing forecasts", 10)
    return forecasts.refresh_queued(plpy, arguments["server_id"])


def _sleep(plpy: Any, arguments: dict[str, Any], checkpoint: Callable[[str, float], None]) -> dict[str, Any]:
    """A diagnostic job: sleeps in SQL, checking in every step unless told not to (to test hard limits)."""
    seconds = float(arguments.get("seconds", 1))
    if arguments.get("fail"):
        raise RuntimeError(str(arguments["fail"]))
    if not arguments.get("checkpoints", True):
        plpy.execute(plpy.prepare("SELECT pg_sleep($1)", ["float8"]), [seconds])
        return {"slept": seconds}
    step = float(arguments.get("step", 0.2))
    slept = 0.0
    sleep = plpy.prepare("SELECT pg_sleep($1)", ["float8"]) if seconds > 0 else None
    while slept < seconds:
        checkpoint("sleeping", 100 * slept / seconds if seconds else 100)
        plpy.execute(sleep, [min(step, seconds - slept)])
        slept += step
    return {"slept": seconds}


RUNNERS: dict[str, Callable[[Any, dict[str, Any], Callable[[str, float], None]], dict[str, Any]]] = {
    "train": _train,
    "snapshot": _snapshot,
    "validate": _validate,
    "cleanup": _cleanup,
    "sleep": _sleep,
    "patterns": _patterns,
    "plans": _plans,
    "forecast": _forecast,
}


def check_job_arguments(kind: str | None, arguments: dict[str, Any]) -> dict[str, Any]:
    """Validates a job's arguments when it is queued, so a bad job fails at once and nothing is queued.

    Clean-up intervals are checked by ``enqueue`` in SQL, which parses them the way the job will.
    """
    if kind is None:
        raise null_argument("kind", hint=f"Job kinds: {', '.join(KINDS)}.")
    if kind not in KINDS:
        raise invalid(f"unknown job kind {str(kind)[:40]!r}", hint=f"Job kinds: {', '.join(KINDS)}.")
    if not isinstance(arguments, dict):
        raise invalid("job arguments must be a JSON object", hint='For example {"seconds": 5} for a sleep job.')
    if kind == "train":
        from pganalytics_ml.forecasting import training

        options = {k: v for k, v in arguments.items() if k not in ("lookback_days", "model_type")}
        return training.check_train_arguments(
            arguments.get("lookback_days", 90), arguments.get("model_type", "random_forest"), **options
        )
    if kind == "cleanup":
        unknown = set(arguments) - set(CLEANUP_DEFAULTS)
        if unknown:
            raise invalid(
                f"unknown clean-up arguments: {', '.join(sorted(unknown))}",
                hint=f"Clean-up arguments: {', '.join(CLEANUP_DEFAULTS)}.",
            )
        keep = arguments.get("keep_models", CLEANUP_DEFAULTS["keep_models"])
        if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_KEEP_MODELS:
            raise invalid(
                f"keep_models must be an integer from 0 to {MAX_KEEP_MODELS}, got {shown(keep)}",
                hint="The active model is always kept.",
            )
        for name in CLEANUP_RETENTIONS:
            if name in arguments and not isinstance(arguments[name], str):
                raise invalid(
                    f"{name} must be an interval written as text, got {shown(arguments[name])}",
                    hint=f'For example "{CLEANUP_DEFAULTS[name]}".',
                )
    if kind == "patterns":
        from pganalytics_ml.patterns import detection

        return detection.check_job_arguments(arguments)
    if kind in ("snapshot", "validate") and arguments:
        raise invalid(f"a {kind} job takes no arguments", hint="Pass '{}' or leave arguments out.")
    if kind == "plans" and (set(arguments) - {"only_new"} or not isinstance(arguments.get("only_new", False), bool)):
        raise invalid("a plans job takes only only_new (true or false)", hint='For example {"only_new": true}.')
    if kind == "forecast":
        from pganalytics_ml.servers import SERVER_ID_PATTERN

        server_id = arguments.get("server_id")
        if (
            set(arguments) != {"server_id"}
            or not isinstance(server_id, str)
            or not SERVER_ID_PATTERN.fullmatch(server_id)
        ):
            raise invalid(
                "a forecast job takes one argument, server_id: a server's name",
                hint='For example {"server_id": "db-prod-1"}; pushes queue these jobs themselves.',
            )
    if kind == "sleep":
        unknown = set(arguments) - set(SLEEP_ARGUMENTS)
        if unknown:
            raise invalid(
                f"unknown sleep arguments: {', '.join(sorted(unknown))}",
                hint=f"Sleep arguments: {', '.join(SLEEP_ARGUMENTS)}.",
            )
        seconds = arguments.get("seconds", 1)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86400:
            raise invalid(
                f"seconds must be a number from 0 to 86400, got {shown(seconds)}",
                hint='A sleep job waits that many seconds, e.g. {"seconds": 5}.',
            )
        step = arguments.get("step", 0.2)
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0.01 <= step <= 3600:
            raise invalid(
                f"step must be a number of seconds from 0.01 to 3600, got {shown(step)}",
                hint="A sleep job checks in every step seconds (default 0.2).",
            )
        if not isinstance(arguments.get("checkpoints", True), bool):
            raise invalid("checkpoints must be true or false", hint="false makes the job ignore its time limits.")
    return arguments


def _check_retentions(plpy: Any, arguments: dict[str, Any]) -> None:
    """The clean-up intervals parse, and lie between nothing and MAX_RETENTION."""
    plan = plpy.prepare(
        f"SELECT $1::interval > interval '0' AND $1::interval <= interval '{MAX_RETENTION}' AS ok", ["text"]
    )
    for name in CLEANUP_RETENTIONS:
        value = arguments.get(name, CLEANUP_DEFAULTS[name])
        try:
            ok = plpy.execute(plan, [value])[0]["ok"]
        except plpy.SPIError:  # not an interval
            ok = False
        if not ok:
            raise invalid(
                f"{name} must be a positive interval of at most {MAX_RETENTION}, got {shown(value)}",
                hint=f"For example '{CLEANUP_DEFAULTS[name]}'.",
            )


def _enqueue(
    plpy: Any,
    kind: str,
    arguments: dict[str, Any],
    max_attempts: int | None = None,
    soft_limit: str | None = None,
    hard_limit: str | None = None,
    run_at: str | None = None,
) -> dict:
    plan = plpy.prepare(
        "SELECT (pganalytics_ml._job_status(j)).* FROM pganalytics_ml._enqueue($1, $2::jsonb, $3, $4::interval,"
        " $5::interval, $6::timestamptz) j",
        ["text", "text", "integer", "text", "text", "text"],
    )
    return dict(plpy.execute(plan, [kind, json.dumps(arguments), max_attempts, soft_limit, hard_limit, run_at])[0])


@sql_entry
def train_async(plpy: Any, lookback_days: Any, model_type: Any, server_id: Any) -> list[dict[str, Any]]:
    """pgml_train_async: validates like pgml_train (errors at once, nothing queued), then queues."""
    from pganalytics_ml.forecasting import training

    arguments = training.check_train_arguments(lookback_days, model_type, server_id=server_id)
    _require_history(plpy, arguments["server_id"])
    job = _enqueue(plpy, "train", arguments)
    return [{"job_id": job["job_id"], "status": job["status"], "created_at": job["created_at"]}]


@sql_entry
def enqueue(
    plpy: Any,
    kind: str | None,
    arguments: str | None,
    max_attempts: int | None,
    soft_limit: str | None,
    hard_limit: str | None,
    run_at: str | None,
) -> list[dict[str, Any]]:
    """pgml_job_enqueue: queues a job of any kind."""
    parsed = check_job_arguments(
        kind, jsontext.loads(arguments, "job arguments", ARGUMENTS_HINT) if arguments is not None else {}
    )
    if kind == "cleanup":
        _check_retentions(plpy, parsed)
    if kind == "train":
        _require_history(plpy, parsed["server_id"])
    return [_enqueue(plpy, kind, parsed, max_attempts, soft_limit, hard_limit, run_at)]


def _require_history(plpy: Any, server_id: str) -> None:
    """A training job for a server never captured would only fail later: refuse it now, as pgml_train does."""
    plan = plpy.prepare("SELECT EXISTS (SELECT FROM pganalytics_ml.snapshots WHERE server_id = $1) AS known", ["text"])
    if not plpy.execute(plan, [server_id])[0]["known"]:
        name = server_id if len(server_id) <= 40 else server_id[:40] + "..."
        raise not_found(
            f'no history captured for server "{name}"',
            hint="Run pgml_snapshot() regularly (or schedule it with pgml_schedule()) before training.",
        )


@sql_entry
def run_snapshots(plpy: Any, every_seconds: int, within_seconds: int) -> int:
    """Snapshots every ``every_seconds`` for ``within_seconds`` (sub-minute capture under pg_cron's minute)."""
    with WorkerSession(plpy):
        return _snapshots(plpy, every_seconds, within_seconds)


def _snapshots(plpy: Any, every_seconds: int, within_seconds: int) -> int:
    """The snapshot loop; pganalytics_ml.run_snapshots (PL/pgSQL) checked its arguments before calling it."""
    from pganalytics_ml.capture import counters

    sleep = plpy.prepare("SELECT pg_sleep($1)", ["float8"])  # in SQL, so a cancel or shutdown stops it
    started = time.monotonic()
    taken = 0
    while True:
        counters.snapshot(plpy)
        plpy.commit()
        taken += 1
        next_at = started + taken * every_seconds
        if next_at - started >= within_seconds:
            return taken
        plpy.execute(sleep, [max(0.0, next_at - time.monotonic())])

"""The durable job store (SQLAlchemy 2): a SQLite file by default, any SQLAlchemy database (PostgreSQL) by URL.

A job moves ``queued → running → (ready | error | request_moderated | content_moderated | cancelled)``
(``statuses.JobStatus``); what it computes is its ``JobSpec`` (``jobs/spec.py``).
Workers *claim* a job with a lease that they keep renewing while they run it; a job whose lease lapses (its worker
was killed) is claimable again. Every write a worker makes is fenced by its lease, so a worker that lost its lease
can never overwrite the result of the worker that took over. The seed is fixed at submit, so a re-run after a crash
computes the same image.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import functools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column, sessionmaker

from ..statuses import JobStatus
from . import schema
from .faults import backoff_s, transient_store_error
from .spec import JobSpec

log = logging.getLogger(__name__)

FORGET_WORKERS_AFTER_S = 24 * 3600  # the janitor deletes the heartbeat rows of pools not heard from for this long


class RunState(str, enum.Enum):
    """What a worker should do after writing progress."""

    CONTINUE = "continue"
    CANCEL = "cancel"  # the client cancelled the job
    LOST = "lost"  # another worker holds the job now (this one's lease lapsed)


ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class IdempotencyConflict(Exception):
    """The owner already used this Idempotency-Key: ``job_id`` is its task, ``request_hash`` its request's."""

    def __init__(self, job_id: str, request_hash: str):
        super().__init__(job_id)
        self.job_id = job_id
        self.request_hash = request_hash


class TooManyActive(Exception):
    """The owner already has ``max_active`` queued or running jobs (checked in the inserting transaction)."""


class StoreCorrupt(Exception):
    """The database failed its integrity check: refuse to serve from it."""


class SchemaMismatch(Exception):
    """The database's schema is not the one this version needs; the message says what to run."""


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # the key id of the API key that created it
    route: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # JobSpec.params(): steps, guidance, output_format …
    seed: Mapped[str] = mapped_column(String(24))  # text: seeds span the unsigned 64-bit range
    input_keys: Mapped[list[str]] = mapped_column(JSON)  # storage keys of the context images, in order
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float] = mapped_column(Float)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret: Mapped[str | None] = mapped_column(Text, nullable=True)  # needed in clear to sign deliveries

    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_owner_status", "owner", "status"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),  # list_for's pages, in their order
        Index("ix_jobs_expires", "expires_at"),
    )


class IdempotencyKeyRow(Base):
    """An ``Idempotency-Key`` a client sent, and the task its first request created."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    request_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)


class WebhookEventRow(Base):
    """The outbox: one row per webhook call to make, written in the same transaction as the job's terminal state."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "msg_…": the webhook-id header
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    deadline: Mapped[float] = mapped_column(Float)  # give up retrying after this
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_webhook_due", "status", "next_attempt_at"),)


class WorkerRow(Base):
    """A worker pool's heartbeat: what it runs and has done, so any API replica's ``/metrics`` and ``openkontext
    cluster status`` can report every worker that shares the store (Ray actors have no stable address to scrape)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # WorkerPool.id: host:pid:random
    role: Mapped[str] = mapped_column(String(16))  # serve | worker | ray
    threads: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[float] = mapped_column(Float, index=True)
    running: Mapped[int] = mapped_column(Integer)  # jobs it holds now
    finished: Mapped[int] = mapped_column(Integer)  # jobs it brought to an end since it started
    takeovers: Mapped[int] = mapped_column(Integer)  # jobs it claimed after their previous worker's lease lapsed


@dataclass(frozen=True)
class WorkerReport:
    id: str
    role: str
    threads: int
    started_at: float
    seen_at: float
    running: int
    finished: int
    takeovers: int


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    job_id: str
    status: str
    attempts: int
    deadline: float
    last_error: str | None

    @classmethod
    def from_row(cls, row: WebhookEventRow) -> WebhookEvent:
        return cls(row.id, row.job_id, row.status, row.attempts, row.deadline, row.last_error)


@dataclass(frozen=True)
class Job:
    """A detached, read-only copy of a job row."""

    id: str
    owner: str
    route: str
    status: JobStatus
    spec: JobSpec
    input_keys: list[str]
    progress: float
    step: int
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float
    attempts: int
    result_key: str | None
    error: str | None
    webhook_url: str | None
    webhook_secret: str | None
    taken_from: str | None = None  # set by claim: the worker whose lapsed lease this claim took over

    @classmethod
    def from_row(cls, row: JobRow | Row) -> Job:
        return cls(
            id=row.id, owner=row.owner, route=row.route, status=JobStatus(row.status),
            spec=JobSpec.stored(row.prompt, int(row.seed), row.params), input_keys=list(row.input_keys),
            progress=row.progress, step=row.step or 0, cancel_requested=bool(row.cancel_requested),
            created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
            expires_at=row.expires_at, attempts=row.attempts, result_key=row.result_key, error=row.error,
            webhook_url=row.webhook_url, webhook_secret=row.webhook_secret,
        )  # fmt: skip


def _poll_statement():
    """The job row and, when it is queued, how many queued jobs were created before it (the position, less one).
    Built once: polls are most of a server's requests, and a prebuilt statement skips SQLAlchemy's per-call
    construction (~70 µs for the whole read on SQLite against ~440 µs for a get and a queue_positions)."""
    ahead = aliased(JobRow)
    waiting = JobStatus.QUEUED.value
    queued_ahead = (select(func.count()).select_from(ahead)
                    .where(ahead.status == waiting, ahead.created_at < JobRow.created_at).scalar_subquery())  # fmt: skip
    return select(JobRow.__table__, case((JobRow.status == waiting, queued_ahead)).label("queued_ahead")).where(
        JobRow.id == bindparam("job_id"))


_POLL = _poll_statement()


class EndedJobs:
    """The jobs this process has seen ended, by id, most recent last (at most ``capacity``).

    A job that ended never changes again (its webhook's delivery state aside, which lives in its own table) until it
    expires and is purged, so polls for it can be answered from memory, on any replica, without touching the store.
    """

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str, owner: str | None) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.expires_at <= time.time():
                del self._jobs[job_id]
                return None
        return job if job is not None and (owner is None or job.owner == owner) else None

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._jobs.move_to_end(job.id)
            while len(self._jobs) > self.capacity:
                self._jobs.popitem(last=False)


def _sqlite_pragmas(busy_timeout_s: float):
    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file (and tighten an old one) as 0600 whatever the umask: it holds prompts and webhook
    secrets. SQLite gives its -wal and -shm files the database file's mode."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass
        except PermissionError:  # not ours: leave it to its owner
            pass


SQLITE_POOL_SIZE = 48


def make_db_engine(url: str, busy_timeout_s: float = 5.0) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        # As many pooled connections as request threads can use at once (FastAPI's pool has 40): beyond the pool
        # size SQLAlchemy opens and closes a connection per use, and each open runs the PRAGMAs below.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
                               pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)  # fmt: skip
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
        return engine
    return create_engine(url, pool_pre_ping=True)


def retried(method):
    """Retry a store operation on transient errors (locked, busy, connection lost) with bounded backoff.

    Every operation is one transaction, so a failed attempt changed nothing and the next one starts afresh. After
    ``retry_s`` the error is raised: the API answers 503, a worker backs off and tries again later.
    """

    @functools.wraps(method)
    def wrapper(self: JobStore, *args, **kwargs):
        deadline = time.monotonic() + self.retry_s
        failures = 0
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                failures += 1
                delay = backoff_s(failures, first_s=0.05, max_s=1.0)
                if not transient_store_error(exc) or time.monotonic() + delay > deadline:
                    raise
                log.debug("store.%s: %s; retry %d in %.2f s", method.__name__, exc, failures, delay)
                time.sleep(delay)

    return wrapper


class JobStore:
    def __init__(self, url: str, *, webhook_retry_s: float = 24 * 3600, busy_timeout_s: float = 5.0,
                 retry_s: float = 10.0, migrate: bool = True):  # fmt: skip
        """``migrate``: bring the schema to this version's (jobs/schema.py); False: refuse (SchemaMismatch) unless it
        is there already — for deployments where one command migrates and many processes share the database."""
        self.webhook_retry_s = webhook_retry_s  # how long a failing webhook delivery is retried
        self.retry_s = retry_s  # how long one operation is retried on transient errors before it raises
        self.db = make_db_engine(url, busy_timeout_s)
        if migrate:
            retried(lambda store: schema.upgrade(store.db))(self)
        elif problem := retried(lambda store: schema.problem(store.db))(self):
            raise SchemaMismatch(problem)
        self._session = sessionmaker(self.db, expire_on_commit=False)
        self._ended = EndedJobs()
        # A read is a call into the SQLite library on a local file, with no network round trip. In WAL mode readers
        # never wait for writers (only for a crashed writer's recovery), so such a read may run on an event loop.
        self.reads_locally = self.db.dialect.name == "sqlite"
        # Reads of the request path (polls, task lists) run outside a transaction on PostgreSQL: that spares the
        # BEGIN and ROLLBACK round trips around each (~950 -> ~460 µs a poll). SQLite begins no transaction for a
        # read anyway, and switching its mode per connection costs more than it saves.
        self._reads = self.db if self.reads_locally else self.db.execution_options(isolation_level="AUTOCOMMIT")

    def close(self) -> None:
        self.db.dispose()

    def check_integrity(self) -> None:
        """SQLite's ``PRAGMA quick_check`` (seconds for gigabytes); raises StoreCorrupt with what it found."""
        if self.db.dialect.name != "sqlite":
            return
        try:
            with self.db.connect() as connection:
                found = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check(5)")]
        except DBAPIError as exc:
            if transient_store_error(exc):
                raise
            raise StoreCorrupt(str(exc.orig)) from None
        if found != ["ok"]:
            lines = [line.strip() for row in found for line in str(row).splitlines() if line.strip()]
            raise StoreCorrupt("; ".join(line for line in lines if not line.startswith("***")))

    # --- the API's side -------------------------------------------------------------------------------------------

    @retried
    def create(
        self,
        *,
        job_id: str,
        owner: str,
        route: str,
        spec: JobSpec,
        input_keys: list[str],
        retention_s: float,
        status: JobStatus = JobStatus.QUEUED,
        error: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        idempotency: tuple[str, str] | None = None,
        max_active: int | None = None,
    ) -> Job:
        """Insert a job. With ``idempotency=(key, request_hash)``, the key is recorded in the same transaction;
        if the owner already used that key, nothing is inserted and IdempotencyConflict says which job has it.

        With ``max_active``, a queued job is inserted only if the owner's queued and running jobs stay within it
        (else TooManyActive), counted in the same transaction as the insert and serialised per owner, so API
        replicas racing for the last slot cannot both take it."""
        now = time.time()
        row = JobRow(
            id=job_id, owner=owner, route=route, status=status.value, prompt=spec.prompt, params=spec.params(),
            seed=str(spec.seed), input_keys=input_keys, progress=0.0, created_at=now, expires_at=now + retention_s,
            attempts=0, finished_at=now if status.terminal else None, error=error, webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )  # fmt: skip
        try:
            with self._session.begin() as session:
                limited = max_active is not None and status.value in ACTIVE
                if limited and session.bind.dialect.name == "postgresql":  # one submitter per owner at a time
                    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                    {"key": f"openkontext-active:{owner}"})  # fmt: skip
                session.add(row)
                session.flush()  # SQLite: this INSERT takes the database's write lock before the count below
                if limited and session.scalar(
                    select(func.count()).where(JobRow.owner == owner, JobRow.status.in_(ACTIVE))
                ) > max_active:
                    raise TooManyActive(owner)
                if idempotency is not None:
                    session.add(IdempotencyKeyRow(owner=owner, key=idempotency[0], job_id=job_id,
                                                  request_hash=idempotency[1], expires_at=now + retention_s))
                    session.flush()
                if status.terminal:
                    self._enqueue_webhook(session, row, now)
        except IntegrityError:
            existing = self.find_idempotent(owner, idempotency[0]) if idempotency else None
            if existing is None:
                stored = self.get(job_id, owner)  # ids are fresh UUIDs: this is our own earlier attempt, whose
                if stored is not None:  # commit went through but whose answer was lost (a dropped connection)
                    return stored
                raise
            raise IdempotencyConflict(*existing) from None
        return Job.from_row(row)

    @retried
    def find_idempotent(self, owner: str, key: str) -> tuple[str, str] | None:
        """(job id, request hash) recorded for an unexpired ``Idempotency-Key`` of ``owner``."""
        with self._session() as session:
            row = session.get(IdempotencyKeyRow, (owner, key))
            if row is None or row.expires_at <= time.time():
                return None
            return row.job_id, row.request_hash

    def get_ended(self, job_id: str, owner: str | None = None) -> Job | None:
        """As ``get``, for a job this process has already seen ended; None otherwise. No I/O: safe on an event loop."""
        return self._ended.get(job_id, owner)

    @retried
    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, if it exists, has not expired and (when ``owner`` is given) belongs to ``owner``."""
        job = self._ended.get(job_id, owner)
        if job is not None:
            return job
        # Polls land here: a plain SELECT on a pooled connection (no ORM session, identity map or row objects) is
        # ~5x cheaper than session.get.
        with self._reads.connect() as connection:
            row = connection.execute(select(JobRow.__table__).where(JobRow.id == job_id)).first()
        if row is None or row.expires_at <= time.time() or (owner is not None and row.owner != owner):
            return None
        job = Job.from_row(row)
        if job.status.terminal:
            self._ended.add(job)
        return job

    @retried
    def poll(self, job_id: str, owner: str | None = None) -> tuple[Job | None, int | None]:
        """A poll's whole read: ``get``, plus the queue position when the job is queued, in one statement."""
        job = self._ended.get(job_id, owner)
        if job is not None:
            return job, None
        with self._reads.connect() as connection:
            row = connection.execute(_POLL, {"job_id": job_id}).first()
        if row is None or row.expires_at <= time.time() or (owner is not None and row.owner != owner):
            return None, None
        job = Job.from_row(row)
        if job.status.terminal:
            self._ended.add(job)
        return job, row.queued_ahead + 1 if job.status == JobStatus.QUEUED else None

    @retried
    def queue_positions(self, jobs: Iterable[Job]) -> dict[str, int]:
        """The queue position of each queued job among ``jobs`` (1: next to run; the queued jobs created before it,
        plus one), in two indexed queries whatever their number (a task list page)."""
        queued = [job for job in jobs if job.status == JobStatus.QUEUED]
        if not queued:
            return {}
        first, last = min(job.created_at for job in queued), max(job.created_at for job in queued)
        waiting = JobRow.status == JobStatus.QUEUED.value
        with self._reads.connect() as connection:
            before = connection.scalar(select(func.count()).where(waiting, JobRow.created_at < first))
            between = connection.scalars(select(JobRow.created_at).where(waiting, JobRow.created_at >= first,
                                         JobRow.created_at <= last).order_by(JobRow.created_at)).all()  # fmt: skip
        return {job.id: before + bisect.bisect_left(between, job.created_at) + 1 for job in queued}

    @retried
    def list_for(self, owner: str, *, limit: int, before: tuple[float, str] | None = None) -> list[Job]:
        """The owner's unexpired jobs, newest first by (created_at, id) — a total order, so pages neither skip nor
        repeat jobs created at the same instant. ``before`` is the (created_at, id) of the previous page's last job;
        ix_jobs_owner_created serves the page in order, without a sort or a scan of the owner's other jobs."""
        query = select(JobRow.__table__).where(JobRow.owner == owner, JobRow.expires_at > time.time())
        if before is not None:
            created_at, job_id = before
            query = query.where(JobRow.created_at <= created_at,  # the index range; then the tie-break
                                or_(JobRow.created_at < created_at, JobRow.id < job_id))  # fmt: skip
        with self._reads.connect() as connection:
            rows = connection.execute(query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)).all()
        return [Job.from_row(row) for row in rows]

    @retried
    def cancel(self, job_id: str, owner: str) -> Job | None:
        """Cancel a queued job at once, or ask its worker to stop a running one; terminal jobs are left alone."""
        now = time.time()
        with self._session.begin() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.owner != owner or row.expires_at <= now:
                return None
            if row.status == JobStatus.QUEUED.value:
                row.status = JobStatus.CANCELLED.value
                row.finished_at = now
                self._enqueue_webhook(session, row, now)
            elif row.status == JobStatus.RUNNING.value:
                row.cancel_requested = True
            return Job.from_row(row)

    @retried
    def count_by_status(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
            return {status: count for status, count in rows}

    @retried
    def count_active(self, owner: str) -> int:
        with self._session() as session:
            query = select(func.count()).where(JobRow.owner == owner, JobRow.status.in_(ACTIVE))
            return session.scalar(query) or 0

    # --- the workers' side ----------------------------------------------------------------------------------------

    @retried
    def claim(
        self, worker_id: str, lease_s: float, max_attempts: int, *, skip: Iterable[str] = ()
    ) -> Job | None:
        """Take the oldest queued job, or a running one whose worker's lease lapsed; None if there is none.

        A lapsed job that has already been started ``max_attempts`` times is left for ``fail_exhausted``; jobs in
        ``skip`` (the ones this worker's pool is still running, whose lease lapsed while the store was away) too.
        """
        skip = list(skip)
        for _ in range(5):  # another worker may take the candidate between our select and update: try the next
            now = time.time()
            claimable = or_(
                JobRow.status == JobStatus.QUEUED.value,
                (JobRow.status == JobStatus.RUNNING.value)
                & (JobRow.lease_expires < now)
                & (JobRow.attempts < max_attempts),
            )
            with self._session.begin() as session:
                query = select(JobRow.id, JobRow.lease_owner).where(claimable, JobRow.expires_at > now)
                if skip:
                    query = query.where(JobRow.id.not_in(skip))
                # PostgreSQL: concurrent claimers skip each other's candidate row instead of racing for it
                # (SQLite has no row locks; its single writer serialises claims anyway).
                query = query.order_by(JobRow.created_at).limit(1).with_for_update(skip_locked=True)
                found = session.execute(query).first()
                if found is None:
                    return None
                candidate, previous_owner = found
                taken = session.execute(
                    update(JobRow)
                    .where(JobRow.id == candidate, claimable)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=worker_id,
                        lease_expires=now + lease_s,
                        attempts=JobRow.attempts + 1,
                        started_at=func.coalesce(JobRow.started_at, now),
                        progress=0.0,
                    )
                ).rowcount
                if taken == 1:
                    job = Job.from_row(session.get(JobRow, candidate, populate_existing=True))
                    return dataclasses.replace(job, taken_from=previous_owner)  # a handed-back job has no owner
        return None

    @retried
    def renew(self, worker_id: str, job_ids: Iterable[str], lease_s: float) -> set[str]:
        """Extend this worker's leases; returns the ids it still holds."""
        job_ids = list(job_ids)
        if not job_ids:
            return set()
        with self._session.begin() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(job_ids), JobRow.lease_owner == worker_id, JobRow.status == "running")
                .values(lease_expires=time.time() + lease_s)
            )
            held = session.scalars(
                select(JobRow.id).where(JobRow.id.in_(job_ids), JobRow.lease_owner == worker_id)
            ).all()
        return set(held)

    def set_progress(self, job_id: str, worker_id: str, progress: float, step: int) -> RunState:
        """Record progress; says whether to go on, stop for a cancel, or stop because the lease was lost."""
        with self._session.begin() as session:
            held = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.status == "running")
                .values(progress=progress, step=step)
            ).rowcount
            if held != 1:
                return RunState.LOST
            cancelled = session.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
            return RunState.CANCEL if cancelled else RunState.CONTINUE

    @retried
    def finish(
        self,
        job_id: str,
        worker_id: str,
        status: JobStatus,
        *,
        result_key: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Move a running job held by ``worker_id`` to a terminal state; False if the lease was lost.

        Its webhook call, if it asked for one, is queued in the same transaction.
        """
        assert status.terminal
        now = time.time()
        with self._session.begin() as session:
            changed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.status == "running")
                .values(
                    status=status.value,
                    result_key=result_key,
                    error=error,
                    finished_at=now,
                    progress=1.0 if status == JobStatus.READY else JobRow.progress,
                    lease_owner=None,
                    lease_expires=None,
                )
            ).rowcount
            if changed == 1:
                self._enqueue_webhook(session, session.get(JobRow, job_id), now)
            return changed == 1

    def release(self, job_id: str, worker_id: str, *, count_attempt: bool) -> bool:
        """Hand a running job back: claimable again at once (by any worker). ``count_attempt=False`` when the run
        stopped for a shutdown, so it does not count towards ``max_attempts``. False if the lease was lost.

        One attempt, not retried: it runs while stopping, and if the store refuses, the lease lapses anyway."""
        with self._session.begin() as session:
            return session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.status == "running")
                .values(
                    lease_owner=None,
                    lease_expires=0.0,
                    attempts=JobRow.attempts if count_attempt else JobRow.attempts - 1,
                )
            ).rowcount == 1

    @retried
    def fail_exhausted(self, max_attempts: int) -> list[str]:
        """Jobs that crashed their worker ``max_attempts`` times and lost the lease again become Errors."""
        now = time.time()
        exhausted = (JobRow.status == "running") & (JobRow.lease_expires < now) & (JobRow.attempts >= max_attempts)
        with self._session.begin() as session:
            # One conditional UPDATE … RETURNING: janitors of several processes sharing the store each get the rows
            # they changed, never the same one twice (that would queue its webhook twice).
            ids = session.scalars(
                update(JobRow).where(exhausted).values(
                    status=JobStatus.ERROR.value, error=f"the job stopped its worker {max_attempts} times",
                    finished_at=now, lease_owner=None, lease_expires=None,
                ).returning(JobRow.id)
            ).all()  # fmt: skip
            for job_id in ids:
                self._enqueue_webhook(session, session.get(JobRow, job_id), now)
        return list(ids)

    @retried
    def purge_expired(self) -> list[Job]:
        """Delete jobs past their retention; returns them so their files can be deleted too."""
        now = time.time()
        with self._session.begin() as session:
            rows = session.execute(  # DELETE … RETURNING: each janitor gets the rows it deleted (as fail_exhausted)
                delete(JobRow).where(JobRow.expires_at <= now).returning(*JobRow.__table__.columns)
            ).all()
            jobs = [Job.from_row(row) for row in rows]
            if jobs:
                session.execute(delete(WebhookEventRow).where(WebhookEventRow.job_id.in_([job.id for job in jobs])))
            session.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.expires_at <= now))
            session.execute(delete(WorkerRow).where(WorkerRow.seen_at <= now - FORGET_WORKERS_AFTER_S))
        return jobs

    # --- worker heartbeats ----------------------------------------------------------------------------------------

    @retried
    def report_worker(self, report: WorkerReport) -> None:
        """Record a worker pool's heartbeat (its own row: no other process writes it)."""
        values = dataclasses.asdict(report)
        with self._session.begin() as session:
            if session.execute(update(WorkerRow).where(WorkerRow.id == report.id).values(**values)).rowcount == 0:
                session.add(WorkerRow(**values))

    @retried
    def workers(self, seen_after: float) -> list[WorkerReport]:
        """The worker pools heard from after ``seen_after`` (a Unix time), oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(WorkerRow).where(WorkerRow.seen_at > seen_after).order_by(WorkerRow.started_at)
            ).all()
            return [WorkerReport(**{name: getattr(row, name) for name in WorkerReport.__dataclass_fields__})
                    for row in rows]  # fmt: skip

    def forget_worker(self, worker_id: str) -> None:
        """A pool that stopped cleanly removes its row (one attempt: a row left behind ages out)."""
        with self._session.begin() as session:
            session.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))

    # --- the webhook outbox ---------------------------------------------------------------------------------------

    def _enqueue_webhook(self, session: Session, row: JobRow, now: float) -> None:
        if row.webhook_url:
            session.add(WebhookEventRow(
                id=f"msg_{uuid.uuid4().hex}", job_id=row.id, status="pending", attempts=0, next_attempt_at=now,
                deadline=now + self.webhook_retry_s, created_at=now,
            ))  # fmt: skip

    @retried
    def claim_webhooks(self, worker_id: str, lease_s: float, limit: int) -> list[WebhookEvent]:
        """Due, pending events not leased by another sender; leased to ``worker_id``."""
        now = time.time()
        with self._session.begin() as session:
            ids = session.scalars(
                select(WebhookEventRow.id)
                .where(
                    WebhookEventRow.status == "pending",
                    WebhookEventRow.next_attempt_at <= now,
                    or_(WebhookEventRow.lease_expires.is_(None), WebhookEventRow.lease_expires < now),
                )
                .order_by(WebhookEventRow.next_attempt_at)
                .limit(limit)
            ).all()
            claimed = []
            for event_id in ids:
                taken = session.execute(
                    update(WebhookEventRow)
                    .where(
                        WebhookEventRow.id == event_id,
                        or_(WebhookEventRow.lease_expires.is_(None), WebhookEventRow.lease_expires < now),
                    )
                    .values(lease_owner=worker_id, lease_expires=now + lease_s)
                ).rowcount
                if taken:
                    claimed.append(WebhookEvent.from_row(session.get(WebhookEventRow, event_id)))
            return claimed

    @retried
    def record_webhook_attempt(
        self, event_id: str, worker_id: str, *, delivered: bool, error: str | None, retry_at: float | None
    ) -> None:
        """After one delivery attempt: delivered, to be retried at ``retry_at``, or failed (``retry_at`` None)."""
        now = time.time()
        status = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
        with self._session.begin() as session:
            session.execute(
                update(WebhookEventRow)
                .where(WebhookEventRow.id == event_id, WebhookEventRow.lease_owner == worker_id)
                .values(
                    status=status,
                    attempts=WebhookEventRow.attempts + 1,
                    last_error=error,
                    next_attempt_at=retry_at if retry_at is not None else now,
                    delivered_at=now if delivered else None,
                    lease_owner=None,
                    lease_expires=None,
                )
            )

    @retried
    def webhook_state(self, job_id: str) -> WebhookEvent | None:
        with self._session() as session:
            row = session.scalars(
                select(WebhookEventRow).where(WebhookEventRow.job_id == job_id).order_by(WebhookEventRow.created_at)
            ).first()
            return WebhookEvent.from_row(row) if row else None

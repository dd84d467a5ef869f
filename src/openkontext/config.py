"""All of OpenKontext's settings in one typed object.

Every field can be set from the environment as ``OPENKONTEXT_<NAME>`` (e.g. ``OPENKONTEXT_PORT=9000``) or from a
``.env`` file; the CLI's ``serve`` options override both. The table in ``docs/configuration.md`` documents each one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .engine.adapters import Adapter, parse_adapters
from .engine.model_info import MAX_GLYPH_GUIDANCE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENKONTEXT_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------------------------------
    data_dir: Path = Field(Path("./openkontext-data"), description="Folder for the job database, results and secrets.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the job store; default: a SQLite file in data_dir."
    )
    storage_url: str | None = Field(
        None, description="Where inputs and results live: unset, the data dir's storage folder; "
        "'s3://BUCKET/PREFIX' for an S3-compatible object store (credentials from boto3's usual sources).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="The S3 API's address for a store other than AWS (MinIO, Ceph, R2 …)."
    )
    migrate_on_start: bool = Field(
        True, description="Bring the job store's schema to this version's at start-up. Set false where several "
        "processes share one database: then 'openkontext db upgrade' migrates it once per upgrade, and a server "
        "whose schema differs refuses to start, saying so.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL clients reach this server at (for polling_url and result URLs); default: the request's.",
    )

    # --- the model ---------------------------------------------------------------------------------------------
    model: str = Field(
        "default",
        description="'default' (the shipped model), 'random' (randomly initialised placeholder), or a local path to "
        "a diffusers-format Kontext folder.",
    )
    transformer_file: Path | None = Field(
        None, description="Optional single-file transformer that replaces the folder's: BFL's .safetensors, or a "
        "quantized .gguf (Q8_0, Q6_K, Q4_K …; docs/deploy-flux.md).",
    )
    quantize: Literal["off", "int8", "fp8"] | None = Field(
        None, description="Quantize the transformer's weights at load time with torchao, weight-only: 'int8' or "
        "'fp8' (about half the memory of bf16); unset: as accel_options says (off by default).",
    )
    loras: Annotated[tuple[Adapter, ...], NoDecode] = Field(
        (), description="LoRA adapters loaded at start, comma-separated NAME=PATH[:SCALE] (a local .safetensors; "
        "SCALE, default 1, is used when a request names the adapter without one). Requests choose them by name "
        "with the 'loras' field (docs/api.md).",
    )
    device: str = Field("auto", description="'auto' (cuda > mps > cpu), or a torch device string.")
    preserve: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Paste-back threshold (0-1): keep the input's pixels where the output's decode agrees with the "
        "input's within it; 0 turns it off; unset: the model's own default (openkontext.json). A request's "
        "'preserve' field overrides it.",
    )
    glyph_guidance: float | None = Field(
        None, ge=0.0, le=MAX_GLYPH_GUIDANCE, allow_inf_nan=False,
        description="Glyph guidance scale of a model with an aligned glyph canvas: how strongly the drawn word "
        "shapes the letters it writes (1: plain sampling); unset: the model's own default (openkontext.json). "
        "Other models ignore it. A request's 'glyph_guidance' field overrides it.",
    )
    accel_preset: str = Field(
        "auto", description="Engine speed options: 'none', 'auto' (lossless per GPU) or 'fast' (adds fp8, CUDA graphs)."
    )
    accel_options: str | None = Field(
        None, description="Overrides of the preset, 'name=value,...' (e.g. 'compile=off,step_cache=first-block')."
    )
    accel_warmup: str = Field(
        "native", description="Buckets compiled at start-up: 'native', 'all', 'none' or '1024x1024,1184x880'."
    )

    # --- the service -------------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface the server binds (0.0.0.0 for all).")
    port: int = Field(8000, description="TCP port of the server.")
    workers: int = Field(1, ge=0, description="Engine worker threads in the process (serve: 0 makes an API-only "
                         "replica that does not load the model; worker processes and Ray actors run them).")
    worker_nice: int = Field(0, ge=0, le=19, description="Niceness added to the worker threads that run edits "
                             "(Linux; threads the engine starts inherit it): where the API and the engine share "
                             "cores, the API's requests get the CPU first. 0: equal priority.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send a request's headers (from its first byte, or from "
        "connecting); the connection is closed beyond it.",
    )
    body_timeout_s: float = Field(
        20.0, gt=0, description="Longest wait between two reads of a request body; the connection is closed beyond it."
    )
    keep_alive_s: float = Field(5.0, gt=0, description="How long an idle keep-alive connection is kept open.")
    max_connections: int = Field(
        200, ge=1, description="Concurrent connections (and requests in progress) served; requests beyond get 503."
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="On SIGTERM, how long requests in progress and running jobs' steps may take to end."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted x-key values, comma-separated; each either the key itself or 'sha256:<hex digest>'. "
        "Empty: a key is generated on first start and written to data_dir/api-key.",
    )
    max_active_tasks: int = Field(24, ge=1, description="Queued + running tasks one key may have (429 beyond).")
    max_body_bytes: int = Field(40 * 1024 * 1024, description="Largest request body accepted (413 beyond).")
    max_image_pixels: int = Field(
        40_000_000, description="Largest input image, in pixels, checked before decoding (decompression bombs)."
    )
    max_prompt_chars: int = Field(4000, description="Longest prompt accepted.")
    delivery_ttl_s: int = Field(600, ge=1, description="Lifetime of a signed result URL, in seconds.")
    retention_s: int = Field(24 * 3600, ge=1, description="How long a task and its result are kept, in seconds.")
    purge_interval_s: float = Field(60.0, gt=0, description="How often expired tasks and their files are deleted.")
    lease_s: float = Field(30.0, gt=0, description="A worker's lease on a running job; renewed while it runs.")
    max_attempts: int = Field(3, ge=1, description="Runs a job may start (crashes included) before it is an Error.")
    min_free_bytes: int = Field(
        100 * 1024 * 1024, ge=0, description="Free disk space the data dir must keep: below it the server refuses to "
        "start, submits get 507 and /ready 503 (0: no check).",
    )
    store_busy_timeout_s: float = Field(
        5.0, gt=0, description="How long one SQLite statement waits for a lock held by another connection."
    )
    store_retry_s: float = Field(
        10.0, ge=0, description="How long a store operation is retried on transient errors (locked, busy, connection "
        "lost) before the API answers 503 and workers back off.",
    )
    signing_secret: str | None = Field(
        None, description="HMAC secret for result URLs; default: generated once into data_dir/signing-secret."
    )
    previews: bool = Field(True, description="Render a small preview of running tasks every few steps.")
    webhook_timeout_s: float = Field(10.0, gt=0, le=30, description="Timeout of one webhook call, in seconds.")
    webhook_retry_s: float = Field(
        24 * 3600, gt=0, description="How long a failing webhook delivery is retried (backoff with jitter)."
    )
    webhook_backoff_s: float = Field(
        2.0, gt=0, description="Delay before the first webhook retry; it doubles each time (±50% jitter), up to 1 h."
    )
    fetch_timeout_s: float = Field(20.0, gt=0, description="Total time allowed to fetch an input_image URL.")
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or CIDR ranges that input_image and webhook URLs may reach although they are not public "
        "(loopback, private, link-local addresses are refused otherwise).",
    )
    blocked_terms: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Operator blocklist: prompts containing any of these are Request Moderated."
    )
    moderation_enabled: bool = Field(True, description="False turns every moderation check off, blocklist included.")
    moderation_prompt_classifier: bool = Field(True, description="Score prompts against unsafe concepts (MiniLM).")
    moderation_image_classifier: bool = Field(True, description="Score input and output images (open_nsfw).")
    moderation_prompt_thresholds: str | None = Field(
        None, description="Seven comma-separated prompt thresholds for tolerance 0..6, replacing the defaults."
    )
    moderation_image_thresholds: str | None = Field(
        None, description="Seven comma-separated image thresholds for tolerance 0..6, replacing the defaults."
    )
    moderation_custom: str | None = Field(
        None, description="'package.module:name' of a moderator that replaces both classifiers."
    )
    moderation_preload: bool = Field(True, description="Load the classifiers at start-up rather than on first use.")

    @field_validator("api_keys", "blocked_terms", "url_allowlist", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("loras", mode="before")
    @classmethod
    def _parse_adapters(cls, value):
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        return parse_adapters(value or ())

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'openkontext.db').resolve()}"

    @property
    def own_base_url(self) -> str:
        """Where clients reach this server, for links made outside a request (webhook payloads)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @field_validator("storage_url")
    @classmethod
    def _s3_only(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("s3://") and value[5:].split("/", 1)[0]):
            raise ValueError("storage_url must look like s3://BUCKET or s3://BUCKET/PREFIX (unset: the data dir)")
        return value

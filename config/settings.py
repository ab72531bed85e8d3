"""Environment settings (SPEC section 2), validated once at start.

Every process (web, worker, scheduler, CLI) calls :func:`load_settings`; an invalid value stops it
with one :class:`ConfigError` naming the variable, never a traceback.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.webhook import split_webhook_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RULES_FILE = "config/rules.yaml"
DEFAULT_RATE_LIMIT = 2.0
"""Requests per second the portal's leaky bucket drains (most plans; Enterprise: 5)."""
DEFAULT_RATE_BURST = 50
"""Requests the portal's bucket holds before it answers QUERY_LIMIT_EXCEEDED (Enterprise: 250)."""
DEFAULT_OPERATING_LIMIT_SECONDS = 480.0
"""Seconds of execution per method per 10 minutes before OPERATION_TIME_LIMIT."""
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
DEFAULT_ALLOWED_PORTALS = ("*.bitrix24.com,*.bitrix24.de,*.bitrix24.eu,*.bitrix24.es,*.bitrix24.fr,*.bitrix24.it,"
                           "*.bitrix24.pl,*.bitrix24.uk,*.bitrix24.com.br,*.bitrix24.in,*.bitrix24.jp,*.bitrix24.cn,"
                           "*.bitrix24.ru,*.bitrix24.by,*.bitrix24.kz,*.bitrix24.ua,*.bitrix24.site")
"""The cloud zones' portal hosts; an on-premise installation names its own."""
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8700"
DEFAULT_SANDBOX_SECRET = "sandbox-webhook-secret"  # noqa: S105 - the local simulation's, not a real one
DEFAULT_SANDBOX_TOKEN = "sandbox-application-token"  # noqa: S105


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the variable or rules-file key."""


class Settings(BaseSettings):
    """Environment variables, names as in SPEC section 2 (case-insensitive, no prefix)."""

    # var/run.env holds what `make run` generated (sandbox secret, tokens) so the CLI next to it finds the same
    # values; .env (yours) and real environment variables take precedence over it.
    model_config = SettingsConfigDict(env_file=("var/run.env", ".env"), extra="ignore", hide_input_in_errors=True)

    redis_url: str = DEFAULT_REDIS_URL
    """One Redis server (its db number in the path). With Sentinel it must not be set."""
    redis_sentinels: str | None = None
    """``host:port,host:port,...`` of the Sentinels; set, every process talks to the master they name."""
    redis_sentinel_master: str | None = None
    """The master's name in the Sentinels' configuration (``sentinel monitor <name> ...``)."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password (their ``requirepass``), if they have one."""
    redis_password: SecretStr | None = None
    """The Redis servers' password: with Sentinel, the master's; with REDIS_URL, unless the URL carries one."""
    redis_db: int = Field(0, ge=0)
    """The database with Sentinel (with one server it is REDIS_URL's path)."""
    taskwarden_redis_min_replicas: int = Field(0, ge=0)
    """Replicas that must have an event's queued evaluation before intake answers 200; a replica that does not
    acknowledge in time makes intake keep the event on disk too (202). 0: answer as soon as the master has it."""
    b24_webhook_url: SecretStr | None = None
    b24_application_token: SecretStr | None = None
    b24_member_id: str | None = None
    rules_file: str = DEFAULT_RULES_FILE
    b24_rate_limit: float = Field(DEFAULT_RATE_LIMIT, gt=0)
    b24_rate_burst: int = Field(DEFAULT_RATE_BURST, ge=1)
    b24_operating_limit: float = Field(DEFAULT_OPERATING_LIMIT_SECONDS, gt=0)
    taskwarden_dry_run: bool = False
    taskwarden_audit_max_decisions: int = Field(100_000, ge=100)
    taskwarden_pass_size: int = Field(2500, ge=1, le=10_000)
    """Tasks one evaluation job takes along in a shared pass."""
    taskwarden_recheck_seconds: float = Field(30.0, ge=0, le=3600)
    """How long after writing tasks a worker reads them again, in place of the ONTASKUPDATE events those writes
    raise (their events meanwhile coalesce into that read). 0: no recheck, every such event is evaluated."""
    taskwarden_max_waiting: int = Field(50_000, ge=0)
    """Most tasks waiting for an evaluation per portal (~2.5 KB of Redis each); beyond it intake spools to
    disk and queues later. 0: no limit."""
    taskwarden_body_timeout: float = Field(10.0, gt=0)
    """Seconds a client has to send an event's body once its headers are in (under gunicorn)."""
    spool_dir: str = "./var/spool"
    taskwarden_admin_token: SecretStr | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    # Application mode (SPEC section 10): on when B24_APP_CLIENT_ID is set.
    b24_app_client_id: str | None = None
    b24_app_client_secret: SecretStr | None = None
    b24_oauth_url: str = DEFAULT_OAUTH_URL
    b24_allowed_portals: str = DEFAULT_ALLOWED_PORTALS
    taskwarden_public_url: str | None = None
    taskwarden_event_delivery: Literal["push", "offline", "both"] = "push"
    taskwarden_secret_key: SecretStr | None = None
    taskwarden_old_secret_keys: SecretStr | None = None
    rules_dir: str | None = None
    # Where the sandbox portal answers when no B24_WEBHOOK_URL is set (`make run` sets these).
    sandbox_url: str = DEFAULT_SANDBOX_URL
    sandbox_secret: SecretStr = SecretStr(DEFAULT_SANDBOX_SECRET)
    sandbox_application_token: SecretStr = SecretStr(DEFAULT_SANDBOX_TOKEN)
    sandbox_member_id: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_sentinels(value)  # raises ValueError naming the entry by position, never echoing it
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if any(char.isspace() or char == "," for char in value.strip()):
            raise ValueError("must be one name, as in the Sentinels' `sentinel monitor <name> ...`")
        return value.strip()

    @field_validator("redis_sentinel_password", "redis_password")
    @classmethod
    def _empty_password_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("b24_webhook_url")
    @classmethod
    def _webhook_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        split_webhook_url(value.get_secret_value())  # raises ValueError without echoing the secret
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in ("json", "console"):
            raise ValueError("must be json or console")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @model_validator(mode="after")
    def _token_with_webhook(self) -> Settings:
        token = self.b24_application_token.get_secret_value().strip() if self.b24_application_token else ""
        if self.b24_webhook_url is not None and not token:
            raise ValueError("B24_APPLICATION_TOKEN is required when B24_WEBHOOK_URL is set")
        return self

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        """Either one server (REDIS_URL) or Sentinel, each with only the variables that apply to it: a variable
        that would be silently ignored is refused instead."""
        problem = redis_settings_problem(self.redis_sentinels is not None, self.redis_sentinel_master is not None,
                                         self.redis_sentinel_password is not None, self.model_fields_set)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _admin_token_strength(self) -> Settings:
        """Against a real portal the admin token guards the audit and the RQ dashboard (which can delete and
        requeue jobs): an empty, example or short one is refused rather than taken as a lock."""
        if self.uses_sandbox or self.taskwarden_admin_token is None:
            return self
        problem = admin_token_problem(self.taskwarden_admin_token.get_secret_value())
        if problem:
            raise ValueError(f"TASKWARDEN_ADMIN_TOKEN {problem} (unset it to turn the admin API off)")
        return self

    @model_validator(mode="after")
    def _one_mode(self) -> Settings:
        if not self.app_mode:
            return self
        if self.b24_webhook_url is not None:
            raise ValueError("set B24_WEBHOOK_URL (webhook mode) or B24_APP_CLIENT_ID (application mode), not both")
        if self.b24_app_client_secret is None or not self.b24_app_client_secret.get_secret_value().strip():
            raise ValueError("B24_APP_CLIENT_SECRET is required when B24_APP_CLIENT_ID is set")
        if self.taskwarden_secret_key is None:
            raise ValueError("TASKWARDEN_SECRET_KEY is required in application mode (it encrypts the portals' tokens)")
        check_fernet_keys(self.taskwarden_secret_key.get_secret_value(),
                          self.taskwarden_old_secret_keys.get_secret_value() if self.taskwarden_old_secret_keys else "")
        if self.taskwarden_event_delivery == "push" and not self.taskwarden_public_url:
            raise ValueError("TASKWARDEN_PUBLIC_URL is required to bind push handlers "
                             "(or set TASKWARDEN_EVENT_DELIVERY=offline)")
        return self

    @property
    def app_mode(self) -> bool:
        """True when Taskwarden serves portals that install it as an application."""
        return bool(self.b24_app_client_id)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinel."""
        return parse_sentinels(self.redis_sentinels) if self.redis_sentinels is not None else []

    @property
    def uses_sandbox(self) -> bool:
        """True when no real portal is configured and the sandbox portal stands in."""
        return self.b24_webhook_url is None and not self.app_mode


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """``host:port,host:port,...`` (IPv6 hosts in brackets) as pairs; a ValueError names a bad entry by its
    position only, so that a password pasted there by mistake is not repeated."""
    found = []
    for number, entry in enumerate(value.split(","), 1):
        host, _, port = entry.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/@ "):
            raise ValueError(f"entry {number} is not host:port (expected e.g. sentinel-1:26379,sentinel-2:26379)")
        found.append((host, int(port)))
    return found


def redis_settings_problem(sentinels: bool, master: bool, sentinel_password: bool, given: set[str]) -> str | None:
    """What is wrong with this combination of Redis variables, or None. ``given``: the variables set."""
    if sentinels and not master:
        return "REDIS_SENTINEL_MASTER is required when REDIS_SENTINELS is set"
    if master and not sentinels:
        return "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not"
    if sentinel_password and not sentinels:
        return "REDIS_SENTINEL_PASSWORD applies only with REDIS_SENTINELS"
    if sentinels and "redis_url" in given:
        return ("set REDIS_URL (one server) or REDIS_SENTINELS (Sentinel), not both; with Sentinel the database "
                "is REDIS_DB")
    if not sentinels and "redis_db" in given:
        return "REDIS_DB applies only with REDIS_SENTINELS; with one server the database is REDIS_URL's path"
    return None


def check_fernet_keys(current: str, old: str) -> None:
    """Each key must be a Fernet key (32 url-safe base64 bytes); the message never repeats one."""
    import base64
    import binascii

    for name, value in (("TASKWARDEN_SECRET_KEY", current),
                        *(("TASKWARDEN_OLD_SECRET_KEYS", key) for key in old.split(",") if key.strip())):
        try:
            ok = len(base64.urlsafe_b64decode(value.strip().encode())) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a Fernet key (make one: python3 -c 'from cryptography.fernet "
                             "import Fernet; print(Fernet.generate_key().decode())')")


ADMIN_TOKEN_MIN_LENGTH = 16
_EXAMPLE_TOKENS = frozenset({"change-me", "changeme", "secret", "password", "admin", "token", "example"})


def admin_token_problem(token: str) -> str | None:
    """Why ``token`` cannot guard the admin API, or None when it can."""
    if not token.strip():
        return "is empty"
    if token.strip().lower() in _EXAMPLE_TOKENS:
        return "is the example value"
    if len(token.strip()) < ADMIN_TOKEN_MIN_LENGTH:
        return f"is shorter than {ADMIN_TOKEN_MIN_LENGTH} characters"
    return None


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment (and `.env`), or raise one readable ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    messages = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        text = error["msg"].removeprefix("Value error, ")
        messages.append(f"{name}: {text}" if name else text)
    return "; ".join(messages)

"""Configuration: one TOML file read into frozen dataclasses.

Every key has a default, so a missing file (or an empty one) is a valid configuration.
Unknown keys and wrong types are refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .chains import CHAINS, supports


class ConfigError(Exception):
    """A configuration file that can't be used; the message names the key or line."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    public_url: str = ""
    trusted_proxy: str = ""
    country_header: str = ""  # the buyer's country, set by the trusted proxy (e.g. CF-IPCountry)
    log_format: str = "text"


@dataclass(frozen=True)
class StorageConfig:
    path: str = "sellix-data/sellix.db"
    max_upload_mb: int = 100

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@dataclass(frozen=True)
class ShopConfig:
    name: str = "sellix-lite shop"
    currency: str = "USD"
    owner_email: str = ""
    download_link_hours: int = 72
    renewal_notice_days: int = 3


@dataclass(frozen=True)
class SecurityConfig:
    secret_key: str = ""


@dataclass(frozen=True)
class LimitsConfig:
    reads_per_minute: int = 600
    writes_per_minute: int = 120
    failed_auths_per_minute_per_ip: int = 60
    checkouts_per_minute_per_ip: int = 10
    max_qty_per_order: int = 100
    license_checks_per_minute_per_ip: int = 60


@dataclass(frozen=True)
class BlockpnConfig:
    base_url: str = ""
    api_key: str = ""
    ipn_secret: str = ""
    accepted: tuple[str, ...] = ("tron:USDT", "ethereum:USDC", "bitcoin:BTC", "solana:USDC")
    invoice_ttl_minutes: int = 60
    timeout_seconds: int = 10
    late_payment: str = "deliver"   # or "refund": what a late payment in full leads to
    late_payment_hours: int = 24    # how long after expiry a payment still counts (0: none)


@dataclass(frozen=True)
class WebhooksConfig:
    timeout_seconds: int = 10
    retry_schedule: tuple[int, ...] = (60, 120, 300, 900, 3600, 21600, 86400)
    disable_after_hours: int = 48
    allow_private_targets: bool = False
    allow_private_targets_in_test: bool = True


@dataclass(frozen=True)
class JobsConfig:
    tick_seconds: int = 1
    payment_poll_seconds: int = 30
    payout_poll_seconds: int = 30


@dataclass(frozen=True)
class SandboxConfig:
    payout_confirm_seconds: int = 2


@dataclass(frozen=True)
class EmailConfig:
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    starttls: bool = True
    from_: str = "shop@localhost"
    retry_schedule: tuple[int, ...] = (60, 300, 900, 3600, 21600)


@dataclass(frozen=True)
class BackupsConfig:
    every_hours: int = 0
    keep: int = 7
    folder: str = ""


@dataclass(frozen=True)
class LicensesConfig:
    lease_hours: int = 72


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    shop: ShopConfig = field(default_factory=ShopConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    blockpn: BlockpnConfig = field(default_factory=BlockpnConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    backups: BackupsConfig = field(default_factory=BackupsConfig)
    licenses: LicensesConfig = field(default_factory=LicensesConfig)
    # Folder that relative paths are resolved against (the config file's folder).
    base_dir: Path = field(default_factory=Path.cwd, compare=False)

    @property
    def database_path(self) -> Path:
        """Absolute path of the SQLite file."""
        return (self.base_dir / self.storage.path).resolve()

    @property
    def data_dir(self) -> Path:
        """The folder holding the database, the secret key and other files of the shop."""
        return self.database_path.parent

    @property
    def files_dir(self) -> Path:
        """Where the files of file_download products are kept."""
        return self.data_dir / "files"

    @property
    def backups_dir(self) -> Path:
        """Where scheduled backups go: `[backups] folder`, or `backups` in the data folder."""
        if self.backups.folder:
            return (self.base_dir / self.backups.folder).resolve()
        return self.data_dir / "backups"

    @property
    def public_url(self) -> str:
        """Base URL used in links that leave the server (emails, checkout URLs)."""
        url = self.server.public_url or f"http://{self.server.host}:{self.server.port}"
        return url.rstrip("/")

    def listening_on(self, host: str, port: int) -> Config:
        """This configuration with the address the server really listens on (from the
        command line), which `public_url` falls back to."""
        server = dataclasses.replace(self.server, host=host, port=port)
        return dataclasses.replace(self, server=server)


# Constraints beyond the type, checked after types: (section, key) -> (test, message).
_CHOICES = {
    ("server", "log_format"): ("text", "json"),
    ("blockpn", "late_payment"): ("deliver", "refund"),
}
_POSITIVE = {
    ("server", "port"), ("server", "threads"), ("storage", "max_upload_mb"),
    ("shop", "download_link_hours"), ("shop", "renewal_notice_days"),
    ("limits", "reads_per_minute"),
    ("limits", "writes_per_minute"), ("limits", "failed_auths_per_minute_per_ip"),
    ("limits", "checkouts_per_minute_per_ip"), ("limits", "max_qty_per_order"),
    ("blockpn", "invoice_ttl_minutes"), ("blockpn", "timeout_seconds"),
    ("webhooks", "timeout_seconds"),
    ("webhooks", "disable_after_hours"), ("jobs", "tick_seconds"),
    ("jobs", "payment_poll_seconds"), ("jobs", "payout_poll_seconds"),
    ("email", "smtp_port"), ("backups", "keep"),
    ("limits", "license_checks_per_minute_per_ip"), ("licenses", "lease_hours"),
}
_NOT_NEGATIVE = {("backups", "every_hours"), ("blockpn", "late_payment_hours")}
MAX_RETRIES = 20


def _accepted_problem(pairs: tuple[str, ...]) -> str | None:
    """Every pair must be one the payment code can open an invoice for."""
    if not pairs:
        return "must name at least one chain:asset pair"
    for pair in pairs:
        chain, _, asset = pair.partition(":")
        if not supports(chain, asset):
            known = ", ".join(f"{c}:{a}" for c, assets in CHAINS.items() for a in assets)
            return f"has {pair!r}, not a chain:asset pair this build supports ({known})"
    return None


def _retry_schedule_problem(schedule: tuple[int, ...]) -> str | None:
    if 1 <= len(schedule) <= MAX_RETRIES and all(delay > 0 for delay in schedule):
        return None
    return f"must be 1 to {MAX_RETRIES} positive integers (seconds)"


def _public_url_problem(url: str) -> str | None:
    """Empty, or an http(s) URL that paths can be appended to (no query, no fragment)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        usable = (parts.scheme in ("http", "https") and parts.hostname and not parts.query
                  and not parts.fragment and not any(c.isspace() for c in url))
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        usable = False
    if usable:
        return None
    return f"must be empty or an http(s) URL such as https://shop.example.com, got {url!r}"


# Checks of a key's value beyond its type: (section, key) -> function giving the problem.
_RULES = {
    ("blockpn", "accepted"): _accepted_problem,
    ("webhooks", "retry_schedule"): _retry_schedule_problem,
    ("email", "retry_schedule"): _retry_schedule_problem,
    ("server", "public_url"): _public_url_problem,
}


def load_config(path: str | Path | None) -> Config:
    """Read the TOML file at `path`; `None` gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} can't be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid UTF-8") from None
    return config_from_dict(raw, base_dir=path.resolve().parent)


def config_from_dict(raw: dict, base_dir: Path | None = None) -> Config:
    """Build a Config from parsed TOML, refusing unknown sections, keys and wrong types."""
    sections = {}
    hints = typing.get_type_hints(Config)
    for section, values in raw.items():
        section_type = hints.get(section)
        if section_type is None or section == "base_dir":
            raise ConfigError(f"unknown config section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"config [{section}] must be a table")
        sections[section] = _build_section(section, section_type, values)
    return Config(**sections, base_dir=base_dir or Path.cwd())


def _build_section(section: str, section_type: type, values: dict):
    hints = typing.get_type_hints(section_type)
    kwargs = {}
    for key, value in values.items():
        attr = "from_" if key == "from" else key
        if attr not in hints or key == "from_":
            raise ConfigError(f"unknown config key {section}.{key}")
        kwargs[attr] = _check_value(f"{section}.{key}", hints[attr], value)
        _check_constraint(section, key, kwargs[attr])
    return section_type(**kwargs)


def _check_value(name: str, expected, value):
    origin = typing.get_origin(expected)
    if origin is tuple:
        item_type = typing.get_args(expected)[0]
        if not isinstance(value, list) or not all(_is_type(v, item_type) for v in value):
            raise ConfigError(f"config key {name} must be a list of {_type_name(item_type)}")
        return tuple(value)
    if not _is_type(value, expected):
        raise ConfigError(f"config key {name} must be {_type_name(expected)}, got {value!r}")
    return value


def _is_type(value, expected) -> bool:
    # TOML booleans are Python bools, and bool is a subclass of int: keep them apart.
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected) -> str:
    return {int: "an integer", str: "a string", bool: "true or false"}[expected]


def _check_constraint(section: str, key: str, value) -> None:
    rule = _RULES.get((section, key))
    problem = rule(value) if rule else None
    if problem:
        raise ConfigError(f"config key {section}.{key} {problem}")
    choices = _CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"config key {section}.{key} must be one of {', '.join(choices)}")
    if (section, key) in _POSITIVE and value <= 0:
        raise ConfigError(f"config key {section}.{key} must be greater than 0")
    if (section, key) in _NOT_NEGATIVE and value < 0:
        raise ConfigError(f"config key {section}.{key} must be 0 or more")
    if key.endswith("port") and value > 65535:
        raise ConfigError(f"config key {section}.{key} must be a port number from 1 to 65535")


def all_keys() -> dict[str, list[str]]:
    """Every section and its keys, as they are spelled in TOML (used to check the sample)."""
    hints = typing.get_type_hints(Config)
    return {
        section: [f.name.rstrip("_") for f in dataclasses.fields(section_type)]
        for section, section_type in hints.items()
        if section != "base_dir"
    }

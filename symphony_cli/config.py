"""Settings: built-in defaults, a TOML file, SYMPHONY_* environment variables and flags.

Each later source overrides the earlier ones, and every value remembers where it came
from so that `symphony config show` can print it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

APP_NAME = "symphony"
# SYMPHONY_* variables that are not settings: the config file path, and test and benchmark servers.
OTHER_VARIABLES = frozenset({"SYMPHONY_CONFIG", "SYMPHONY_TEST_DATABASE_URL", "SYMPHONY_BENCH_DATABASE_URL"})
CONFIG_FILE_NAME = "symphony.toml"
DEFAULT_SOURCE = "default"

# The batch path binds values as arrays, so no statement parameter limit applies. The cap
# keeps one chunk's rows, results and transaction at a size a client can hold.
MAX_BATCH_SIZE_LIMIT = 100_000
PRIORITY_RANGE = range(0, 11)


def app_dir() -> Path:
    """Return the per-user application directory (~/.config/symphony on Linux)."""
    import typer  # imported here because the Python API does not need typer otherwise

    return Path(typer.get_app_dir(APP_NAME))


def default_database_url() -> str:
    return f"sqlite:///{app_dir() / 'symphony.db'}"


# -- value parsers: each takes a TOML value or an environment string and returns the value


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, found a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip().replace("_", "")):
        return int(value.strip().replace("_", ""))
    raise ValueError("expected an integer")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise ValueError("expected true or false")


def _parse_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _parse_int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low:,} and {high:,}")
        return number

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _parse_text(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """One setting: its TOML key, attribute name, parser, default and help text."""

    key: str
    attribute: str
    parse: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return "SYMPHONY_" + self.key.replace(".", "_").upper()


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("database.url", "database_url", _parse_text, None,
                "Store URL: postgresql://... or sqlite:///path (default: an SQLite file in the app directory)"),
    SettingSpec("database.table", "table", _parse_text, "messages",
                "Message table name, optionally schema-qualified (outbox.messages)"),
    SettingSpec("database.auto_create", "auto_create", _parse_bool, True,
                "Create missing tables on first use"),
    SettingSpec("database.connect_timeout", "connect_timeout", _int_between(1, 3600), 10,
                "Seconds to wait for a PostgreSQL connection"),
    SettingSpec("batch.max_size", "max_batch_size", _int_between(1, MAX_BATCH_SIZE_LIMIT), 100,
                "Messages per chunk (one pre-query and one INSERT each)"),
    SettingSpec("batch.use_batch_insert", "use_batch_insert", _parse_bool, True,
                "Send each chunk as one multi-row INSERT; false sends messages one by one"),
    SettingSpec("batch.validate_before_send", "validate_before_send", _parse_bool, True,
                "Check payload values (finite numbers, no NUL, valid Unicode) before sending"),
    SettingSpec("deduplication.window_ms", "window_ms", _int_between(1, 10 * 365 * 86_400_000), 86_400_000,
                "Deduplication window in milliseconds"),
    SettingSpec("deduplication.track_attempts", "track_attempts", _parse_bool, True,
                "Record every duplicate, rejected and conflict attempt"),
    SettingSpec("deduplication.reject_duplicates", "reject_duplicates", _parse_bool, False,
                "Report duplicates as rejected (exit 1) instead of returning the existing id"),
    SettingSpec("deduplication.on_error", "on_dedup_error", _choice("fail", "send"), "fail",
                "When the duplicate check fails: fail the chunk, or send without deduplication"),
    SettingSpec("defaults.transport", "default_transport", _parse_text, "default",
                "Transport for messages that name none"),
    SettingSpec("defaults.priority", "default_priority", _int_between(PRIORITY_RANGE.start, PRIORITY_RANGE.stop - 1), 5,
                "Priority (0-10) for messages that name none"),
)
SPECS_BY_KEY = {spec.key: spec for spec in SPECS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings with the source of each value."""

    database_url: str
    table: str = "messages"
    auto_create: bool = True
    connect_timeout: int = 10
    max_batch_size: int = 100
    use_batch_insert: bool = True
    validate_before_send: bool = True
    window_ms: int = 86_400_000
    track_attempts: bool = True
    reject_duplicates: bool = False
    on_dedup_error: str = "fail"
    default_transport: str = "default"
    default_priority: int = 5
    config_file: Path | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    def value_of(self, key: str) -> Any:
        return getattr(self, SPECS_BY_KEY[key].attribute)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, DEFAULT_SOURCE)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def find_config_file(explicit: str | os.PathLike | None, env: Mapping[str, str]) -> Path | None:
    """Return the configuration file to read, or None when there is none.

    An explicit path (--config) or SYMPHONY_CONFIG must exist; ./symphony.toml and
    config.toml in the app directory are read only when present.
    """
    for given, origin in ((explicit, "--config"), (env.get("SYMPHONY_CONFIG"), "SYMPHONY_CONFIG")):
        if given:
            path = Path(given).expanduser()
            if path.is_dir():
                raise ConfigError(f"{origin}: {str(path)!r} is a directory; give the path of a TOML file")
            if not path.is_file():
                raise ConfigError(f"{origin}: configuration file {str(path)!r} not found")
            return path
    for candidate in (Path(CONFIG_FILE_NAME), app_dir() / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: byte 0x{error.object[error.start]:02X} at offset {error.start} "
                          "is not UTF-8; TOML files must be UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration file: {error.strerror}") from None

    values: dict[str, Any] = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: unknown setting {section!r}; settings live in sections such as [batch]")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in SPECS_BY_KEY:
                raise ConfigError(f"{path}: unknown setting {key!r}; run 'symphony config show' to list the settings")
            values[key] = value
    return values


def _parse(spec: SettingSpec, value: Any, source: str) -> Any:
    try:
        return spec.parse(value)
    except ValueError as error:
        shown = mask_url(value) if spec.key == "database.url" and isinstance(value, str) else value
        raise ConfigError(f"{source}: invalid value {shown!r} for {spec.key}: {error}") from None


def _require_toml_type(spec: SettingSpec, value: Any, path: Path) -> Any:
    """Return the value if its TOML type fits the setting: the file writes true, not "yes"."""
    expected = type(spec.default) if spec.default is not None else str
    if expected in (bool, int) and (type(value) is not expected):
        kind = "true or false" if expected is bool else "an integer"
        raise ConfigError(f"{path}: invalid value {value!r} for {spec.key}: expected {kind}, without quotes")
    return value


def warn_unknown_variables(env: Mapping[str, str]) -> list[str]:
    """Return a warning for each SYMPHONY_* variable that names no setting, such as a misspelt one."""
    known = {spec.env_var for spec in SPECS} | OTHER_VARIABLES
    return [f"{name} is not a symphony setting and is ignored; run 'symphony config show' to list them"
            for name in sorted(env) if name.startswith("SYMPHONY_") and name not in known]


def load_settings(
    config_path: str | os.PathLike | None = None,
    flags: Mapping[str, tuple[Any, str]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting from defaults, the TOML file, the environment and flags.

    `flags` maps a setting key to (value, flag name); a None value means the flag was not given.
    Raises ConfigError, naming the source and the key, for any invalid value.
    """
    env = os.environ if env is None else env
    path = find_config_file(config_path, env)
    file_values = _read_toml(path) if path else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        value, source = spec.default, DEFAULT_SOURCE
        if spec.key in file_values:
            value, source = _parse(spec, _require_toml_type(spec, file_values[spec.key], path), str(path)), str(path)
        if spec.env_var in env:
            value, source = _parse(spec, env[spec.env_var], spec.env_var), spec.env_var
        flag_value, flag_name = (flags or {}).get(spec.key, (None, ""))
        if flag_value is not None:
            value, source = _parse(spec, flag_value, flag_name), flag_name
        values[spec.attribute] = value
        sources[spec.key] = source

    if values["database_url"] is None:
        values["database_url"] = default_database_url()
    return Settings(**values, config_file=path, sources=sources)


_URL_PASSWORD = re.compile(r"(?P<head>://[^:/?#@\s]*:)(?P<password>[^/?#\s]*)(?=@)")
_DSN_PASSWORD = re.compile(r"(?P<head>\b(?:ssl)?password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|(?!\*\*\*)(?:\\.|[^\s&\\])+)", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Replace any password in a database URL, key=value DSN or message with ***."""
    text = _URL_PASSWORD.sub(lambda match: match["head"] + "***", text)
    return _DSN_PASSWORD.sub(lambda match: match["head"] + "***", text)


def mask_secrets(text: str, url: str) -> str:
    """Mask the URL's password in text, also where a driver quotes only part of it.

    libpq splits an unencoded "@" in a password differently from mask_url, so an error
    can quote a piece of the password as a host name. Every piece is therefore masked.
    """
    text = mask_url(text)
    secrets = [match["password"] for pattern in (_URL_PASSWORD, _DSN_PASSWORD) for match in pattern.finditer(url)]
    for secret in secrets:
        for piece in sorted({secret, *re.split(r"[@:/]", secret.strip("'"))}, key=len, reverse=True):
            if len(piece) >= 2:
                text = text.replace(piece, "***")
    return text

"""Settings: precedence of defaults, file, environment and flags; file discovery; value parsing; masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symphony_cli.config import DEFAULT_SOURCE, SPECS, load_settings, mask_secrets, mask_url, warn_unknown_variables
from symphony_cli.errors import ConfigError

# key: (TOML literal in the file, environment string, flag value, and the value each level gives)
LEVELS = {
    "batch.max_size": ("200", "300", 400, (100, 200, 300, 400)),
    "defaults.transport": ('"file-transport"', "env-transport", "flag-transport",
                           ("default", "file-transport", "env-transport", "flag-transport")),
    "deduplication.reject_duplicates": ("true", "false", True, (False, True, False, True)),
    "database.table": ('"file_table"', "env_table", "flag_table", ("messages", "file_table", "env_table", "flag_table")),
    "database.connect_timeout": ("20", "30", 40, (10, 20, 30, 40)),
}
KEYS = list(LEVELS)


def env_var(key: str) -> str:
    return "SYMPHONY_" + key.replace(".", "_").upper()


def write_config(path: Path, values: dict[str, str]) -> Path:
    """Write `values` (key: TOML literal) as a TOML file with one table per section."""
    sections: dict[str, list[str]] = {}
    for key, literal in values.items():
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = {literal}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items()),
                    encoding="utf-8")
    return path


def settings_at_level(key: str, level: int):
    """Load settings with `key` set at levels 1 (file) to `level`: 0 default, 2 env, 3 flag."""
    file_literal, env_text, flag_value, _ = LEVELS[key]
    path = write_config(Path("levels.toml"), {key: file_literal}) if level >= 1 else None
    env = {env_var(key): env_text} if level >= 2 else {}
    flags = {key: (flag_value, "--flag") if level >= 3 else (None, "--flag")}
    return load_settings(path, flags, env=env), path


# -- precedence


@pytest.mark.parametrize("key", KEYS)
def test_default_level_source_default(key):
    settings, _ = settings_at_level(key, 0)

    assert settings.value_of(key) == LEVELS[key][3][0]
    assert settings.source_of(key) == DEFAULT_SOURCE


@pytest.mark.parametrize("key", KEYS)
def test_file_overrides_default(key):
    settings, path = settings_at_level(key, 1)

    assert settings.value_of(key) == LEVELS[key][3][1]
    assert settings.source_of(key) == str(path)


@pytest.mark.parametrize("key", KEYS)
def test_env_overrides_file(key):
    settings, _ = settings_at_level(key, 2)

    assert settings.value_of(key) == LEVELS[key][3][2]
    assert settings.source_of(key) == env_var(key)


@pytest.mark.parametrize("key", KEYS)
def test_flag_overrides_env(key):
    settings, _ = settings_at_level(key, 3)

    assert settings.value_of(key) == LEVELS[key][3][3]
    assert settings.source_of(key) == "--flag"


def test_unset_flag_keeps_env():
    settings = load_settings(flags={"batch.max_size": (None, "--batch-size")}, env={"SYMPHONY_BATCH_MAX_SIZE": "7"})

    assert settings.max_batch_size == 7
    assert settings.source_of("batch.max_size") == "SYMPHONY_BATCH_MAX_SIZE"


def test_other_keys_stay_default():
    settings = load_settings(flags={"batch.max_size": (50, "--batch-size")}, env={})

    assert {spec.key for spec in SPECS if settings.source_of(spec.key) != DEFAULT_SOURCE} == {"batch.max_size"}


def test_default_database_in_app_dir():
    settings = load_settings(env={})

    assert settings.database_url == f"sqlite:///{os.environ['XDG_CONFIG_HOME']}/symphony/symphony.db"
    assert settings.source_of("database.url") == DEFAULT_SOURCE


# -- configuration file discovery: --config, SYMPHONY_CONFIG, ./symphony.toml, app directory


@pytest.fixture
def candidate_files() -> dict[str, Path]:
    """Write one configuration file per discovery place, each setting a different table name."""
    app_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "symphony"
    places = {"flag": Path("flag.toml"), "env": Path("env.toml"), "cwd": Path("symphony.toml"),
              "app_dir": app_dir / "config.toml"}
    return {place: write_config(path, {"database.table": f'"{place}_table"'}) for place, path in places.items()}


def test_explicit_config_first(candidate_files):
    settings = load_settings(candidate_files["flag"], env={"SYMPHONY_CONFIG": str(candidate_files["env"])})

    assert settings.table == "flag_table"
    assert settings.config_file == candidate_files["flag"]


def test_env_config_before_cwd(candidate_files):
    settings = load_settings(env={"SYMPHONY_CONFIG": str(candidate_files["env"])})

    assert settings.table == "env_table"


def test_cwd_file_before_app_dir(candidate_files):
    settings = load_settings(env={})

    assert settings.table == "cwd_table"
    assert settings.source_of("database.table") == "symphony.toml"


def test_app_dir_file_last(candidate_files):
    candidate_files["cwd"].unlink()

    settings = load_settings(env={})

    assert settings.table == "app_dir_table"
    assert settings.config_file == candidate_files["app_dir"]


def test_no_config_file_found():
    settings = load_settings(env={})

    assert settings.config_file is None


def test_missing_explicit_config_raises():
    with pytest.raises(ConfigError, match=r"^--config: configuration file 'absent.toml' not found$"):
        load_settings("absent.toml", env={})


def test_missing_env_config_raises():
    with pytest.raises(ConfigError, match=r"^SYMPHONY_CONFIG: configuration file 'absent.toml' not found$"):
        load_settings(env={"SYMPHONY_CONFIG": "absent.toml"})


def test_config_directory_raises(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})


# -- file contents


def test_unknown_file_key_raises():
    path = write_config(Path("typo.toml"), {"batch.max_sise": "10"})

    with pytest.raises(ConfigError, match=r"^typo.toml: unknown setting 'batch.max_sise'"):
        load_settings(path, env={})


def test_top_level_value_raises():
    path = Path("flat.toml")
    path.write_text("max_size = 10\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"^flat.toml: unknown setting 'max_size'"):
        load_settings(path, env={})


def test_toml_syntax_error_raises():
    path = Path("broken.toml")
    path.write_text("[batch\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"^broken.toml: invalid TOML: .*line 1"):
        load_settings(path, env={})


def test_file_wrong_type_raises():
    path = write_config(Path("typed.toml"), {"batch.use_batch_insert": '"maybe"'})

    with pytest.raises(ConfigError, match=r"^typed.toml: invalid value 'maybe' for batch.use_batch_insert"):
        load_settings(path, env={})


# -- environment value parsing

BOOLEANS = {"true": True, "TRUE": True, "yes": True, "On": True, "1": True, " false ": False, "no": False,
            "off": False, "0": False}
INTEGERS = {"250": 250, " 42 ": 42, "+7": 7, "1_000": 1000}


@pytest.mark.parametrize("text, expected", BOOLEANS.items(), ids=[repr(text) for text in BOOLEANS])
def test_env_bool_parsed(text, expected):
    settings = load_settings(env={"SYMPHONY_DEDUPLICATION_TRACK_ATTEMPTS": text})

    assert settings.track_attempts is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "truthy"])
def test_env_bool_invalid_raises(text):
    with pytest.raises(ConfigError, match=rf"^SYMPHONY_DEDUPLICATION_TRACK_ATTEMPTS: invalid value {text!r} "
                                          r"for deduplication.track_attempts: expected true or false$"):
        load_settings(env={"SYMPHONY_DEDUPLICATION_TRACK_ATTEMPTS": text})


@pytest.mark.parametrize("text, expected", INTEGERS.items(), ids=[repr(text) for text in INTEGERS])
def test_env_int_parsed(text, expected):
    settings = load_settings(env={"SYMPHONY_BATCH_MAX_SIZE": text})

    assert settings.max_batch_size == expected


@pytest.mark.parametrize("text, reason", [("abc", "expected an integer"), ("1.5", "expected an integer"),
                                          ("", "expected an integer"), ("0", "must be between 1 and 100,000"),
                                          ("100001", "must be between 1 and 100,000")])
def test_env_int_invalid_raises(text, reason):
    with pytest.raises(ConfigError, match=rf"^SYMPHONY_BATCH_MAX_SIZE: invalid value {text!r} "
                                          rf"for batch.max_size: {reason}$"):
        load_settings(env={"SYMPHONY_BATCH_MAX_SIZE": text})


def test_file_boolean_not_integer():
    path = write_config(Path("bool.toml"), {"batch.max_size": "true"})

    with pytest.raises(ConfigError, match="invalid value True for batch.max_size: expected an integer"):
        load_settings(path, env={})


def test_file_quoted_boolean_rejected():
    path = Path("quoted.toml")
    path.write_text('[batch]\nuse_batch_insert = "yes"\n')

    with pytest.raises(ConfigError, match="expected true or false, without quotes"):
        load_settings(path, env={})


def test_file_not_utf8_rejected():
    path = Path("latin.toml")
    path.write_bytes(b'[defaults]\ntransport = "caf\xe9"\n')

    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_settings(path, env={})


def test_unknown_variable_warned():
    warnings = warn_unknown_variables({"SYMPHONY_BATCH_MAXSIZE": "5", "SYMPHONY_CONFIG": "x.toml", "PATH": "/bin"})
    assert warnings == ["SYMPHONY_BATCH_MAXSIZE is not a symphony setting and is ignored; "
                        "run 'symphony config show' to list them"]


def test_env_choice_case_insensitive():
    settings = load_settings(env={"SYMPHONY_DEDUPLICATION_ON_ERROR": "SEND"})

    assert settings.on_dedup_error == "send"


# -- mask_url

MASKED = {
    "url": ("postgresql://app:secret@db.internal:5432/outbox", "postgresql://app:***@db.internal:5432/outbox"),
    "url without user": ("postgres://:secret@127.0.0.1/outbox", "postgres://:***@127.0.0.1/outbox"),
    "url with @ in password": ("postgresql://app:p@ss@127.0.0.1/outbox", "postgresql://app:***@127.0.0.1/outbox"),
    "url query parameter": ("postgresql://127.0.0.1/outbox?password=secret&sslmode=disable",
                            "postgresql://127.0.0.1/outbox?password=***&sslmode=disable"),
    "key=value": ("host=127.0.0.1 password=secret dbname=outbox", "host=127.0.0.1 password=*** dbname=outbox"),
    "key = 'quoted value'": ("password = 'se cret' user=app", "password = *** user=app"),
    "key=value upper case": ("PASSWORD=secret", "PASSWORD=***"),
    "ssl key password": ("sslmode=verify-full sslpassword=secret", "sslmode=verify-full sslpassword=***"),
    "inside a message": ("cannot connect to postgresql://app:secret@127.0.0.1/outbox: refused",
                         "cannot connect to postgresql://app:***@127.0.0.1/outbox: refused"),
}
UNCHANGED = ["postgresql://app@127.0.0.1/outbox", "sqlite:////var/lib/symphony/store.db",
             "host=127.0.0.1 user=app dbname=outbox"]


@pytest.mark.parametrize("text, expected", MASKED.values(), ids=MASKED.keys())
def test_mask_url_hides_password(text, expected):
    assert mask_url(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_mask_url_keeps_passwordless(text):
    assert mask_url(text) == text


def test_mask_secrets_hides_password_pieces():
    url = "postgresql://app:S3cret@PW@127.0.0.1:5433/outbox"
    text = mask_secrets("failed to resolve host 'PW@127.0.0.1' for S3cret", url)
    assert "S3cret" not in text
    assert "PW@" not in text


def test_mask_url_escaped_space_in_password():
    assert mask_url("host=db password=abc\\ tailSECRET dbname=x") == "host=db password=*** dbname=x"

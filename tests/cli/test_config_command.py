"""`symphony config show`: every setting with its value and source, as a table or as TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path

from symphony_cli.config import SPECS, load_settings

PASSWORD_URL = "postgresql://app:s3cret-pw@127.0.0.1:5999/outbox"


def show_rows(stdout: str) -> dict[str, tuple[str, str, str]]:
    """Parse the `config show` table into setting -> (value, source, environment variable)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 4:
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


def test_show_lists_every_setting(cli):
    result = cli("config", "show")

    assert result.exit_code == 0
    assert list(show_rows(result.stdout)) == [spec.key for spec in SPECS]


def test_show_env_var_column(cli):
    rows = show_rows(cli("config", "show").stdout)

    assert {key: row[2] for key, row in rows.items()} == {spec.key: spec.env_var for spec in SPECS}


def test_show_sources_per_level(cli):
    Path("symphony.toml").write_text("[batch]\nmax_size = 250\n[defaults]\ntransport = \"push\"\n", encoding="utf-8")

    result = cli("config", "show", "--table", "outbox.messages",
                 env={"SYMPHONY_DEFAULTS_TRANSPORT": "sms", "SYMPHONY_DEFAULTS_PRIORITY": "2"})
    rows = show_rows(result.stdout)

    assert rows["batch.max_size"][:2] == ("250", "symphony.toml")
    assert rows["defaults.transport"][:2] == ('"sms"', "SYMPHONY_DEFAULTS_TRANSPORT")
    assert rows["defaults.priority"][:2] == ("2", "SYMPHONY_DEFAULTS_PRIORITY")
    assert rows["database.table"][:2] == ('"outbox.messages"', "--table")
    assert rows["deduplication.window_ms"][:2] == ("86400000", "default")
    assert rows["batch.use_batch_insert"][:2] == ("true", "default")


def test_show_names_config_file(cli):
    Path("symphony.toml").write_text("[batch]\nmax_size = 250\n", encoding="utf-8")

    result = cli("config", "show")

    assert result.stdout.splitlines()[0].strip() == "configuration file: symphony.toml"


def test_show_masks_password(cli):
    result = cli("config", "show", "--database-url", PASSWORD_URL)
    rows = show_rows(result.stdout)

    assert "s3cret-pw" not in result.stdout
    assert rows["database.url"][0] == '"postgresql://app:***@127.0.0.1:5999/outbox"'


def test_show_toml_masks_password(cli):
    result = cli("config", "show", "--format", "toml", env={"SYMPHONY_DATABASE_URL": PASSWORD_URL})

    assert "s3cret-pw" not in result.stdout
    assert tomllib.loads(result.stdout)["database"]["url"] == "postgresql://app:***@127.0.0.1:5999/outbox"


def test_show_toml_parses(cli):
    result = cli("config", "show", "--format", "toml", "--table", "outbox.messages",
                 env={"SYMPHONY_BATCH_MAX_SIZE": "250", "SYMPHONY_DEDUPLICATION_REJECT_DUPLICATES": "yes"})
    document = tomllib.loads(result.stdout)

    assert result.exit_code == 0
    assert document["batch"]["max_size"] == 250
    assert document["deduplication"]["reject_duplicates"] is True
    assert document["database"]["table"] == "outbox.messages"
    assert sorted(f"{section}.{name}" for section, table in document.items() for name in table) == sorted(
        spec.key for spec in SPECS)


def test_show_toml_round_trip(cli):
    env = {"SYMPHONY_BATCH_MAX_SIZE": "250", "SYMPHONY_DEFAULTS_TRANSPORT": "sms",
           "SYMPHONY_DEDUPLICATION_TRACK_ATTEMPTS": "off", "SYMPHONY_DATABASE_URL": "sqlite:///outbox.db"}
    expected = load_settings(env=env)
    Path("saved.toml").write_text(cli("config", "show", "--format", "toml", env=env).stdout, encoding="utf-8")

    reloaded = load_settings("saved.toml", env={})
    again = cli("config", "show", "--format", "toml", "--config", "saved.toml")

    assert {spec.key: reloaded.value_of(spec.key) for spec in SPECS} == {
        spec.key: expected.value_of(spec.key) for spec in SPECS}
    assert {reloaded.source_of(spec.key) for spec in SPECS} == {"saved.toml"}
    assert again.stdout == Path("saved.toml").read_text(encoding="utf-8")


def test_show_bad_file_exit_two(cli):
    Path("symphony.toml").write_text("[batch]\nmax_sise = 10\n", encoding="utf-8")

    result = cli("config", "show")

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: symphony.toml: unknown setting 'batch.max_sise'; run 'symphony config show' to list the settings"]

"""The one Config: flags > IM_* env > the TOML file > defaults; every setting documented and
in ``im serve --help``; ``im config show`` masks secrets; bad values are named errors."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeim.cli.main import app
from edgeim.ops.config import SECRET_FIELDS, SECTIONS, Config, ConfigError, field_docs, flag, settings_doc

runner = CliRunner()


def test_precedence_is_flags_then_env_then_file_then_defaults(tmp_path: Path):
    file = tmp_path / "im.toml"
    file.write_text('port = 9001\nhost = "0.0.0.0"\nlog-level = "debug"\nrate = 50\nreuse_port = true\n')
    env = {"IM_PORT": "9002", "IM_HOST": "127.0.0.2"}
    config = Config.load({"port": 9003}, env=env, file=file)
    assert (config.port, config.host, config.log_level, config.rate, config.reuse_port) == \
        (9003, "127.0.0.2", "debug", 50.0, True)
    assert Config.load(env=env, file=file).port == 9002
    assert Config.load(env={}, file=file).port == 9001
    assert Config.load(env={"IM_CONFIG": str(file)}).port == 9001  # the file named by IM_CONFIG
    assert Config.load(env={}).port == 8765


@pytest.mark.parametrize("text, message", [
    ("port = 'x'", "port must be a whole number"),
    ("reuse_port = 1", "reuse_port must be true or false"),
    ("colour = 'red'", "unknown setting 'colour'"),
    ("port = ", "not valid TOML"),
    ("port = 70000", "port must be 0..65535"),
    ("backlog = 0", "backlog must be at least 1"),
    ("admin_token = 'short'", "admin_token must be at least 16"),
    ("metrics_token = 'aaaaaaaaaaaaaaaaaaaa'", "metrics_token has fewer than 6 different characters"),
    ("token_secret = 'abcabcabcabcabcabcabcabcabcabcabc'", "token_secret has fewer than 8 different characters"),
    ("http_header_timeout = 0", "http_header_timeout and http_body_timeout must be positive"),
])
def test_a_bad_file_is_a_named_error(tmp_path: Path, text: str, message: str):
    file = tmp_path / "im.toml"
    file.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        Config.load(env={}, file=file)


def test_a_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(env={}, file=tmp_path / "none.toml")


def test_every_setting_is_documented_and_a_flag_of_serve_but_the_secrets():
    docs = field_docs()
    assert all(docs[f.name] for f in fields(Config)), [f.name for f in fields(Config) if not docs[f.name]]
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0
    for f in fields(Config):
        if f.name in SECRET_FIELDS:
            assert f"--{f.name.replace('_', '-')} " not in result.output  # only env, file or a *_file setting
        else:
            assert flag(f.name) in result.output, flag(f.name)
            assert f"IM_{f.name.upper()}" in result.output
    assert "--config" in result.output


SECRET = "secret-" + "0123456789abcdef" * 2


def test_config_show_masks_secrets_and_names_the_source(tmp_path: Path):
    file = tmp_path / "im.toml"
    file.write_text('store = "mysql://im:dbpass@db:3306/im"\nroutes = "redis://r:6379/0"\n'
                    'bus = "rocketmq://mq:9876"\n')
    env = {"IM_CONFIG": str(file), "IM_TOKEN_SECRET": SECRET, "IM_ADMIN_TOKEN": "admin-0123456789abcdef", "IM_PORT": "9100"}
    result = runner.invoke(app, ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["token_secret"] == "***" and shown["admin_token"] == "***"
    assert shown["store"] == "mysql://im:***@db:3306/im"
    assert shown["port"] == 9100
    assert "dbpass" not in result.output and SECRET not in result.output
    table = runner.invoke(app, ["config", "show"], env=env)
    assert table.exit_code == 0
    lines = {line.split()[0]: line.split()[-1] for line in table.output.splitlines()}
    assert (lines["port"], lines["store"], lines["host"]) == ("env", "file", "default")


def test_config_show_and_serve_exit_2_on_a_bad_setting(tmp_path: Path):
    result = runner.invoke(app, ["config", "show"], env={"IM_RATE": "fast"})
    assert result.exit_code == 2 and "IM_RATE must be a number, got 'fast'" in result.output
    result = runner.invoke(app, ["serve", "--port", "99999", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "port must be 0..65535" in result.output
    result = runner.invoke(app, ["serve", "--gc-young", "5", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "gc_young must be 100..1000000, got 5" in result.output


def test_flood_and_bad_frame_limits_say_what_each_does():
    docs = field_docs()
    assert docs["flood_limit"] != docs["bad_frame_limit"]
    assert "before it is closed" in docs["flood_limit"] and "RATE_LIMITED" in docs["flood_limit"]
    assert "malformed" in docs["bad_frame_limit"] and "rate" not in docs["bad_frame_limit"]


def test_version_and_completion():
    result = runner.invoke(app, ["version", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["version"]
    # the shell named: without it, the shell is found among the test's parent processes,
    # and a run whose parents are gone (a detached job) has none
    completion = runner.invoke(app, ["--show-completion", "bash"])
    assert completion.exit_code == 0 and "complete -o default -F" in completion.output


def test_every_setting_is_in_the_operations_doc():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    missing = [f.name for f in fields(Config) if f"`IM_{f.name.upper()}`" not in doc]
    assert not missing, f"docs/operations.md does not document {missing}"
    assert settings_doc() in doc, ("docs/operations.md's settings differ from ops/config.py: paste the output of"
                                   " python -c 'from edgeim.ops.config import settings_doc; print(settings_doc())'")


def test_each_setting_is_in_one_section_and_says_what_it_does():
    placed = [name for names in SECTIONS.values() for name in names]
    assert sorted(placed) == sorted(f.name for f in fields(Config))  # each once
    docs = field_docs()
    shared = {doc for doc in docs.values() if list(docs.values()).count(doc) > 1}
    assert not shared, shared


def test_serve_help_fits_80_columns_in_its_sections():
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output  # nothing cut
    for f in fields(Config):
        if f.name not in SECRET_FIELDS:
            assert f" {flag(f.name)} " in result.output, flag(f.name)  # whole, not cut
    titles = [line.split("─ ", 1)[1].split(" ─", 1)[0] for line in lines if line.startswith("╭─ ")]
    assert titles == ["Options", "Config file", *SECTIONS]
    assert len(lines) < 6 * len(fields(Config))  # was 7 a setting: one description each, no repeats


def test_bad_flag_values_are_sentences():
    result = runner.invoke(app, ["serve", "--port", "abc"])
    assert result.exit_code == 2 and result.output.strip() == "im serve: --port must be a whole number, got 'abc'"
    result = runner.invoke(app, ["serve", "--idle-timeout", "soon"])
    assert result.exit_code == 2 and "--idle-timeout must be a number, got 'soon'" in result.output


def test_boolean_flags_change_their_default(tmp_path: Path):
    import re
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    im = Path(sys.executable).with_name("im")
    proc = subprocess.Popen([str(im), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--no-metrics",
                             "--web-dir", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        http = re.search(r" and (http://\S+)", proc.stdout.readline())[1]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(http + "/metrics", timeout=5)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc.stdout.close()
        proc.stderr.close()

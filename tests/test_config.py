"""Configuration (README.md): defaults, the sample file, and refusing bad files by key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sellix_lite import config as config_module
from sellix_lite.config import Config, ConfigError, config_from_dict, load_config

from conftest import REPO, free_port, run_cli

SAMPLE = REPO / "sample_config.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError that loading `text` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


# --- the sample file and the defaults ------------------------------------------------------


def test_sample_config_loads_and_equals_the_embedded_defaults():
    assert load_config(SAMPLE) == Config()


def test_sample_config_lists_every_key_of_every_section():
    raw = tomllib.loads(SAMPLE.read_text())
    expected = config_module.all_keys()
    assert sorted(raw) == sorted(expected)
    for section, keys in expected.items():
        assert sorted(raw[section]) == sorted(keys), f"[{section}] in the sample"


def test_all_keys_spells_keys_as_in_toml():
    keys = config_module.all_keys()
    assert "from" in keys["email"]
    assert "from_" not in keys["email"]
    assert "base_dir" not in keys


def test_contract_defaults():
    config = Config()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.log_format == "text"
    assert config.storage.path == "sellix-data/sellix.db"
    assert config.limits.reads_per_minute == 600
    assert config.limits.writes_per_minute == 120
    assert config.blockpn.accepted == ("tron:USDT", "ethereum:USDC", "bitcoin:BTC",
                                       "solana:USDC")
    assert config.webhooks.retry_schedule == (60, 120, 300, 900, 3600, 21600, 86400)
    assert config.webhooks.allow_private_targets is False
    assert config.email.from_ == "shop@localhost"
    assert config.public_url == "http://127.0.0.1:8080"


def test_no_config_file_gives_the_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config == Config()
    # Without a config file, relative paths are relative to the working directory.
    assert config.database_path == (tmp_path / "sellix-data" / "sellix.db").resolve()
    assert config.data_dir == (tmp_path / "sellix-data").resolve()


def test_empty_file_gives_the_embedded_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


def test_config_file_that_does_not_exist_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert "nope.toml" in str(info.value)


def test_values_are_read(tmp_path):
    config = load_config(write(tmp_path, """
[server]
host = "0.0.0.0"
port = 9000
log_format = "json"
public_url = "https://shop.example.com/"

[blockpn]
accepted = ["tron:USDT"]

[webhooks]
retry_schedule = [1, 2]
allow_private_targets = true

[email]
from = "sales@example.com"
starttls = false
"""))
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9000
    assert config.server.log_format == "json"
    assert config.public_url == "https://shop.example.com"
    assert config.blockpn.accepted == ("tron:USDT",)
    assert config.webhooks.retry_schedule == (1, 2)
    assert config.webhooks.allow_private_targets is True
    assert config.email.from_ == "sales@example.com"
    assert config.email.starttls is False
    # Untouched keys keep their defaults.
    assert config.server.threads == 8
    assert config.shop == Config().shop


def test_config_from_dict_builds_the_same_config():
    assert config_from_dict({}) == Config()
    assert config_from_dict({"server": {"port": 1234}}).server.port == 1234


# --- refusing bad files, naming the key ----------------------------------------------------


@pytest.mark.parametrize("text, name", [
    ('[server]\nport = "8080"\n', "server.port"),              # string for int
    ("[server]\nthreads = true\n", "server.threads"),          # bool for int
    ("[limits]\nreads_per_minute = 1.5\n", "limits.reads_per_minute"),  # float for int
    ("[shop]\nname = 3\n", "shop.name"),                       # int for string
    ('[email]\nstarttls = "yes"\n', "email.starttls"),         # string for bool
    ("[email]\nstarttls = 1\n", "email.starttls"),             # int for bool
    ("[blockpn]\naccepted = 5\n", "blockpn.accepted"),         # int for list
    ('[blockpn]\naccepted = "tron:USDT"\n', "blockpn.accepted"),  # string for list
    ('[blockpn]\naccepted = ["tron:USDT", 3]\n', "blockpn.accepted"),  # list item wrong
    ('[webhooks]\nretry_schedule = [60, "120"]\n', "webhooks.retry_schedule"),
    ("[webhooks]\nretry_schedule = [60, true]\n", "webhooks.retry_schedule"),
    ('[storage]\npath = ["a"]\n', "storage.path"),
])
def test_wrong_type_names_the_key(tmp_path, text, name):
    assert name in load_error(tmp_path, text)


@pytest.mark.parametrize("raw, name", [
    ({"server": {"port": "8080"}}, "server.port"),
    ({"server": {"threads": False}}, "server.threads"),
    ({"blockpn": {"accepted": 1}}, "blockpn.accepted"),
    ({"webhooks": {"retry_schedule": [1, "2"]}}, "webhooks.retry_schedule"),
])
def test_config_from_dict_wrong_type_names_the_key(raw, name):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert name in str(info.value)


def test_unknown_key_names_the_key(tmp_path):
    assert "server.colour" in load_error(tmp_path, '[server]\ncolour = "blue"\n')


def test_python_spelling_of_from_is_an_unknown_key(tmp_path):
    assert "email.from_" in load_error(tmp_path, '[email]\nfrom_ = "a@example.com"\n')


@pytest.mark.parametrize("text, section", [
    ("[servers]\nport = 1\n", "servers"),
    ('[base_dir]\npath = "x"\n', "base_dir"),
])
def test_unknown_section_names_the_section(tmp_path, text, section):
    assert section in load_error(tmp_path, text)


def test_top_level_key_that_is_not_a_table_is_refused(tmp_path):
    assert "server" in load_error(tmp_path, "server = 5\n")


def test_bad_choice_names_the_key_and_the_choices(tmp_path):
    message = load_error(tmp_path, '[server]\nlog_format = "xml"\n')
    assert "server.log_format" in message
    assert "text" in message and "json" in message


@pytest.mark.parametrize("port", [0, -1])
def test_non_positive_port_names_the_key(tmp_path, port):
    assert "server.port" in load_error(tmp_path, f"[server]\nport = {port}\n")


@pytest.mark.parametrize("port", [65536, 70000])
def test_port_above_65535_names_the_key(tmp_path, port):
    # A port that does not exist must not be silently wrapped into another one.
    assert "server.port" in load_error(tmp_path, f"[server]\nport = {port}\n")


def test_highest_port_is_accepted(tmp_path):
    assert load_config(write(tmp_path, "[server]\nport = 65535\n")).server.port == 65535


@pytest.mark.parametrize("name", [
    "server.threads", "limits.writes_per_minute", "jobs.tick_seconds",
    "webhooks.timeout_seconds", "email.smtp_port",
])
def test_non_positive_counts_name_the_key(tmp_path, name):
    section, key = name.split(".")
    assert name in load_error(tmp_path, f"[{section}]\n{key} = 0\n")


def test_malformed_toml_names_the_line(tmp_path):
    message = load_error(tmp_path, '[server]\nhost = "127.0.0.1"\nport = = 8080\n')
    assert "line 3" in message
    assert "config.toml" in message


def test_duplicate_key_is_malformed_toml(tmp_path):
    message = load_error(tmp_path, "[server]\nport = 1\nport = 2\n")
    assert "line 3" in message


def test_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[shop]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError):
        load_config(path)


# --- paths ---------------------------------------------------------------------------------


def test_relative_storage_path_resolves_against_the_config_files_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path, '[storage]\npath = "data/shop.db"\n', name="etc/config.toml")
    config = load_config(path)
    assert config.database_path == (tmp_path / "etc" / "data" / "shop.db").resolve()
    assert config.data_dir == (tmp_path / "etc" / "data").resolve()


def test_relative_config_path_itself_resolves_from_the_working_directory(tmp_path,
                                                                          monkeypatch):
    write(tmp_path, '[storage]\npath = "db/shop.db"\n', name="etc/config.toml")
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/config.toml")
    assert config.database_path == (tmp_path / "etc" / "db" / "shop.db").resolve()
    assert config.database_path.is_absolute()


def test_default_storage_path_resolves_against_the_config_files_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, "", name="etc/config.toml"))
    assert config.database_path == (tmp_path / "etc" / "sellix-data" / "sellix.db").resolve()


def test_absolute_storage_path_is_kept(tmp_path):
    target = tmp_path / "abs" / "shop.db"
    config = load_config(write(tmp_path, f'[storage]\npath = "{target}"\n', name="etc/c.toml"))
    assert config.database_path == target.resolve()


# --- through the command line --------------------------------------------------------------

BAD_FILES = {
    "malformed": ('[server]\nport = = 8080\n', "line 2"),
    "unknown_key": ('[server]\nporty = 8080\n', "server.porty"),
    "wrong_type": ('[server]\nport = "8080"\n', "server.port"),
}


def assert_one_line_error(result, mentions: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    assert mentions in lines[0]


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["malformed", "unknown_key"])
def test_cli_bad_config_file_is_one_line_and_exit_1(tmp_path, kind):
    text, mentions = BAD_FILES[kind]
    path = write(tmp_path, text)
    result = run_cli("--config", path, "migrate", cwd=tmp_path)
    assert_one_line_error(result, mentions)
    assert result.stdout == ""
    # Nothing was created from a configuration that was refused.
    assert not (tmp_path / "sellix-data").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["malformed", "unknown_key"])
def test_cli_bad_config_file_from_the_environment(tmp_path, kind):
    text, mentions = BAD_FILES[kind]
    path = write(tmp_path, text)
    result = run_cli("migrate", cwd=tmp_path, SELLIX_LITE_CONFIG=str(path))
    assert_one_line_error(result, mentions)
    assert not (tmp_path / "sellix-data").exists()


@pytest.mark.e2e
def test_cli_config_file_that_does_not_exist_is_one_line_and_exit_1(tmp_path):
    result = run_cli("--config", tmp_path / "missing.toml", "migrate", cwd=tmp_path)
    assert_one_line_error(result, "missing.toml")


@pytest.mark.e2e
def test_cli_config_from_the_environment_is_used(tmp_path):
    path = write(tmp_path, '[storage]\npath = "from-env/shop.db"\n', name="etc/config.toml")
    result = run_cli("migrate", cwd=tmp_path, SELLIX_LITE_CONFIG=str(path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc" / "from-env" / "shop.db").exists()
    assert not (tmp_path / "sellix-data").exists()


@pytest.mark.e2e
def test_cli_config_option_wins_over_the_environment(tmp_path):
    option = write(tmp_path, '[storage]\npath = "from-option/shop.db"\n', name="a/config.toml")
    env = write(tmp_path, '[storage]\npath = "from-env/shop.db"\n', name="b/config.toml")
    result = run_cli("--config", option, "migrate", cwd=tmp_path, SELLIX_LITE_CONFIG=str(env))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "from-option" / "shop.db").exists()
    assert not (tmp_path / "b" / "from-env").exists()


# --- values the types allow but the shop can't use -----------------------------------------

@pytest.mark.parametrize("accepted, named", [
    ('["tron:BTC"]', "tron:BTC"),                    # a chain without that asset
    ('["tron:USDT", "dogecoin:DOGE"]', "dogecoin:DOGE"),  # a chain this build lacks
    ('["TRON:USDT"]', "TRON:USDT"),                  # spelled as the API never does
    ('["tronUSDT"]', "tronUSDT"),                    # not chain:asset
    ("[]", "at least one"),
])
def test_accepted_pairs_must_be_supported(tmp_path, accepted, named):
    message = load_error(tmp_path, f"[blockpn]\naccepted = {accepted}\n")
    assert "blockpn.accepted" in message and named in message
    assert "\n" not in message


def test_supported_accepted_pairs_pass(tmp_path):
    config = load_config(write(tmp_path, '[blockpn]\naccepted = ["bsc:BNB", "base:ETH"]\n'))
    assert config.blockpn.accepted == ("bsc:BNB", "base:ETH")


@pytest.mark.parametrize("section", ["webhooks", "email"])
@pytest.mark.parametrize("schedule", ["[60, -1]", "[0]", "[]", str([60] * 21)])
def test_retry_schedule_is_1_to_20_positive_integers(tmp_path, section, schedule):
    message = load_error(tmp_path, f"[{section}]\nretry_schedule = {schedule}\n")
    assert message == (f"config key {section}.retry_schedule must be 1 to 20 positive "
                       "integers (seconds)")


@pytest.mark.parametrize("section", ["webhooks", "email"])
def test_retry_schedule_of_1_and_of_20_pass(tmp_path, section):
    for schedule in ([5], [60] * 20):
        config = load_config(write(tmp_path, f"[{section}]\nretry_schedule = {schedule}\n"))
        assert getattr(config, section).retry_schedule == tuple(schedule)


@pytest.mark.parametrize("url", ["shop.example.com", "ftp://shop.example.com", "https://",
                                 "http://shop.example.com/?a=1", "http://shop.example.com/#x",
                                 "http://shop example.com", "javascript:alert(1)"])
def test_public_url_must_be_empty_or_an_http_url(tmp_path, url):
    message = load_error(tmp_path, f'[server]\npublic_url = "{url}"\n')
    assert message.startswith("config key server.public_url must be empty or an http(s) URL")


@pytest.mark.parametrize("url", ["", "https://shop.example.com", "http://127.0.0.1:8080/",
                                 "https://example.com/shop"])
def test_public_url_accepted(tmp_path, url):
    assert load_config(write(tmp_path, f'[server]\npublic_url = "{url}"\n')).server.public_url \
        == url


@pytest.mark.e2e
def test_serve_refuses_an_unsupported_pair_in_one_line(tmp_path):
    write(tmp_path, f'[server]\nport = {free_port()}\n[blockpn]\naccepted = ["tron:BTC"]\n')
    result = run_cli("--config", "config.toml", "serve", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("error: config key blockpn.accepted")
    assert len(result.stderr.splitlines()) == 1


def test_sample_names_every_supported_pair():
    from sellix_lite.chains import CHAINS

    text = SAMPLE.read_text()
    assert [f"{c}:{a}" for c, assets in CHAINS.items() for a in assets
            if f"{c}:{a}" not in text] == []

"""The settings loader: layering, errors that say where, and no secret in an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwfleet.settings import AgentSettings, ServerSettings, SettingsError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hwfleet.toml"
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, '[server]\nscan_quiet_timeout = 3.0\nbus = "amqp://file/"\n')
    env = {"HWFLEET_BUS": "amqp://env/", "HWFLEET_CALL_TIMEOUT": "3"}
    s = load(ServerSettings, config_file=config, env=env, flags={"call_timeout": 4.0, "mes": None})
    assert s.scan_quiet_timeout == 3.0  # file over default
    assert s.bus == "amqp://env/"  # environment over file
    assert s.call_timeout == 4.0  # flag over environment
    assert s.mes == ""  # a flag left unset (None) changes nothing
    assert s.api_listen == ServerSettings().api_listen


def test_the_agent_reads_its_own_table(tmp_path: Path) -> None:
    config = write(tmp_path, '[server]\nbus = "x"\n[agent]\ntransport = "amqp"\n')
    assert load(AgentSettings, config_file=config, env={}).transport == "amqp"


def test_a_bad_value_names_the_setting_and_where_it_came_from() -> None:
    with pytest.raises(SettingsError) as error:
        load(ServerSettings, env={"HWFLEET_SCAN_QUIET_TIMEOUT": "soon"})
    text = str(error.value)
    assert "scan_quiet_timeout" in text and "HWFLEET_SCAN_QUIET_TIMEOUT" in text
    with pytest.raises(SettingsError, match=r"scan_quiet_timeout .*--scan-quiet-timeout.*> 0"):
        load(ServerSettings, env={}, flags={"scan_quiet_timeout": -1.0})


def test_unknown_keys_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'scan_quiet'"):
        load(ServerSettings, config_file=write(tmp_path, "[server]\nscan_quiet = 1\n"), env={})
    with pytest.raises(SettingsError, match="does not exist"):
        load(ServerSettings, config_file=tmp_path / "absent.toml", env={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load(ServerSettings, config_file=write(tmp_path, "[server\n"), env={})


def test_no_secret_reaches_an_error_message(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        load(ServerSettings, env={}, flags={"enroll_password": ["hunter2-secret"]})
    assert "hunter2-secret" not in str(error.value)
    # A URL with a password, given with the wrong type in the file: the password is masked.
    config = write(tmp_path, '[server]\nbus = ["amqp://ops:hunter2-secret@broker:5672/"]\n')
    with pytest.raises(SettingsError) as error:
        load(ServerSettings, config_file=config, env={})
    assert "hunter2-secret" not in str(error.value)
    assert "amqp://ops:***@broker:5672/" in str(error.value)


def test_durations_take_units_from_every_source(tmp_path: Path) -> None:
    config = write(tmp_path, '[server]\nscan_quiet_timeout = "1m"\n')
    env = {"HWFLEET_OFFLINE_AFTER": "2h", "HWFLEET_HANDSHAKE_TIMEOUT": "1.5"}
    s = load(ServerSettings, config_file=config, env=env, flags={"call_timeout": "90s"})
    assert (s.scan_quiet_timeout, s.offline_after, s.call_timeout) == (60.0, 7200.0, 90.0)
    assert s.handshake_timeout == 1.5
    agent = load(AgentSettings, env={"HWFLEET_RECONNECT_MAX": "2d"})
    assert agent.reconnect_max == 172800.0
    with pytest.raises(
        SettingsError, match=r"offline_after = '1 week' \(from HWFLEET_OFFLINE_AFTER\)"
    ):
        load(ServerSettings, env={"HWFLEET_OFFLINE_AFTER": "1 week"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HWFLEET_DB": "garbage://x"},
            "setting db = 'garbage://x' (from HWFLEET_DB): database URL scheme 'garbage' is not "
            "supported",
        ),
        ({"HWFLEET_BUS": "foo://x"}, "setting bus = 'foo://x' (from HWFLEET_BUS): not a bus URL"),
        ({"HWFLEET_BUS": ""}, "setting bus = '' (from HWFLEET_BUS): is empty"),
        ({"HWFLEET_LOG_LEVEL": "loud"}, "setting log_level = 'loud' (from HWFLEET_LOG_LEVEL)"),
        ({"HWFLEET_API_LISTEN": "bad"}, "api_listen = 'bad' (from HWFLEET_API_LISTEN): 'bad' is"),
        ({"HWFLEET_AGENT_LISTEN": "h:99999"}, "(from HWFLEET_AGENT_LISTEN): 'h:99999': port"),
        ({"HWFLEET_MES": "mes.local:80"}, "setting mes = 'mes.local:80' (from HWFLEET_MES): not"),
    ],
)
def test_unusable_values_are_refused_at_load_naming_source_and_fix(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load(ServerSettings, env=env)
    assert expected in str(error.value)
    key = next(iter(env)).removeprefix("HWFLEET_").lower()
    assert str(error.value).endswith(f"set --{key.replace('_', '-')} or HWFLEET_{key.upper()}")


def test_agent_values_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"transport = 'udp' \(from --transport\)"):
        load(AgentSettings, env={}, flags={"transport": "udp"})
    with pytest.raises(SettingsError, match=r"controller = 'ctl' \(from .*hwfleet.toml\)"):
        load(AgentSettings, env={}, config_file=write(tmp_path, '[agent]\ncontroller = "ctl"\n'))
    assert load(AgentSettings, env={}).bus == ""  # no bus: the stream transport
    # A URL where an address belongs (an operator's first try, seen): refused at start.
    with pytest.raises(
        SettingsError, match=r"image_server = 'https://h:8445' \(from --image-server\)"
    ) as error:
        load(AgentSettings, env={}, flags={"image_server": "https://h:8445"})
    assert "without a scheme or path" in str(error.value)
    assert load(AgentSettings, env={}, flags={"image_server": "h:8445"}).image_server == "h:8445"


def test_keys_outside_the_tables_and_misplaced_keys_are_refused(tmp_path: Path) -> None:
    top = write(tmp_path, 'bus = "amqp://x/"\n[server]\ndb = ""\n')
    with pytest.raises(SettingsError, match=r"hwfleet\.toml: unknown top-level key 'bus'"):
        load(ServerSettings, config_file=top, env={})
    # A typo in the [agent] table is caught even by the server, which reads the same file.
    other = write(tmp_path, '[server]\ndb = ""\n[agent]\ncontrollr = "h:1"\n')
    with pytest.raises(SettingsError, match=r"unknown setting 'controllr' in \[agent\]"):
        load(ServerSettings, config_file=other, env={})

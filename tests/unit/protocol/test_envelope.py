"""The seed-001 envelope: every line decodes to a message, an error reply, or a fatal error."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwfleet.protocol import envelope
from hwfleet.protocol.envelope import BadEnvelopeError, Command, Error, FatalError, Result
from hwfleet.protocol.errors import ErrorCode, FatalProtocolError

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.text(), json_values, max_size=5)


def test_command_round_trips_exactly() -> None:
    cmd = envelope.command("decom.qc", {"task_id": "t1", "spec": {"min_cpu_count": 2}})
    line = envelope.encode(cmd)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert msgspec.json.decode(line) == {
        "version": "1",
        "id": cmd.id,
        "method": "decom.qc",
        "params": {"task_id": "t1", "spec": {"min_cpu_count": 2}},
    }
    assert envelope.decode(line) == cmd


@given(method=st.text(min_size=1), params=objects, mid=st.text(min_size=1))
def test_valid_commands_round_trip(method: str, params: dict[str, object], mid: str) -> None:
    cmd = Command(version="1", id=mid, method=method, params=params)
    assert envelope.decode(envelope.encode(cmd)) == cmd


@given(value=objects, mid=st.text(min_size=1))
def test_results_and_errors_round_trip(value: dict[str, object], mid: str) -> None:
    assert envelope.decode(envelope.encode(envelope.result(mid, value))) == Result("1", mid, value)
    err = envelope.error(mid, "nope", ErrorCode.BUSY)
    decoded = envelope.decode(envelope.encode(err))
    assert isinstance(decoded, Error) and decoded.error.code == "busy"


@settings(max_examples=500)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        message = envelope.decode(data)
    except FatalProtocolError as exc:  # answered with fatal_error
        assert str(exc)
    except BadEnvelopeError as exc:  # answered with an error reply to exc.message_id
        assert exc.message_id and exc.msg
    else:
        assert isinstance(message, Command | Result | Error | FatalError)


@given(value=json_values)
def test_any_json_value_is_classified(value: object) -> None:
    line = msgspec.json.encode(value)
    with contextlib.suppress(FatalProtocolError, BadEnvelopeError):
        envelope.decode(line)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"method": "ping"}', "no string 'id'"),
        (b'{"id": "1", "method": "ping"}', "no string 'version'"),
        (b'{"version": 1, "id": "1"}', "no string 'version'"),
        (b'{"version": "1", "id": 7, "method": "ping"}', "no string 'id'"),
        (b'{"version": "1", "id": "x", "method": "p", "params": {"a": "\xff"}}', "UTF-8"),
    ],
)
def test_lines_without_a_usable_id_are_fatal(line: bytes, reason: str) -> None:
    with pytest.raises(FatalProtocolError, match=reason):
        envelope.decode(line)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"version": "1", "id": "a"}', ErrorCode.BAD_REQUEST),
        (b'{"version": "1", "id": "a", "method": "ping", "params": [1]}', ErrorCode.BAD_PARAMS),
        (b'{"version": "1", "id": "a", "method": ""}', ErrorCode.BAD_REQUEST),
        (b'{"version": "2", "id": "a", "method": "ping"}', ErrorCode.UNSUPPORTED_VERSION),
        (b'{"version": "1", "id": "a", "error": "flat"}', ErrorCode.BAD_REQUEST),
    ],
)
def test_wrong_envelopes_with_an_id_get_an_error_reply(line: bytes, code: ErrorCode) -> None:
    with pytest.raises(BadEnvelopeError) as info:
        envelope.decode(line)
    assert info.value.message_id == "a"
    assert info.value.code == code


def test_fatal_error_needs_no_id() -> None:
    assert envelope.decode(b'{"fatal_error": "bye"}') == FatalError("bye")


def test_null_params_mean_empty() -> None:
    cmd = envelope.decode(b'{"version": "1", "id": "a", "method": "ping", "params": null}')
    assert isinstance(cmd, Command) and cmd.params == {}

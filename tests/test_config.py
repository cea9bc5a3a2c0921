"""Annotation parsing: defaults, bounds, denials that name the value, warnings."""

from __future__ import annotations

import pytest

from webhook.config import (
    DEFAULTS,
    AnnotationError,
    HeartbeatConfig,
    is_enabled,
    parse_config,
    quote,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("True", True), ("false", False), ("FaLsE", False)],
)
def test_enabled_values(value: str, expected: bool) -> None:
    assert is_enabled({"heartbeat/enabled": value}) is expected


def test_enabled_absent_is_false() -> None:
    assert is_enabled({"other": "x"}) is False


@pytest.mark.parametrize("value", ["yes", "1", "", " true", "on", "truee"])
def test_enabled_invalid_is_denied_with_value_and_accepted(value: str) -> None:
    with pytest.raises(AnnotationError) as caught:
        is_enabled({"heartbeat/enabled": value})
    message = str(caught.value)
    assert "heartbeat/enabled" in message
    assert quote(value) in message
    assert '"true" or "false"' in message


def test_defaults() -> None:
    config, warnings = parse_config({"heartbeat/enabled": "true"})
    assert config == HeartbeatConfig()
    assert (config.max_age, config.period, config.initial_delay) == (90, 30, 10)
    assert (config.failure_threshold, config.timeout, config.probe) == (3, 5, "shell")
    assert config.path is None and config.containers is None
    assert config.startup_grace is None and config.termination_grace is None
    assert warnings == []


def test_every_setting_parsed() -> None:
    config, _ = parse_config(
        {
            "heartbeat/path": "/data/beat",
            "heartbeat/max-age": "120",
            "heartbeat/period": "15",
            "heartbeat/initial-delay": "0",
            "heartbeat/failure-threshold": "5",
            "heartbeat/timeout": "7",
            "heartbeat/containers": " worker , uploader,worker",
            "heartbeat/startup-grace": "300",
            "heartbeat/termination-grace": "5",
            "heartbeat/probe": "python",
        }
    )
    assert config == HeartbeatConfig(
        path="/data/beat",
        max_age=120,
        period=15,
        initial_delay=0,
        failure_threshold=5,
        timeout=7,
        containers=("worker", "uploader"),
        startup_grace=300,
        termination_grace=5,
        probe="python",
    )


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("heartbeat/max-age", "1", "from 2 to 86400"),
        ("heartbeat/max-age", "86401", "from 2 to 86400"),
        ("heartbeat/max-age", "-5", "from 2 to 86400"),
        ("heartbeat/max-age", "9e9", "from 2 to 86400"),
        ("heartbeat/max-age", "1.5", "from 2 to 86400"),
        ("heartbeat/max-age", "", "from 2 to 86400"),
        ("heartbeat/max-age", "١٢", "from 2 to 86400"),  # non-ASCII digits
        ("heartbeat/period", "0", "from 1 to 3600"),
        ("heartbeat/initial-delay", "3601", "from 0 to 3600"),
        ("heartbeat/failure-threshold", "0", "whole number from 1 to 100"),
        ("heartbeat/timeout", "61", "from 1 to 60"),
        ("heartbeat/startup-grace", "0", "from 1 to 86400"),
        ("heartbeat/termination-grace", "999999999", "from 1 to 3600"),
        ("heartbeat/path", "relative/beat", "absolute file path"),
        ("heartbeat/path", "/tmp/../etc/beat", "absolute file path"),
        ("heartbeat/path", "/tmp/./beat", "absolute file path"),
        ("heartbeat/path", "/tmp/beat; rm -rf /", "absolute file path"),
        ("heartbeat/path", "/tmp/$(id)", "absolute file path"),
        ("heartbeat/path", "/tmp/beat\n", "absolute file path"),
        ("heartbeat/path", "/tmp//beat", "absolute file path"),
        ("heartbeat/path", "/", "absolute file path"),
        ("heartbeat/path", "/" + "a" * 200, "absolute file path"),
        ("heartbeat/containers", "", "comma-separated container names"),
        ("heartbeat/containers", "a,,b", "comma-separated container names"),
        ("heartbeat/containers", "Worker", "comma-separated container names"),
        ("heartbeat/containers", "a b", "comma-separated container names"),
        ("heartbeat/probe", "bash", '"shell"'),
        ("heartbeat/probe", "Python", '"python"'),
    ],
)
def test_bad_values_are_denied_naming_annotation_value_and_form(
    key: str, value: str, accepted: str
) -> None:
    with pytest.raises(AnnotationError) as caught:
        parse_config({"heartbeat/enabled": "true", key: value})
    error = caught.value
    assert error.annotation == key
    assert error.value == value
    message = str(error)
    assert key in message
    assert quote(value) in message
    assert accepted in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("heartbeat/max-age", "2"),
        ("heartbeat/max-age", "86400"),
        ("heartbeat/period", "1"),
        ("heartbeat/initial-delay", "0"),
        ("heartbeat/timeout", "60"),
        ("heartbeat/path", "/a"),
        ("heartbeat/path", "/var/lib/app-1/beat.v2"),
    ],
)
def test_bounds_are_inclusive(key: str, value: str) -> None:
    parse_config({key: value})


def test_unknown_heartbeat_key_warns_with_suggestion() -> None:
    _, warnings = parse_config(
        {"heartbeat/perod": "10", "other/x": "y", "heartbeat/injected": "{}"}
    )
    assert len(warnings) == 1
    assert '"heartbeat/perod"' in warnings[0]
    assert "did you mean heartbeat/period?" in warnings[0]


def test_unknown_key_with_hostile_name_is_quoted() -> None:
    _, warnings = parse_config({"heartbeat/\x1b[31mred\nline": "x"})
    assert "\x1b" not in warnings[0] and "\n" not in warnings[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ("new\nline", '"new\\nline"'),
        ("bell\x07", '"bell\\u0007"'),
        ("caf\u00e9", '"caf\\u00e9"'),
        (42, '"42"'),
    ],
)
def test_quote_escapes_control_and_non_ascii(value: object, expected: str) -> None:
    assert quote(value) == expected


def test_quote_truncates_long_values() -> None:
    quoted = quote("x" * 10_000)
    assert len(quoted) < 100
    assert quoted.endswith("...(10000 chars)")
    assert quoted.isascii() and quoted.isprintable()


def test_defaults_object_matches_class_defaults() -> None:
    assert HeartbeatConfig() == DEFAULTS

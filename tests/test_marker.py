"""The heartbeat/injected annotation: one format, written and read in one module."""

from __future__ import annotations

import json

import pytest

from webhook import __version__
from webhook.config import HeartbeatConfig
from webhook.marker import Marker, marker_value, read_marker


def test_written_value_reads_back() -> None:
    value = marker_value(HeartbeatConfig(), {"worker": "/tmp/heartbeat"}, ["worker"])
    marker = read_marker(value)
    assert marker.containers == ("worker",)
    assert marker.version == __version__
    assert len(marker.settings) == 10
    assert json.loads(value) == {
        "containers": ["worker"],
        "settings": marker.settings,
        "version": __version__,
    }


def test_settings_hash_follows_settings_and_paths() -> None:
    base = read_marker(marker_value(HeartbeatConfig(), {"w": "/a"}, ["w"])).settings
    other_age = read_marker(marker_value(HeartbeatConfig(max_age=91), {"w": "/a"}, ["w"]))
    other_path = read_marker(marker_value(HeartbeatConfig(), {"w": "/b"}, ["w"]))
    assert base not in (other_age.settings, other_path.settings)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Marker()),
        (42, Marker()),
        ("not json", Marker()),
        ("[1, 2]", Marker()),
        ('{"containers": "worker"}', Marker()),
        ('{"containers": [1, "worker", null], "settings": 5, "version": ["x"]}',
         Marker(containers=("worker",))),
    ],
    ids=["none", "number", "not-json", "list", "containers-string", "wrong-types"],
)  # fmt: skip
def test_hostile_values_read_as_empty_fields(value: object, expected: Marker) -> None:
    assert read_marker(value) == expected

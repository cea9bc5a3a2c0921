# ruff: noqa: E501  (the canned pprof text keeps real, long function names)
"""bench/apiserver_profile.py reads `go tool pprof -top -cum` text into CPU per create.

The text below is the head of a real profile of kube-apiserver 1.37 under pod
creates with heartbeat-webhook registered (trimmed); the bench smoke test runs
the whole path against a real apiserver and `go tool pprof`.
"""

from __future__ import annotations

import re

import pytest

from bench import apiserver_profile as ap

TOP = """\
File: kube-apiserver
Type: cpu
Duration: 15s, Total samples = 9.24s (61.60%)
Showing nodes accounting for 0.03s, 0.32% of 9.24s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      4.38s 47.40%  k8s.io/apiserver/pkg/endpoints/handlers.CreateResource.createHandler.func1.2
     0.01s  0.11%  0.11%      2.73s 29.55%  k8s.io/apiserver/pkg/admission.chainAdmissionHandler.Admit
         0     0%  0.32%      2.41s 26.08%  k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).Dispatch
         0     0%  0.32%      2.06s 22.29%  k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook
         0     0%  0.32%      0.67s  7.25%  gopkg.in/evanphx/json-patch%2ev4.Patch.Apply
     0.02s  0.22%  0.54%       80ms  0.87%  encoding/json.compact (inline)
         0     0%  0.54%      0.70s  7.58%  runtime.gcBgMarkWorker
"""


def test_parse_top_reads_the_total_and_each_functions_cumulative_time() -> None:
    total, functions = ap.parse_top(TOP)
    assert total == pytest.approx(9.24)
    assert functions["gopkg.in/evanphx/json-patch%2ev4.Patch.Apply"] == pytest.approx(0.67)
    # "(inline)" is pprof's note, not part of the name; milliseconds are converted.
    assert functions["encoding/json.compact"] == pytest.approx(0.08)
    assert len(functions) == 7  # header lines are not functions


def test_parse_top_without_a_total_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="Total samples"):
        ap.parse_top("File: kube-apiserver\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("10ms", 0.01), ("1.25s", 1.25), ("250us", 0.00025), ("2mins", 120.0)],
)
def test_seconds_reads_pprof_durations(text: str, seconds: float) -> None:
    assert ap.seconds(text) == pytest.approx(seconds)


def test_seconds_rejects_what_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="not a pprof duration"):
        ap.seconds("0.32%")


def test_each_stage_names_exactly_one_function_of_a_real_profile() -> None:
    _, functions = ap.parse_top(TOP)
    names = list(functions)
    expected = {
        "mutating admission webhooks, all": "mutating.(*mutatingDispatcher).Dispatch",
        "↳ the call to the webhook": "callAttrMutatingHook",
        "  ↳ applying the answer's JSON patch": "Patch.Apply",
        "Go garbage collection (background marking)": "runtime.gcBgMarkWorker",
    }
    for stage in ap.STAGES:
        matches = [name for name in names if re.search(stage.function, name)]
        if stage.label in expected:
            assert len(matches) == 1, (stage.label, matches)
            assert matches[0].endswith(expected[stage.label])
        else:
            assert len(matches) <= 1, (stage.label, matches)

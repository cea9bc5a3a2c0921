"""SIGTERM under load: reviews in flight are answered, readiness turns false before the
listener closes, and with two replicas behind a balancer the apiserver's calls move to
the other one without failing open."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from tests.faults.harness import (
    Balancer,
    Burst,
    CreateLoad,
    FaultWebhook,
    LifecycleWatch,
    LoadReport,
    fail_open_count,
    point_mutating_webhook,
    review,
    stopping,
    wait_for_calls,
    webhook_call_codes,
)
from tests.integration.cluster import ControlPlane

DRAIN = 5.0  # serve's default --drain-seconds
JSON = {"Content-Type": "application/json"}


@dataclass
class Answer:
    sent: float
    status: int = 0
    uid_ok: bool = False
    close: bool = False
    error: str = ""


@dataclass
class Hammer:
    """Reviews POSTed back to back on kept-alive connections; reconnects when told to close."""

    hook: FaultWebhook
    ident: int
    answers: list[Answer] = field(default_factory=list)
    refused: int = 0

    def run(self, stop: threading.Event) -> None:
        connection: http.client.HTTPSConnection | None = None
        number = 0
        while not stop.is_set():
            if connection is None:
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.hook.port, context=self.hook.context(), timeout=15
                )
                try:
                    connection.connect()
                except ConnectionRefusedError:
                    self.refused += 1  # never sent: not a lost review
                    connection = None
                    time.sleep(0.05)
                    continue
            number += 1
            uid = f"hammer-{self.ident}-{number}"
            answer = Answer(time.monotonic())
            self.answers.append(answer)
            try:
                connection.request("POST", "/mutate", review(uid), JSON)
                response = connection.getresponse()
                body = json.loads(response.read())
                answer.status = response.status
                answer.uid_ok = body["response"]["uid"] == uid
                answer.close = response.getheader("connection") == "close"
                reconnect = response.will_close
            except (OSError, http.client.HTTPException, ValueError) as error:
                answer.error = f"{type(error).__name__}: {error}"  # sent, never answered
                reconnect = True
            if reconnect:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


class Trickle:
    """A review whose headers and first half of the body are sent now, the rest later:
    a call the apiserver has in flight across the moment the server shuts down."""

    def __init__(self, hook: FaultWebhook, uid: str) -> None:
        self.uid = uid
        self.body = review(uid)
        self.connection = http.client.HTTPSConnection(
            "127.0.0.1", hook.port, context=hook.context(), timeout=15
        )
        self.connection.putrequest("POST", "/mutate")
        self.connection.putheader("Content-Type", "application/json")
        self.connection.putheader("Content-Length", str(len(self.body)))
        self.connection.endheaders(self.body[: len(self.body) // 2])

    def finish(self) -> Answer:
        answer = Answer(time.monotonic())
        try:
            self.connection.send(self.body[len(self.body) // 2 :])
            response = self.connection.getresponse()
            body = json.loads(response.read())
            answer.status = response.status
            answer.uid_ok = body["response"]["uid"] == self.uid and "patch" in body["response"]
            answer.close = response.getheader("connection") == "close"
        except (OSError, http.client.HTTPException, ValueError) as error:
            answer.error = f"{type(error).__name__}: {error}"
        finally:
            self.connection.close()
        return answer


def test_sigterm_answers_every_review_in_flight(webhook: FaultWebhook, tmp_path: Path) -> None:
    hook = webhook.replica(tmp_path, "drain-direct")
    with stopping(hook):
        hook.start()
        stop_hammer = threading.Event()
        hammers = [Hammer(hook, i) for i in range(4)]
        threads = [threading.Thread(target=h.run, args=(stop_hammer,)) for h in hammers]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            early = [Trickle(hook, f"early-{i}") for i in range(4)]  # in flight before SIGTERM
            watch = LifecycleWatch(hook, interval=0.05).start()
            sigterm = time.monotonic()
            hook.signal(signal.SIGTERM)
            deadline = sigterm + 10
            while watch.seen.unready is None and time.monotonic() < deadline:
                time.sleep(0.02)
            late = [Trickle(hook, f"late-{i}") for i in range(4)]  # arrived while draining
            time.sleep(DRAIN / 2)
        finally:
            stop_hammer.set()  # as a balancer would: no new connections once unready
            for thread in threads:
                thread.join(30)
        deadline = sigterm + DRAIN + 15
        while watch.seen.closed is None and time.monotonic() < deadline:
            time.sleep(0.02)
        closed = watch.seen.closed
        # The listener is gone; the apiserver's half-sent reviews must still be answered.
        finished = [trickle.finish() for trickle in early + late]
        seen = watch.join(timeout=20)
        assert hook.process is not None
        exit_code = hook.process.popen.wait(20)

    answers = [a for h in hammers for a in h.answers]
    print(
        f"\nSIGTERM, direct: {len(answers)} hammered reviews, "
        f"{sum(a.close for a in answers)} with Connection: close; "
        f"unready after {(seen.unready or 0) - sigterm:.2f}s, "
        f"listener closed after {(closed or 0) - sigterm:.2f}s, "
        f"exit after {(seen.exited or 0) - sigterm:.2f}s (code {exit_code})"
    )
    lost = [a for a in answers if a.error or a.status != 200 or not a.uid_ok]
    assert lost == [], lost
    assert [a for a in finished if a.error or a.status != 200 or not a.uid_ok] == [], finished
    assert all(a.close for a in finished)
    # Readiness turned false at once, and well before the listener closed.
    assert seen.unready is not None and closed is not None and seen.exited is not None
    assert sigterm < seen.unready < closed <= seen.exited
    assert seen.unready - sigterm < 2.0  # polled every 50 ms; slack for a loaded machine
    assert closed - sigterm >= DRAIN  # the listener stayed open for the whole drain
    # While draining, every answer asks the client to reconnect (elsewhere).
    draining = [a for a in answers if a.sent > seen.unready]
    assert draining and all(a.close for a in draining)
    assert exit_code in (0, -signal.SIGTERM)


def test_sigterm_moves_calls_to_the_other_replica(
    control_plane: ControlPlane,
    api: client.ApiClient,
    core: client.CoreV1Api,
    webhook: FaultWebhook,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A rolling update: the apiserver's connections all lead to the old replica, a new
    one becomes ready behind the same address, then the old one gets SIGTERM."""
    old = webhook.replica(tmp_path / "old", "replica-old")
    new = webhook.replica(tmp_path / "new", "replica-new")
    balancer = Balancer([old], interval=0.1)
    with stopping(old, new, balancer):
        old.start()
        balancer.start()
        point_mutating_webhook(api, balancer.url)
        try:
            wait_for_calls(core, namespace, [old])
            opened_before = fail_open_count(control_plane)
            codes_before = webhook_call_codes(control_plane)
            load = CreateLoad(control_plane.kubeconfig, namespace, prefix="drain", rate=40)
            burst = Burst(control_plane.kubeconfig, namespace, 12, "burst")
            load.start()
            try:
                load.go_on(1, 10)
                burst.fire()  # the apiserver now pools about a dozen connections to it
                load.go_on(1, 10)
                new.start()
                balancer.add(new)
                load.go_on(1, 10)
                watch = LifecycleWatch(old, interval=0.05).start()
                sigterm, sigterm_wall = time.monotonic(), time.time()
                old.signal(signal.SIGTERM)
                deadline = sigterm + DRAIN + 15
                while watch.seen.closed is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                # Right after the old listener closed (and it closed its idle connections):
                # a dozen concurrent calls, which would take any pooled connection left.
                burst.fire()
                seen = watch.join(timeout=20)  # returns once the process exited
                load.go_on(2, 20)  # then only the new one serves
            finally:
                loaded = load.stop()
                burst.close()
            report = LoadReport(loaded.results + burst.results, loaded.seconds)
            opened = fail_open_count(control_plane) - opened_before
            codes = webhook_call_codes(control_plane)
        finally:
            point_mutating_webhook(api, webhook.url)
            wait_for_calls(core, namespace, [webhook])

    delta = {code: n - codes_before.get(code, 0) for code, n in codes.items()}
    dropped = balancer.became(old.port, False)
    draining = old.decisions(since=sigterm_wall)
    print(
        f"\nSIGTERM, rolling replicas: {report.summary()}\n"
        f"apiserver fail-open count +{opened:g}, webhook calls by code {delta}; "
        f"the old replica answered {old.decisions()} reviews, {draining} of them while "
        f"draining; balancer dropped it {(dropped or 0) - sigterm:.2f}s after SIGTERM, its "
        f"listener closed after {(seen.closed or 0) - sigterm:.2f}s, exited after "
        f"{(seen.exited or 0) - sigterm:.2f}s; connections to it: "
        f"{balancer.connections(old.port)}, to the new one: {balancer.connections(new.port)} "
        f"({balancer.connections(new.port, sigterm)} after SIGTERM)"
    )
    assert report.failures == [], [f"{r.name}: {r.error}" for r in report.failures]
    assert report.duplicated == [] and report.partial == []
    # The old replica was serving when told to stop, and the new one took over.
    assert draining > 0
    assert balancer.connections(new.port, since=sigterm) > 0
    assert seen.unready is not None and seen.closed is not None
    assert dropped is not None and sigterm < dropped < seen.closed
    assert balancer.connections(old.port, since=dropped) == 0
    # The target: not one call failed open while a replica went away.
    assert (opened, report.missed) == (0, [])

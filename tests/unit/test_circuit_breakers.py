from __future__ import annotations

from services.notifier.channels import CircuitBreakers

ENDPOINT = "https://dinsos.example/webhook"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_endpoint_is_left_alone_after_repeated_failures_then_probed_once() -> None:
    clock = Clock()
    breakers = CircuitBreakers(threshold=3, cool_down=30, clock=clock)

    for _ in range(3):
        breakers.failed(ENDPOINT)
    closed_while_cooling = breakers.allows(ENDPOINT)
    clock.now = 31
    probe_allowed = breakers.allows(ENDPOINT)
    second_while_probing = breakers.allows(ENDPOINT)
    breakers.failed(ENDPOINT)
    after_failed_probe = breakers.allows(ENDPOINT)
    clock.now = 62
    next_probe = breakers.allows(ENDPOINT)
    breakers.succeeded(ENDPOINT)

    assert not closed_while_cooling
    assert probe_allowed
    assert not second_while_probing
    assert not after_failed_probe
    assert next_probe
    assert breakers.allows(ENDPOINT)
    assert breakers.allows(ENDPOINT)


def test_a_success_closes_the_circuit_and_forgets_earlier_failures() -> None:
    breakers = CircuitBreakers(threshold=3, cool_down=30, clock=Clock())
    breakers.failed(ENDPOINT)
    breakers.failed(ENDPOINT)

    breakers.succeeded(ENDPOINT)
    breakers.failed(ENDPOINT)

    assert breakers.allows(ENDPOINT)
    assert breakers.allows("https://another.example/webhook")

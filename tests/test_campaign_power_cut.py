"""Power-cut campaign in CI: a seeded sample of cut points over the full HIL
scenario (hil/campaign/power_cut.py); the full sweep is `chub bench
--power-cut-sweep`. And the checker itself: a clean run passes, and a ledger
claiming what the hub never acknowledged, or a response delivered twice, fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.campaign import power_cut
from hil.campaign.scenario import Run, Violation, check, run_steps
from hil.headend.server import Received

SAMPLE = 20  # ~100 s on 2 cores (each cut ~7 s, a failing one ~35 s)
SEED = 8
# failures found by the campaign and reported to their owner; any other
# failure fails the test (see docs/proof.md)
# (fixed, no longer tolerated: a join lost in the Device Log, the network
# formed twice; tests/test_campaign_findings.py)
# failure types the campaign found and that are not fixed yet (none now: "join lost",
# "network formed twice" and "never answered" were fixed; see docs/proof.md)
KNOWN: dict[str, str] = {}


def known(err: str) -> str | None:
    return next((k for k in KNOWN if k in err), None)


@pytest.fixture(scope="module")
def summary(hub_image: Path, tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> power_cut.Summary:
    return power_cut.campaign(hub_image, tmp_path_factory.mktemp("cuts"), count=SAMPLE, seed=SEED, workers=2)


def test_sampled_cuts_lose_and_duplicate_nothing(summary: power_cut.Summary) -> None:
    s = summary
    assert 150 <= s.writes <= 2000, f"scenario size drifted: {s.writes} block writes"
    assert s.tried + s.not_reached == SAMPLE and s.tried >= SAMPLE - 2
    unknown = [(f.n, f.step, f.error) for f in s.failures if not known(f.error)]
    by_known = {k: sum(1 for f in s.failures if known(f.error) == k) for k in KNOWN}
    print(f"\npower cuts: {s.tried} tried / {s.survived} survived over {s.writes} block writes; "
          f"known failures {by_known}; {s.figures()}; {s.seconds:.0f} s")
    assert not unknown, unknown[0]
    assert s.recovery_s and max(s.recovery_s) < 10


def test_cut_points_are_seeded_and_cover_the_sweep() -> None:
    assert power_cut.sample(200, 20, 8) == power_cut.sample(200, 20, 8)
    assert power_cut.sample(200, None, 8) == list(range(1, 201))
    assert len(set(power_cut.sample(200, 20, 8))) == 20


def test_checker_catches_loss_and_duplication(hub_image: Path, tmp_path: Path, vectors: Path) -> None:
    run = Run(tmp_path / "clean", hub_image)
    try:
        assert run.power_on()
        run_steps(run, max_reboots=0)
        check(run)  # the clean scenario passes
        led = run.ledger
        # a command the ledger says the hub ACKed, never answered
        led.commands[123456789] = "done"
        with pytest.raises(Violation, match="never reached"):
            check(run)
        del led.commands[123456789]
        # a Device Log entry acknowledged, missing
        led.dl_added["0011223344556677"] = 1
        with pytest.raises(Violation, match="lost"):
            check(run)
        del led.dl_added["0011223344556677"]
        # a buffered GSME command the meter executed twice
        he = run.system.headend
        assert set(led.gsme) == {"gcs28", "gcs07"}
        raw = led.pending["gcs28"]["raw"]
        run.gsme.executed.append(raw)
        with pytest.raises(Violation, match="executed 2 times"):
            check(run)
        run.gsme.executed.pop()
        # its response missing: only a PUT in the power-cut window may be
        kept = list(he.received)
        he.received[:] = [r for r in kept if not (r.frame is not None and r.frame.cra == 2
                                                   and r.frame.counter == led.gsme["gcs28"])]
        assert len(he.received) == len(kept) - 1
        with pytest.raises(Violation, match="never reached"):
            check(run)
        led.gsme_window.add(led.gsme["gcs28"])
        assert check(run)["gsme_put_window"] == 1
        led.gsme_window.clear()
        he.received[:] = kept
        # the same response arriving under a second hub frame id
        resp = next(r for r in he.received if r.frame is not None and r.frame.cra == 2)
        he.received.append(Received(resp.id + 10_000, resp.raw, resp.frame))
        with pytest.raises(Violation, match="delivered 2 times"):
            check(run)
    finally:
        run.stop()

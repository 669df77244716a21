"""End to end: a drifting fleet registered on day 0 and used for five simulated years.

See :mod:`tests.drift_scenario` for the scenario: crystals off by up to ±50 ppm,
seasonal temperature profiles, aging, weekly and monthly users.
"""

from __future__ import annotations

import pytest

from tests import drift_scenario


@pytest.mark.parametrize(("model", "seed"), [("totp30", 2026), ("totp60", 7)])
def test_five_years_of_drift(model: str, seed: int) -> None:
    stats = drift_scenario.run(tokens=8, years=5, seed=seed, model=model)
    assert stats.uses > 1000
    # Every genuine code is accepted, alone or with the next code when the server asks for it.
    assert stats.false_refusals == 0, stats.summary()
    assert stats.accepted_alone + stats.accepted_after_next_code == stats.uses
    # The drift model keeps the next-code round rare.
    assert stats.accepted_after_next_code <= 0.05 * stats.uses, stats.summary()
    # Every replay is refused as a replay.
    assert stats.replays_accepted == 0
    assert stats.replays_refused == stats.uses
    # A random 6-digit code hits a 3-step window with odds 3 in a million per try.
    assert stats.random_accepted <= 1, stats.summary()
    # The clocks really drifted: far beyond any fixed window.
    assert max(abs(o) for o in stats.true_offsets_s) > 3600

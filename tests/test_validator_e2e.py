"""End to end: the field scenario on a 60 s token model (the 30 s model runs in test_drift_scenario.py).

See :mod:`tests.drift_scenario`: crystals off by up to ±50 ppm, car, pocket and drawer
temperatures, aging, daily, weekly, monthly and gappy users, late typists.
"""

from __future__ import annotations

from tests import drift_scenario


def test_a_60_second_fleet_for_three_years() -> None:
    report = drift_scenario.run(tokens=16, years=3, seed=7, model="totp60")
    totals = report.all
    assert totals.sign_ins > 1_000
    assert not report.registration_failures
    # Every genuine user gets in: alone, or with the next code when the server asks for it.
    assert totals.rejections == 0 and not report.rejections, drift_scenario.format_report(report)
    assert totals.prompts_satisfied == totals.prompts
    assert totals.first_attempt == totals.sign_ins
    assert totals.first_try >= 0.98 * totals.sign_ins, drift_scenario.format_report(report)
    # Every replay is refused; random codes get in no more often than the windows allow.
    assert totals.replays_accepted == 0
    assert totals.random_accepted <= totals.false_accept_bound()
    # The clocks really drifted: far beyond any fixed window.
    low, high = report.true_offset_range_s
    assert max(abs(low), abs(high)) > 1_800

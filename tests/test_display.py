"""The seven-segment display: glyphs, text, timeouts, countdown bars, faults, art, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.display import (
    ALL_SEGMENTS,
    CHAR_MASKS,
    DEFAULT_COUNTDOWN_BARS,
    DIGIT_MASKS,
    SEG_A,
    SEG_B,
    SEG_C,
    SEG_D,
    SEG_E,
    SEG_F,
    SEG_G,
    Display,
    DisplayState,
    Indicators,
    countdown_bars,
    decode_masks,
    encode_text,
    render_art,
    render_indicators,
)
from vtoken.errors import CorruptStateError, InvalidConfigError, InvalidInputError, InvalidTimeError

S = 1_000_000_000
T0 = 1_700_000_000 * S

# --- glyphs ------------------------------------------------------------------------------


def test_segment_bits() -> None:
    assert [SEG_A, SEG_B, SEG_C, SEG_D, SEG_E, SEG_F, SEG_G] == [1 << i for i in range(7)]
    assert ALL_SEGMENTS == 0x7F


@pytest.mark.parametrize(
    ("digit", "mask"),
    [(0, 0x3F), (1, 0x06), (2, 0x5B), (3, 0x4F), (4, 0x66), (5, 0x6D), (6, 0x7D), (7, 0x07), (8, 0x7F), (9, 0x6F)],
)
def test_digit_masks(digit: int, mask: int) -> None:
    assert DIGIT_MASKS[digit] == mask
    assert CHAR_MASKS[str(digit)] == mask
    assert encode_text(str(digit), 1) == (mask,)


def test_digit_masks_by_segments() -> None:
    assert DIGIT_MASKS[1] == SEG_B | SEG_C
    assert DIGIT_MASKS[7] == SEG_A | SEG_B | SEG_C
    assert DIGIT_MASKS[8] == ALL_SEGMENTS
    assert DIGIT_MASKS[0] == ALL_SEGMENTS & ~SEG_G


def test_menu_and_error_characters_are_renderable() -> None:
    for char in "AbCdEFHLnoPrtU- _":
        assert char in CHAR_MASKS
    assert CHAR_MASKS["-"] == SEG_G
    assert CHAR_MASKS["_"] == SEG_D
    assert CHAR_MASKS[" "] == 0
    assert CHAR_MASKS["E"] == 0x79 and CHAR_MASKS["r"] == 0x50


def test_every_character_has_its_own_mask() -> None:
    masks = list(CHAR_MASKS.values())
    assert len(set(masks)) == len(masks)
    assert all(0 <= m <= ALL_SEGMENTS for m in masks)


# --- encode / decode ---------------------------------------------------------------------


def test_encode_right_aligns() -> None:
    assert encode_text("Err", 6) == (0, 0, 0, 0x79, 0x50, 0x50)
    assert encode_text("", 6) == (0,) * 6
    assert encode_text("12345678", 8) == tuple(DIGIT_MASKS[d] for d in (1, 2, 3, 4, 5, 6, 7, 8))


def test_decode_is_per_digit_and_unknown_is_question_mark() -> None:
    assert decode_masks(encode_text("Err", 6)) == "   Err"
    assert decode_masks([SEG_A | SEG_D, 0x3F]) == "?0"
    assert decode_masks([]) == ""


@given(st.text(alphabet="".join(CHAR_MASKS), max_size=8), st.sampled_from([6, 8]))
def test_encode_decode_roundtrip(text: str, width: int) -> None:
    if len(text) > width:
        with pytest.raises(InvalidInputError):
            encode_text(text, width)
        return
    masks = encode_text(text, width)
    assert len(masks) == width
    assert decode_masks(masks) == text.rjust(width)
    assert encode_text(decode_masks(masks), width) == masks


@pytest.mark.parametrize(("text", "width"), [("1234567", 6), ("ERR", 6), ("x", 6), ("1.5", 6), ("12", 0), ("1", 1.0)])
def test_encode_rejects_bad_text_or_width(text: str, width: int) -> None:
    with pytest.raises(InvalidInputError):
        encode_text(text, width)


@pytest.mark.parametrize("bad", [-1, 0x80, 1.0, "8", None])
def test_decode_rejects_non_masks(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        decode_masks([bad])  # type: ignore[list-item]


# --- showing and blanking ---------------------------------------------------------------


def test_new_display_is_off() -> None:
    d = Display()
    assert d.width == 6
    assert d.state(T0) is DisplayState.OFF
    assert d.masks(T0) == (0,) * 6
    assert d.text(T0) == ""
    assert d.indicators(T0) == Indicators()


def test_show_then_blanks_exactly_at_until() -> None:
    d = Display()
    d.show(DisplayState.CODE, "123456", T0, T0 + 30 * S)
    assert d.state(T0) is DisplayState.CODE
    assert d.text(T0) == "123456"
    assert d.masks(T0) == encode_text("123456", 6)
    assert d.state(T0 + 30 * S - 1) is DisplayState.CODE
    assert d.state(T0 + 30 * S) is DisplayState.OFF
    assert d.masks(T0 + 30 * S) == (0,) * 6
    assert d.text(T0 + 30 * S) == ""
    assert d.until_ns == T0 + 30 * S


def test_until_equal_to_now_shows_nothing() -> None:
    d = Display()
    d.show(DisplayState.ERROR, "Err", T0, T0)
    assert d.state(T0) is DisplayState.OFF


def test_text_drops_alignment_blanks_but_keeps_inner_ones() -> None:
    d = Display()
    d.show(DisplayState.MENU, "b 87", T0, T0 + S)
    assert d.text(T0) == "b 87"
    assert decode_masks(d.masks(T0)) == "  b 87"
    assert d.state(T0) is DisplayState.MENU


def test_blank_switches_off_at_once() -> None:
    d = Display()
    d.show(DisplayState.LOW_BATTERY, "Lo bAt", T0, T0 + 10 * S, low_battery=True)
    d.blank()
    assert d.state(T0) is DisplayState.OFF
    assert d.indicators(T0) == Indicators()
    assert d.until_ns is None


def test_eight_digit_display() -> None:
    d = Display(8)
    assert d.width == 8
    d.show(DisplayState.CODE, "12345678", T0, T0 + S)
    assert d.masks(T0) == encode_text("12345678", 8)
    assert d.text(T0) == "12345678"
    d.show(DisplayState.CODE, "123456", T0, T0 + S)
    assert d.masks(T0)[:2] == (0, 0)
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "123456789", T0, T0 + S)


@pytest.mark.parametrize("width", [0, 5, 7, 9, 6.0, True, "6"])
def test_bad_width(width: object) -> None:
    with pytest.raises(InvalidConfigError):
        Display(width)  # type: ignore[arg-type]


def test_show_rejects_bad_arguments() -> None:
    d = Display()
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.OFF, "", T0, T0 + S)
    with pytest.raises(InvalidInputError):
        d.show("code", "1", T0, T0 + S)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "1234567", T0, T0 + S)
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "HELLO!", T0, T0 + S)
    with pytest.raises(InvalidTimeError):
        d.show(DisplayState.CODE, "1", T0, T0 - 1)
    with pytest.raises(InvalidTimeError):
        d.show(DisplayState.CODE, "1", -1, T0)
    with pytest.raises(InvalidTimeError):
        d.show(DisplayState.CODE, "1", T0, T0 + S, countdown_end_ns=T0)
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "1", T0, T0 + S, countdown_end_ns=T0 + S, countdown_period_ns=0)
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "1", T0, T0 + S, countdown_period_ns=S)
    with pytest.raises(InvalidInputError):
        d.show(DisplayState.CODE, "1", T0, T0 + S, low_battery=1)  # type: ignore[arg-type]
    assert d.state(T0) is DisplayState.OFF  # nothing was shown by a refused call
    with pytest.raises(InvalidTimeError):
        d.state(-1)


# --- countdown bars and indicators --------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "bars"),
    [
        (60 * S, 6),
        (60 * S - 1, 6),
        (50 * S + 1, 6),
        (50 * S, 5),
        (10 * S + 1, 2),
        (10 * S, 1),
        (1, 1),
        (0, 0),
        (-5 * S, 0),
        (90 * S, 6),  # more than a period left: clamped
    ],
)
def test_countdown_bars_at_boundaries(remaining: int, bars: int) -> None:
    now = T0 + 100 * S
    assert countdown_bars(now, now + remaining, 60 * S) == bars


def test_countdown_bars_other_counts() -> None:
    assert countdown_bars(0, 30 * S, 30 * S, bars=5) == 5
    assert countdown_bars(0, 6 * S, 30 * S, bars=5) == 1
    assert countdown_bars(0, 6 * S + 1, 30 * S, bars=5) == 2
    assert countdown_bars(0, 1, 30 * S, bars=1) == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [((0, 1, 0), InvalidInputError), ((0, 1, 1, 0), InvalidInputError), ((-1, 1, 1), InvalidTimeError),
     ((0, 1.0, 1), InvalidTimeError)],
)
def test_countdown_bars_rejects_bad_arguments(args: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        countdown_bars(*args)


def test_indicators_follow_the_countdown() -> None:
    d = Display()
    # shown 15 s into a 60 s TOTP step: 45 s left
    d.show(DisplayState.CODE, "123456", T0, T0 + 45 * S, countdown_end_ns=T0 + 45 * S,
           countdown_period_ns=60 * S, low_battery=True)
    assert d.indicators(T0) == Indicators(low_battery=True, countdown_bars=5, countdown_total=6)
    assert d.indicators(T0 + 35 * S).countdown_bars == 1
    assert d.indicators(T0 + 35 * S - 1).countdown_bars == 2
    assert d.indicators(T0 + 45 * S) == Indicators()  # off with the display


def test_countdown_period_defaults_to_now_until_end() -> None:
    d = Display()
    d.show(DisplayState.CODE, "123456", T0, T0 + 60 * S, countdown_end_ns=T0 + 30 * S)
    assert d.indicators(T0).countdown_bars == DEFAULT_COUNTDOWN_BARS
    assert d.indicators(T0 + 25 * S).countdown_bars == 1
    assert d.indicators(T0 + 30 * S) == Indicators(countdown_bars=0, countdown_total=6)


def test_no_countdown_no_bars() -> None:
    d = Display()
    d.show(DisplayState.CODE, "123456", T0, T0 + S)
    assert d.indicators(T0) == Indicators(low_battery=False, countdown_bars=0, countdown_total=0)


# --- faults -------------------------------------------------------------------------------


def test_dead_segment_changes_masks_and_text() -> None:
    d = Display()
    d.set_fault(5, dead_mask=SEG_G)  # rightmost digit loses its middle bar
    d.show(DisplayState.CODE, "123458", T0, T0 + S)
    assert d.masks(T0)[5] == 0x3F
    assert d.text(T0) == "123450"
    d.set_fault(0, dead_mask=SEG_B)
    assert d.masks(T0)[0] == SEG_C
    assert d.text(T0) == "?23450"


def test_stuck_segment_is_lit_only_while_the_display_is_on() -> None:
    d = Display()
    d.set_fault(0, stuck_on_mask=SEG_A)
    assert d.masks(T0) == (0,) * 6  # off: the glass is unpowered
    d.show(DisplayState.CODE, "1", T0, T0 + S)
    assert d.masks(T0) == (SEG_A, 0, 0, 0, 0, DIGIT_MASKS[1])
    assert decode_masks(d.masks(T0)) == "?    1"
    assert d.text(T0) == "?    1"
    d.show(DisplayState.CODE, "111111", T0, T0 + S)
    assert d.text(T0) == "711111"  # 1 with a stuck top bar reads as 7
    assert d.masks(T0 + S) == (0,) * 6


def test_faults_survive_show_and_blank_until_cleared() -> None:
    d = Display()
    d.set_fault(2, stuck_on_mask=SEG_G, dead_mask=SEG_A)
    d.blank()
    d.show(DisplayState.CODE, "888888", T0, T0 + S)
    assert d.masks(T0)[2] == ALL_SEGMENTS & ~SEG_A
    assert d.faults == {2: (SEG_G, SEG_A)}
    d.set_fault(2)  # zero masks clear that digit
    assert d.faults == {}
    d.set_fault(1, dead_mask=ALL_SEGMENTS)
    assert d.text(T0) == "8 8888"
    d.clear_faults()
    assert d.text(T0) == "888888"


@pytest.mark.parametrize(
    ("position", "stuck", "dead"),
    [(-1, 1, 0), (6, 1, 0), (0, 0x80, 0), (0, 0, -1), (0, SEG_A, SEG_A), (0.0, 1, 0)],
)
def test_set_fault_rejects_bad_arguments(position: int, stuck: int, dead: int) -> None:
    with pytest.raises(InvalidInputError):
        Display().set_fault(position, stuck_on_mask=stuck, dead_mask=dead)


def test_set_fault_position_range_follows_width() -> None:
    d = Display(8)
    d.set_fault(7, dead_mask=SEG_D)
    assert d.faults == {7: (0, SEG_D)}


# --- text art -----------------------------------------------------------------------------

GOLDEN_123456 = "\n".join(
    [
        "        ---    ---           ---    ---",
        "    |      |      |  |   |  |      |",
        "        ---    ---    ---    ---    ---",
        "    |  |          |      |      |  |   |",
        "        ---    ---           ---    ---",
    ]
)


def test_art_golden_123456() -> None:
    assert render_art(encode_text("123456", 6)) == GOLDEN_123456


def test_art_golden_with_indicators() -> None:
    ind = Indicators(low_battery=True, countdown_bars=4, countdown_total=6)
    assert render_art(encode_text("123456", 6), ind) == GOLDEN_123456 + "\n[####..]  LOW BAT"
    assert render_art(encode_text("123456", 6), Indicators()) == GOLDEN_123456


def test_art_shape_and_single_glyphs() -> None:
    assert render_art([DIGIT_MASKS[8]]).split("\n") == [" ---", "|   |", " ---", "|   |", " ---"]
    assert render_art([CHAR_MASKS["-"]]).split("\n") == ["", "", " ---", "", ""]
    lines = render_art(encode_text("88888888", 8)).split("\n")
    assert len(lines) == 5
    assert max(len(line) for line in lines) == 8 * 5 + 7 * 2
    assert all(set(line) <= set(" -|") for line in lines)


def test_art_rejects_non_masks() -> None:
    with pytest.raises(InvalidInputError):
        render_art([0x100])


def test_render_indicators() -> None:
    assert render_indicators(Indicators()) == ""
    assert render_indicators(Indicators(countdown_bars=0, countdown_total=6)) == "[......]"
    assert render_indicators(Indicators(low_battery=True)) == "LOW BAT"


def test_art_from_a_live_display() -> None:
    d = Display()
    d.show(DisplayState.CODE, "123456", T0, T0 + 60 * S, countdown_end_ns=T0 + 40 * S, countdown_period_ns=60 * S)
    art = render_art(d.masks(T0), d.indicators(T0))
    assert art == GOLDEN_123456 + "\n[####..]"


# --- persistence -----------------------------------------------------------------------------


def _roundtrip(d: Display) -> Display:
    data = d.to_dict()
    restored = Display.from_dict(json.loads(json.dumps(data)))
    assert restored.to_dict() == data
    return restored


def test_roundtrip_off_and_on() -> None:
    d = Display(8)
    d.set_fault(3, stuck_on_mask=SEG_E, dead_mask=SEG_B)
    r = _roundtrip(d)
    assert r.width == 8 and r.state(T0) is DisplayState.OFF and r.faults == d.faults
    d.show(DisplayState.CODE, "123456", T0, T0 + 45 * S, countdown_end_ns=T0 + 45 * S,
           countdown_period_ns=60 * S, low_battery=True)
    r = _roundtrip(d)
    for now in (T0, T0 + 20 * S, T0 + 45 * S):
        assert r.state(now) is d.state(now)
        assert r.masks(now) == d.masks(now)
        assert r.text(now) == d.text(now)
        assert r.indicators(now) == d.indicators(now)


def test_roundtrip_every_state() -> None:
    for state in DisplayState:
        d = Display()
        if state is not DisplayState.OFF:
            d.show(state, "Err", T0, T0 + S)
        assert _roundtrip(d).state(T0) is state


def test_roundtrip_keeps_an_expired_screen() -> None:
    d = Display()
    d.show(DisplayState.MENU, "H 12", T0, T0 + S, countdown_end_ns=T0 + 2 * S)
    assert _roundtrip(d).to_dict()["until_ns"] == T0 + S


@pytest.mark.parametrize(
    "patch",
    [
        {"width": 7},
        {"state": "on"},
        {"text": "XYZ"},
        {"text": 12},
        {"until_ns": -1},
        {"until_ns": None},
        {"low_battery": "yes"},
        {"countdown_period_ns": None},
        {"countdown_period_ns": 0},
        {"faults": {"0": [1, 0]}},
        {"faults": [{"position": 9, "stuck_on_mask": 1, "dead_mask": 0}]},
        {"faults": [{"position": 0, "stuck_on_mask": 1, "dead_mask": 0}] * 2},
        {"extra": True},
    ],
)
def test_from_dict_rejects_damage(patch: dict) -> None:
    d = Display()
    d.show(DisplayState.CODE, "123456", T0, T0 + S, countdown_end_ns=T0 + S, countdown_period_ns=30 * S)
    with pytest.raises(CorruptStateError):
        Display.from_dict({**d.to_dict(), **patch})


def test_from_dict_rejects_an_off_display_with_content() -> None:
    data = Display().to_dict()
    for patch in ({"text": "1"}, {"until_ns": T0}, {"low_battery": True}, {"low_battery": 0}):
        with pytest.raises(CorruptStateError):
            Display.from_dict({**data, **patch})
    with pytest.raises(CorruptStateError):
        Display.from_dict(None)

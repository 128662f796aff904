"""Property-based tests of the `--known-rows LO HI` parser (training.checks.parse_known_rows).

Any input either gives a valid range or raises UsageError with a message; `make fuzz` runs
many more cases (tests/conftest.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rowgen import contract
from training.checks import UsageError, parse_known_rows

values = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.integers(-3, 30).map(str),
    st.floats(),
    st.none(),
    st.booleans(),
    st.binary(max_size=4),
)


@given(st.lists(values, max_size=4))
def test_any_input_is_a_range_or_a_usage_error(given_values: list[object]) -> None:
    try:
        lo, hi = parse_known_rows(given_values)
    except UsageError as exc:
        assert str(exc).startswith("--known-rows") and "LO HI" in str(exc)
    else:
        assert contract.KNOWN_ROWS_MIN <= lo <= hi <= contract.KNOWN_ROWS_MAX


@given(st.integers(-5, 40), st.integers(-5, 40))
def test_whole_numbers_pass_exactly_when_in_range(lo: int, hi: int) -> None:
    ok = contract.KNOWN_ROWS_MIN <= lo <= hi <= contract.KNOWN_ROWS_MAX
    try:
        assert parse_known_rows([str(lo), str(hi)]) == (lo, hi) and ok
    except UsageError:
        assert not ok

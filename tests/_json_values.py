"""Hypothesis strategies for JSON values: what the property tests of decoding, the canonical form and search draw."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

TRICKY_FLOATS = [1e-05, 1e-07, 0.0001, 1e15, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308]
"""Floats whose shortest text switches notation, or sits at the ends of the double range."""


def json_values(*, int_bits: int = 70, infinity: bool = False) -> st.SearchStrategy[Any]:
    """Nested lists and objects of up to 20 leaves: null, booleans, integers within ``2**int_bits``, floats (no
    NaN; infinities only with ``infinity``) and text."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**int_bits), max_value=2**int_bits)
        | st.floats(allow_nan=False, allow_infinity=infinity)
        | st.sampled_from(TRICKY_FLOATS)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )

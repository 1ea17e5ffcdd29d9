"""The kiosk config provisioning writes (tomli-w) reads back as the same data, whatever the keys
and strings hold: characters outside the BMP, DEL, quotes, backslashes, control characters."""

from __future__ import annotations

import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.bundle import config_toml

# Every code point but lone surrogates (not encodable as UTF-8, so never in a TOML file); the
# awkward ones are drawn often on purpose.
AWKWARD = st.sampled_from(['"', "'", "\\", "\x7f", "\x00", "\x1f", "\n", "\r", "\t", "😀", "."])
CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), AWKWARD)
TEXT = st.text(CHARS, max_size=12)
SCALARS = st.one_of(
    TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(TEXT, inner, max_size=4),
    ),
    max_leaves=12,
)
CONFIGS = st.dictionaries(TEXT, VALUES, max_size=6)


@settings(max_examples=400, deadline=None)
@given(CONFIGS)
def test_any_config_reads_back_as_written(config: dict[str, Any]) -> None:
    assert tomllib.loads(config_toml(config)) == config


def test_keys_outside_the_bmp_and_del_survive() -> None:
    config = {"kiosk": {"😀": "a\x7fb", "x\x7f": 'q"\\', "": "\x00"}, "a.b": {"c": ["\U0010ffff"]}}
    text = config_toml(config)
    assert tomllib.loads(text) == config

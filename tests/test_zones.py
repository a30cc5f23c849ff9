"""Zones and masks decide which cells of the anomaly map can raise an event."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.config import parse_config
from streamdet.errors import ConfigError
from streamdet.scoring.zones import apply, cell_mask

LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
TOP_LEFT = [(0.0, 0.0), (0.25, 0.0), (0.25, 0.5), (0.0, 0.5)]


def test_no_zones_means_everywhere() -> None:
    assert cell_mask((4, 4), [], []) is None
    amap = np.arange(16, dtype=np.float32).reshape(4, 4)
    score, same = apply(amap, None)
    assert score == 15 and same is amap


def test_zone_and_mask_cells() -> None:
    mask = cell_mask((2, 4), [LEFT_HALF], [TOP_LEFT])
    assert mask is not None
    assert mask.tolist() == [[False, True, False, False], [True, True, False, False]]


def test_anomaly_outside_the_zone_does_not_count() -> None:
    amap = np.zeros((2, 4), np.float32)
    amap[0, 3] = 9.0  # right half: outside the zone
    amap[1, 0] = 2.0
    score, masked = apply(amap, cell_mask((2, 4), [LEFT_HALF], []))
    assert score == 2.0 and masked[0, 3] == 0.0


def test_polygons_are_validated_with_their_key() -> None:
    base = {"name": "c", "source": {"kind": "synthetic"}}
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": [{**base, "zones": [[(0, 0), (1, 1)]]}]})
    assert info.value.problems[0].startswith("cameras[0].zones: polygon 0 needs at least 3")
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": [{**base, "masks": [[(0, 0), (2, 0), (0, 1)]]}]})
    assert "fractions of the frame" in info.value.problems[0]

"""Synthetic clips whose frame index can be read back from the pixels (shared with the
benchmarks, in ``benchmarks/media.py``)."""

from benchmarks.media import BAND_FRACTION, CODE_BITS, make_clip, make_scene_clip, read_frame_index

__all__ = ["BAND_FRACTION", "CODE_BITS", "make_clip", "make_scene_clip", "read_frame_index"]

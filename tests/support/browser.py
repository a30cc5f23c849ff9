"""A real headless Chromium for the page tests (shared with the benchmarks, in
``benchmarks/browser.py``)."""

from benchmarks.browser import chromium, console, missing, video_state

__all__ = ["chromium", "console", "missing", "video_state"]

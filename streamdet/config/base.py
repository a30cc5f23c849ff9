"""What every config section is built on: strict, frozen pydantic models, and the URL check
the network sources and the webhook sink share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from streamdet.log import redact


class ConfigModel(BaseModel):
    """A config section: unknown keys are errors, values are frozen once validated."""

    # allow_inf_nan=False: YAML's .nan fails every bound check (NaN compares false), so it was
    # reported as "less than or equal to 120"; now it and .inf are "a finite number".
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_url(url: str, schemes: str, expected: str) -> str:
    """``url`` if its scheme matches ``schemes`` (a regex) and it names a host."""
    if not re.match(rf"^(?:{schemes})://[^/\s]+", url):
        raise ValueError(f"expected {expected}, got {redact(url)!r}")
    authority = url.split("://", 1)[1].split("/", 1)[0]
    port = authority.rsplit("@", 1)[-1].rsplit("]", 1)[-1].partition(":")[2]
    fragment = "#" in url.split("://", 1)[1].split("?", 1)[0]
    # each ends the user:password part early, for FFmpeg too: the camera would never open
    if fragment or authority.count("@") > 1 or (port and not port.isdigit()):
        raise ValueError(
            "cannot tell the user:password@host:port part apart (a password's '@', '/' and '#'"
            " must be written %40, %2F and %23)"
        )
    return url

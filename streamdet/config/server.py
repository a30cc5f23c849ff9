"""``server``: the HTTP server, its token, and the WebRTC and MJPEG live views."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, SecretStr, field_validator

from streamdet.config.base import ConfigModel


class IceServerConfig(ConfigModel):
    """A STUN or TURN server the live view's WebRTC peers may use."""

    urls: list[str] = Field(min_length=1, description="stun:host:port, turn:host:port?transport=…")
    username: str | None = Field(None, description="TURN user.")
    credential: SecretStr | None = Field(None, description="TURN password; use ${VAR}.")

    @field_validator("urls")
    @classmethod
    def _ice_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^(stun|stuns|turn|turns):\S+$", url):
                raise ValueError(f"expected stun:host[:port] or turn:host[:port], got {url!r}")
        return urls


class WebRtcConfig(ConfigModel):
    """The WebRTC live view (aiortc): one peer connection per viewer, newest frame only."""

    enabled: bool = Field(True, description="Offer WebRTC; false: the page uses MJPEG only.")
    fps: float = Field(10.0, gt=0, le=30, description="Frames per second sent to each viewer.")
    max_viewers: int = Field(
        8, ge=1, le=256, description="Peer connections at once; more are refused (503)."
    )
    ice_servers: list[IceServerConfig] = Field(
        default_factory=list,
        description="STUN/TURN servers; none by default (no public STUN is asked).",
    )
    host_addresses: list[str] | None = Field(
        None,
        description="Addresses offered as ICE host candidates; default: every interface "
        "address plus 127.0.0.1 (aioice alone leaves loopback out).",
    )

    @field_validator("host_addresses")
    @classmethod
    def _ip_addresses(cls, addresses: list[str] | None) -> list[str] | None:
        for address in addresses or []:
            ipaddress.ip_address(address)  # ValueError names the bad address
        return addresses


class MjpegConfig(ConfigModel):
    """The MJPEG live view (/api/cameras/{name}/mjpeg): a JPEG encoded per viewer and frame."""

    max_viewers: int = Field(
        16,
        ge=1,
        le=1024,
        description="MJPEG streams at once, over all cameras; more are refused (503).",
    )


class ServerConfig(ConfigModel):
    """The HTTP server: /metrics, /healthz, /readyz, /api, the live view page."""

    enabled: bool = Field(True, description="Serve HTTP at all.")
    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 exposes it to the network.")
    port: int = Field(8686, ge=0, le=65535, description="TCP port (0: any free port).")
    token: SecretStr | None = Field(
        None,
        description="Bearer token every route but /healthz then wants (the page: ?token=); "
        "use ${VAR}. Default: none.",
    )
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig, description="The WebRTC live view.")
    mjpeg: MjpegConfig = Field(default_factory=MjpegConfig, description="The MJPEG live view.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 8:
            raise ValueError("the token must be at least 8 characters")
        return token

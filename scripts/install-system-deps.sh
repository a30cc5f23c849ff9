#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when they are missing.
# - GStreamer's RTSP server (run by the tests with Debian's /usr/bin/python3, which has `gi`)
# - Prometheus: Debian's `prometheus` package ships both `prometheus` and `promtool`
#   (/usr/bin/promtool belongs to it): the tests run a real server against the dashboard and
#   the alert rules, and promtool checks the config and rules and runs the rules' unit tests
# - mosquitto, a real MQTT broker for the MQTT sink tests
# - chromium and its chromedriver, the real headless browser for the live view page tests
# - nats-server (JetStream), run by the fleet tests as a real 3-node cluster on 127.0.0.1
set -euo pipefail

have_rtsp_server() {
    [ -x /usr/bin/python3 ] && /usr/bin/python3 - <<'PY' 2>/dev/null
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
for name in ("x264enc", "rtph264pay", "qtdemux", "h264parse", "videotestsrc"):
    assert Gst.ElementFactory.find(name), name
PY
}

have_prometheus() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

packages=()
have_rtsp_server || packages+=(
    python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
)
new_prometheus=false
have_prometheus || { packages+=(prometheus); new_prometheus=true; }
have_mosquitto() { [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1; }
new_mosquitto=false
have_mosquitto || { packages+=(mosquitto); new_mosquitto=true; }
have_chromium() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }
have_chromium || packages+=(chromium chromium-driver)
have_nats() { [ -x /usr/bin/nats-server ] || command -v nats-server >/dev/null 2>&1; }
new_nats=false
have_nats || { packages+=(nats-server); new_nats=true; }

if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi

echo "install-system-deps: installing ${packages[*]}"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "error: need root (or sudo) to apt-get install: ${packages[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
have_rtsp_server || { echo "error: GStreamer RTSP server still unusable after install" >&2; exit 1; }
have_prometheus || { echo "error: prometheus/promtool still missing after install" >&2; exit 1; }
have_mosquitto || { echo "error: mosquitto still missing after install" >&2; exit 1; }
have_chromium || { echo "error: chromium/chromedriver still missing after install" >&2; exit 1; }
have_nats || { echo "error: nats-server still missing after install" >&2; exit 1; }
if $new_mosquitto && command -v systemctl >/dev/null 2>&1; then
    # Likewise: the tests start their own broker on a free port.
    "${sudo[@]}" systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
fi
if $new_nats && command -v systemctl >/dev/null 2>&1; then
    # Likewise: the fleet tests start their own cluster on free ports.
    "${sudo[@]}" systemctl disable --now nats-server.service >/dev/null 2>&1 || true
fi
if $new_prometheus && command -v systemctl >/dev/null 2>&1; then
    # The package enables a system-wide service on :9090; the tests start their own on a free
    # port, so switch off the one we just installed. (Fails harmlessly without a running systemd.)
    "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

#!/usr/bin/env bash
# Installs the Debian packages the project needs, when missing: C libraries for cgo (libvpx,
# libopus, the WebRTC VAD, espeak-ng and PocketSphinx with its English model for package
# speech), and, with --test, the tools the tests use (ffmpeg, espeak-ng,
# sox, Chromium, iproute2 for `ip`, nats-server for the cluster run).
set -euo pipefail
pkgs=(pkg-config gcc libvpx-dev libopus-dev libwebrtc-audio-processing-dev
  libespeak-ng-dev libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(ffmpeg espeak-ng sox chromium firefox-esr pulseaudio iproute2 util-linux nftables coturn nats-server curl)
fi
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Another apt (a parallel test script) may hold the lock: wait for it rather than fail.
APT=(apt-get -o DPkg::Lock::Timeout=600)
$SUDO "${APT[@]}" update -qq
# The image may delete downloaded .debs part-way through a large install: retry once.
DEBIAN_FRONTEND=noninteractive $SUDO "${APT[@]}" install -y -qq "${need[@]}" >/dev/null || \
  DEBIAN_FRONTEND=noninteractive $SUDO "${APT[@]}" install -y -qq "${need[@]}" >/dev/null

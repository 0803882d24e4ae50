#!/usr/bin/env bash
# Installs the Debian packages the tests need (Qt offscreen, fonts, Secret Service, a PostgreSQL
# server for the optimizer's many-machine test),
# only when running as root and only what is missing, so a warm machine stays fast.
set -euo pipefail
# With --gui also what a real window needs (xcb).
PKGS=(libglib2.0-0 libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fonts-dejavu-core dbus gnome-keyring
      postgresql)
if [ "${1:-}" = "--gui" ]; then
  PKGS+=(libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xkb1 libxcb-image0
         libxcb-render-util0 libxcb-util1 libxcb-randr0 libxcb-render0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0
         libx11-xcb1)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; not root, so not installing (tests may fail)" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

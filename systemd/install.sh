#!/bin/sh
# kiosk-edge installer for Raspberry Pi OS (Debian 12 bookworm).
#
#   sudo ./systemd/install.sh [--config kiosk.toml]      install or update (idempotent)
#   sudo ./systemd/install.sh --uninstall [--purge]      remove; --purge also deletes keys + ledger
#   ./systemd/install.sh --root DIR --no-venv ...        into a scratch root (image builds, tests)
#
# Run from a checkout (or unpacked sdist) of kiosk-edge. Steps: Debian packages (pcscd, venv,
# build headers), the app in a venv at /opt/kiosk-edge/venv, then `kiosk provision install`
# (user kiosk, /etc/kiosk, /var/lib/kiosk, udev rules, systemd unit, device key).
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
CONFIG=
ACTION=install
PURGE=
VENV_STEP=yes
APT_STEP=yes
PY=${PYTHON:-python3}
EXTRAS=hw,gpio,display,cloud
APT_PACKAGES="python3-venv python3-dev gcc swig libpcsclite-dev pcscd pcsc-tools i2c-tools \
  fonts-unifont xfonts-wqy"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --uninstall) ACTION=uninstall; shift ;;
    --purge) PURGE=--purge; shift ;;
    --no-venv) VENV_STEP=; shift ;;
    --no-apt) APT_STEP=; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

if [ "$ROOT" = / ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or give --root DIR for a scratch root" >&2
  exit 1
fi
if [ "$ROOT" != / ]; then
  APT_STEP=  # never touch the host's packages for a scratch root
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
fi

VENV="${ROOT%/}/opt/kiosk-edge/venv"

provision() {
  if [ -n "$VENV_STEP" ] && [ -x "$VENV/bin/python" ]; then
    "$VENV/bin/python" -m provisioning "$@"
  else
    PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m provisioning "$@"
  fi
}

if [ "$ACTION" = uninstall ]; then
  provision uninstall --root "$ROOT" $PURGE
  exit 0
fi

if [ -n "$APT_STEP" ]; then
  missing=
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
  # The OLED is on I2C: switch the bus on (takes effect at the next boot).
  if command -v raspi-config >/dev/null 2>&1; then raspi-config nonint do_i2c 0 || true; fi
fi

if [ -n "$VENV_STEP" ]; then
  # System site packages: Raspberry Pi OS ships lgpio / RPi.GPIO for gpiozero as Debian packages.
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$SRC[$EXTRAS]"
fi

if [ -n "$CONFIG" ]; then
  provision install --root "$ROOT" --config "$CONFIG"
else
  provision install --root "$ROOT"
fi

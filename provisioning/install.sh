#!/usr/bin/env bash
# intentcam installer: Raspberry Pi OS Bookworm / Trixie (64-bit) and Jetson (Ubuntu).
#
#   sudo provisioning/install.sh [--wheel dist/intentcam-X-py3-none-any.whl]   # install or update
#   provisioning/install.sh --dry-run      # print every step, change nothing
#   sudo provisioning/install.sh --uninstall [--purge]
#
# Idempotent: every step checks first and says "ok" when there is nothing to do, so a second
# run changes nothing. Steps: Debian packages (python3-venv), the system user
# (systemd/intentcam.sysusers), a virtualenv in /opt/intentcam/venv with the wheel (make dist),
# the systemd units (the daemon; first-boot config import), the Coral udev rule, /etc/intentcam/intentcam.toml from the example (never
# overwritten), the OTA trusted-key folder, then enable the service and run `intentcam check`.
# --root DIR installs into another root (an image being prepared; the tests use it): no apt,
# no systemctl, no check. --uninstall keeps /etc/intentcam and /var/lib/intentcam (the config,
# the spool, the models) unless --purge.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="" wheel="" dry_run=0 uninstall=0 purge=0 check=1

die() { echo "install.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; wheel="$2"; shift 2 ;;
    --root) [ $# -ge 2 ] || die "--root needs a folder"; root="${2%/}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    --no-check) check=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

venv="$root/opt/intentcam/venv"
unit="$root/etc/systemd/system/intentcam.service"
rule="$root/etc/udev/rules.d/99-intentcam-coral.rules"
firstboot="$root/etc/systemd/system/intentcam-firstboot.service"
sysusers="$root/usr/lib/sysusers.d/intentcam.conf"
config_dir="$root/etc/intentcam"
state_dir="$root/var/lib/intentcam"

# step NAME: print what happens; run "$@" unless --dry-run.
step() {
  local name="$1"; shift
  if [ "$dry_run" = 1 ]; then echo "[$name] would: $*"; return 0; fi
  echo "[$name] $*"
  "$@"
}
ok() { echo "[$1] ok: $2"; }
same_file() { [ -f "$2" ] && cmp -s "$1" "$2"; }
changed=""
copy() {  # copy NAME SOURCE TARGET MODE
  if same_file "$2" "$3"; then ok "$1" "$3 is current"
  else step "$1" install -D -m "$4" "$2" "$3"; changed="$changed $1"; fi
}
on_systemd() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ] && [ -z "$root" ]; then
  die "run as root (sudo), or --dry-run to see the steps"
fi

if [ "$uninstall" = 1 ]; then
  if on_systemd && systemctl is-enabled --quiet intentcam 2>/dev/null; then
    step service systemctl disable --now intentcam
  else ok service "not enabled"; fi
  for target in "$unit" "$firstboot" "$rule" "$sysusers"; do
    if [ -e "$target" ]; then step remove rm -f "$target"; else ok remove "$target absent"; fi
  done
  if [ -d "$root/opt/intentcam" ]; then step remove rm -rf "$root/opt/intentcam"
  else ok remove "$root/opt/intentcam absent"; fi
  if [ "$purge" = 1 ]; then
    for target in "$config_dir" "$state_dir"; do
      if [ -e "$target" ]; then step purge rm -rf "$target"; else ok purge "$target absent"; fi
    done
  else
    echo "[keep] $config_dir and $state_dir stay (config, spool, models); --purge removes them"
  fi
  exit 0
fi

# 1. The wheel: the newest in dist/ unless --wheel names one.
if [ -z "$wheel" ]; then
  wheel="$(ls -t "$here"/dist/intentcam-*.whl 2>/dev/null | head -n 1 || true)"
  [ -n "$wheel" ] || die "no wheel in $here/dist: run 'make dist' (or pass --wheel FILE)"
fi
[ -f "$wheel" ] || die "--wheel $wheel: not found"
version="$(basename "$wheel" | cut -d- -f2)"
echo "[plan] intentcam $version from $wheel into ${root:-/}"

# 2. Debian packages (not for another root: its image brings its own).
if [ -z "$root" ]; then
  missing=""
  for package in python3-venv python3-pip; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    step apt apt-get install -y --no-install-recommends $missing
  else ok apt "python3-venv and python3-pip installed"; fi
fi

# 3. The system user (and its video/plugdev groups).
copy sysusers "$here/systemd/intentcam.sysusers" "$sysusers" 0644
if getent passwd intentcam >/dev/null 2>&1 && [ -z "$root" ]; then ok user "intentcam exists"
elif [ -n "$root" ] && grep -q '^intentcam:' "$root/etc/passwd" 2>/dev/null; then ok user "intentcam exists in $root"
else
  [ -z "$root" ] || step user mkdir -p "$root/etc"  # sysusers writes the root's /etc/passwd
  step user systemd-sysusers ${root:+--root="$root"} "$sysusers"
fi

# 4. The virtualenv with the wheel (system site packages: Raspberry Pi OS's picamera2 from apt).
if [ -x "$venv/bin/python" ]; then ok venv "$venv exists"
else step venv python3 -m venv --system-site-packages "$venv"; fi
# In the venv itself: with system site packages, a system-wide intentcam must not count.
if compgen -G "$venv/lib/python3*/site-packages/intentcam-$version.dist-info" >/dev/null; then
  ok wheel "intentcam $version installed"
else step wheel "$venv/bin/pip" install --quiet --disable-pip-version-check "$wheel"; fi

# 5. The unit and the Coral udev rule.
copy unit "$here/systemd/intentcam.service" "$unit" 0644
copy udev "$here/systemd/99-intentcam-coral.rules" "$rule" 0644
copy firstboot "$here/systemd/intentcam-firstboot.service" "$firstboot" 0644

# 6. Config (from the example, never overwritten) and the OTA trusted keys folder.
if [ -e "$config_dir/intentcam.toml" ]; then ok config "$config_dir/intentcam.toml kept"
else
  # Readable by the daemon's group only: the file may hold the broker password.
  group="$(awk -F: '$1 == "intentcam" { print $3 }' "$root/etc/group" 2>/dev/null || true)"
  step config install -D -m 0640 ${group:+-g "$group"} "$here/config/intentcam.example.toml" "$config_dir/intentcam.toml"
fi
if [ -d "$config_dir/ota-keys" ]; then ok ota-keys "$config_dir/ota-keys exists"
else step ota-keys install -d -m 0755 "$config_dir/ota-keys"; fi

# 7. Enable the service and check the installation (this root only).
if on_systemd; then
  case "$changed" in *unit*|*firstboot*) step systemd systemctl daemon-reload ;; esac
  if systemctl is-enabled --quiet intentcam 2>/dev/null; then ok service "enabled"
  else step service systemctl enable intentcam intentcam-firstboot; fi
  case "$changed" in *udev*) if command -v udevadm >/dev/null; then step udev udevadm control --reload; fi ;; esac
fi
if [ "$check" = 1 ] && [ -z "$root" ]; then
  step check "$venv/bin/intentcam" check --config "$config_dir/intentcam.toml" || true
fi
echo "[done] intentcam $version"

# shellcheck shell=bash
# Sourced by CI and the deploy tests. install_missing COMMAND:PACKAGE ... installs, with apt, the
# Debian package of each command that is not on PATH (nothing when all are there).
install_missing() {
  local pair packages=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || packages+=("${pair#*:}")
  done
  [ ${#packages[@]} -gt 0 ] || return 0
  echo "installing ${packages[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
}

#!/usr/bin/env bash
# Idempotent machine setup shared by the quickstart and the test command:
# a venv with tfbuild installed, the Debian tools the tests use, a Docker engine.
# Source it: it exports TFBUILD_VENV and puts the venv on PATH.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TFBUILD_VENV="${TFBUILD_VENV:-$repo/.venv}"
extras="${TFBUILD_EXTRAS:-test}"

log() { printf '\033[1;36m==>\033[0m %s\n' "$*" >&2; }

need_apt=()
for pair in docker:docker.io dockerd:docker.io debootstrap:debootstrap mpirun:openmpi-bin \
            docker-registry:docker-registry htpasswd:apache2-utils npm:npm \
            slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing tools (${need_apt[*]}); install them or run as root" >&2; exit 1
  fi
  log "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if [ ! -x "$TFBUILD_VENV/bin/python" ]; then
  log "creating $TFBUILD_VENV"
  python3 -m venv "$TFBUILD_VENV"
fi
stamp="$TFBUILD_VENV/.tfbuild-installed"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  log "installing tfbuild[$extras] into $TFBUILD_VENV"
  # (pip's warnings about find-links folders that do not exist on this machine are dropped:
  # one per package, they would push everything else out of a CI log's tail)
  "$TFBUILD_VENV/bin/pip" install -q --disable-pip-version-check -e "$repo[$extras]" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  touch "$stamp"
fi
export PATH="$TFBUILD_VENV/bin:$PATH"
tfbuild engine >&2

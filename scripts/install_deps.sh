#!/usr/bin/env bash
# Installs the Debian packages Strata builds and tests with; does nothing when they are present.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config
          libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libyaml-cpp-dev
          libboost-graph-dev liblpsolve55-dev lp-solve googletest libgtest-dev
          slurmctld slurmd slurm-client munge)
if [[ "${STRATA_EXTRA_PACKAGES:-}" != "" ]]; then
  read -r -a extra <<<"$STRATA_EXTRA_PACKAGES"; packages+=("${extra[@]}")
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
echo "install_deps: installing ${missing[*]}" >&2
sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

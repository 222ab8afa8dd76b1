#!/usr/bin/env bash
# The allocation-queue tests start a one-node Slurm of their own (slurmctld + slurmd + munged,
# config in a temp dir): they need Debian's slurm-wlm and munge. Install them when missing
# and this machine can (root and apt-get); otherwise say so (those tests then skip).
set -u
command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
  && command -v munged >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's slurm-wlm and munge for the allocation-queue tests…"
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurm-wlm munge"
  apt-get install -y -q --no-install-recommends $pkgs >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 \
         && apt-get install -y -q --no-install-recommends $pkgs >/dev/null 2>&1; } \
    || echo "could not install slurm-wlm and munge: the Slurm tests will skip"
else
  echo "slurm-wlm and munge are missing and cannot be installed here: the Slurm tests skip"
fi
exit 0

#!/usr/bin/env bash
# Make sure a Docker engine runs: install it where it is missing and can be installed
# (Debian/Ubuntu as root), start it where it is installed but stopped (with or without
# systemd). Elsewhere say what to do. Exit 0 when the engine answers, 1 otherwise.
set -u
log=${MSALAB_DOCKERD_LOG:-/var/log/msalab-dockerd.log}

engine_up() { docker info >/dev/null 2>&1; }

if engine_up; then echo "docker: engine running"; exit 0; fi

if [ "$(uname -s)" != "Linux" ]; then
  echo "docker: no engine answers. Start Docker Desktop, then run make setup again." >&2; exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker: no engine answers and installing or starting one needs root." >&2
  echo "  fix: sudo make setup   (or: sudo systemctl start docker; add yourself to the docker group)" >&2
  exit 1
fi

# Docker, the offline image base (debootstrap), the offline cluster's CNI plugins and what
# its runc build needs (gcc, libseccomp-dev: containerd and runc are built from Go modules),
# nft (removes the empty tables the kubelet creates) and the benchmark load generator.
packages="docker.io debootstrap iptables nftables iproute2 wrk containernetworking-plugins gcc libseccomp-dev"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "docker: installing$missing from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null \
      || { echo "docker: apt-get install failed; see the output above" >&2; exit 1; }
  else
    echo "docker: not installed and this is not a Debian/Ubuntu system: install Docker Engine by hand" >&2; exit 1
  fi
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl start docker
else
  # No systemd (containers, CI sandboxes): start the daemon in the background ourselves.
  echo "docker: starting dockerd (log: $log)"
  # setsid: its own session, so the engine outlives the shell (and process group) that started it
  setsid nohup dockerd >"$log" 2>&1 &
  # Remember that the course started it, so `make clean` stops it again (and only then).
  state="${MSALAB_HOME:-$HOME/.cache/msalab}"; mkdir -p "$state" && echo $! >"$state/dockerd.pid"
fi
for _ in $(seq 1 60); do engine_up && { echo "docker: engine running"; exit 0; }; sleep 1; done
echo "docker: the engine did not start within 60 s; read $log" >&2
exit 1

#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the lab demo: two
# routers joined by two 50 Mbit/s links in network namespaces, the real
# mpbridge daemons between them, iperf3 showing aggregation and failover.
# Extra arguments go to `mpbridge-lab run demo` (e.g. --links 100,50,20).
# Unless given --plot / --json, the picture and the samples are written
# under target/lab/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p mpbridge -p mpbridge-lab
target="${CARGO_TARGET_DIR:-target}"
extra=()
case " $* " in *" --plot"*) ;; *) mkdir -p "$target/lab"; extra+=(--plot "$target/lab/demo.svg") ;; esac
case " $* " in *" --json"*) ;; *) mkdir -p "$target/lab"; extra+=(--json "$target/lab/demo.json") ;; esac
exec "$target/release/mpbridge-lab" run demo "${extra[@]}" "$@"

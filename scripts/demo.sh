#!/usr/bin/env bash
# make demo: a local Consul dev agent (or the one already on 127.0.0.1:8500)
# and three SayHello instances on 10086-10088. Ctrl-C deregisters the
# instances and stops everything this script started.
#
# Environment (for tests; the defaults suit a person):
#   BEACON_DEMO_IP  the loopback address of the agent and the instances
#       (default 127.0.0.1)
#   BEACON_DEMO_SAYHELLO  a sayhello binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

# On a terminal, Ctrl-C signals the whole foreground process group: make
# too, which then reports "Interrupt" and fails. So the demo runs as a
# job of its own (set -m gives it its own process group and the terminal):
# Ctrl-C reaches the demo alone, which deregisters, stops what it started
# and exits 0, and so does make.
if [ -z "${BEACON_DEMO_JOB:-}" ] && [ -t 0 ]; then
	set -m
	BEACON_DEMO_JOB=1 bash "$0" "$@"
	exit
fi

CONSUL_BIN=${CONSUL_BIN:-bin/consul}
IP=${BEACON_DEMO_IP:-127.0.0.1}
ADDR=$IP:8500
pids=()
consul_pid=""
workdir=$(mktemp -d)

cleanup() {
	trap - EXIT
	trap '' INT TERM # a second Ctrl-C must not cut the deregistration short
	echo
	echo "stopping: the SayHello instances deregister, then exit"
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$consul_pid" ]; then
		echo "stopping the Consul agent this demo started"
		kill -TERM "$consul_pid" 2>/dev/null || true
		wait "$consul_pid" 2>/dev/null || true
	fi
	rm -rf "$workdir"
	echo "done: nothing left running"
}
trap "cleanup; exit 0" INT TERM
trap cleanup EXIT

leader() { curl -fsS --max-time 2 "http://$ADDR/v1/status/leader" 2>/dev/null | grep -q '"[^"]'; }

if curl -fsS --max-time 2 "http://$ADDR/v1/status/leader" >/dev/null 2>&1; then
	echo "using the Consul agent already answering on $ADDR (it stays running)"
else
	if [ ! -x "$CONSUL_BIN" ]; then
		echo "no Consul agent on $ADDR and none built: building one (about 3-10 minutes the first time)"
		make consul
	fi
	echo "starting a Consul dev agent on $ADDR (log: $workdir/consul.log)"
	# setsid: Ctrl-C reaches this script only, so the instances deregister
	# before the agent stops.
	setsid "$CONSUL_BIN" agent -dev -bind "$IP" -client "$IP" -grpc-tls-port -1 \
		>"$workdir/consul.log" 2>&1 &
	consul_pid=$!
	for _ in $(seq 1 150); do leader && break; sleep 0.2; done
	leader || { echo "Consul did not elect a leader; its log:"; tail -30 "$workdir/consul.log"; exit 1; }
fi

SAYHELLO=${BEACON_DEMO_SAYHELLO:-}
if [ -z "$SAYHELLO" ]; then
	SAYHELLO="$workdir/sayhello"
	go build -o "$SAYHELLO" ./cmd/sayhello
fi
for port in 10086 10087 10088; do
	# Listen on the address the instance is registered with, nothing wider.
	setsid "$SAYHELLO" -port "$port" -listen "$IP:$port" -advertise "$IP" -id "SayHello-$port" \
		-consul "$ADDR" -meta "port=$port" -tags demo 2>"$workdir/sayhello-$port.log" &
	pids+=($!)
done
for port in 10086 10087 10088; do
	for _ in $(seq 1 100); do curl -fsS --max-time 1 "http://$IP:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

cat <<MSG

Beacon demo is up.
  Consul UI:  http://$ADDR/ui
  Try:
    curl http://$IP:10086/health
    curl http://$IP:10086/sayHello
    curl 'http://$IP:10086/discovery?serviceName=SayHello'
    curl 'http://$ADDR/v1/health/service/SayHello?passing'
  What one instance believes (after a /discovery call it watches SayHello):
    status page: http://$IP:10086/debug/beacon
    go run ./cmd/beacon status http://$IP:10086/debug/beacon
  Logs in $workdir. Ctrl-C to stop.
MSG
wait "${pids[@]}"

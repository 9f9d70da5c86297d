#!/usr/bin/env bash
# make demo-federation: two WAN-federated Consul dev agents (dc1 and dc2),
# two SayHello instances in each, and a caller in dc1 with -failover dc2
# that calls SayHello every second and prints which datacenter answered.
# Kill dc1's instances (the command is printed) to watch the calls move to
# dc2; the demo starts them again and the calls come back. Ctrl-C stops
# everything it started.
#
# Environment (for tests; the defaults suit a person):
#   BEACON_DEMO_DC1_IP, BEACON_DEMO_DC2_IP  loopback addresses of the two
#       datacenters (default 127.0.0.1 and, on Linux, 127.0.0.2)
#   BEACON_DEMO_RESTART  seconds before a dead dc1 instance is started again (15)
#   BEACON_DEMO_HOLD_DOWN  the caller's -failover-hold-down (5s)
#   BEACON_DEMO_SAYHELLO  a sayhello binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

# Ctrl-C on a terminal would reach make too (see demo.sh): run as a job of
# our own.
if [ -z "${BEACON_DEMO_JOB:-}" ] && [ -t 0 ]; then
	set -m
	BEACON_DEMO_JOB=1 bash "$0" "$@"
	exit
fi

CONSUL_BIN=${CONSUL_BIN:-bin/consul}
IP1=${BEACON_DEMO_DC1_IP:-127.0.0.1}
if [ "$(uname -s)" = Linux ]; then
	IP2=${BEACON_DEMO_DC2_IP:-127.0.0.2}
else
	IP2=${BEACON_DEMO_DC2_IP:-127.0.0.1} # other systems rarely route 127.0.0.2
fi
RESTART=${BEACON_DEMO_RESTART:-15}
HOLD_DOWN=${BEACON_DEMO_HOLD_DOWN:-5s}
# Ports of each agent: http, dns, serf_lan, serf_wan, server. They differ
# between the datacenters so that both can share 127.0.0.1, and from the
# usual 8500 so that a Consul agent already there is left alone.
P1=(8510 8610 8311 8312 8310)
P2=(8520 8620 8321 8322 8320)
APPS1=(10101 10102)
APPS2=(10201 10202)

workdir=$(mktemp -d)
consul_pids=()
dc2_pids=()
sup_pids=()
caller_pid=""

# stop PID...: SIGTERM, up to 10 s to exit, then SIGKILL. A pid whose
# process is gone or a zombie counts as stopped. No `wait`: cleanup runs in
# a trap, where bash blocks SIGCHLD, and waiting there for a child that
# became a zombie before the wait (a supervisor killed by the Ctrl-C that
# reached the whole process group) never returns; the zombies go with us.
stop() {
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	local p alive
	for _ in $(seq 1 100); do
		alive=()
		for p in "$@"; do
			case "$(ps -o stat= -p "$p" 2>/dev/null)" in "" | Z*) ;; *) alive+=("$p") ;; esac
		done
		[ ${#alive[@]} = 0 ] && break
		sleep 0.1
	done
	[ ${#alive[@]} = 0 ] || kill -KILL "${alive[@]}" 2>/dev/null || true
}

cleanup() {
	trap - EXIT
	trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
	touch "$workdir/stopping"
	echo
	echo "stopping: the caller, then the SayHello instances (they deregister), then the Consul agents"
	[ -n "$caller_pid" ] && stop "$caller_pid"
	# All instances at once: each drains for a second before it exits.
	stop "${sup_pids[@]}" "${dc2_pids[@]}"
	# A dc1 instance whose supervisor had to be killed outlived it.
	local left=() f
	for f in "$workdir"/dc1-*.pid; do [ -e "$f" ] && left+=("$(cat "$f")"); done
	stop "${left[@]}"
	stop "${consul_pids[@]}"
	rm -rf "$workdir"
	echo "done: nothing left running"
}
trap "cleanup; exit 0" INT TERM
trap cleanup EXIT

for ip_ports in "$IP1 ${P1[*]} ${APPS1[*]}" "$IP2 ${P2[*]} ${APPS2[*]}"; do
	set -- $ip_ports
	ip=$1
	shift
	for port in "$@"; do
		if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
			echo "something already listens on $ip:$port (another make demo-federation?); stop it first"
			exit 1
		fi
	done
done

if [ ! -x "$CONSUL_BIN" ]; then
	echo "no Consul agent built: building one (about 3-10 minutes the first time)"
	make consul
fi

# agent DC IP PORTS... JOIN: a dev agent (a server) of datacenter DC.
# retry_interval_wan 1s: the default 30 s would stall the first join when
# the other agent is not up yet.
agent() {
	local dc=$1 ip=$2 http=$3 dns=$4 lan=$5 wan=$6 server=$7 join=$8
	setsid "$CONSUL_BIN" agent -dev -datacenter "$dc" -node "$dc-agent" \
		-bind "$ip" -client "$ip" -http-port "$http" -dns-port "$dns" \
		-serf-lan-port "$lan" -serf-wan-port "$wan" -server-port "$server" \
		-grpc-port -1 -grpc-tls-port -1 -retry-join-wan "$join" -hcl 'retry_interval_wan = "1s"' \
		>"$workdir/consul-$dc.log" 2>&1 &
	consul_pids+=($!)
}
echo "starting Consul: dc1 on $IP1:${P1[0]}, dc2 on $IP2:${P2[0]} (logs in $workdir)"
agent dc1 "$IP1" "${P1[@]}" "$IP2:${P2[3]}"
agent dc2 "$IP2" "${P2[@]}" "$IP1:${P1[3]}"

# federated: each agent has a leader and reads the other datacenter.
federated() {
	curl -fsS --max-time 2 "http://$IP1:${P1[0]}/v1/catalog/nodes?dc=dc2" 2>/dev/null | grep -q dc2-agent &&
		curl -fsS --max-time 2 "http://$IP2:${P2[0]}/v1/catalog/nodes?dc=dc1" 2>/dev/null | grep -q dc1-agent
}
for _ in $(seq 1 150); do federated && break; sleep 0.2; done
if ! federated; then
	echo "the two datacenters did not federate within 30 s; the agents' logs:"
	tail -20 "$workdir"/consul-*.log
	exit 1
fi
echo "dc1 and dc2 are federated"

SAYHELLO=${BEACON_DEMO_SAYHELLO:-}
if [ -z "$SAYHELLO" ]; then
	SAYHELLO="$workdir/sayhello"
	go build -o "$SAYHELLO" ./cmd/sayhello
fi

# instance DC IP PORT CONSUL_PORT: one SayHello instance, in the background.
instance() {
	setsid "$SAYHELLO" -id "SayHello-$1-$3" -port "$3" -advertise "$2" -consul "$2:$4" -tags "$1" \
		>>"$workdir/sayhello-$1-$3.log" 2>&1 &
}
for port in "${APPS2[@]}"; do
	instance dc2 "$IP2" "$port" "${P2[0]}"
	dc2_pids+=($!)
done

# supervise PORT: runs dc1's instance on PORT, and starts it again RESTART
# seconds after it exits, until the demo stops. Its pid is in
# $workdir/dc1-PORT.pid.
supervise() {
	local port=$1 child="" sleeper=""
	trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"; exit 0' TERM
	while [ ! -e "$workdir/stopping" ]; do
		instance dc1 "$IP1" "$port" "${P1[0]}"
		child=$!
		echo "$child" >"$workdir/dc1-$port.pid"
		wait "$child" || true
		child=""
		rm -f "$workdir/dc1-$port.pid"
		[ -e "$workdir/stopping" ] && break
		echo "    (SayHello-dc1-$port stopped; the demo starts it again in ${RESTART}s)"
		sleep "$RESTART" &
		sleeper=$!
		wait "$sleeper" || true
		sleeper=""
	done
}
for port in "${APPS1[@]}"; do
	supervise "$port" &
	sup_pids+=($!)
done

passing() { # IP PORT: both instances of the datacenter passing
	[ "$(curl -fsS --max-time 2 "http://$1:$2/v1/health/service/SayHello?passing" 2>/dev/null | grep -Eo '"ID": ?"SayHello-' | wc -l)" -ge 2 ]
}
for _ in $(seq 1 100); do passing "$IP1" "${P1[0]}" && passing "$IP2" "${P2[0]}" && break; sleep 0.2; done

cat <<MSG

Federation demo is up: SayHello-dc1-${APPS1[0]}, -${APPS1[1]} in dc1 and SayHello-dc2-${APPS2[0]}, -${APPS2[1]} in dc2.
  Consul UI:  http://$IP1:${P1[0]}/ui (dc1), http://$IP2:${P2[0]}/ui (dc2)
  Try:  curl 'http://$IP1:${APPS1[0]}/discovery?serviceName=SayHello&dc=dc2'
  A caller in dc1 (sayhello -call SayHello -failover dc2) calls SayHello every second below.

  To watch the calls move to dc2, stop dc1's instances, in another terminal:
    kill \$(cat $workdir/dc1-*.pid)
  The demo starts them again ${RESTART}s later; the calls come back to dc1 ${HOLD_DOWN} after that (the hold-down).
  Logs in $workdir. Ctrl-C to stop everything.

MSG
setsid "$SAYHELLO" -consul "$IP1:${P1[0]}" -call SayHello -failover dc2 -failover-hold-down "$HOLD_DOWN" \
	-n 1000000 -interval 1s 2>"$workdir/caller.log" &
caller_pid=$!
wait "$caller_pid" || true

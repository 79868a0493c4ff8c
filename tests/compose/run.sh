#!/usr/bin/env bash
# The compose deployment on this machine's Docker engine (issue 5), as an operator runs it.
# Needs a release binary (`cargo build --release -p uns-cli`), Docker, docker compose (v2
# plugin or Debian's docker-compose) and root for the base image (debootstrap). Steps:
#
#   1. base image (deploy/make-base-image.sh, skipped when present), app image, `config`
#   2. `--profile demo up -d` (broker, meta, scada-bridge, workorders, erp-bridge, oee,
#      genealogy and the simulated plant `sim`), wait until every container is healthy
#      (deadline, polled)
#   3. from the host, paho (MQTT 3.1.1, `#` + `$SYS/#`, tests/peers/mqtt_explorer.py) sees
#      every service's retained health `running`, the `_meta` tree, the schemas, `$SYS`, and
#      the sim's Sparkplug metrics through the bridge: `_tag` values and `_state` documents on
#      the plant's cells
#      the MES half: an order for a material not in the master is refused naming it; with the
#      master loaded, `uns erp post` (inside erp-bridge) makes it a `_wo` on line 1, which
#      `uns wo release/start` (inside workorders) runs and which counts the sim's production;
#      `_oee/current/hour` of line 1 is retained; `kill -s KILL oee` mid-shift and `up -d oee`:
#      a new instance running, the hour's good count continues (nothing lost)
#   4. `restart broker`: every retained document is back, the services reconnect by themselves,
#      `_tag` values flow again (timestamps after the restart)
#   5. `kill -s KILL meta`: its Will says `stopped`; `up -d meta`: a new instance, nothing lost
#   6. `kill -s KILL scada-bridge`: its Will says `stopped`; `up -d scada-bridge`: a new
#      instance, `_tag` values flow again, every retained `_tag` document still there
#   7. `down`: nothing running, volumes kept; `up -d`: data still there
#   8. `down -v`: containers, network and volumes gone
#
# Runs under its own project name and spare host ports, bound to 127.0.0.1, and always cleans
# up. Prints timings. Environment: UNS_TEST_IMAGE (default uns:compose-test),
# UNS_TEST_KEEP_IMAGE=0 to remove the app image at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
t0=$(date +%s.%N)
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
say() { printf '[compose-test %6ss] %s\n' "$(since "$t0")" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

# --- tools -----------------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is installed"
fi
[ -x target/release/uns ] || fail "target/release/uns missing: run cargo build --release -p uns-cli first"
python=target/peers/paho/bin/python
if ! "$python" -c 'import paho.mqtt' 2>/dev/null; then
  say "creating the paho venv"
  python3 -m venv target/peers/paho
  "$python" -m pip install --quiet --disable-pip-version-check -r tests/peers/requirements-paho.txt
fi

# --- an isolated project ---------------------------------------------------------------------
project="uns-citest-$$"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export UNS_IMAGE="${UNS_TEST_IMAGE:-uns:compose-test}"
export UNS_BIND_ADDRESS=127.0.0.1
export UNS_MQTT_PORT; UNS_MQTT_PORT=$(free_port)
export UNS_WS_PORT; UNS_WS_PORT=$(free_port)
export UNS_BROKER_URL=mqtt://broker:1883
export UNS_LOG=info,rmqtt=warn,rmqtt_net=warn
# Fresh secrets every run: proves the accounts really come from the environment.
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(12))'; }
export UNS_META_PASSWORD; UNS_META_PASSWORD=$(secret)
export UNS_SCADA_BRIDGE_PASSWORD; UNS_SCADA_BRIDGE_PASSWORD=$(secret)
export UNS_SIM_PASSWORD; UNS_SIM_PASSWORD=$(secret)
export UNS_WORKORDERS_PASSWORD; UNS_WORKORDERS_PASSWORD=$(secret)
export UNS_ERP_BRIDGE_PASSWORD; UNS_ERP_BRIDGE_PASSWORD=$(secret)
export UNS_OEE_PASSWORD; UNS_OEE_PASSWORD=$(secret)
export UNS_GENEALOGY_PASSWORD; UNS_GENEALOGY_PASSWORD=$(secret)
export UNS_ENGINEER_USER=engineer
export UNS_ENGINEER_PASSWORD; UNS_ENGINEER_PASSWORD=$(secret)
# Every command with the demo profile, so `sim` is started, counted, stopped and removed too.
compose_plain() { "${compose_cmd[@]}" -p "$project" -f "$repo/docker-compose.yml" --project-directory "$repo" "$@"; }
compose() { compose_plain --profile demo "$@"; }
services=(broker meta scada-bridge workorders erp-bridge oee genealogy sim)
# The services that connect to the broker as MQTT clients.
clients=(meta scada-bridge workorders erp-bridge oee genealogy sim)
work=$(mktemp -d /tmp/uns-compose-test.XXXXXX)

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    say "logs of the failed run:"
    compose logs --no-color --tail 40 2>&1 | sed 's/^/    /' || true
  fi
  compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  if [ "${UNS_TEST_KEEP_IMAGE:-1}" = 0 ]; then docker rmi "$UNS_IMAGE" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  say "cleaned up project $project (exit $status)"
}
trap cleanup EXIT

# Every container of the project healthy, within a deadline; prints the seconds it took.
wait_healthy() {
  local deadline=$1 started; started=$(now)
  local end=$(( $(date +%s) + deadline ))
  while :; do
    local ids states
    ids=$(compose ps -q)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      states=$(docker inspect --format '{{.Name}}={{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids)
      if ! grep -qv '=healthy$' <<<"$states"; then
        since "$started"
        return 0
      fi
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      say "not healthy within ${deadline}s: $(tr '\n' ' ' <<<"${states:-no containers}")"
      return 1
    fi
    sleep 0.5  # polling interval
  done
}

# A service's Prometheus metrics, read inside its container (no port published), and one
# metric (summed over its labels) out of them.
metrics_of() { compose exec -T "$1" uns healthcheck --url http://127.0.0.1:8080/metrics 2>/dev/null || true; }
metric_in() { awk -v name="$1" '$1 ~ "^"name"($|\\{)" { sum += $NF } END { print sum + 0 }'; }
metric() { metrics_of "$1" | metric_in "$2"; }
now_ms() { date +%s%3N; }
all_running=()
for name in "${services[@]}"; do all_running+=(--status "$name=running"); done

check() {
  "$python" tests/compose/check.py --port "$UNS_MQTT_PORT" \
    --username "$UNS_ENGINEER_USER" --password "$UNS_ENGINEER_PASSWORD" \
    --plant deploy/compose/meta.toml "$@"
}
json_field() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval("d" + sys.argv[1]))' "$1"; }

# --- 1. images -------------------------------------------------------------------------------
say "compose tool: ${compose_cmd[*]} ($("${compose_cmd[@]}" version --short 2>/dev/null || echo '?'))"
compose config -q || fail "docker-compose.yml does not pass '${compose_cmd[*]} config'"
demo_services=$(compose config --services | sort | tr '\n' ' ')
[ "$demo_services" = "broker erp-bridge genealogy meta oee scada-bridge sim workorders " ] || fail "with --profile demo: $demo_services"
[ "$(compose_plain config --profiles)" = demo ] || fail "profiles: $(compose_plain config --profiles)"
say "config: services $demo_services(sim only in the profile 'demo')"
step=$(now)
deploy/make-base-image.sh uns-base:bookworm
say "base image ready in $(since "$step")s"
step=$(now)
docker build --quiet -f deploy/Dockerfile --build-arg BASE=uns-base:bookworm \
  -t "$UNS_IMAGE" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "docker build"; }
image_size=$(docker image inspect --format '{{.Size}}' "$UNS_IMAGE")
binary_size=$(stat -c %s target/release/uns)
say "app image $UNS_IMAGE built in $(since "$step")s: $((image_size / 1000000)) MB (binary $((binary_size / 1000000)) MB)"
[ "$(docker run --rm "$UNS_IMAGE" --version | cut -d' ' -f1)" = uns ] || fail "the image does not run uns"

# --- 2. up -----------------------------------------------------------------------------------
step=$(now)
up_ms=$(now_ms)
compose up -d 2>&1 | sed 's/^/    /'
wait_healthy 120 >/dev/null || fail "compose up: not healthy"
healthy_seconds=$(since "$step")
say "up -d → every container healthy in ${healthy_seconds}s"
for name in "${services[@]}"; do
  [ "$(compose exec -T "$name" id -u)" = 10001 ] || fail "$name does not run as uid 10001"
done

# --- 3. what MQTT Explorer sees ---------------------------------------------------------------
probe_topic="uns/v1/acme/berlin/_tag/compose-test/probe"
probe_payload="{\"value\":$$,\"timestamp_ms\":$(date +%s%3N),\"quality\":\"good\"}"
out=$(check --label initial "${all_running[@]}" --sys --ws-port "$UNS_WS_PORT" --deadline 60 \
  --publish "$probe_topic=$probe_payload" --publisher "scada-bridge:$UNS_SCADA_BRIDGE_PASSWORD" \
  --retained "$probe_topic=$probe_payload" \
  --live-since "$up_ms" --min-retained-tags 1 --settle 1 \
  --save "$work/baseline.json") || fail "initial check: $out"
say "paho sees: $out"
tags_initial=$(json_field '["retained_tags"]' <<<"$out")
meta_started=$(json_field '["health"]["meta"]["started_at"]' <<<"$out")
retained_count=$(json_field '["retained_topics"]' <<<"$out")

# The MES half: a production order posted to the erp-bridge as an ERP does (from inside its
# container: its API serves loopback only while it has no tokens) becomes a work order on line
# 1, which `uns wo` (inside the workorders container) releases and starts; it then counts the
# simulated filler's production, and OEE results for the line are retained.
order_id="po-compose-$$"
order_json=$(python3 -c 'import json, sys; print(json.dumps({"id": sys.argv[1], "material": "BOTTLE-1L", "quantity": {"qty": 100000, "uom": "EA"}, "equipment": "WC-4711"}))' "$order_id")
# The material master first (an order for an unknown material is refused).
step=$(now)
compose exec -T erp-bridge uns healthcheck >/dev/null || fail "erp-bridge not answering"
posted=$(compose exec -T erp-bridge uns erp post - <<<"$order_json" 2>&1) && fail "an order for a material not in the master was accepted: $posted"
grep -q "BOTTLE-1L" <<<"$posted" || fail "the refusal does not name the unknown material: $posted"
compose exec -T erp-bridge uns erp materials --merge - <<<'[{"id": "BOTTLE-1L", "description": "Bottle 1 l", "uom": "EA"}]' >/dev/null \
  || fail "loading the material master"
posted=$(compose exec -T erp-bridge uns erp post - <<<"$order_json" 2>&1) || fail "posting a production order: $posted"
wo_topic="uns/v1/acme/berlin/packaging/line-1/_wo/$order_id"
out=$(check --label "work order from the ERP" --present "$wo_topic" --deadline 60) || fail "no $wo_topic: $out"
compose exec -T workorders uns wo release "$order_id" >/dev/null || fail "uns wo release"
compose exec -T workorders uns wo start "$order_id" >/dev/null || fail "uns wo start"
end=$(( $(date +%s) + 60 ))
while out=$(check --label "work order counts" --present "$wo_topic" --deadline 20); \
      good=$(json_field "['present']['$wo_topic']['quantities']['good']['qty']" <<<"$out" 2>/dev/null || echo 0); \
      status=$(json_field "['present']['$wo_topic']['status']" <<<"$out" 2>/dev/null || echo none); \
      [ "$status" != running ] || ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$good"; do
  [ "$(date +%s)" -lt "$end" ] || fail "$order_id did not run and count (status $status, good $good): $out"
  sleep 0.5  # polling interval
done
oee_topic="uns/v1/acme/berlin/packaging/line-1/_oee/current/hour"
out=$(check --label "oee" --present "$oee_topic" --deadline 60) || fail "no $oee_topic: $out"
availability=$(json_field "['present']['$oee_topic'].get('availability')" <<<"$out")
say "ERP order → $wo_topic running, $good good counted, in $(since "$step")s; OEE on line 1 retained (availability $availability)"

# OEE loses nothing to kill -9 (issue 12): the line's current hour before; `kill -s KILL oee`
# mid-shift, its Will says `stopped`; `up -d oee`: a new instance `running` whose first current
# hour (published after it came up: its `end` is later) continues from its store. In the same
# hour the good count is not below the one before; if the hour ended meanwhile, the closed
# hour (`_oee/hour/{id}`, final) has at least that count.
oee_field() { python3 -c 'import json, sys; d = json.load(sys.stdin)["present"][sys.argv[1]]; print(eval("d" + sys.argv[2]))' "$@"; }
oee_end_ms() { python3 -c 'import datetime, json, sys; d = json.load(sys.stdin)["present"][sys.argv[1]]; print(int(datetime.datetime.fromisoformat(d["end"].replace("Z", "+00:00")).timestamp() * 1000))' "$1"; }
at_least() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }
out=$(check --label "oee before kill" --status oee=running --present "$oee_topic" --deadline 60) || fail "oee before kill: $out"
oee_started=$(json_field '["health"]["oee"]["started_at"]' <<<"$out")
oee_hour=$(oee_field "$oee_topic" "['period']['id']" <<<"$out")
oee_good=$(oee_field "$oee_topic" "['counts']['good']['qty']" <<<"$out")
step=$(now)
compose kill -s KILL oee 2>&1 | sed 's/^/    /'
out=$(check --label "after kill oee" --status oee=stopped --deadline 30) || fail "oee's Will did not say stopped: $out"
oee_up_ms=$(now_ms)
compose up -d oee 2>&1 | sed 's/^/    /'
out=$(check --label "after up -d oee" --status oee=running --new-instance "oee=$oee_started" --deadline 60) \
  || fail "after up -d oee: $out"
end=$(( $(date +%s) + 60 ))
while out=$(check --label "oee after up -d" --present "$oee_topic" --deadline 20); \
      [ "$(oee_end_ms "$oee_topic" <<<"$out")" -lt "$oee_up_ms" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "no $oee_topic from the new oee instance: $out"
  sleep 0.5  # polling interval
done
hour_after=$(oee_field "$oee_topic" "['period']['id']" <<<"$out")
good_after=$(oee_field "$oee_topic" "['counts']['good']['qty']" <<<"$out")
if [ "$hour_after" = "$oee_hour" ]; then
  at_least "$good_after" "$oee_good" || fail "after kill -9 oee the hour $oee_hour counts $good_after good, $oee_good before"
  oee_kept="hour $oee_hour: $oee_good good before → $good_after after"
else
  closed_topic="uns/v1/acme/berlin/packaging/line-1/_oee/hour/$oee_hour"
  out=$(check --label "closed hour after kill oee" --present "$closed_topic" --deadline 120) || fail "no $closed_topic: $out"
  closed_good=$(oee_field "$closed_topic" "['counts']['good']['qty']" <<<"$out")
  at_least "$closed_good" "$oee_good" || fail "after kill -9 oee the closed hour $oee_hour counts $closed_good good, $oee_good before"
  oee_kept="hour $oee_hour closed with $closed_good good ($oee_good before the kill), now $hour_after"
fi
say "kill -s KILL oee → Will 'stopped'; up -d oee → new instance running, $oee_kept, in $(since "$step")s"
wait_healthy 60 >/dev/null || fail "not healthy after up -d oee"

# Auth is on: a wrong password and an anonymous client are refused with a CONNACK reason.
refused() {
  "$python" tests/peers/mqtt_explorer.py --port "$UNS_MQTT_PORT" --timeout 10 \
    --expect uns/v1/_services/meta "$@" >"$work/refused.json" 2>&1 && return 1
  local reason; reason=$(json_field '["connack"]' <"$work/refused.json")
  [ "$(json_field '["connected"]' <"$work/refused.json")" = False ] && [ "$reason" != None ] || return 1
  echo "$reason"
}
bad_password=$(refused --username "$UNS_ENGINEER_USER" --password wrong) || fail "a wrong password was not refused: $(cat "$work/refused.json")"
anonymous=$(refused) || fail "an anonymous client was not refused: $(cat "$work/refused.json")"
say "auth on: wrong password → '$bad_password', anonymous → '$anonymous'"

# --- 4. restart the broker ----------------------------------------------------------------------
declare -A reconnects_before
for name in "${clients[@]}"; do reconnects_before[$name]=$(metric "$name" uns_mqtt_reconnects_total); done
step=$(now)
restart_ms=$(now_ms)
compose restart broker 2>&1 | sed 's/^/    /'
restart_cmd_seconds=$(since "$step")
out=$(check --label "after restart broker" --baseline "$work/baseline.json" "${all_running[@]}" \
  --counts-kept --min-retained-tags "$tags_initial" --deadline 60) || fail "after restart broker: $out"
back_seconds=$(since "$step")
say "restart broker ($restart_cmd_seconds s) → all $retained_count retained documents back (incl. $tags_initial _tag), ${back_seconds}s after the restart began: $out"
out=$(check --label "tags after restart broker" "${all_running[@]}" --live-since "$restart_ms" \
  --deadline 60) || fail "no fresh _tag after restart broker: $out"
tags_again_seconds=$(since "$step")
say "_tag values flow again ${tags_again_seconds}s after the restart began: $(json_field '["live"]' <<<"$out")"
# Each client service reconnects by itself: its reconnect counter went up and it is connected.
# (The time printed includes polling through `docker exec`, about 0.5 s per service.)
reconnected=()
for name in "${clients[@]}"; do
  end=$(( $(date +%s) + 60 ))
  while text=$(metrics_of "$name"); reconnects=$(metric_in uns_mqtt_reconnects_total <<<"$text")
        [ "$reconnects" -le "${reconnects_before[$name]}" ] || [ "$(metric_in uns_mqtt_connected <<<"$text")" != 1 ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "$name did not reconnect by itself (reconnects ${reconnects_before[$name]} → $reconnects)"
    sleep 0.5  # polling interval
  done
  reconnected+=("$name ${reconnects_before[$name]}→$reconnects")
done
reconnect_seconds=$(since "$step")
say "every service reconnected by itself (uns_mqtt_reconnects_total: ${reconnected[*]}; connected) ${reconnect_seconds}s after the restart began"
wait_healthy 60 >/dev/null || fail "not healthy after restart broker"

# --- 5. kill -9 a service -------------------------------------------------------------------------
step=$(now)
compose kill -s KILL meta 2>&1 | sed 's/^/    /'
out=$(check --label "after kill meta" --status meta=stopped --deadline 30) \
  || fail "meta's Will did not say stopped: $out"
say "kill -s KILL meta → its Will published 'stopped' after $(since "$step")s"
step=$(now)
compose up -d meta 2>&1 | sed 's/^/    /'
out=$(check --label "after up -d meta" --baseline "$work/baseline.json" --status meta=running \
  --new-instance "meta=$meta_started" --deadline 60) || fail "after up -d meta: $out"
say "up -d meta → new instance running, all retained documents intact, in $(since "$step")s: $out"
wait_healthy 60 >/dev/null || fail "not healthy after up -d meta"

# --- 6. kill -9 the SCADA bridge --------------------------------------------------------------------
out=$(check --label "before kill scada-bridge" "${all_running[@]}" --min-retained-tags "$tags_initial" \
  --settle 1 --save "$work/bridge-baseline.json" --deadline 60) || fail "before kill scada-bridge: $out"
tags_before=$(json_field '["retained_tags"]' <<<"$out")
bridge_started=$(json_field '["health"]["scada-bridge"]["started_at"]' <<<"$out")
step=$(now)
compose kill -s KILL scada-bridge 2>&1 | sed 's/^/    /'
out=$(check --label "after kill scada-bridge" --status scada-bridge=stopped --deadline 30) \
  || fail "scada-bridge's Will did not say stopped: $out"
bridge_will_seconds=$(since "$step")
say "kill -s KILL scada-bridge ($tags_before retained _tag documents before) → its Will published 'stopped' after ${bridge_will_seconds}s"
step=$(now)
bridge_up_ms=$(now_ms)
compose up -d scada-bridge 2>&1 | sed 's/^/    /'
out=$(check --label "after up -d scada-bridge" --baseline "$work/bridge-baseline.json" "${all_running[@]}" \
  --new-instance "scada-bridge=$bridge_started" --live-since "$bridge_up_ms" --counts-kept \
  --min-retained-tags "$tags_before" --settle 1 --deadline 60) || fail "after up -d scada-bridge: $out"
tags_after=$(json_field '["retained_tags"]' <<<"$out")
bridge_back_seconds=$(since "$step")
say "up -d scada-bridge → new instance running, _tag values flow again, retained _tag documents $tags_before before → $tags_after after (none lost), no counter went back, in ${bridge_back_seconds}s: $(json_field '["live"]' <<<"$out")"
# What the sim sampled while the bridge was away was stored (sim-data volume) and forwarded
# when the new bridge came online; the bridge counts those values as historical.
end=$(( $(date +%s) + 30 ))
while historical=$(metric scada-bridge uns_scada_bridge_historical_total); [ "$historical" -lt 1 ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "the new scada-bridge received no stored (historical) values from the sim"
  sleep 0.5  # polling interval
done
say "the sim forwarded what it stored during the outage: the new scada-bridge counted $historical historical values"
wait_healthy 60 >/dev/null || fail "not healthy after up -d scada-bridge"

# --- 7. down keeps the volumes ----------------------------------------------------------------------
volumes() { docker volume ls -q --filter "label=com.docker.compose.project=$project" | sort | tr '\n' ' '; }
running() { docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l; }
step=$(now)
compose down --timeout 15 2>&1 | sed 's/^/    /'
down_seconds=$(since "$step")
[ "$(running)" -eq 0 ] || fail "containers left after down: $(docker ps -a --filter "label=com.docker.compose.project=$project")"
kept=$(volumes)
[ -n "$kept" ] || fail "down removed the volumes"
say "down (${down_seconds}s): no container left; volumes kept: $kept"
step=$(now)
up_again_ms=$(now_ms)
compose up -d 2>&1 | sed 's/^/    /'
wait_healthy 120 >/dev/null || fail "second up: not healthy"
out=$(check --label "after down + up" --baseline "$work/baseline.json" "${all_running[@]}" \
  --retained "$probe_topic=$probe_payload" --live-since "$up_again_ms" --counts-kept --deadline 60) \
  || fail "after down + up: $out"
say "up -d again → healthy, the broker's retained store survived down, _tag values flow, no counter went back, in $(since "$step")s"

# --- 8. down -v ------------------------------------------------------------------------------
compose down -v --timeout 15 2>&1 | sed 's/^/    /'
[ "$(running)" -eq 0 ] || fail "containers left after down -v"
[ -z "$(volumes)" ] || fail "volumes left after down -v: $(volumes)"
[ -z "$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "network left after down -v"
say "down -v: no container, volume or network left"

say "PASS in $(since "$t0")s — image $((image_size / 1000000)) MB, healthy ${healthy_seconds}s after up -d, broker restart: documents back ${back_seconds}s, services reconnected ${reconnect_seconds}s, tags again ${tags_again_seconds}s; kill -9 scada-bridge: Will ${bridge_will_seconds}s, back with tags ${bridge_back_seconds}s, retained _tag $tags_before → $tags_after, $historical historical values forwarded"

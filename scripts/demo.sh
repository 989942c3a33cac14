#!/usr/bin/env bash
# The end-to-end demo on SQLite. First `runyard demo`: a planning yard whose plans are
# run as PSI simulations by a worker, aggregated, and dry-run archived. Then, by hand,
# the registry's own commands: a yard, a scenario, two config versions, a plan, a few
# runs (CLI and Python API), a legacy folder imported, and the history listed.
# Usage: scripts/demo.sh [FOLDER]   (default: a new temporary folder)
set -euo pipefail
demo_dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/runyard-demo-XXXXXX")}
yard="$demo_dir/yard"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

unset RUNYARD_YARD RUNYARD_DB
run runyard demo "$demo_dir/demo-yard"

run runyard init "$yard"
cd "$yard"

run runyard scenario add weekly-demand --description "1 SKU, 8 weeks of demand"
cat > policy-v1.json <<'JSON'
{"policy": {"safety_stock_periods": 2, "lot_size": 50}, "costs": {"holding": 0.5, "backorder": 4.0}}
JSON
cat > policy-v2.json <<'JSON'
{"costs": {"backorder": 4.0, "holding": 0.5}, "policy": {"lot_size": 50, "safety_stock_periods": 3}}
JSON
say runyard config add policy-v1.json --name policy-v1 --json
cfg1=$(runyard config add policy-v1.json --name policy-v1 --json | json_field config_version_id)
echo "$cfg1"
say runyard config add policy-v2.json --name policy-v2 --json
cfg2=$(runyard config add policy-v2.json --name policy-v2 --json | json_field config_version_id)
echo "$cfg2"
run runyard config diff "$cfg1" "$cfg2"

say runyard plan create --scenario weekly-demand --config "$cfg2" --param horizon=8 --label "ss=3" --json
plan=$(runyard plan create --scenario weekly-demand --config "$cfg2" --param horizon=8 \
  --label "ss=3" --json | json_field plan_version_id)
echo "$plan"

say "runyard run start (without a plan: the legacy path is closed)"
runyard run start || echo "(exit $? — as expected)"

for group in CH01/001 CH01/002; do
  say runyard run start --plan "$plan" --group "$group" --json
  run_id=$(runyard run start --plan "$plan" --group "$group" --json | json_field run_id)
  echo "$run_id"
  echo "week,inventory" > "runs/$run_id/inventory.csv"
  run runyard run finish "$run_id" --status succeeded --summary '{"fill_rate": 0.97, "cost": 1234.5}'
done

say "python: record a run with the Python API"
RUNYARD_DEMO_PLAN="$plan" python3 - <<'PY'
import os
import runyard

with runyard.open_yard() as yard:
    with yard.start_run(plan_version_id=os.environ["RUNYARD_DEMO_PLAN"], group="CH01/003") as run:
        (run.path / "result.txt").write_text("done\n")
        run.log_summary({"fill_rate": 0.99, "cost": 1180.0})
        run.set_tags({"owner": "demo"})
    print("recorded", run.run_id)
PY

say "mkdir runs/192 (a legacy folder with no manifest), then import it"
mkdir -p runs/192
run runyard run import --all

say "another machine: record two runs through runyard serve, over HTTP, with a recorder token"
secret=$(runyard token create render-farm --role recorder --json | json_field secret)
echo "runyard token create render-farm --role recorder  → a secret, shown once"
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
say runyard serve --port "$port" "&"
runyard serve --port "$port" --no-worker >"$demo_dir/serve.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("runyard serve did not start; see serve.log")
        time.sleep(0.1)
PY
elsewhere="$demo_dir/render-host"   # no yard here: only a URL and a token
mkdir -p "$elsewhere/out/frames" && cd "$elsewhere"
printf 'frame 1\n' > out/frames/0001.txt && ln -s frames/0001.txt out/latest
(
  export RUNYARD_SERVER="http://127.0.0.1:$port" RUNYARD_TOKEN="$secret"
  unset RUNYARD_YARD
  say "RUNYARD_SERVER=$RUNYARD_SERVER RUNYARD_TOKEN=ryt_… runyard run start --plan $plan --group CH02/001 --json"
  run_id=$(runyard run start --plan "$plan" --group CH02/001 --json | json_field run_id)
  echo "$run_id"
  run runyard run upload "$run_id" out
  run runyard run finish "$run_id" --status succeeded --summary '{"fill_rate": 0.96, "cost": 1302.0}'
  say "python: runyard.connect(RUNYARD_SERVER) instead of open_yard(), the rest unchanged"
  RUNYARD_DEMO_PLAN="$plan" python3 - <<'PY'
import os
import runyard

with runyard.connect() as yard:  # RUNYARD_SERVER, RUNYARD_TOKEN
    with yard.start_run(plan_version_id=os.environ["RUNYARD_DEMO_PLAN"], group="CH02/002") as run:
        run.upload("out")
        run.log_summary({"fill_rate": 0.98, "cost": 1250.0})
        run.set_tags({"host": "render-07"})
    print("recorded over HTTP", run.run_id, run.result.status.value)
PY
)
cd "$yard"
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
trap - EXIT

run runyard run list
run runyard run list --where "tag.host = 'render-07' or group like 'CH02/%'"
run runyard run list --plan "$plan" --status succeeded --limit 2
run runyard plan show "$plan"
say "which runs were best? (the demo yard's plans, fill rate at least 0.95, cheapest first)"
cd "$demo_dir/demo-yard"
run runyard run list --where "kpi.fill_rate >= 0.95" --order-by "kpi.total_cost asc" --limit 6
run runyard view save on-target --where "kpi.fill_rate >= 0.95" --order-by "kpi.total_cost asc"
echo "(open /ui/runs?view=on-target after \`runyard serve\` to see it at a glance)"
printf '\nDemo yards: %s (runyard demo) and %s (by hand)\n' "$demo_dir/demo-yard" "$yard"

#!/usr/bin/env bash
# Set up .venv and run the main job, the seed's whole scenario on the embedded default store
# (./.kvcache/kv.sqlite3, the app database ./.kvcache/app.db):
#   a Workers-KV round trip through the CLI; then a local Shopify (`kvcache shopify emulate`,
#   100 ms a query) with a sample shop added by `kvcache shop add`, and `kvcache serve` in front:
#   a customer looked up twice (a miss that reaches Shopify, then a hit), a customer created,
#   the shop's configuration read and updated, a customers/update webhook that changes an
#   e-mail and the look-ups that follow it, duplicates and a forged delivery, the cache
#   statistics, the cost projection and the dashboard, and an app/uninstalled. Everything it started is stopped on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[service]'
kv=.venv/bin/kvcache
py=.venv/bin/python
shop=demo.myshopify.com

echo "== the store: a Workers-KV round trip"
$kv kv key put "demo:greeting" '{"hello":"world"}' --metadata '{"source":"demo"}'
echo "get  -> $($kv kv key get "demo:greeting" --text)"
$kv kv key delete "demo:greeting"

# A fresh start for the demo shop: nothing cached from an earlier run.
mkdir -p .kvcache
$kv --namespace CACHE kv key list --prefix "shop:$shop:" >.kvcache/demo-keys.json
if [ "$($py -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' .kvcache/demo-keys.json)" != 0 ]; then
    $kv --namespace CACHE kv bulk delete .kvcache/demo-keys.json >/dev/null
fi
rm -f .kvcache/demo-keys.json

free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A demo client secret (Shopify's in real use), and a key that encrypts stored shop tokens.
export SHOPIFY_API_SECRET="demo-secret-$(date +%s)"
export KVCACHE_SECRET_KEY="$($py -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
shopify_port=$(free_port)
port=$(free_port)
address="http://127.0.0.1:$port"
logs=$(mktemp -d)
pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$logs"
}
trap stop EXIT
# Wait until a URL answers 2xx, or fail with the log of the process that should serve it.
wait_for() {
    for _ in $(seq 150); do
        $py -c 'import httpx, sys; httpx.get(sys.argv[1]).raise_for_status()' "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { cat "$3"; exit 1; }
        sleep 0.1
    done
    cat "$3"; exit 1
}
# call METHOD PATH [JSON]: the service's answer as "status [X-Cache] body".
call() {
    $py - "$address" "$@" <<'EOF'
import httpx, json, sys
base, method, path = sys.argv[1:4]
body = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
r = httpx.request(method, base + path, json=body, timeout=30)
cache = f" X-Cache: {r.headers['x-cache']}" if "x-cache" in r.headers else ""
print(f"  {method} {path} -> {r.status_code}{cache} {r.text}")
EOF
}
# How many queries the local Shopify has run, by root field.
shopify_calls() {
    $py -c 'import httpx, sys; s = httpx.get(sys.argv[1]).json(); print("  Shopify ran", s["served"], "queries:", s["operations"])' \
        "http://127.0.0.1:$shopify_port/_emulator/stats"
}

echo
echo "== a local Shopify: kvcache shopify emulate (100 ms a query, one customer)"
$kv shopify emulate --port "$shopify_port" --latency 0.1 --customer bob@biller.com >"$logs/shopify.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$shopify_port/_emulator/stats" "${pids[-1]}" "$logs/shopify.log"
echo "== the sample shop, its token on stdin (stored encrypted with KVCACHE_SECRET_KEY)"
printf 'shpat_emulator\n' | $kv shop add "$shop" --token-stdin \
    --admin-url "http://127.0.0.1:$shopify_port/admin/api/2025-01/graphql.json"
$kv shop list

$kv serve --port "$port" --log-level warning >"$logs/serve.log" 2>&1 &
pids+=($!)
wait_for "$address/healthz" "${pids[-1]}" "$logs/serve.log"
echo
echo "== kvcache serve on $address"

echo
echo "== a customer looked up twice: a miss that reaches Shopify, then a hit"
call GET "/api/customers?shop=$shop&email=Bob@Biller.com"
shopify_calls
call GET "/api/customers?shop=$shop&email=bob@biller.com"
shopify_calls
echo "== an e-mail Shopify does not know: 404, and the 'not found' is cached for a minute"
call GET "/api/customers?shop=$shop&email=nobody@biller.com"
call GET "/api/customers?shop=$shop&email=nobody@biller.com"
echo "== a customer created (customerCreate), and one refused with Shopify's user errors"
call POST "/api/customers?shop=$shop" '{"email":"ann@biller.com","firstName":"Ann","lastName":"Lee","tags":["hcp"]}'
call POST "/api/customers?shop=$shop" '{"email":"bob@biller.com","firstName":"Bob"}'

echo
echo "== the shop's configuration: none yet, written, read twice (cached 24 h), updated, a bad field"
call GET "/api/shops/$shop/config"
call PUT "/api/shops/$shop/config" '{"shopId":"gid://shopify/Shop/1","shopName":"Demo","features":{"hcpEnabled":true,"samplesEnabled":true,"maxSamplesPerRequest":5}}'
call GET "/api/shops/$shop/config"
call GET "/api/shops/$shop/config"
call PUT "/api/shops/$shop/config" '{"features":{"maxSamplesPerRequest":10}}'
call PUT "/api/shops/$shop/config" '{"features":{"maxSamplesPerRequest":"lots"}}'
call GET "/api/shops/$shop/config"

echo
echo "== Bob changes his e-mail in Shopify; Shopify sends customers/update"
bob=$($py -c 'import httpx, sys; print(httpx.get(sys.argv[1], params={"shop": sys.argv[2], "email": "bob@biller.com"}).json()["id"])' \
    "$address/api/customers" "$shop")
$py - "http://127.0.0.1:$shopify_port/admin/api/2025-01/graphql.json" "$bob" <<'EOF' >/dev/null
import httpx, sys
mutation = "mutation($i: CustomerInput!) { customerUpdate(input: $i) { userErrors { message } } }"
variables = {"i": {"id": sys.argv[2], "email": "robert@biller.com"}}
httpx.post(sys.argv[1], json={"query": mutation, "variables": variables},
           headers={"X-Shopify-Access-Token": "shpat_emulator"}).raise_for_status()
EOF
printf '{"id": %s, "email": "robert@biller.com", "first_name": "Bob", "updated_at": "%s"}' \
    "${bob##*/}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$logs/update.json"
trigger() { $kv webhook trigger --shop "$shop" --address "$address/webhooks" "$@"; }
id="demo-$(date +%s)"
trigger --topic customers/update --file "$logs/update.json" --webhook-id "$id"
echo "== the look-ups that follow: the old e-mail is gone, the new one is fetched"
call GET "/api/customers?shop=$shop&email=bob@biller.com"
call GET "/api/customers?shop=$shop&email=robert@biller.com"
call GET "/api/customers?shop=$shop&email=robert@biller.com"
shopify_calls
echo "== the same delivery 3 more times, concurrently: duplicates, never run again"
trigger --topic customers/update --file "$logs/update.json" --webhook-id "$id" --repeat 3 --concurrency 3
echo "== a forged signature: 401"
trigger --topic customers/update --forged || true
echo "== a topic with no handler: 200, ignored"
trigger --topic orders/create

echo
echo "== the cache statistics (/api/cache/stats)"
$py -c 'import httpx, json, sys; print(json.dumps(httpx.get(sys.argv[1]).json(), indent=1))' "$address/api/cache/stats" | sed 's/^/  /'
echo "== what the service counted (/metrics)"
$py -c 'import httpx, sys; print(httpx.get(sys.argv[1]).text)' "$address/metrics" | grep -E '^kvcache_webhooks_total' | sed 's/^/  /'
echo "== what this traffic would cost a month on Workers KV and D1 (kvcache cost, from the metered operations)"
# /api/cost writes the service's buffered history first; the CLI then reads the app database.
$py -c 'import httpx, sys; httpx.get(sys.argv[1]).raise_for_status()' "$address/api/cost"
$kv cost --window 1h | sed 's/^/  /'
echo "== the dashboard: $address/dashboard (loopback clients only while KVCACHE_ADMIN_TOKEN is unset)"
$py -c 'import httpx, sys; r = httpx.get(sys.argv[1]); print("  GET /dashboard ->", r.status_code, r.headers["content-type"])' "$address/dashboard"

echo
echo "== app/uninstalled: the shop is marked uninstalled, its token deleted, its cache purged"
trigger --topic app/uninstalled
$kv shop list
# A purge leaves tombstones (read as misses, gone after 60 s) so that no fill begun before it
# can store; count the entries that still hold a value.
$kv --namespace CACHE kv key list --prefix "shop:$shop:" | $py -c '
import json, sys
from kvcache.cache._fence import TOMBSTONE_METADATA
keys = json.load(sys.stdin)
buried = sum(1 for key in keys if key.get("metadata") == TOMBSTONE_METADATA)
print(f"  keys of {sys.argv[1]} still holding a value: {len(keys) - buried} ({buried} tombstones)")
' "$shop"
echo "== the delivery log (kvcache webhook list)"
$kv webhook list --limit 6

#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default store (./.kvcache/kv.sqlite3):
# a CLI round trip through the Workers-KV commands, then `kvcache serve` on the same store
# receiving signed Shopify webhooks (a delivery, its duplicates, a forged one, an uninstall
# that purges the shop's cache), and what the service answered and counted. The service
# is stopped on the way out, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[service]'
kv=.venv/bin/kvcache
shop=demo.myshopify.com

echo "== the store: a Workers-KV round trip"
$kv kv key put "demo:greeting" '{"hello":"world"}' --metadata '{"source":"demo"}'
echo "get  -> $($kv kv key get "demo:greeting" --text)"
$kv kv key delete "demo:greeting"

# A demo secret (Shopify's client secret in real use) and a free port near 8787.
export SHOPIFY_API_SECRET="demo-secret-$(date +%s)"
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
address="http://127.0.0.1:$port"
# GET a URL with the venv's httpx (no curl needed); fails unless the answer is 2xx.
get() { .venv/bin/python -c 'import httpx, sys; r = httpx.get(sys.argv[1]); r.raise_for_status(); print(r.text)' "$1"; }
log=$(mktemp)
$kv serve --port "$port" --log-level warning >"$log" 2>&1 &
server=$!
stop() {
    kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    rm -f "$log"
}
trap stop EXIT
for _ in $(seq 100); do
    get "$address/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
echo
echo "== kvcache serve on $address (store: ./.kvcache/kv.sqlite3, log: ./.kvcache/app.db)"

echo
echo "== the shop's cache before: two customers and the shop's configuration"
$kv --namespace CACHE kv key put "shop:$shop:customer:email:bob@biller.com" '|{"id":"gid://shopify/Customer/706405506930370084"}'
$kv --namespace CACHE kv key put "shop:$shop:customer:id:706405506930370084" '|{"email":"bob@biller.com"}'
$kv --namespace CACHE kv key put "shop:$shop:config" '|{"shopName":"Demo"}'
keys() { $kv --namespace CACHE kv key list --prefix "shop:$shop:" | .venv/bin/python -c 'import json,sys; [print("  ", k["name"]) for k in json.load(sys.stdin)]'; }
keys

trigger() { $kv webhook trigger --shop "$shop" --address "$address/webhooks" "$@"; }
id="demo-$(date +%s)"
echo
echo "== customers/update, signed: processed (the customer's entries are invalidated)"
trigger --topic customers/update --webhook-id "$id"
echo "keys of $shop left:"; keys
echo "== the same delivery 3 more times, concurrently: duplicates, never run again"
trigger --topic customers/update --webhook-id "$id" --repeat 3 --concurrency 3
echo "== a forged signature: 401"
trigger --topic customers/update --forged || true
echo "== a topic with no handler: 200, ignored"
trigger --topic orders/create
echo "== app/uninstalled: every key of the shop purged"
trigger --topic app/uninstalled
echo "keys of $shop left: $(keys | wc -l)"

echo
echo "== what the service counted (/metrics)"
get "$address/metrics" | grep -E '^kvcache_webhooks_total' | sed 's/^/  /'
echo "== /api/cache/stats"
echo "  $(get "$address/api/cache/stats")"
echo "== the delivery log (kvcache webhook list)"
$kv webhook list --limit 5

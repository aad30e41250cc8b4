#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default store (./.kvcache/kv.sqlite3):
# a CLI round trip through the Workers-KV commands.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
kv=.venv/bin/kvcache
$kv kv key put "shop:config:demo.myshopify.com" '{"samples_enabled":true}' --metadata '{"source":"demo"}'
$kv kv key put "customer:email:dr.doe@example.com" '{"id":42}' --ttl 3600
echo "get  -> $($kv kv key get "shop:config:demo.myshopify.com" --text)"
echo "list ->"
$kv kv key list --prefix ""
$kv kv key delete "customer:email:dr.doe@example.com"
echo "after delete ->"
$kv kv key list

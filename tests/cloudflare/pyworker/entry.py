"""The Python test Worker: runs checks.py on `WorkersKV(env.KV)` and answers with the results.

Old-style entry point (`on_fetch(request, env)`): the Pyodide 0.26 bundle that
offline workerd builds embed has no `workers` module.
"""

import json

from checks import run_all, run_example
from js import Response

from kvcache.kv.workers import WorkersKV


async def on_fetch(request, env):  # type: ignore[no-untyped-def]
    results = await run_all(lambda: WorkersKV(env.KV))
    results.update(await run_example(env))
    return Response.new(json.dumps(results))

// Start the Python test Worker (tests/cloudflare/pyworker) in Miniflare on a free port.
//
//   node serve_python.mjs '{"modules": [{"path": "entry.py", "file": "/abs/entry.py"}, ...]}'
//
// (a module may give its "contents" instead of a "file").
//
// The first module is the entry point; the others (checks.py, kvcache's pure-Python
// modules under their package paths) are importable from it. Prints one JSON line
// {"url": "http://127.0.0.1:PORT/"} once workerd answers; stops at end of stdin or
// on {"op": "stop"}. Python Workers need the python_workers flag; workerd
// 1.20241106 embeds Pyodide 0.26 and runs it offline.

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";

const config = JSON.parse(process.argv[2]);
const modules = config.modules.map((module) => ({
  type: "PythonModule",
  path: module.path,
  contents: module.contents ?? readFileSync(module.file, "utf8"),
}));

const mf = new Miniflare({
  modules,
  compatibilityDate: "2024-11-01",
  compatibilityFlags: ["python_workers"],
  host: "127.0.0.1",
  port: 0,
  kvNamespaces: ["KV", "CACHE", "WEBHOOKS"],
});

const url = await mf.ready;
process.stdout.write(JSON.stringify({ url: url.href }) + "\n");

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.includes('"stop"')) break;
}
await mf.dispose();
process.stdout.write(JSON.stringify({ ok: true }) + "\n");
process.exit(0);

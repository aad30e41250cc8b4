// Start the REST test Worker (rest.mjs) in Miniflare on a free loopback port.
//
//   node serve.mjs '{"account": "...", "namespaces": ["ns-a", ...], "tokens": {"read": "...", "write": "..."}}'
//
// Prints one JSON line {"url": "http://127.0.0.1:PORT/client/v4"} once workerd
// answers, then reads commands from stdin, one JSON object a line, and answers
// each with one JSON line:
//   {"op": "time", "namespace": ID, "ms": N}  Miniflare's KV clock for that
//       namespace jumps to N ms since the epoch (its fake timers; expiry and
//       validation on that namespace then use it);
//   {"op": "stop"}  dispose of Miniflare and exit.
// End of stdin also stops it, so a test run that dies leaves nothing behind.

import { createInterface } from "node:readline";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare, _enableControlEndpoints } from "miniflare";

const config = JSON.parse(process.argv[2]);
const here = new URL(".", import.meta.url);
const script = readFileSync(new URL("rest.mjs", here), "utf8");

_enableControlEndpoints();

const kvNamespaces = {};
const byId = {};
config.namespaces.forEach((id, index) => {
  kvNamespaces[`NS_${index}`] = id;
  byId[id] = `NS_${index}`;
});

// KV storage on tmpfs where there is one: Miniflare writes a file per value.
const persist = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "kvcache-mf-"));

const mf = new Miniflare({
  modules: true,
  script,
  compatibilityDate: "2024-11-01",
  host: "127.0.0.1",
  port: 0,
  kvNamespaces,
  kvPersist: persist,
  bindings: {
    ACCOUNT: config.account,
    NAMESPACES: byId,
    TOKEN_READ: config.tokens.read,
    TOKEN_WRITE: config.tokens.write,
  },
});

const url = await mf.ready;
const objects = await mf._getInternalDurableObjectNamespace("kv", "kv:ns", "KVNamespaceObject");

async function control(namespace, name, args) {
  const stub = objects.get(objects.idFromName(namespace));
  const response = await stub.fetch("http://localhost/", {
    cf: { miniflare: { controlOp: { name, args } } },
  });
  if (!response.ok) throw new Error(`${name} failed: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

async function handle(command) {
  if (command.op === "time") {
    await control(command.namespace, "enableFakeTimers", [command.ms]);
    return { ok: true };
  }
  if (command.op === "stop") {
    await mf.dispose();
    rmSync(persist, { recursive: true, force: true });
    process.stdout.write(JSON.stringify({ ok: true }) + "\n");
    process.exit(0);
  }
  return { ok: false, error: `unknown op ${command.op}` };
}

process.stdout.write(JSON.stringify({ url: new URL("/client/v4", url).href }) + "\n");

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await handle(JSON.parse(line));
  } catch (err) {
    answer = { ok: false, error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await mf.dispose();
rmSync(persist, { recursive: true, force: true });
process.exit(0);

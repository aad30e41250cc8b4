// Cloudflare's Workers KV REST routes, served by a Worker on its real KV bindings.
//
// kvcache's `cloudflare://` backend talks to this Worker exactly as it talks to
// api.cloudflare.com/client/v4: the same paths, the same v4 envelope
// ({success, errors, messages, result, result_info}), raw bytes from the values
// route, multipart writes with metadata. Every operation runs on workerd's KV
// binding (Miniflare's KV storage), so expiry, ordering, cursors and server-side
// validation are Workers KV's own, not a Python imitation.
//
// Bindings (set by serve.mjs): NAMESPACES maps a namespace id to the KV binding
// that holds it; ACCOUNT is the one account id; TOKEN_READ / TOKEN_WRITE are the
// bearer tokens with "Workers KV Storage Read" / "... Write".
//
// Error codes: 10009 (key not found), 10013 (namespace not found), 10000
// (authentication error) and 7003 (no route) are Cloudflare's; a failure of the
// binding itself ("KV PUT failed: 400 <message>") answers with its own status and
// message under code 10001, a code of this Worker's choosing.

const PREFIX = /^\/client\/v4\/accounts\/([^/]+)\/storage\/kv\/namespaces\/([^/]+)\/(.*)$/;
const BULK_MAX = 10000;
const BULK_GET_MAX = 100;
const BULK_BYTES_MAX = 100 * 1000 * 1000;
const LIST_MIN = 10;
const LIST_MAX = 1000;
const CONCURRENCY = 50;

class RestError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function envelope(result, status = 200, resultInfo = undefined) {
  const body = { success: true, errors: [], messages: [], result };
  if (resultInfo !== undefined) body.result_info = resultInfo;
  return Response.json(body, { status });
}

function failure(status, code, message) {
  return Response.json(
    { success: false, errors: [{ code, message }], messages: [], result: null },
    { status },
  );
}

// "KV PUT failed: 400 Invalid expiration_ttl ..." -> RestError(400, 10001, "Invalid ...").
function bindingError(err) {
  const text = String(err && err.message ? err.message : err);
  const match = /^KV \w+ failed: (\d{3}) (.*)$/s.exec(text);
  if (match) return new RestError(Number(match[1]), 10001, match[2]);
  return new RestError(400, 10001, text);
}

async function binding(call) {
  try {
    return await call();
  } catch (err) {
    throw bindingError(err);
  }
}

function authorise(request, env, write) {
  const header = request.headers.get("Authorization") || "";
  const match = /^Bearer (.+)$/.exec(header);
  if (!match) {
    throw new RestError(400, 6003, "Invalid request headers");
  }
  const token = match[1];
  const allowed = write ? [env.TOKEN_WRITE] : [env.TOKEN_READ, env.TOKEN_WRITE];
  if (!allowed.includes(token)) {
    throw new RestError(403, 10000, "Authentication error");
  }
}

function expiryOptions(params) {
  const options = {};
  const ttl = params.get("expiration_ttl");
  const at = params.get("expiration");
  if (ttl !== null) options.expirationTtl = Number(ttl);
  else if (at !== null) options.expiration = Number(at);
  return options;
}

// The key's expiration (epoch seconds), read from a one-key listing; null if none.
async function expirationOf(kv, key) {
  const page = await binding(() => kv.list({ prefix: key, limit: 1 }));
  const first = page.keys[0];
  return first && first.name === key && first.expiration !== undefined ? first.expiration : null;
}

async function readValue(kv, key) {
  const value = await binding(() => kv.get(key, "arrayBuffer"));
  if (value === null) throw new RestError(404, 10009, "get: 'key not found'");
  const headers = { "Content-Type": "application/octet-stream" };
  const expiration = await expirationOf(kv, key);
  if (expiration !== null) headers.expiration = String(expiration);
  return new Response(value, { headers });
}

async function writeValue(kv, key, request, params) {
  const options = expiryOptions(params);
  const type = request.headers.get("Content-Type") || "";
  let value;
  if (type.startsWith("multipart/form-data")) {
    const form = await request.formData();
    const part = form.get("value");
    if (part === null) throw new RestError(400, 10001, "multipart body has no 'value' field");
    value = typeof part === "string" ? part : await part.arrayBuffer();
    const metadata = form.get("metadata");
    if (metadata !== null) {
      const text = typeof metadata === "string" ? metadata : await metadata.text();
      try {
        options.metadata = JSON.parse(text);
      } catch {
        throw new RestError(400, 10001, "metadata is not valid JSON");
      }
    }
  } else {
    value = await request.arrayBuffer();
  }
  await binding(() => kv.put(key, value, options));
  return envelope(null);
}

async function readMetadata(kv, key) {
  const found = await binding(() => kv.getWithMetadata(key, "arrayBuffer"));
  if (found.value === null) throw new RestError(404, 10009, "get: 'key not found'");
  return envelope(found.metadata ?? null);
}

async function listKeys(kv, params) {
  const options = {};
  const prefix = params.get("prefix");
  const cursor = params.get("cursor");
  const limit = params.get("limit");
  if (prefix !== null && prefix !== "") options.prefix = prefix;
  if (cursor !== null && cursor !== "") options.cursor = cursor;
  if (limit !== null) {
    const count = Number(limit);
    if (!Number.isInteger(count) || count < LIST_MIN || count > LIST_MAX) {
      throw new RestError(400, 10001, `Invalid key_count_limit of ${limit}. Please specify an integer between ${LIST_MIN} and ${LIST_MAX}.`);
    }
    options.limit = count;
  }
  const page =
    options.prefix !== undefined && options.prefix.includes("\u0000")
      ? await listPastNul(kv, options)
      : await binding(() => kv.list(options));
  const keys = page.keys.map((info) => {
    const out = { name: info.name };
    if (info.expiration !== undefined) out.expiration = info.expiration;
    if (info.metadata !== undefined && info.metadata !== null) out.metadata = info.metadata;
    return out;
  });
  const next = page.list_complete ? "" : page.cursor;
  return envelope(keys, 200, { count: keys.length, cursor: next });
}

// Miniflare keeps keys in SQLite, whose length() stops at a NUL character, so a
// prefix holding one matches nothing there (production has no such limit). List by
// the part before the NUL instead and keep the keys that really start with the
// prefix; a page that stops early resumes after its last key, which is what
// Miniflare's cursor means (base64 of that key's UTF-8).
async function listPastNul(kv, options) {
  const prefix = options.prefix;
  const limit = options.limit ?? LIST_MAX;
  const keys = [];
  let cursor = options.cursor;
  for (;;) {
    const page = await binding(() =>
      kv.list({ prefix: prefix.slice(0, prefix.indexOf("\u0000")), cursor, limit: LIST_MAX }),
    );
    for (const info of page.keys) {
      if (!info.name.startsWith(prefix)) continue;
      keys.push(info);
      if (keys.length === limit) {
        const bytes = new TextEncoder().encode(info.name);
        const cursorText = btoa(String.fromCharCode(...bytes));
        return { keys, list_complete: false, cursor: cursorText };
      }
    }
    if (page.list_complete) return { keys, list_complete: true };
    cursor = page.cursor;
  }
}

// Run `task` over `items` with at most CONCURRENCY calls in flight, in order.
async function eachLimited(items, task) {
  const results = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, lane));
  return results;
}

async function jsonBody(request) {
  const text = await request.text();
  if (text.length > BULK_BYTES_MAX) {
    throw new RestError(413, 10024, `request body must be ${BULK_BYTES_MAX} bytes or less`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new RestError(400, 10001, "request body is not valid JSON");
  }
}

function decodeBase64(text) {
  const bytes = atob(text);
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
  return out;
}

function bulkResult(outcomes) {
  const unsuccessful = [];
  for (const outcome of outcomes) if (outcome !== null) unsuccessful.push(outcome);
  return envelope({
    successful_key_count: outcomes.length - unsuccessful.length,
    unsuccessful_keys: unsuccessful,
  });
}

async function bulkWrite(kv, request) {
  const entries = await jsonBody(request);
  if (!Array.isArray(entries)) throw new RestError(400, 10001, "body must be a JSON array");
  if (entries.length > BULK_MAX) {
    throw new RestError(400, 10001, `A maximum of ${BULK_MAX} key-value pairs can be written at once`);
  }
  for (const entry of entries) {
    if (entry === null || typeof entry.key !== "string" || typeof entry.value !== "string") {
      throw new RestError(400, 10001, "every entry needs a string key and a string value");
    }
  }
  // Later entries for the same key win: only the last one of each key is written.
  const last = new Map();
  entries.forEach((entry) => last.set(entry.key, entry));
  const outcomes = await eachLimited([...last.values()], async (entry) => {
    const options = {};
    if (entry.expiration_ttl !== undefined) options.expirationTtl = entry.expiration_ttl;
    else if (entry.expiration !== undefined) options.expiration = entry.expiration;
    if (entry.metadata !== undefined && entry.metadata !== null) options.metadata = entry.metadata;
    try {
      const value = entry.base64 ? decodeBase64(entry.value) : entry.value;
      await kv.put(entry.key, value, options);
      return null;
    } catch {
      return entry.key;
    }
  });
  return bulkResult(outcomes);
}

async function bulkDelete(kv, request) {
  const keys = await jsonBody(request);
  if (!Array.isArray(keys) || keys.some((key) => typeof key !== "string")) {
    throw new RestError(400, 10001, "body must be a JSON array of key names");
  }
  if (keys.length > BULK_MAX) {
    throw new RestError(400, 10001, `A maximum of ${BULK_MAX} keys can be deleted at once`);
  }
  const outcomes = await eachLimited(keys, async (key) => {
    try {
      await kv.delete(key);
      return null;
    } catch {
      return key;
    }
  });
  return bulkResult(outcomes);
}

async function bulkGet(kv, request) {
  const body = await jsonBody(request);
  const keys = body && body.keys;
  const type = body && body.type !== undefined ? body.type : "text";
  const withMetadata = Boolean(body && body.withMetadata);
  if (!Array.isArray(keys) || keys.some((key) => typeof key !== "string")) {
    throw new RestError(400, 10001, "keys must be an array of key names");
  }
  if (type !== "text" && type !== "json") {
    throw new RestError(400, 10001, `"${type}" is not a valid type. Use "json" or "text"`);
  }
  if (keys.length > BULK_GET_MAX) throw new RestError(400, 10001, "You can request a maximum of 100 keys");
  if (keys.length < 1) throw new RestError(400, 10001, "You must request a minimum of 1 key");
  const found = await eachLimited(keys, (key) =>
    binding(() => (withMetadata ? kv.getWithMetadata(key, "text") : kv.get(key, "text"))),
  );
  const values = {};
  let total = 0;
  keys.forEach((key, index) => {
    const item = found[index];
    const text = withMetadata ? item.value : item;
    if (text === null) {
      values[key] = null;
      return;
    }
    total += text.length;
    let value = text;
    if (type === "json") {
      try {
        value = JSON.parse(text);
      } catch {
        throw new RestError(400, 10001, "At least one of the requested keys corresponds to a non-json value");
      }
    }
    values[key] = withMetadata ? { value, metadata: item.metadata ?? null } : value;
  });
  if (total > 25 * 1024 * 1024) {
    throw new RestError(413, 10001, "Total size of request exceeds the limit of 25MB");
  }
  return envelope({ values });
}

async function route(request, env) {
  const url = new URL(request.url);
  const match = PREFIX.exec(url.pathname);
  if (match === null || match[1] !== env.ACCOUNT) {
    throw new RestError(404, 7003, `Could not route to ${url.pathname}, perhaps your object identifier is invalid?`);
  }
  const namespace = decodeURIComponent(match[2]);
  const rest = match[3];
  const write = request.method !== "GET" && !(request.method === "POST" && rest === "bulk/get");
  authorise(request, env, write);
  const bindingName = env.NAMESPACES[namespace];
  if (bindingName === undefined) throw new RestError(404, 10013, "list keys: 'namespace not found'");
  const kv = env[bindingName];
  const method = request.method;
  const params = url.searchParams;
  if (rest.startsWith("values/")) {
    const key = decodeURIComponent(rest.slice("values/".length));
    if (method === "GET") return readValue(kv, key);
    if (method === "PUT") return writeValue(kv, key, request, params);
    if (method === "DELETE") {
      await binding(() => kv.delete(key));
      return envelope(null);
    }
  } else if (rest.startsWith("metadata/") && method === "GET") {
    return readMetadata(kv, decodeURIComponent(rest.slice("metadata/".length)));
  } else if (rest === "keys" && method === "GET") {
    return listKeys(kv, params);
  } else if (rest === "bulk" && method === "PUT") {
    return bulkWrite(kv, request);
  } else if (rest === "bulk/delete" && method === "POST") {
    return bulkDelete(kv, request);
  } else if (rest === "bulk/get" && method === "POST") {
    return bulkGet(kv, request);
  }
  throw new RestError(405, 10405, `${method} is not allowed on ${rest}`);
}

export default {
  async fetch(request, env) {
    try {
      return await route(request, env);
    } catch (err) {
      if (err instanceof RestError) return failure(err.status, err.code, err.message);
      return failure(500, 10500, String(err && err.stack ? err.stack : err));
    }
  },
};

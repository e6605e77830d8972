// The Node reference of the local ingestion benchmark (scenario 4).
//
// It stands for the original LetsGo worker's local server (Node's http module on
// port 3002, POST / only) doing its per-request work: parse the body, parse each
// record's body, look the message type up in a table of handlers and call it,
// answer 201. Two differences, both in its favour: the per-message console.log is
// left out, and it stores nothing (the original keeps no queue either), so it is
// the speed of intake without durability. The handlers do nothing.
//
// Usage: node bench/reference_server.js [PORT]   (0 or none: any free port)
// Prints "reference server listening on http://127.0.0.1:PORT" on stdout once it
// listens; runs until SIGTERM or SIGINT. No npm dependencies.
"use strict";

const http = require("node:http");
const { randomUUID } = require("node:crypto");

async function noop(message) {}

// LetsGo's own message types; as in the original, an unknown type has a handler of its own.
const handlers = {
  "letsgo:contact": noop,
  "letsgo:tenant:new": noop,
  "letsgo:tenant:deleted": noop,
  "letsgo:stripe": noop,
};
const unknownType = noop;

// The message ids of a {"Records": [...]} body once each record is handled, or null when the body
// is not that shape; throws on bad JSON, in the request or in a record's body.
async function handle(text) {
  const event = JSON.parse(text);
  if (event === null || !Array.isArray(event.Records) || event.Records.length === 0) {
    return null;
  }
  const ids = [];
  for (const record of event.Records) {
    const message = JSON.parse(record.body);
    const handler = Object.hasOwn(handlers, message.type) ? handlers[message.type] : unknownType;
    await handler(message);
    ids.push(typeof record.messageId === "string" ? record.messageId : randomUUID());
  }
  return ids;
}

function answer(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

// Node keeps HTTP/1.1 connections alive by default: one connection serves a client's every request.
const server = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/") {
    req.resume();
    return answer(res, 400, { error: "only POST / is accepted" });
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    let ids;
    try {
      ids = await handle(Buffer.concat(chunks).toString("utf8"));
    } catch (error) {
      const what = error instanceof SyntaxError ? "not valid JSON" : "not a batch of messages";
      return answer(res, 400, { error: `${what}: ${error.message}` });
    }
    if (ids === null) {
      return answer(res, 400, { error: 'expected {"Records": [{"body": "<message JSON>"}, ...]}' });
    }
    answer(res, 201, { messageIds: ids });
  });
});

const port = Number(process.argv[2] || 0);
server.listen(port, "127.0.0.1", () => {
  console.log(`reference server listening on http://127.0.0.1:${server.address().port}`);
});
function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

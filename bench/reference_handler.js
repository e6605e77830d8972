// The Node reference of warm contact dispatch (scenario 2b).
//
// It stands for the original LetsGo worker's Lambda handler with Slack unset, doing for each
// letsgo:contact record what that handler does: parse the record's body, route by type, log the
// message with console.log, build the Slack text of the contact form submission, and return from
// the Slack call, which does nothing without LETSGO_SLACK_URL. Per batch it logs its two lines
// (how many messages came in, how many succeeded and failed) and answers with batchItemFailures
// for the records whose promise was rejected. It validates nothing (the original does not).
//
// Usage: node bench/reference_handler.js EVENTS.json
// EVENTS.json holds a JSON array of SQS events. After a warm-up, each line "N" read on standard
// input runs N invocations one after the other (events taken in turn) and writes the messages per
// second on standard error; the handler's console.log lines go to standard output, as in Lambda.
"use strict";

const fs = require("node:fs");
const readline = require("node:readline");

// LetsGo's Slack helper without a webhook URL: the text is built by the caller, then dropped here.
async function sendSlackMessage(text) {
  if (!process.env.LETSGO_SLACK_URL) {
    return;
  }
  throw new Error("the reference never posts to Slack: unset LETSGO_SLACK_URL");
}

async function handleContact(message) {
  const contact = message.payload;
  console.log("CONTACT FORM SUBMISSION", message);
  const lines = [
    ":wave: New contact form submission",
    `*Name:* ${contact.name}`,
    `*Email:* ${contact.email}`,
    `*Timestamp:* ${contact.timestamp}`,
  ];
  if (contact.tenantId) lines.push(`*Tenant Id:* ${contact.tenantId}`);
  if (contact.identityId) lines.push(`*Identity Id:* ${contact.identityId}`);
  for (const [key, value] of Object.entries(contact.query)) lines.push(`*${key}:* ${value}`);
  lines.push("*Message:*", contact.message);
  await sendSlackMessage(lines.join("\n"));
}

async function handleUnknownType(message) {
  console.log("UNSUPPORTED MESSAGE TYPE, IGNORING", message);
  await sendSlackMessage(`:warning: Worker received an unsupported message type (ignoring): '${message.type}'`);
}

const handlers = { "letsgo:contact": handleContact };

async function handleRecord(record) {
  let message;
  try {
    message = JSON.parse(record.body);
  } catch {
    throw new Error("Message body cannot be parsed as JSON");
  }
  const handle = Object.hasOwn(handlers, message.type) ? handlers[message.type] : handleUnknownType;
  return handle(message);
}

async function handler(event, context) {
  const records = (event && event.Records) || [];
  console.log(`WORKER RECEIVED ${records.length} MESSAGE${records.length === 1 ? "" : "S"}`);
  const settled = await Promise.allSettled(records.map(handleRecord));
  const failures = [];
  settled.forEach((outcome, index) => {
    if (outcome.status === "rejected") failures.push({ itemIdentifier: records[index].messageId });
  });
  console.log(`WORKER RESPONSE: ${records.length - failures.length} SUCCESS, ${failures.length} FAILURE`);
  return { batchItemFailures: failures };
}

async function run(events, invocations) {
  let messages = 0;
  for (let i = 0; i < invocations; i++) {
    const event = events[i % events.length];
    const response = await handler(event, {});
    if (response.batchItemFailures.length) throw new Error("the reference failed a record");
    messages += event.Records.length;
  }
  return messages;
}

async function main() {
  const events = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  await run(events, 2000); // warm-up: let the JIT compile the handler before anything is timed
  process.stderr.write("ready\n");
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const started = process.hrtime.bigint();
    const messages = await run(events, Number(line));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stderr.write(`${messages / seconds}\n`);
  }
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`error: ${error.stack}\n`);
    process.exit(1);
  });
}

module.exports = { handler };

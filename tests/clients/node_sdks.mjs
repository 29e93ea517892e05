// The official Node SDKs against Junction, on one model: OpenAI's (`openai`), Anthropic's
// (`@anthropic-ai/sdk`, with its tool runner, which keeps the conversation in server-side
// message threads) and Google's (`@google/genai`). Each: text, stream, tools where the SDK
// runs them, structured output. Prints one JSON line: each check's name and "ok" or what
// went wrong.
//   node node_sdks.mjs GATEWAY_ROOT KEY MODEL      (GATEWAY_ROOT: http://127.0.0.1:PORT)
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { betaTool } from "@anthropic-ai/sdk/helpers/beta/json-schema";
import { GoogleGenAI } from "@google/genai";

const [root, apiKey, model] = process.argv.slice(2);
// The mock's answer begins so (the demo asks it for 12 words).
const EXPECTED = "Hello from the Junction mock upstream";
const WEATHER = {
  type: "object",
  properties: { city: { type: "string" }, temp_c: { type: "integer" } },
  required: ["city", "temp_c"],
  additionalProperties: false,
};
const results = {};
const check = async (name, f) => {
  try {
    await f();
    results[name] = "ok";
  } catch (e) {
    results[name] = String(e?.stack ?? e).slice(0, 600);
  }
};
const expect = (ok, what) => {
  if (!ok) throw new Error(what);
};
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const openai = new OpenAI({ baseURL: `${root}/v1`, apiKey, maxRetries: 0 });
await check("openai text", async () => {
  const r = await openai.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
  expect(r.choices[0].message.content?.startsWith(EXPECTED), JSON.stringify(r));
});
await check("openai stream", async () => {
  const s = await openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: "hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage;
  for await (const c of s) {
    text += c.choices[0]?.delta?.content ?? "";
    usage = c.usage ?? usage;
  }
  expect(text.startsWith(EXPECTED) && usage?.completion_tokens > 0, `${text} ${JSON.stringify(usage)}`);
});
await check("openai tools", async () => {
  const r = await openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools: [{ type: "function", function: { name: "get_weather", parameters: WEATHER } }],
  });
  const call = r.choices[0].message.tool_calls?.[0];
  expect(r.choices[0].finish_reason === "tool_calls" && call?.function.name === "get_weather", JSON.stringify(r));
  expect(same(JSON.parse(call.function.arguments), { city: "Paris" }), call.function.arguments);
});
await check("openai structured output", async () => {
  const r = await openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Weather in Paris, as JSON" }],
    response_format: { type: "json_schema", json_schema: { name: "weather", strict: true, schema: WEATHER } },
  });
  expect(same(JSON.parse(r.choices[0].message.content), { city: "Paris", temp_c: 1 }), r.choices[0].message.content);
});

const sent = [];
const anthropic = new Anthropic({
  baseURL: root,
  apiKey,
  maxRetries: 0,
  fetch: async (url, init) => {
    sent.push(JSON.parse(init.body));
    return fetch(url, init);
  },
});
await check("anthropic text", async () => {
  const r = await anthropic.messages.create({ model, max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
  expect(r.content[0].text.startsWith(EXPECTED) && r.stop_reason === "end_turn", JSON.stringify(r));
});
await check("anthropic stream", async () => {
  const s = anthropic.messages.stream({ model, max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
  const m = await s.finalMessage();
  expect(m.content[0].text.startsWith(EXPECTED) && m.usage.output_tokens > 0, JSON.stringify(m));
});
await check("anthropic tool runner", async () => {
  sent.length = 0;
  const weather = betaTool({
    name: "get_weather",
    description: "Weather in a city",
    inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    run: async ({ city }) => JSON.stringify({ city, temp_c: 18 }),
  });
  const final = await anthropic.beta.messages.toolRunner({
    model,
    max_tokens: 100,
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools: [weather],
  });
  expect(final.content.at(-1)?.text?.startsWith(EXPECTED), JSON.stringify(final));
  expect(sent[0]?.thread?.type === "create", JSON.stringify(sent[0]));
});
await check("anthropic structured output", async () => {
  const r = await anthropic.messages.create({
    model,
    max_tokens: 100,
    messages: [{ role: "user", content: "Weather in Paris, as JSON" }],
    output_config: { format: { type: "json_schema", schema: WEATHER } },
  });
  expect(same(JSON.parse(r.content[0].text), { city: "Paris", temp_c: 1 }), JSON.stringify(r));
});

const google = new GoogleGenAI({ apiKey, httpOptions: { baseUrl: root } });
await check("google text", async () => {
  const r = await google.models.generateContent({ model, contents: "hi" });
  expect(r.text?.startsWith(EXPECTED), JSON.stringify(r));
});
await check("google stream", async () => {
  let text = "";
  for await (const c of await google.models.generateContentStream({ model, contents: "hi" })) text += c.text ?? "";
  expect(text.startsWith(EXPECTED), text);
});
await check("google structured output", async () => {
  const r = await google.models.generateContent({
    model,
    contents: "Weather in Paris, as JSON",
    config: { responseMimeType: "application/json", responseJsonSchema: WEATHER },
  });
  expect(same(JSON.parse(r.text), { city: "Paris", temp_c: 1 }), r.text);
});

console.log(JSON.stringify(results));

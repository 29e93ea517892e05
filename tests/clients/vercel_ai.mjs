// The Vercel AI SDK's default OpenAI provider (`openai(model)`: the Responses API with `store`
// on) for three turns, whole and streamed, against Junction: from the second turn it refers
// to earlier output by `item_reference`. Prints one JSON line: the texts, and what the SDK sent.
//   node vercel_ai.mjs BASE_URL KEY MODEL
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const sent = [];
const openai = createOpenAI({
  baseURL,
  apiKey,
  fetch: async (url, init) => {
    sent.push(JSON.parse(init.body));
    return fetch(url, init);
  },
});
const messages = [{ role: "user", content: "What is 2+2?" }];
const first = await generateText({ model: openai(model), messages });
messages.push(...first.response.messages, { role: "user", content: "And 3+3?" });
const second = await generateText({ model: openai(model), messages });
messages.push(...second.response.messages, { role: "user", content: "And 4+4?" });
let third = "";
const s = streamText({ model: openai(model), messages });
for await (const t of s.textStream) third += t;
const references = sent.map((b) => b.input.filter((i) => i.type === "item_reference").length);
console.log(JSON.stringify({ texts: [first.text, second.text, third], references }));

//! Token counts when the upstream gave none (an aborted or cut stream, a relay that omits
//! usage): the client's request and what was relayed to it, counted with a real tokenizer.
//!
//! OpenAI's model families have public tokenizers (`o200k_base`, `cl100k_base`); they are used
//! for those models. Anthropic's and Google's are not public, so their models are counted with
//! `o200k_base` as an approximation, and the record says so. Runs in the accounting thread,
//! never on the request path.

use super::Usage;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Framing tokens per chat message, and once for the reply's start (OpenAI's published way
/// of counting a chat request).
const PER_MESSAGE: u64 = 3;
const PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;
const PER_TOOL_CALL: u64 = 1;

/// Which tokenizer counted an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    O200k,
    Cl100k,
    /// `o200k_base` standing in for a family whose tokenizer is not public.
    O200kApprox,
}

impl Tokenizer {
    /// The tokenizer of an upstream model, by its name.
    pub fn for_model(model: &str) -> Tokenizer {
        // Direct `provider/model` names and dated variants share the family's tokenizer.
        let bare = model.rsplit('/').next().unwrap_or(model);
        match tiktoken_rs::tokenizer::get_tokenizer(bare) {
            Some(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase) => Tokenizer::Cl100k,
            Some(
                tiktoken_rs::tokenizer::Tokenizer::O200kBase
                | tiktoken_rs::tokenizer::Tokenizer::O200kHarmony,
            ) => Tokenizer::O200k,
            _ => Tokenizer::O200kApprox,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tokenizer::O200k => "o200k_base",
            Tokenizer::Cl100k => "cl100k_base",
            Tokenizer::O200kApprox => "o200k_base~",
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Tokenizer::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Tokenizer::O200k | Tokenizer::O200kApprox => tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// Tokens of `text`, special-token lookalikes counted as ordinary text.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe().encode_ordinary(text).len() as u64
    }
}

/// A chat conversation reduced to what is counted: per message, its role and text pieces.
#[derive(Default, Debug)]
pub struct Conversation<'a> {
    pub messages: Vec<Message<'a>>,
    /// Tool definitions, counted as their JSON text.
    pub tools: Vec<String>,
}

#[derive(Default, Debug)]
pub struct Message<'a> {
    pub role: &'a str,
    pub name: Option<&'a str>,
    pub texts: Vec<&'a str>,
    /// Tool calls' names and arguments.
    pub calls: Vec<(&'a str, &'a str)>,
}

impl Conversation<'_> {
    /// Prompt tokens, counted as OpenAI counts a chat request.
    pub fn tokens(&self, t: Tokenizer) -> u64 {
        let mut n = REPLY_PRIMING;
        for m in &self.messages {
            n += PER_MESSAGE + t.count(m.role);
            n += m.texts.iter().map(|s| t.count(s)).sum::<u64>();
            if let Some(name) = m.name {
                n += PER_NAME + t.count(name);
            }
            for (name, args) in &m.calls {
                n += PER_TOOL_CALL + t.count(name) + t.count(args);
            }
        }
        n + self.tools.iter().map(|s| t.count(s)).sum::<u64>()
    }
}

/// The elements of the array at `key`, if there is one.
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A tool call's function name and arguments.
fn call_of(call: &Value) -> (Option<&str>, Option<&str>) {
    let f = &call["function"];
    (str_at(f, "name"), str_at(f, "arguments"))
}

/// Text pieces of a message `content` (or parts list): a string or an array of parts.
pub fn texts_of(content: &Value) -> Vec<&str> {
    match content {
        Value::String(s) => vec![s.as_str()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// An OpenAI chat request's conversation (`messages` and `tools`).
pub fn openai_conversation(request: &Value) -> Conversation<'_> {
    let mut c = Conversation::default();
    for m in items(request, "messages") {
        let mut msg = Message {
            role: str_at(m, "role").unwrap_or(""),
            name: str_at(m, "name"),
            texts: m.get("content").map(texts_of).unwrap_or_default(),
            calls: items(m, "tool_calls")
                .map(call_of)
                .map(|(name, args)| (name.unwrap_or(""), args.unwrap_or("")))
                .collect(),
        };
        msg.texts.extend(str_at(m, "reasoning_content"));
        c.messages.push(msg);
    }
    c.tools = items(request, "tools").map(Value::to_string).collect();
    c
}

/// Prompt tokens of an OpenAI chat request body; `None` when it is not JSON.
pub fn prompt_tokens(body: &[u8], t: Tokenizer) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(openai_conversation(&v).tokens(t))
}

/// Generated text relayed to the client: the deltas of `chat.completion.chunk` events (or the
/// message of a whole `chat.completion`), content, reasoning and tool calls alike.
#[derive(Default)]
pub struct Completion {
    text: String,
    calls: u64,
    /// The bytes the text was read from: of a stream, its complete events (a prefix ends
    /// inside one, whose text is not read).
    read: usize,
}

impl Completion {
    fn add_message(&mut self, m: &Value) {
        for key in ["content", "reasoning_content", "refusal"] {
            self.text.push_str(str_at(m, key).unwrap_or(""));
        }
        for (name, args) in items(m, "tool_calls").map(call_of) {
            if let Some(name) = name {
                self.calls += 1;
                self.text.push_str(name);
            }
            self.text.push_str(args.unwrap_or(""));
        }
    }

    fn add_response(&mut self, v: &Value) {
        for choice in items(v, "choices") {
            if let Some(d) = choice.get("delta").or_else(|| choice.get("message")) {
                self.add_message(d);
            }
        }
        // What Gemini clients were sent: each event is a (partial) response.
        for candidate in items(v, "candidates") {
            for part in candidate
                .get("content")
                .map(|c| items(c, "parts"))
                .into_iter()
                .flatten()
            {
                self.text.push_str(str_at(part, "text").unwrap_or(""));
                if let Some(call) = part.get("functionCall") {
                    self.calls += 1;
                    self.text.push_str(str_at(call, "name").unwrap_or(""));
                    if let Some(args) = call.get("args") {
                        self.text.push_str(&args.to_string());
                    }
                }
            }
        }
        // What Anthropic clients were sent: events of a stream, or a whole message.
        match str_at(v, "type") {
            Some("content_block_delta") => {
                if let Some(d) = v.get("delta") {
                    for key in ["text", "thinking", "partial_json"] {
                        self.text.push_str(str_at(d, key).unwrap_or(""));
                    }
                }
            }
            Some("content_block_start") => {
                if let Some(b) = v.get("content_block") {
                    self.add_block(b);
                }
            }
            Some("message") => {
                for b in items(v, "content") {
                    self.add_block(b);
                }
            }
            // What Responses clients were sent: events of a stream (the deltas; the `.done`
            // events and the final response repeat them), or a whole response.
            Some(
                "response.output_text.delta"
                | "response.function_call_arguments.delta"
                | "response.custom_tool_call_input.delta"
                | "response.reasoning_summary_text.delta",
            ) => self.text.push_str(str_at(v, "delta").unwrap_or("")),
            Some("response.output_item.added") => {
                if let Some(item) = v.get("item") {
                    self.add_item_name(item);
                }
            }
            _ if str_at(v, "object") == Some("response") => {
                for item in items(v, "output") {
                    self.add_item_name(item);
                    for key in ["arguments", "input"] {
                        self.text.push_str(str_at(item, key).unwrap_or(""));
                    }
                    for part in items(item, "content").chain(items(item, "summary")) {
                        for key in ["text", "refusal"] {
                            self.text.push_str(str_at(part, key).unwrap_or(""));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A Responses output item that calls a tool: one call, and its name.
    fn add_item_name(&mut self, item: &Value) {
        if matches!(
            str_at(item, "type"),
            Some("function_call" | "custom_tool_call")
        ) {
            self.calls += 1;
            self.text.push_str(str_at(item, "name").unwrap_or(""));
        }
    }

    /// An Anthropic content block: its text, or a tool call's name and input.
    fn add_block(&mut self, b: &Value) {
        for key in ["text", "thinking"] {
            self.text.push_str(str_at(b, key).unwrap_or(""));
        }
        if str_at(b, "type") == Some("tool_use") {
            self.calls += 1;
            self.text.push_str(str_at(b, "name").unwrap_or(""));
            match b.get("input") {
                Some(Value::Object(o)) if o.is_empty() => {}
                Some(input) => self.text.push_str(&input.to_string()),
                None => {}
            }
        }
    }

    /// Output tokens of what was relayed: SSE events of a stream, or a whole JSON body.
    /// `relayed` is the prefix kept; `total` how many bytes were relayed in all: when only a
    /// prefix was kept, the count is scaled to the whole.
    pub fn tokens(relayed: &[u8], stream: bool, total: usize, t: Tokenizer) -> u64 {
        let c = Completion::of(relayed, stream);
        let n = t.count(&c.text) + c.calls * PER_TOOL_CALL;
        if c.read == 0 || total <= relayed.len() {
            n
        } else {
            (n as u128 * total as u128 / c.read as u128) as u64
        }
    }

    /// The generated text in what was relayed (tool names and arguments included).
    pub fn text(relayed: &[u8], stream: bool) -> String {
        Completion::of(relayed, stream).text
    }

    fn of(relayed: &[u8], stream: bool) -> Completion {
        let mut c = Completion::default();
        if stream {
            let mut framer = crate::stream::sse::SseFramer::new();
            framer.push(bytes::Bytes::copy_from_slice(relayed));
            while let Some(event) = framer.next_event() {
                if let Some(data) = crate::stream::sse::data_of(&event) {
                    if let Ok(v) = serde_json::from_slice::<Value>(data) {
                        c.add_response(&v);
                    }
                }
            }
            c.read = relayed.len() - framer.pending_len();
        } else {
            c.read = relayed.len();
            let all = relayed;
            match serde_json::from_slice::<Value>(all) {
                Ok(v) => c.add_response(&v),
                // Only a prefix was kept (or the body was cut): the message text from its
                // start to where the bytes end.
                Err(_) => {
                    let text = String::from_utf8_lossy(all);
                    if let Some(at) = text.find("\"content\":\"") {
                        let rest = &text[at + 11..];
                        let end = rest.find("\",\"").unwrap_or(rest.len());
                        c.text.push_str(
                            &rest[..end]
                                .replace("\\n", "\n")
                                .replace("\\\"", "\"")
                                .replace("\\\\", "\\"),
                        );
                    }
                }
            }
        }
        c
    }
}

/// Usage estimated from the request body and what was relayed.
pub fn estimate(
    request: &[u8],
    relayed: &[u8],
    relayed_total: usize,
    stream: bool,
    t: Tokenizer,
) -> Usage {
    Usage {
        input_tokens: prompt_tokens(request, t).unwrap_or(0),
        output_tokens: Completion::tokens(relayed, stream, relayed_total, t),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizers_follow_the_model_family() {
        assert_eq!(Tokenizer::for_model("gpt-4o-mini"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("gpt-5"), Tokenizer::O200k);
        assert_eq!(
            Tokenizer::for_model("openai/gpt-4.1-2025-04-14"),
            Tokenizer::O200k
        );
        assert_eq!(Tokenizer::for_model("gpt-4-0613"), Tokenizer::Cl100k);
        assert_eq!(
            Tokenizer::for_model("claude-sonnet-4-5"),
            Tokenizer::O200kApprox
        );
        // Known counts of the real tokenizers.
        assert_eq!(Tokenizer::O200k.count("Hello world"), 2);
        assert_eq!(Tokenizer::O200k.count(""), 0);
        assert!(Tokenizer::Cl100k.count("tiktoken is great!") >= 5);
    }

    #[test]
    fn prompt_is_counted_as_openai_counts_a_chat() {
        // The OpenAI cookbook's example counts this pair as 3+1+n(system) + 3+1+n(user) + 3.
        let body = br#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"You are a helpful assistant."},
            {"role":"user","content":[{"type":"text","text":"Hello world"}]}]}"#;
        let t = Tokenizer::O200k;
        let expected = 3
            + t.count("system")
            + t.count("You are a helpful assistant.")
            + 3
            + t.count("user")
            + t.count("Hello world")
            + 3;
        assert_eq!(prompt_tokens(body, t), Some(expected));
        assert_eq!(prompt_tokens(b"not json", t), None);
    }

    #[test]
    fn completion_counts_relayed_deltas_across_chunk_boundaries() {
        let t = Tokenizer::O200k;
        let events = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
            data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n\
            data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(
            Completion::tokens(events.as_bytes(), true, events.len(), t),
            t.count("Hello world")
        );
        // A prefix ending mid-event: the whole events in it count.
        assert_eq!(
            Completion::tokens(
                &events.as_bytes()[..events.len() - 10],
                true,
                events.len() - 10,
                t
            ),
            t.count("Hello world")
        );
        // A sample that ends mid-event, of a longer stream: scaled by the bytes of the whole
        // events it holds, not by bytes whose text was not read.
        let two = events.find(" world").unwrap();
        let read = events[..two].rfind("\n\n").unwrap() + 2;
        assert_eq!(
            Completion::tokens(&events.as_bytes()[..two], true, 4 * read, t),
            4 * t.count("Hello")
        );
        let whole =
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"}}]}"#;
        assert_eq!(Completion::tokens(whole, false, whole.len(), t), 2);
        // Only half was kept: the count is scaled to the whole.
        assert_eq!(Completion::tokens(whole, false, whole.len() * 2, t), 4);
        // A prefix that is not JSON any more: its message text still counts.
        let prefix = &whole[..whole.len() - 10];
        assert_eq!(Completion::tokens(prefix, false, prefix.len(), t), 2);
    }

    #[test]
    fn completion_reads_what_anthropic_and_responses_clients_were_sent() {
        let t = Tokenizer::O200k;
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[]}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
            event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"ls\",\"input\":{}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n";
        assert_eq!(Completion::text(anthropic.as_bytes(), true), "Hellols{}");
        assert_eq!(
            Completion::tokens(anthropic.as_bytes(), true, anthropic.len(), t),
            t.count("Hellols{}") + PER_TOOL_CALL
        );
        let message = br#"{"type":"message","content":[{"type":"thinking","thinking":"Hm."},{"type":"text","text":"Hi"},{"type":"tool_use","name":"ls","input":{"a":1}}]}"#;
        assert_eq!(Completion::text(message, false), "Hm.Hils{\"a\":1}");

        // Responses: deltas count once (the `.done` events and the final response repeat them).
        let responses = "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"item\":{\"type\":\"function_call\",\"name\":\"ls\",\"arguments\":\"\"}}\n\n\
            event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}\n\n\
            event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\"}\n\n\
            event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"text\":\"Hello\"}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"object\":\"response\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\"}]}]}}\n\n";
        assert_eq!(Completion::text(responses.as_bytes(), true), "ls{}Hello");
        let whole = br#"{"object":"response","output":[{"type":"reasoning","summary":[{"type":"summary_text","text":"Hm."}]},{"type":"message","content":[{"type":"output_text","text":"Hi"}]},{"type":"function_call","name":"ls","arguments":"{}"}]}"#;
        assert_eq!(Completion::text(whole, false), "Hm.Hils{}");

        // Gemini: every event is a partial response.
        let gemini = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n\
            data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"},{\"functionCall\":{\"name\":\"ls\",\"args\":{}}}]}}]}\r\n\r\n";
        assert_eq!(Completion::text(gemini.as_bytes(), true), "Hellols{}");
    }
}

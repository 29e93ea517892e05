//! The response object, shared by whole answers and streams, and a whole chat completion as one.

use super::*;

/// What the response object echoes when the request's settings are unknown.
const DEFAULT_ECHO: &str = "\"instructions\":null,\"max_output_tokens\":null,\"temperature\":null,\"top_p\":null,\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"reasoning\":null,\"text\":{\"format\":{\"type\":\"text\"}},\"metadata\":{}";

/// The codes `response.failed` may carry (the SDK's `ResponseError.code`).
const ERROR_CODES: &[&str] = &[
    "server_error",
    "rate_limit_exceeded",
    "invalid_prompt",
    "data_residency_mismatch",
    "bio_policy",
    "vector_store_timeout",
    "invalid_image",
    "invalid_image_format",
    "invalid_base64_image",
    "invalid_image_url",
    "image_too_large",
    "image_too_small",
    "image_parse_error",
    "image_content_policy_violation",
    "invalid_image_mode",
    "image_file_too_large",
    "unsupported_image_media_type",
    "empty_image_file",
    "failed_to_download_image",
    "image_file_not_found",
];

/// The Responses error code (`response.failed`'s `error.code`) for an error: the code of
/// its OpenAI-format body when the protocol knows it, else one for its type or status.
pub fn failure_code(e: &GatewayError) -> &'static str {
    let body: Value = serde_json::from_slice(&e.body()).unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("");
    let kind = body["error"]["type"].as_str().unwrap_or("");
    if let Some(known) = ERROR_CODES.iter().find(|c| **c == code) {
        return known;
    }
    match (kind, code) {
        ("rate_limit_error" | "tokens" | "requests", _)
        | (_, "rate_limit" | "rate_limit_exceeded" | "insufficient_quota") => "rate_limit_exceeded",
        ("invalid_request_error", _) | (_, "context_length_exceeded" | "invalid_request") => {
            "invalid_prompt"
        }
        _ => match e.status() {
            429 => "rate_limit_exceeded",
            400..=499 => "invalid_prompt",
            _ => "server_error",
        },
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Reasoning,
    Message,
    Function,
    Custom,
}

/// A content part of a message item.
pub(super) struct Part {
    pub(super) refusal: bool,
    /// The escaped inside of the text's JSON string literal.
    pub(super) text: Vec<u8>,
}

/// One output item.
pub(super) struct Item {
    pub(super) kind: Kind,
    pub(super) id: String,
    /// Escaped inside of a JSON string literal: the reasoning summary, a function call's
    /// arguments, a custom call's input (its raw arguments while they stream).
    pub(super) text: Vec<u8>,
    pub(super) parts: Vec<Part>,
    call_id: String,
    pub(super) name: String,
    namespace: Option<String>,
    pub(super) status: &'static str,
    pub(super) done: bool,
}

impl Item {
    pub(super) fn new(kind: Kind) -> Item {
        let prefix = match kind {
            Kind::Reasoning => "rs_",
            Kind::Message => "msg_",
            Kind::Function => "fc_",
            Kind::Custom => "ctc_",
        };
        Item {
            kind,
            id: new_id(prefix),
            text: Vec::new(),
            parts: Vec::new(),
            call_id: String::new(),
            name: String::new(),
            namespace: None,
            status: "in_progress",
            done: false,
        }
    }

    /// A tool call item; `upstream`: the function name the upstream called.
    pub(super) fn call(upstream: &str, call_id: String, context: &Context) -> Item {
        let renamed = context.lookup(upstream);
        let custom = renamed.is_some_and(|r| r.custom);
        let mut item = Item::new(if custom { Kind::Custom } else { Kind::Function });
        item.call_id = call_id;
        match renamed {
            Some(r) => {
                item.name = r.name.clone();
                item.namespace = r.namespace.clone();
            }
            None => item.name = upstream.to_string(),
        }
        item
    }

    /// The item as JSON: as added (nothing yet) or in full.
    pub(super) fn write(&self, out: &mut Vec<u8>, added: bool) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        let status = if added { "in_progress" } else { self.status };
        match self.kind {
            Kind::Reasoning => {
                out.extend_from_slice(b"\",\"type\":\"reasoning\",\"summary\":[");
                if !added && !self.text.is_empty() {
                    out.extend_from_slice(b"{\"type\":\"summary_text\",\"text\":\"");
                    out.extend_from_slice(&self.text);
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
            }
            Kind::Message => {
                out.extend_from_slice(b"\",\"type\":\"message\",\"status\":\"");
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(b"\",\"role\":\"assistant\",\"content\":[");
                if !added {
                    for (n, p) in self.parts.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        write_part(out, p.refusal, &p.text);
                    }
                }
                out.extend_from_slice(b"]}");
            }
            Kind::Function | Kind::Custom => {
                out.extend_from_slice(if self.kind == Kind::Function {
                    b"\",\"type\":\"function_call\",\"status\":\""
                } else {
                    b"\",\"type\":\"custom_tool_call\",\"status\":\""
                });
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(b"\",\"call_id\":");
                json_str(out, &self.call_id);
                out.extend_from_slice(b",\"name\":");
                json_str(out, &self.name);
                if let Some(ns) = &self.namespace {
                    out.extend_from_slice(b",\"namespace\":");
                    json_str(out, ns);
                }
                out.extend_from_slice(if self.kind == Kind::Function {
                    b",\"arguments\":\""
                } else {
                    b",\"input\":\""
                });
                if !added {
                    out.extend_from_slice(&self.text);
                }
                out.extend_from_slice(b"\"}");
            }
        }
    }
}

/// An `output_text` or `refusal` content part, `text` the escaped inside of its literal.
pub(super) fn write_part(out: &mut Vec<u8>, refusal: bool, text: &[u8]) {
    out.extend_from_slice(if refusal {
        b"{\"type\":\"refusal\",\"refusal\":\""
    } else {
        b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\""
    });
    out.extend_from_slice(text);
    out.extend_from_slice(b"\"}");
}

pub(super) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The escaped inside of `s`'s JSON string literal.
fn escaped(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_str(&mut out, s);
    out.pop();
    out.remove(0);
    out
}

/// A custom call's input (escaped) from its arguments (escaped): the `input` string of the
/// `{"input": ..}` object, or the arguments themselves when they are not that.
pub(super) fn custom_input(arguments: &[u8]) -> Vec<u8> {
    let mut literal = Vec::with_capacity(arguments.len() + 2);
    literal.push(b'"');
    literal.extend_from_slice(arguments);
    literal.push(b'"');
    let input = serde_json::from_slice::<String>(&literal)
        .ok()
        .and_then(|a| serde_json::from_str::<Value>(&a).ok())
        .and_then(|v| match v {
            Value::Object(mut o) => match o.remove("input") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        });
    match input {
        Some(s) => escaped(&s),
        None => arguments.to_vec(),
    }
}

/// The response's status and incomplete reason for a finish_reason.
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

fn write_usage(out: &mut Vec<u8>, usage: Option<Usage>) {
    let Some(u) = usage else {
        out.extend_from_slice(b"null");
        return;
    };
    let _ = write!(
        out,
        "{{\"input_tokens\":{},\"input_tokens_details\":{{\"cached_tokens\":{},\"cache_write_tokens\":{}}},\"output_tokens\":{},\"output_tokens_details\":{{\"reasoning_tokens\":{}}},\"total_tokens\":{}}}",
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.input_tokens + u.output_tokens
    );
}

/// What the response object tells.
pub(super) struct Answer {
    pub(super) id: String,
    pub(super) created_at: u64,
    model: String,
    pub(super) items: Vec<Item>,
    pub(super) finish: Option<&'static str>,
    pub(super) usage: Option<Usage>,
}

impl Answer {
    pub(super) fn new(model: &str) -> Answer {
        Answer {
            id: format!(
                "resp_{:016x}{:016x}{:016x}",
                fastrand::u64(..),
                fastrand::u64(..),
                fastrand::u64(..)
            ),
            created_at: now(),
            model: model.to_string(),
            items: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// The response object; `full`: with its output and usage (else `[]` and null, as
    /// `response.created` has them); `error`: a failed response's code and message.
    pub(super) fn write(
        &self,
        out: &mut Vec<u8>,
        context: &Context,
        status: &str,
        full: bool,
        error: Option<(&str, &str)>,
    ) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(b"\",\"object\":\"response\",\"created_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.created_at).as_bytes());
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\",\"background\":false,\"error\":");
        match error {
            Some((code, message)) => {
                out.extend_from_slice(b"{\"code\":\"");
                out.extend_from_slice(code.as_bytes());
                out.extend_from_slice(b"\",\"message\":");
                json_str(out, message);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match status_of(self.finish) {
            (_, Some(reason)) if status == "incomplete" => {
                out.extend_from_slice(b"{\"reason\":\"");
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"model\":");
        json_str(out, &self.model);
        out.extend_from_slice(b",\"output\":[");
        if full {
            for (n, item) in self.items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                item.write(out, false);
            }
        }
        out.extend_from_slice(b"],");
        out.extend_from_slice(if context.echo.is_empty() {
            DEFAULT_ECHO.as_bytes()
        } else {
            context.echo.as_bytes()
        });
        if let Some(id) = &context.previous {
            out.extend_from_slice(b",\"previous_response_id\":");
            json_str(out, id);
        }
        out.extend_from_slice(if context.store {
            b",\"store\":true,\"usage\":"
        } else {
            b",\"store\":false,\"usage\":"
        });
        write_usage(out, if full { self.usage } else { None });
        out.push(b'}');
    }
}

/// Translates a `chat.completion` body into a Responses `response` object.
pub fn response_from_chat(body: &[u8], model: &str, context: &Context) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v["choices"].get(0).ok_or("no `choices`")?;
    let message = &choice["message"];
    let mut a = Answer::new(model);
    if let Some(created) = v["created"].as_u64() {
        a.created_at = created;
    }
    a.finish = Some(finish_of(
        choice["finish_reason"].as_str().unwrap_or("stop"),
    ));
    let (status, incomplete) = status_of(a.finish);
    let item_status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    if let Some(r) = reasoning_text(message) {
        let mut item = Item::new(Kind::Reasoning);
        item.text = escaped(r);
        a.items.push(item);
    }
    let text = content_text(&message["content"]).unwrap_or_default();
    let refusal = text_in(&message["refusal"]);
    if !text.is_empty() || refusal.is_some() {
        let mut item = Item::new(Kind::Message);
        if !text.is_empty() {
            item.parts.push(Part {
                refusal: false,
                text: escaped(&text),
            });
        }
        if let Some(r) = refusal {
            item.parts.push(Part {
                refusal: true,
                text: escaped(r),
            });
        }
        a.items.push(item);
    }
    for call in message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let f = &call["function"];
        let call_id = text_in(&call["id"]).map_or_else(|| new_id("call_"), str::to_string);
        let mut item = Item::call(f["name"].as_str().unwrap_or(""), call_id, context);
        let arguments = escaped(f["arguments"].as_str().unwrap_or(""));
        item.text = if item.kind == Kind::Custom {
            custom_input(&arguments)
        } else {
            arguments
        };
        a.items.push(item);
    }
    for item in &mut a.items {
        item.status = item_status;
        item.done = true;
    }
    a.usage = usage_of(&v);
    let mut out = Vec::with_capacity(body.len() + context.echo.len() + 512);
    a.write(&mut out, context, status, true, None);
    Ok(out)
}

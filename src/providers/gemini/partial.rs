//! Function-call arguments that stream in pieces (Vertex AI's `streamFunctionCallArguments`):
//! a `functionCall` with its name and `willContinue`, then parts whose `partialArgs` each give
//! a value (or a piece of a string) at a JSON path, then a part without `willContinue`. The
//! pieces become the arguments' JSON text as they come, so a client sees them stream as
//! OpenAI's argument deltas.

use super::*;

/// One piece: a value, or a piece of a string, at `json_path` (`$.a.b[0]`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartialArg<'a> {
    #[serde(borrow)]
    json_path: Cow<'a, str>,
    #[serde(default, borrow)]
    string_value: Option<Cow<'a, str>>,
    /// As Gemini wrote it (a double).
    #[serde(default, borrow)]
    number_value: Option<&'a RawValue>,
    #[serde(default)]
    bool_value: Option<bool>,
    /// Present (whatever its value: `null` or `"NULL_VALUE"`) for a null.
    #[serde(default, deserialize_with = "present")]
    null_value: bool,
    /// More pieces of this string follow.
    #[serde(default)]
    will_continue: Option<bool>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `$.a['b c'][0]` as segments; `None` when it is not such a path.
fn segments(path: &str) -> Option<Vec<Seg>> {
    let mut rest = path.strip_prefix('$')?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (end > 0).then_some(())?;
            out.push(Seg::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
            out.push(match quoted {
                Some(k) => Seg::Key(k.to_string()),
                None => Seg::Index(inner.parse().ok()?),
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(out)
}

/// The arguments of one call, written as JSON text while their pieces arrive in document
/// order (as Gemini generates them).
#[derive(Default)]
pub(super) struct Arguments {
    /// The containers open under the root object: the segment that opened each, and whether
    /// it is an array.
    open: Vec<(Seg, bool)>,
    /// Per open container (the root first): whether it has a member yet.
    filled: Vec<bool>,
    /// The path of a string still open.
    string: Option<Vec<Seg>>,
    /// Anything written (the root object is open).
    begun: bool,
}

impl Arguments {
    /// Writes one piece's JSON text into `out`.
    pub(super) fn piece(&mut self, arg: &PartialArg<'_>, out: &mut String) {
        let Some(path) = segments(&arg.json_path).filter(|p| !p.is_empty()) else {
            return;
        };
        let more = arg.will_continue == Some(true);
        let valued = arg.string_value.is_some()
            || arg.number_value.is_some()
            || arg.bool_value.is_some()
            || arg.null_value;
        if !valued {
            return;
        }
        if let (Some(open), Some(s)) = (&self.string, &arg.string_value) {
            if *open == path {
                push_escaped(out, s);
                if !more {
                    out.push('"');
                    self.string = None;
                }
                return;
            }
        }
        self.close_string(out);
        if !self.begun {
            out.push('{');
            self.begun = true;
            self.filled.push(false);
        }
        let (leaf, parents) = path.split_last().expect("not empty");
        // Close what the new path leaves, then open what it enters.
        let shared = self
            .open
            .iter()
            .zip(parents)
            .take_while(|((a, _), b)| a == *b)
            .count();
        while self.open.len() > shared {
            self.close_one(out);
        }
        for (i, seg) in parents.iter().enumerate().skip(shared) {
            self.member(seg, out);
            let array = matches!(parents.get(i + 1).unwrap_or(leaf), Seg::Index(_));
            out.push(if array { '[' } else { '{' });
            self.open.push((seg.clone(), array));
            self.filled.push(false);
        }
        self.member(leaf, out);
        if let Some(s) = &arg.string_value {
            out.push('"');
            push_escaped(out, s);
            if more {
                self.string = Some(path);
            } else {
                out.push('"');
            }
        } else if let Some(n) = arg.number_value {
            out.push_str(n.get());
        } else if let Some(b) = arg.bool_value {
            out.push_str(if b { "true" } else { "false" });
        } else {
            out.push_str("null");
        }
    }

    /// Closes everything: the call is complete.
    pub(super) fn finish(&mut self, out: &mut String) {
        self.close_string(out);
        if !self.begun {
            out.push_str("{}");
            return;
        }
        while !self.open.is_empty() {
            self.close_one(out);
        }
        out.push('}');
    }

    fn close_one(&mut self, out: &mut String) {
        if let Some((_, array)) = self.open.pop() {
            self.filled.pop();
            out.push(if array { ']' } else { '}' });
        }
    }

    fn close_string(&mut self, out: &mut String) {
        if self.string.take().is_some() {
            out.push('"');
        }
    }

    /// A comma when the container has members, and the key in an object.
    fn member(&mut self, seg: &Seg, out: &mut String) {
        let filled = self.filled.last_mut().expect("the root is open");
        if std::mem::replace(filled, true) {
            out.push(',');
        }
        if let Seg::Key(k) = seg {
            out.push_str(&serde_json::to_string(k).expect("a string serializes"));
            out.push(':');
        }
    }
}

fn push_escaped(out: &mut String, s: &str) {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    out.push_str(&quoted[1..quoted.len() - 1]);
}

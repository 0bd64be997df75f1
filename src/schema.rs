//! JSON Schemas of rule files and `scrim.toml`, generated from the types that
//! parse them, for editors (completion, hover text, validation as you type).
//!
//! `scrim schema rules` and `scrim schema config` print them; the copies in
//! `schema/` are checked against this output by `tests/schema.rs`. They are
//! JSON Schema draft 7, which TOML language servers such as taplo support
//! best.

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use crate::config::RawConfig;
use crate::policy::raw::RawRuleFile;

/// The JSON Schema of a rule file (`rules/*.toml`).
#[must_use]
pub fn rules() -> Value {
    generate::<RawRuleFile>()
}

/// The JSON Schema of the server configuration (`scrim.toml`).
#[must_use]
pub fn config() -> Value {
    generate::<RawConfig>()
}

/// A schema as committed: pretty JSON, keys sorted at every level, with a
/// trailing newline, so the output is the same whatever serde_json features
/// the build has.
#[must_use]
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(schema)).unwrap_or_default();
    text.push('\n');
    text
}

fn generate<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::draft07();
    // Before the draft-7 fix-ups, which must see the schemas this one changes.
    settings.transforms.insert(0, Box::new(TomlTypes));
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Adapts the generated schemas to TOML.
///
/// * TOML has no null: `Option<T>` means "the key may be left out", which
///   `required` already says, so the `null` alternatives schemars adds are
///   removed.
/// * Integer `format`s (`uint16`, `int64` ...) are Rust's, not the file's; the
///   ranges that matter are written as `minimum` / `maximum`.
/// * Doc comments are wrapped at 80 columns; their line breaks inside a
///   paragraph are removed, so hover text reflows to the editor's width.
/// * A string enum whose variants are documented comes out as a `oneOf` of
///   `const`s; editors complete `enum` values more reliably, so it becomes an
///   `enum`, its variants' descriptions kept for taplo's hover text
///   (`x-taplo.docs.enumValues`).
#[derive(Clone)]
struct TomlTypes;

impl Transform for TomlTypes {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if let Some(Value::String(text)) = obj.get_mut("description") {
            *text = reflow(text);
        }
        if let Some(Value::Array(docs)) = obj
            .get_mut("x-taplo")
            .and_then(|x| x.pointer_mut("/docs/enumValues"))
        {
            for doc in docs {
                if let Value::String(text) = doc {
                    *text = reflow(text);
                }
            }
        }
        if let Some(Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                obj.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(values)) = obj.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
        if obj.get("default").is_some_and(Value::is_null) {
            obj.remove("default");
        }
        if obj
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("int") || f.starts_with("uint"))
        {
            obj.remove("format");
        }
        if let Some(Value::Array(any_of)) = obj.get_mut("anyOf") {
            any_of.retain(|s| s.get("type").and_then(Value::as_str) != Some("null"));
            if any_of.len() == 1 {
                let only = any_of.remove(0);
                obj.remove("anyOf");
                if let Value::Object(only) = only {
                    for (k, v) in only {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
        let consts = obj
            .get("oneOf")
            .and_then(Value::as_array)
            .and_then(|one_of| {
                one_of
                    .iter()
                    .map(|s| {
                        let value = s.get("const")?.as_str()?;
                        Some((value.to_string(), s.get("description").cloned()))
                    })
                    .collect::<Option<Vec<_>>>()
            });
        if let Some(consts) = consts {
            obj.remove("oneOf");
            obj.insert("type".into(), "string".into());
            let (values, docs): (Vec<String>, Vec<Option<Value>>) = consts.into_iter().unzip();
            obj.insert("enum".into(), values.into());
            if docs.iter().any(Option::is_some) {
                let docs: Vec<Value> = docs.into_iter().map(Option::unwrap_or_default).collect();
                obj.insert(
                    "x-taplo".into(),
                    serde_json::json!({ "docs": { "enumValues": docs } }),
                );
            }
        }
    }
}

/// Joins the lines of each paragraph of a doc comment; code blocks stay as
/// they are.
fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|para| {
            if para.starts_with("```") {
                para.to_string()
            } else {
                para.lines().map(str::trim).collect::<Vec<_>>().join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

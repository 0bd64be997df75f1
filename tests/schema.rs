//! The JSON Schemas in `schema/` are what `scrim schema` prints, the shipped
//! files satisfy them, they refuse what the parser refuses, and they name
//! exactly the actions and options the parser knows.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use scrim::policy::action::{ACTION_NAMES, ENCODING_NAMES, SCAN_REPLACE_NAMES, options_of};
use scrim::policy::compile_str;
use scrim::pseudonym::Normalise;
use scrim::rewrite::transform::{DetectorSet, TimeUnit};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_schema() -> Value {
    scrim::schema::rules()
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::new(schema).expect("the schema compiles")
}

/// A TOML document as the JSON a schema validator sees.
fn toml_to_json(text: &str) -> Value {
    let value: toml::Value = toml::from_str(text).expect("valid TOML");
    serde_json::to_value(value).expect("TOML converts to JSON")
}

fn json_to_toml(value: &Value) -> toml::Value {
    match value {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => n.as_i64().map(toml::Value::Integer).expect("integers only"),
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().map(json_to_toml).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_toml(v)))
                .collect(),
        ),
        Value::Null => panic!("TOML has no null"),
    }
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn committed_schemas_are_what_scrim_schema_prints() {
    for (which, file) in [
        ("rules", "schema/rules.schema.json"),
        ("config", "schema/scrim.schema.json"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_scrim"))
            .args(["schema", which])
            .output()
            .expect("scrim runs");
        assert!(out.status.success(), "scrim schema {which} failed");
        let printed = String::from_utf8(out.stdout).expect("UTF-8");
        let committed = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            printed == committed,
            "{file} is out of date; regenerate it with\n    cargo run -- schema {which} > {file}"
        );
        assert!(printed.ends_with("}\n"), "trailing newline");
        jsonschema::draft7::meta::validate(&serde_json::from_str(&printed).unwrap())
            .unwrap_or_else(|e| panic!("{file} is not a valid draft-07 schema: {e}"));
    }
}

#[test]
fn shipped_files_satisfy_their_schemas() {
    let rules = validator(&rules_schema());
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("#:schema ../schema/rules.schema.json"),
            "{}: the first line names the schema for editors",
            path.display()
        );
        let found = errors(&rules, &toml_to_json(&text));
        assert!(found.is_empty(), "{}: {found:#?}", path.display());
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} rule files found");

    let config = validator(&scrim::schema::config());
    let text = std::fs::read_to_string(root().join("scrim.toml")).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./schema/scrim.schema.json")
    );
    let found = errors(&config, &toml_to_json(&text));
    assert!(found.is_empty(), "scrim.toml: {found:#?}");
}

#[test]
fn taplo_config_points_at_the_schemas() {
    let text = std::fs::read_to_string(root().join(".taplo.toml")).unwrap();
    let taplo: toml::Value = toml::from_str(&text).unwrap();
    let rules = taplo["rule"].as_array().expect("[[rule]] entries");
    let mut associated = BTreeSet::new();
    for rule in rules {
        let path = rule["schema"]["path"].as_str().expect("schema.path");
        assert!(
            root().join(path).is_file(),
            ".taplo.toml names a missing schema {path}"
        );
        for include in rule["include"].as_array().unwrap() {
            associated.insert((include.as_str().unwrap().to_string(), path.to_string()));
        }
    }
    assert!(associated.contains(&(
        "rules/**/*.toml".to_string(),
        "./schema/rules.schema.json".to_string()
    )));
    assert!(associated.contains(&(
        "scrim.toml".to_string(),
        "./schema/scrim.schema.json".to_string()
    )));
}

#[test]
fn the_schema_directive_does_not_move_error_locations() {
    let text = "#:schema ../schema/rules.schema.json\nupstream = \"https://api.example\"\n[fields]\n\"user.email\" = \"pseudonymize\"\n";
    let e = compile_str(text, "rules/x.toml", "x").unwrap_err();
    assert_eq!((e.line, e.col), (4, 16), "{e}");
    assert!(
        compile_str(
            "#:schema ../schema/rules.schema.json\nupstream = \"capture:\"\n",
            "rules/x.toml",
            "x"
        )
        .is_ok()
    );
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    let rules = validator(&rules_schema());
    let head = "upstream = \"https://api.example\"\n";
    for (what, text) in [
        ("unknown top-level key", format!("{head}upstrem = \"x\"\n")),
        (
            "unknown action name",
            format!("{head}[fields]\n\"user.email\" = \"pseudonymize\"\n"),
        ),
        (
            "unknown action in a table",
            format!("{head}[fields]\na = {{ action = \"pseudonymize\" }}\n"),
        ),
        (
            "option of the wrong type",
            format!("{head}[fields]\nip = {{ action = \"truncate_ip\", v4_prefix = \"16\" }}\n"),
        ),
        (
            "option out of range",
            format!("{head}[fields]\nip = {{ action = \"truncate_ip\", v4_prefix = 33 }}\n"),
        ),
        (
            "unknown option",
            format!("{head}[fields]\nip = {{ action = \"truncate_ip\", v4_prefx = 16 }}\n"),
        ),
        (
            "unknown unit",
            format!("{head}[fields]\nts = {{ action = \"coarsen_time\", unit = \"hours\" }}\n"),
        ),
        (
            "embedded_json in [query]",
            format!("{head}[query]\nctx = \"embedded_json\"\n"),
        ),
        ("missing upstream", "recipient = \"x\"\n".to_string()),
        (
            "test without input",
            format!("{head}[[tests]]\nname = \"t\"\nrefused = true\n"),
        ),
        (
            "allow without reason",
            format!("{head}[[allow]]\nlint = \"P001\"\n"),
        ),
        (
            "empty field group",
            format!("{head}[fields]\ncontext = {{}}\n"),
        ),
    ] {
        assert!(
            compile_str(&text, "rules/x.toml", "x").is_err(),
            "the parser accepts the {what}"
        );
        assert!(
            !rules.is_valid(&toml_to_json(&text)),
            "the schema accepts the {what}:\n{text}"
        );
    }

    let config = validator(&scrim::schema::config());
    for text in [
        "[limits]\nbody_byte = 1\n",
        "[upstream]\nroots = \"mozilla\"\n",
        "[log]\nformat = \"yaml\"\n",
        "[limits]\nheader_bytes = 100\n",
    ] {
        assert!(scrim::config::Config::parse(text, "scrim.toml").is_err());
        assert!(
            !config.is_valid(&toml_to_json(text)),
            "the config schema accepts:\n{text}"
        );
    }
}

#[test]
fn the_schema_accepts_what_the_parser_accepts() {
    let rules = validator(&rules_schema());
    let text = "upstream = \"capture:\"\n\
        [fields]\n\
        \"a.b\" = \"keep\"\n\
        c = { action = \"scan\", replace = \"redact\", with = \"[x]\", detect = [\"ip\"] }\n\
        [fields.context]\n\
        ip = \"truncate_ip\"\n\
        page = { url = { action = \"strip_query\", keep_params = [\"utm\"] } }\n\
        [[allow]]\n\
        lint = \"P001\"\n\
        selector = \"context.ip\"\n\
        reason = \"a /24 is coarse enough here\"\n";
    compile_str(text, "rules/x.toml", "x").unwrap();
    let found = errors(&rules, &toml_to_json(text));
    assert!(found.is_empty(), "{found:#?}");
}

/// The keys the parser accepts at the top of a file, read from its
/// "expected one of" list.
fn accepted_keys(message: &str) -> BTreeSet<String> {
    let list = message
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {message}"))
        .trim_start_matches(':')
        .trim()
        // The one-line form closes the help: `(help: expected one of: a, b)`.
        .trim_end_matches(')');
    list.split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect()
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn schema_and_parser_know_the_same_top_level_keys() {
    let e = compile_str("upstream = \"capture:\"\nzzz = 1\n", "rules/x.toml", "x").unwrap_err();
    // No key is near `zzz`, so the help lists them all.
    let help = e.help.as_deref().unwrap_or_default();
    assert_eq!(accepted_keys(help), property_names(&rules_schema()));
    let e = scrim::config::Config::parse("zzz = 1\n", "scrim.toml").unwrap_err();
    assert_eq!(
        accepted_keys(&e.to_string()),
        property_names(&scrim::schema::config())
    );
}

/// Follows `$ref` (and a lone `allOf: [$ref]`) to the schema it names.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.trim_start_matches('#');
        return resolve(root, root.pointer(pointer).expect("$ref resolves"));
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(root, only);
    }
    schema
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// The table forms of actions: name -> schema, from a `oneOf`.
fn action_tables<'a>(root: &'a Value, rule: &'a Value) -> Vec<(String, &'a Value)> {
    rule["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| resolve(root, s))
        .filter_map(|s| {
            let name = s.pointer("/properties/action/const")?.as_str()?;
            Some((name.to_string(), s))
        })
        .collect()
}

#[test]
fn schema_and_parser_know_the_same_actions_and_options() {
    let schema = rules_schema();
    let defs = &schema["definitions"];
    let expected_query: Vec<&str> = ACTION_NAMES
        .iter()
        .copied()
        .filter(|n| *n != "embedded_json")
        .collect();
    let tables = action_tables(&schema, &defs["FieldRule"]);
    let table_names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        table_names, ACTION_NAMES,
        "table forms: schema vs ACTION_NAMES"
    );
    let query_tables: Vec<String> = action_tables(&schema, &defs["QueryRule"])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(query_tables, expected_query);

    // The name form: every action whose options all have defaults (`bucket`
    // needs `bounds`; the value test below shows the parser agrees).
    let complete_alone = |n: &&str| *n != "bucket";
    let names = strings(&defs["ActionName"]["enum"]);
    let expected: Vec<&str> = ACTION_NAMES
        .iter()
        .copied()
        .filter(complete_alone)
        .collect();
    assert_eq!(names, expected, "action names: schema vs ACTION_NAMES");
    let query_names = strings(&defs["QueryActionName"]["enum"]);
    let expected: Vec<&str> = expected_query
        .iter()
        .copied()
        .filter(complete_alone)
        .collect();
    assert_eq!(query_names, expected);

    for (name, table) in &tables {
        let mut options = property_names(table);
        assert!(options.remove("action"));
        let parser: BTreeSet<String> = options_of(name).iter().map(|s| s.to_string()).collect();
        assert_eq!(options, parser, "options of {name}: schema vs options_of");
    }

    // Option values named in the parser are in the schema, and back.
    let enum_of =
        |def: &str| -> BTreeSet<String> { strings(&defs[def]["enum"]).into_iter().collect() };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    let mut normalise = set(Normalise::NAMES);
    normalise.insert("none".into()); // what leaving the option out means
    assert_eq!(enum_of("NormaliseName"), normalise);
    assert_eq!(enum_of("TimeUnitName"), set(TimeUnit::NAMES));
    assert_eq!(enum_of("DetectorName"), set(DetectorSet::NAMES));
    assert_eq!(enum_of("ScanReplaceName"), set(SCAN_REPLACE_NAMES));
    assert_eq!(enum_of("EncodingName"), set(ENCODING_NAMES));
}

/// Values to try for one option: each valid one its schema admits, and
/// near misses (a bound plus or minus one, a misspelt name, a wrong type).
fn candidates(root: &Value, option: &Value) -> Vec<Value> {
    let option = resolve(root, option);
    let mut out = Vec::new();
    if let Some(values) = option.get("enum").and_then(Value::as_array) {
        out.extend(values.iter().cloned());
        out.push(json!("no-such-name"));
        out.push(json!(1));
        return out;
    }
    match option["type"].as_str() {
        Some("integer") => {
            let min = option["minimum"].as_i64().unwrap_or(0);
            let max = option["maximum"].as_i64().unwrap_or(min + 10);
            out.extend([min, max, min - 1, max + 1, min + 1].map(|n| json!(n)));
            out.push(json!("8"));
        }
        Some("string") => out.extend([json!("x"), json!(""), json!(1)]),
        Some("array") => {
            out.push(json!([]));
            out.push(json!("x"));
            for item in candidates(root, &option["items"]) {
                out.push(json!([item]));
            }
        }
        other => panic!("no candidates for option type {other:?}"),
    }
    out
}

#[test]
fn schema_and_parser_agree_on_every_option_value() {
    let schema = rules_schema();
    let rules = validator(&schema);
    let defs = &schema["definitions"];
    let mut checked = 0;
    for (section, rule) in [("fields", "FieldRule"), ("query", "QueryRule")] {
        for (name, table) in action_tables(&schema, &defs[rule]) {
            let options = table["properties"].as_object().unwrap();
            let mut cases = vec![
                json!(name),
                json!({ "action": name }),
                json!({ "action": name, "no_such_option": 1 }),
            ];
            for (option, option_schema) in options.iter().filter(|(k, _)| *k != "action") {
                for value in candidates(&schema, option_schema) {
                    cases.push(json!({ "action": name, option: value }));
                }
            }
            if name == "scan" {
                cases.push(json!({ "action": "scan", "replace": "redact", "with": "[x]" }));
                cases.push(json!({ "action": "scan", "replace": "pseudonymise", "with": "[x]" }));
            }
            for case in cases {
                let doc = json!({ "upstream": "capture:", section: { "a": case } });
                let text = toml::to_string(&json_to_toml(&doc)).unwrap();
                let parser = compile_str(&text, "rules/x.toml", "x");
                let found = errors(&rules, &doc);
                assert_eq!(
                    parser.is_ok(),
                    found.is_empty(),
                    "[{section}] a = {case}\nparser: {:?}\nschema: {found:#?}",
                    parser.err().map(|e| e.to_string()),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} cases");
}

#[test]
fn field_groups_nest_actions() {
    let rules = validator(&rules_schema());
    for (text, ok) in [
        ("[fields.context]\nip = \"truncate_ip\"\n", true),
        (
            "[fields]\ncontext = { page = { url = \"strip_query\" } }\n",
            true,
        ),
        ("[fields.context]\nip = \"truncate_ipv4\"\n", false),
        (
            "[fields]\ncontext = { page = { url = { action = \"bucket\" } } }\n",
            false,
        ),
        ("[fields]\ncontext = { page = {} }\n", false),
    ] {
        let text = format!("upstream = \"capture:\"\n{text}");
        assert_eq!(
            compile_str(&text, "rules/x.toml", "x").is_ok(),
            ok,
            "{text}"
        );
        assert_eq!(rules.is_valid(&toml_to_json(&text)), ok, "{text}");
    }
}

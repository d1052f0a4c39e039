//! The configuration files an admin works with: `generate-config`, `generate-registration`, the
//! checked-in examples, `schemas/config.schema.json`, and the errors a bad config produces.

use std::path::{Path, PathBuf};

use mimi_bridge::config::{Config, EXAMPLE};
use serde_json::{Value, json};

use crate::common::{run, text};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn example() -> Config {
    Config::from_yaml(EXAMPLE, Path::new("config.example.yaml")).unwrap()
}

fn yaml_to_json(yaml: &str) -> Value {
    serde_norway::from_str(yaml).unwrap()
}

#[test]
fn generate_config_prints_the_checked_in_example() {
    let out = run(&["generate-config"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), std::fs::read_to_string(repo("bridge-config/config.example.yaml")).unwrap());
    assert_eq!(out.stdout, EXAMPLE.as_bytes());
}

#[test]
fn the_example_loads_and_its_optional_keys_show_the_defaults() {
    let config = Config::load(&repo("bridge-config/config.example.yaml")).unwrap();
    assert_eq!(config, example());
    // Only the required keys, with the example's values: whatever the example adds must be the
    // default, or its "(default)" comments would lie.
    let minimal = "homeserver: {address: 'http://127.0.0.1:8008', domain: hs.test}\n\
                   appservice: {address: 'http://127.0.0.1:29340', as_token: generate, hs_token: generate}\n\
                   mimi: {server_name: mimi.hs.test, signing_key: /var/lib/mimi-bridge/signing.key}\n\
                   database: {path: /var/lib/mimi-bridge/data}\n";
    assert_eq!(Config::from_yaml(minimal, Path::new("minimal.yaml")).unwrap(), config);
    // Placeholder tokens load, but the daemon refuses them.
    let err = Config::load_ready(&repo("bridge-config/config.example.yaml")).unwrap_err().to_string();
    assert!(err.contains("appservice.as_token: invalid value \"generate\"") && err.contains("generate-registration"));
    assert!(format!("{config:?}").contains("as_token: \"generate\""));
}

#[test]
fn generate_registration_writes_tokens_back_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, reg_path) = (dir.path().join("config.yaml"), dir.path().join("registration.yaml"));
    std::fs::write(&config_path, EXAMPLE).unwrap();
    let args = ["generate-registration", "-c", config_path.to_str().unwrap(), "-r", reg_path.to_str().unwrap()];
    let out = run(&args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("app_service_config_files"), "{}", text(&out.stdout));

    let reg_text = std::fs::read_to_string(&reg_path).unwrap();
    let reg = yaml_to_json(&reg_text);
    let (as_token, hs_token) = (reg["as_token"].as_str().unwrap(), reg["hs_token"].as_str().unwrap());
    for token in [as_token, hs_token] {
        assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
    }
    assert_ne!(as_token, hs_token);
    let expected = json!({
        "id": "mimi", "url": "http://127.0.0.1:29340", "as_token": as_token, "hs_token": hs_token,
        "sender_localpart": "mimibot",
        "namespaces": {
            "users": [
                {"exclusive": true, "regex": "^@mimibot:hs\\.test$"},
                {"exclusive": true, "regex": "^@mimi_.*_.*:hs\\.test$"},
            ],
            "aliases": [{"exclusive": true, "regex": "^#mimibot_open_[0-9]+:hs\\.test$"}], "rooms": [],
        },
        "rate_limited": false, "receive_ephemeral": true, "de.sorunome.msc2409.push_ephemeral": true,
    });
    assert_eq!(reg, expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&reg_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The config holds the same tokens; only the two token lines changed.
    let new_config = std::fs::read_to_string(&config_path).unwrap();
    let loaded = Config::load_ready(&config_path).unwrap();
    assert_eq!((loaded.appservice.as_token.as_str(), loaded.appservice.hs_token.as_str()), (as_token, hs_token));
    let changed: Vec<(&str, &str)> = EXAMPLE.lines().zip(new_config.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(
        changed,
        [
            ("  as_token: generate", format!("  as_token: {as_token}").as_str()),
            ("  hs_token: generate", format!("  hs_token: {hs_token}").as_str()),
        ]
    );
    assert_eq!(EXAMPLE.lines().count(), new_config.lines().count());

    // Again: nothing rotates, the registration is the same.
    let again = run(&args, b"");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), new_config);
    assert_eq!(std::fs::read_to_string(&reg_path).unwrap(), reg_text);
    let stdout = run(&["generate-registration", "-c", config_path.to_str().unwrap(), "-r", "-"], b"");
    assert_eq!(text(&stdout.stdout), reg_text);

    // The checked-in example registration is this one with the tokens blanked out.
    let blanked = reg_text
        .replace(as_token, "'<64 random letters and digits>'")
        .replace(hs_token, "'<64 random letters and digits, different from as_token>'");
    assert_eq!(blanked, std::fs::read_to_string(repo("bridge-config/registration.example.yaml")).unwrap());
}

#[test]
fn a_half_generated_config_keeps_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, EXAMPLE.replace("as_token: generate", "as_token: \"mine_0123\"  # kept")).unwrap();
    let out = run(&["generate-registration", "-c", config_path.to_str().unwrap(), "-r", "-"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reg = yaml_to_json(&text(&out.stdout));
    assert_eq!(reg["as_token"], "mine_0123");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("  as_token: \"mine_0123\"  # kept\n"));
    assert!(config.contains(&format!("  hs_token: {}\n", reg["hs_token"].as_str().unwrap())));
}

#[test]
fn bad_configs_exit_2_naming_file_field_value_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("port: 29340", "port: twelve", &["appservice.port", "twelve", "port number from 1 to 65535", "line 23"]),
        ("port: 29340", "port: 70000", &["appservice.port", "70000", "port number from 1 to 65535"]),
        ("port: 29340", "port: 29340\n  colour: blue", &["appservice", "unknown field `colour`", "expected one of"]),
        (
            "address: http://127.0.0.1:8008",
            "address: htp://127.0.0.1:8008",
            &["homeserver.address", "htp://", "http://"],
        ),
        ("_{server}_{localpart}", "_{server}", &["appservice.username_template", "\"mimi_{server}\"", "{localpart}"]),
        ("domain: hs.test", "domain: hs test", &["homeserver.domain", "\"hs test\"", "server name"]),
        ("server_name: mimi.hs.test", "server_name: hs.test", &["mimi.server_name", "different from homeserver"]),
        ("username: mimibot", "username: Mimi", &["appservice.bot.username", "\"Mimi\"", "localpart"]),
        ("hs_token: generate", "hs_token: ''", &["appservice.hs_token", "\"\"", "visible ASCII"]),
        ("hostname: 127.0.0.1", "hostname: localhost", &["appservice.hostname", "localhost", "IP address"]),
        ("sync: sync", "sync: always", &["database.sync", "always", "expected `sync` or `nosync`"]),
        ("memory_mb: 128", "memory_mb: 8", &["database.memory_mb", "\"8\"", "from 16 to 1048576"]),
        ("memory_mb: 128", "memory_mb: lots", &["database.memory_mb", "lots", "u32"]),
        ("  domain: hs.test\n", "", &["homeserver", "missing field `domain`"]),
        ("level: info", "level: 'info,['", &["logging.level", "tracing filter"]),
    ];
    for (from, to, needles) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, EXAMPLE.replacen(from, to, 1)).unwrap();
        for args in [vec!["generate-registration", "-c", path.to_str().unwrap(), "-r", "-"]] {
            let out = run(&args, b"");
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
            assert!(stderr.starts_with(&format!("mimi-bridge: {}: ", path.display())), "{to}: {stderr}");
            for needle in *needles {
                assert!(stderr.contains(needle), "{to}: missing {needle:?} in {stderr}");
            }
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), EXAMPLE.replacen(from, to, 1), "left untouched");
    }
    let same = EXAMPLE.replace("_token: generate", "_token: same");
    let err = Config::from_yaml(&same, Path::new("c.yaml")).unwrap_err().to_string();
    assert!(err.contains("appservice.hs_token") && err.contains("different from appservice.as_token"), "{err}");
    assert!(!err.contains("same"), "tokens never printed: {err}");

    let missing = dir.path().join("nonexistent.yaml");
    let out = run(&["generate-registration", "-c", missing.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("{}: cannot read", missing.display())), "{}", text(&out.stderr));
}

/// The schema must describe exactly the struct: the same keys, types, required keys and defaults.
#[test]
fn the_schema_matches_the_struct() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("schemas/config.schema.json")).unwrap()).unwrap();
    let full = serde_json::to_value(example()).unwrap();
    compare(&schema, &full, &full, &mut Vec::new());
}

fn compare(schema: &Value, full: &Value, value: &Value, path: &mut Vec<String>) {
    let at = path.join(".");
    match value {
        // A map (`mimi.peers`): every value as the schema of its values says.
        Value::Object(fields) if schema["additionalProperties"].is_object() => {
            assert_eq!(schema["type"], "object", "{at}");
            for field in fields.values() {
                compare(&schema["additionalProperties"], full, field, path);
            }
        }
        Value::Object(fields) => {
            assert_eq!(schema["type"], "object", "{at}");
            assert_eq!(schema["additionalProperties"], false, "{at}");
            let props = schema["properties"].as_object().unwrap_or_else(|| panic!("{at}: no properties"));
            let mut keys: Vec<&String> = props.keys().collect();
            keys.sort();
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            assert_eq!(keys, names, "{at}: schema properties vs struct fields");
            let required: Vec<&str> =
                schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            for (key, field) in fields {
                path.push(key.clone());
                let mut without = full.clone();
                remove(&mut without, path);
                let parsed = serde_json::from_value::<Config>(without);
                assert_eq!(required.contains(&key.as_str()), parsed.is_err(), "{at}.{key}: required?");
                if let Ok(parsed) = parsed {
                    let default = get(&serde_json::to_value(parsed).unwrap(), path).clone();
                    assert_eq!(props[key]["default"], default, "{at}.{key}: schema default vs struct default");
                }
                compare(&props[key], full, field, path);
                path.pop();
            }
        }
        Value::String(s) => match schema.get("enum") {
            Some(options) => assert!(options.as_array().unwrap().contains(value), "{at}: {s} not in enum"),
            None => assert_eq!(schema["type"], "string", "{at}"),
        },
        Value::Number(_) => assert_eq!(schema["type"], "integer", "{at}"),
        Value::Bool(_) => assert_eq!(schema["type"], "boolean", "{at}"),
        Value::Array(_) => assert_eq!(schema["type"], "array", "{at}"),
        // An optional section left out (`mimi.tls`): the schema says it defaults to nothing.
        Value::Null => assert!(schema.get("default").is_some_and(Value::is_null), "{at}: unexpected null"),
    }
}

fn get<'a>(value: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(value, |v, key| &v[key])
}

fn remove(value: &mut Value, path: &[String]) {
    let (last, parents) = path.split_last().unwrap();
    let parent = parents.iter().fold(value, |v, key| &mut v[key]);
    parent.as_object_mut().unwrap().remove(last);
}

/// The subset of JSON Schema the config schema uses, enforced; any other keyword is refused so the
/// checker cannot silently pass what it does not understand.
fn validate(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    const ANNOTATIONS: [&str; 6] = ["$schema", "$id", "title", "description", "default", "examples"];
    for key in schema.as_object().unwrap().keys() {
        let known = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "enum",
            "minimum",
            "maximum",
            "minLength",
            "items",
        ];
        assert!(known.contains(&key.as_str()) || ANNOTATIONS.contains(&key.as_str()), "checker lacks {key}");
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        other => panic!("{at}: type {other:?}"),
    };
    if !type_ok {
        errors.push(format!("{at}: not {}", schema["type"]));
        return;
    }
    if let Some(options) = schema.get("enum")
        && !options.as_array().unwrap().contains(value)
    {
        errors.push(format!("{at}: {value} not in {options}"));
    }
    if let Some(n) = value.as_i64() {
        let (min, max) =
            (schema["minimum"].as_i64().unwrap_or(i64::MIN), schema["maximum"].as_i64().unwrap_or(i64::MAX));
        if n < min || n > max {
            errors.push(format!("{at}: {n} out of range"));
        }
    }
    if let (Some(s), Some(min)) = (value.as_str(), schema["minLength"].as_u64())
        && u64::try_from(s.chars().count()).unwrap() < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (index, item) in values.iter().enumerate() {
            validate(items, item, &format!("{at}[{index}]"), errors);
        }
    }
    if let Some(fields) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(key.as_str().unwrap()) {
                errors.push(format!("{at}: missing {key}"));
            }
        }
        let map_values = schema["additionalProperties"].is_object().then(|| &schema["additionalProperties"]);
        for (key, field) in fields {
            match schema["properties"].get(key).or(map_values) {
                Some(sub) => validate(sub, field, &format!("{at}/{key}"), errors),
                None => errors.push(format!("{at}: unknown {key}")),
            }
        }
    }
}

#[test]
fn the_example_validates_against_the_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("schemas/config.schema.json")).unwrap()).unwrap();
    let mut errors = Vec::new();
    validate(&schema, &yaml_to_json(EXAMPLE), "", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    // The checker does reject what the schema forbids.
    for (from, to) in [("port: 29340", "port: 70000"), ("sync: sync", "sync: often"), ("  id: mimi", "  idd: mimi")] {
        let mut errors = Vec::new();
        validate(&schema, &yaml_to_json(&EXAMPLE.replacen(from, to, 1)), "", &mut errors);
        assert_eq!(errors.len(), 1, "{to}: {errors:?}");
    }
}

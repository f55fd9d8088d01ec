use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

fn hcl(text: &str) -> Body {
    parse(text, false).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn json(text: &str) -> Body {
    parse(text, true).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[derive(Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
struct Health {
    listener_enabled: Option<bool>,
    bind_address: Option<String>,
    bind_port: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Plugin {
    plugin_data: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Sink {
    address: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct File {
    health_checks: Option<Health>,
    plugins: Option<BTreeMap<String, BTreeMap<String, Plugin>>>,
    admin_ids: Option<Vec<String>>,
    #[serde(rename = "DogStatsd")]
    dogstatsd: Option<Vec<Sink>>,
    port: Option<u16>,
    text: Option<String>,
}

fn file(body: &Body) -> File {
    from_body(body).unwrap_or_else(|e| panic!("{e}"))
}

fn health(enabled: bool, addr: &str, port: Option<&str>) -> Option<Health> {
    Some(Health {
        listener_enabled: Some(enabled),
        bind_address: Some(addr.into()),
        bind_port: port.map(Into::into),
    })
}

#[test]
fn several_attributes_on_one_line_with_or_without_commas() {
    for text in [
        r#"health_checks { listener_enabled = true bind_address = "0.0.0.0" bind_port = "8080" }"#,
        r#"health_checks { listener_enabled = true, bind_address = "0.0.0.0", bind_port = 8080, }"#,
        "health_checks {\n listener_enabled = true\n bind_address = \"0.0.0.0\"\n bind_port = \"8080\"\n}",
        r#"health_checks = { listener_enabled = "true" bind_address = "0.0.0.0" bind_port = "8080" }"#,
    ] {
        assert_eq!(
            file(&hcl(text)).health_checks,
            health(true, "0.0.0.0", Some("8080")),
            "{text}"
        );
    }
}

#[test]
fn one_line_blocks_nest_blocks_and_keys_chain() {
    let one = hcl(
        r#"plugins { KeyManager "disk" { plugin_data { directory = "/opt/spire/data" } } NodeAttestor "join_token" { plugin_data {} } }"#,
    );
    let chained = hcl(
        r#"plugins { KeyManager "disk" plugin_data { directory = "/opt/spire/data" } NodeAttestor { join_token { plugin_data = {} } } }"#,
    );
    let expected: BTreeMap<String, BTreeMap<String, Plugin>> = [
        (
            "KeyManager".to_owned(),
            [(
                "disk".to_owned(),
                Plugin {
                    plugin_data: Some([("directory".into(), "/opt/spire/data".into())].into()),
                },
            )]
            .into(),
        ),
        (
            "NodeAttestor".to_owned(),
            [(
                "join_token".to_owned(),
                Plugin {
                    plugin_data: Some(BTreeMap::new()),
                },
            )]
            .into(),
        ),
    ]
    .into();
    assert_eq!(file(&one).plugins.as_ref(), Some(&expected));
    assert_eq!(file(&chained).plugins.as_ref(), Some(&expected));
}

#[test]
fn repeated_keys_merge_blocks_append_lists_and_last_value_wins() {
    let f = file(&hcl(r#"
        health_checks { listener_enabled = true }
        health_checks { bind_address = "a" }
        admin_ids = ["x"]
        admin_ids = ["y", "z",]
        port = 1
        port = "0x10"
        DogStatsd { address = "one" }
        DogStatsd { address = "two" }
        "#));
    assert_eq!(f.health_checks, health(true, "a", None));
    assert_eq!(f.admin_ids.unwrap(), ["x", "y", "z"]);
    assert_eq!(f.port, Some(16));
    let sinks: Vec<_> = f
        .dogstatsd
        .unwrap()
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(sinks, ["one", "two"]);
}

#[test]
fn comments_of_every_kind() {
    let f = file(&hcl(
        "# hash\n// slashes\n/* block\n comment */ port = 7 /* inline */ # trailing\ntext = \"a#b//c/*d*/\"\n",
    ));
    assert_eq!((f.port, f.text.as_deref()), (Some(7), Some("a#b//c/*d*/")));
}

#[test]
fn heredocs_plain_and_indented() {
    let f = file(&hcl("text = <<EOF\nline one\n  line two\nEOF\n"));
    assert_eq!(f.text.unwrap(), "line one\n  line two\n");
    let f = file(&hcl(
        "text = <<-EOT\n    indented\n      more\n    EOT\nport = 1",
    ));
    assert_eq!(f.text.unwrap(), "indented\n  more\n");
}

#[test]
fn strings_unescape_and_keep_interpolations() {
    let f = file(&hcl(r#"text = "a\"b\\c\n\u00e9 ${env("X")}""#));
    assert_eq!(f.text.unwrap(), "a\"b\\c\né ${env(\"X\")}");
}

#[test]
fn keys_match_fields_case_insensitively() {
    let f = file(&hcl(
        "Health_Checks { Listener_Enabled = true bind_address = \"h\" }",
    ));
    assert_eq!(f.health_checks, health(true, "h", None));
}

#[test]
fn unknown_keys_are_named_with_their_position() {
    let e = from_body::<File>(&hcl(
        "health_checks {\n  listener_enabled = true\n  bogus = 1\n}",
    ))
    .unwrap_err();
    assert_eq!(e.pos, Some(Pos { line: 3, column: 3 }));
    assert_eq!(e.path.as_deref(), Some("health_checks.bogus"));
    assert!(e.message.contains("unknown key \"bogus\""), "{e}");
    let e = from_body::<File>(&hcl("port = \"eighty\"")).unwrap_err();
    assert_eq!(e.pos, Some(Pos { line: 1, column: 8 }), "{e}");
    let e = from_body::<File>(&hcl("port = 70000")).unwrap_err();
    assert!(e.to_string().contains("port"), "{e}");
}

#[test]
fn malformed_text_reports_line_and_column() {
    for (text, line, column, needle) in [
        ("server {\n  a = 1\n", 3, 1, "expected '}'"),
        ("a = \"unterminated\n", 1, 5, "literal not terminated"),
        ("a b = 1", 1, 5, "nested object expected"),
        ("a = [1 2]", 1, 8, "expected comma"),
        ("/* never closed", 1, 1, "comment not terminated"),
        ("a = <<EOF\nno end", 1, 5, "heredoc not terminated"),
        ("x {\n  a = @\n}", 2, 7, "illegal character"),
        ("a", 1, 2, "expected start of object"),
        ("{}}", 1, 1, "expected a key"),
    ] {
        let e = parse(text, false).unwrap_err();
        assert_eq!((e.pos.line, e.pos.column), (line, column), "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
    let e = parse("{\n  \"a\": [1,\n  }", true).unwrap_err();
    assert_eq!(e.pos.line, 3, "{e}");
}

#[test]
fn json_objects_and_lists_of_objects_flatten_like_blocks() {
    let nested = json(
        r#"{"plugins": {"KeyManager": {"disk": {"plugin_data": {"directory": "/opt/spire/data"}}},
            "NodeAttestor": {"join_token": {"plugin_data": {}}}},
           "health_checks": {"listener_enabled": true, "bind_address": "0.0.0.0", "bind_port": 8080}}"#,
    );
    let listed = json(
        r#"{"plugins": [{"KeyManager": [{"disk": [{"plugin_data": [{"directory": "/opt/spire/data"}]}]}]},
                        {"NodeAttestor": [{"join_token": {"plugin_data": {}}}]}],
           "health_checks": [{"listener_enabled": "true", "bind_address": "0.0.0.0"}, {"bind_port": "8080"}]}"#,
    );
    let twin = hcl(
        r#"plugins { KeyManager "disk" { plugin_data { directory = "/opt/spire/data" } } NodeAttestor "join_token" { plugin_data {} } }
           health_checks { listener_enabled = true bind_address = "0.0.0.0" bind_port = "8080" }"#,
    );
    assert_eq!(file(&nested), file(&twin));
    assert_eq!(file(&listed), file(&twin));
}

#[test]
fn json_null_is_absent_and_lists_of_objects_are_elements() {
    let f = file(&json(
        r#"{"plugins": {"NodeAttestor": {"join_token": {"plugin_data": null}}},
            "DogStatsd": [{"address": "a"}, {"address": "b"}], "text": null}"#,
    ));
    assert_eq!(
        f.plugins.unwrap()["NodeAttestor"]["join_token"].plugin_data,
        None
    );
    assert_eq!(f.dogstatsd.unwrap().len(), 2);
    assert_eq!(f.text, None);
}

#[test]
fn json_is_detected_by_content_or_name() {
    assert!(is_json("  {\"a\": 1}", "server.conf"));
    assert!(is_json("", "server.json"));
    assert!(!is_json("server {}", "server.conf"));
}

#[test]
fn raw_subtrees_deserialize_later() {
    #[derive(Deserialize)]
    struct Outer {
        plugin_data: Raw,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Data {
        directory: String,
    }
    let o: Outer = from_body(&hcl("plugin_data { directory = \"/d\" }")).unwrap();
    assert_eq!(o.plugin_data.parse::<Data>().unwrap().directory, "/d");
    assert!(!o.plugin_data.is_empty());
    let o: Outer = from_body(&hcl("plugin_data {\n nope = 1 }")).unwrap();
    let e = o.plugin_data.parse::<Data>().unwrap_err();
    assert_eq!(
        (e.pos.map(|p| p.line), e.path.as_deref()),
        (Some(2), Some("plugin_data.nope"))
    );
}

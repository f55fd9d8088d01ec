//! The `entry` commands: flag parsing here, RPCs against the fake Entry service in `rpc`.

use signet_proto::types;

use super::*;
use crate::cli::AdminCommand;
use crate::cli::entry::print::{
    batch_results, batch_results_json, print_batch_results, print_entry, sort_entries,
};
use crate::cli::tests::parse;

mod rpc;

fn create_args(args: &[&str]) -> CreateArgs {
    let mut all = vec!["entry", "create"];
    all.extend(args);
    match parse(&all) {
        AdminCommand::Entry(EntryCommand::Create(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn update_args(args: &[&str]) -> UpdateArgs {
    let mut all = vec!["entry", "update"];
    all.extend(args);
    match parse(&all) {
        AdminCommand::Entry(EntryCommand::Update(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn show_args(args: &[&str]) -> ShowArgs {
    let mut all = vec!["entry", "show"];
    all.extend(args);
    match parse(&all) {
        AdminCommand::Entry(EntryCommand::Show(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn sid(td: &str, path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: td.into(),
        path: path.into(),
    })
}

fn sel(t: &str, v: &str) -> types::Selector {
    types::Selector {
        r#type: t.into(),
        value: v.into(),
    }
}

#[test]
fn create_flags_become_the_entry_sent() {
    let e = create_args(&[
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        "spiffe://example.org/spire/agent/x509pop/abc",
        "--selector",
        "unix:uid:1000",
        "--selector",
        "unix:gid:50",
        "--x509-svid-ttl",
        "3600",
        "--jwt-svid-ttl",
        "300",
        "--dns",
        "web.example.org",
        "--dns",
        "web",
        "--federates-with",
        "spiffe://other.org",
        "--admin",
        "--downstream",
        "--store-svid",
        "--entry-expiry",
        "1714564800",
        "--entry-id",
        "my-entry",
        "--hint",
        "external",
    ])
    .entry()
    .unwrap();
    assert_eq!(
        e,
        types::Entry {
            id: "my-entry".into(),
            spiffe_id: sid("example.org", "/web"),
            parent_id: sid("example.org", "/spire/agent/x509pop/abc"),
            selectors: vec![sel("unix", "uid:1000"), sel("unix", "gid:50")],
            x509_svid_ttl: 3600,
            federates_with: vec!["other.org".into()],
            admin: true,
            downstream: true,
            expires_at: 1_714_564_800,
            dns_names: vec!["web.example.org".into(), "web".into()],
            store_svid: true,
            jwt_svid_ttl: 300,
            hint: "external".into(),
            ..Default::default()
        }
    );
}

#[test]
fn node_entries_are_parented_by_the_server() {
    let e = create_args(&[
        "--spiffe-id",
        "spiffe://example.org/cluster/a",
        "--selector",
        "x509pop:san:cluster:a",
        "--node",
    ])
    .entry()
    .unwrap();
    assert_eq!(e.parent_id, sid("example.org", "/spire/server"));
    assert!(e.id.is_empty() && e.x509_svid_ttl == 0 && e.hint.is_empty());
}

#[test]
fn create_refuses_what_spire_refuses() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--spiffe-id",
                "spiffe://td/a",
                "--parent-id",
                "spiffe://td/p",
            ],
            "at least one selector is required",
        ),
        (
            &[
                "--spiffe-id",
                "spiffe://td/a",
                "--selector",
                "a:b",
                "--node",
                "--federates-with",
                "o.org",
            ],
            "node entries can not federate",
        ),
        (
            &["--spiffe-id", "spiffe://td/a", "--selector", "a:b"],
            "a parent ID is required if the node flag is not set",
        ),
        (
            &["--parent-id", "spiffe://td/p", "--selector", "a:b"],
            "a SPIFFE ID is required",
        ),
        (
            &[
                "--spiffe-id",
                "spiffe://td/a",
                "--node",
                "--selector",
                "a:b",
                "--x509-svid-ttl",
                "-1",
            ],
            "a positive x509-SVID TTL is required",
        ),
        (
            &[
                "--spiffe-id",
                "spiffe://td/a",
                "--node",
                "--selector",
                "nocolon",
            ],
            "invalid selector \"nocolon\"",
        ),
        (
            &["--spiffe-id", "td/a", "--node", "--selector", "a:b"],
            "invalid SPIFFE ID \"td/a\"",
        ),
    ];
    for (args, want) in cases {
        let err = create_args(args).entry().unwrap_err();
        assert!(format!("{err:#}").starts_with(want), "{args:?}: {err:#}");
    }
}

#[test]
fn update_replaces_every_editable_field() {
    let args = update_args(&[
        "--entry-id",
        "e1",
        "--spiffe-id",
        "spiffe://example.org/child",
        "--parent-id",
        "spiffe://example.org/parent",
        "--selector",
        "s1:v1",
        "--x509-svid-ttl",
        "456",
    ]);
    let e = args.entry().unwrap();
    assert_eq!(e.id, "e1");
    assert_eq!(e.x509_svid_ttl, 456);
    assert!(!e.admin && e.dns_names.is_empty() && e.federates_with.is_empty());
    let mask = update::replace_all_mask();
    assert!(mask.spiffe_id && mask.parent_id && mask.selectors && mask.x509_svid_ttl);
    assert!(mask.jwt_svid_ttl && mask.federates_with && mask.admin && mask.downstream);
    assert!(mask.expires_at && mask.dns_names && mask.store_svid && mask.hint);
    assert!(!mask.revision_number && !mask.created_at && !mask.additional_attributes);
}

#[test]
fn update_requires_the_identifying_fields() {
    let err = update_args(&["--selector", "a:b"]).entry().unwrap_err();
    assert_eq!(err.to_string(), "entry ID is required");
    let err = update_args(&["--entry-id", "e"]).entry().unwrap_err();
    assert_eq!(err.to_string(), "at least one selector is required");
    let err = update_args(&[
        "--entry-id",
        "e",
        "--selector",
        "a:b",
        "--spiffe-id",
        "spiffe://t/a",
    ])
    .entry()
    .unwrap_err();
    assert_eq!(err.to_string(), "a parent ID is required");
}

#[test]
fn show_filters_follow_the_flags() {
    let f = show_args(&[
        "--spiffe-id",
        "spiffe://example.org/a",
        "--parent-id",
        "spiffe://example.org/p",
        "--selector",
        "unix:uid:1",
        "--match",
        "exact",
        "--federates-with",
        "spiffe://other.org",
        "--match-federates-with-on",
        "any",
        "--hint",
        "h",
        "--downstream",
    ])
    .filter
    .filter()
    .unwrap();
    assert_eq!(f.by_spiffe_id, sid("example.org", "/a"));
    assert_eq!(f.by_parent_id, sid("example.org", "/p"));
    let by_sel = f.by_selectors.unwrap();
    assert_eq!(by_sel.selectors, [sel("unix", "uid:1")]);
    assert_eq!(
        by_sel.r#match,
        types::selector_match::MatchBehavior::MatchExact as i32
    );
    let by_fed = f.by_federates_with.unwrap();
    assert_eq!(by_fed.trust_domains, ["other.org"]);
    assert_eq!(
        by_fed.r#match,
        types::federates_with_match::MatchBehavior::MatchAny as i32
    );
    assert_eq!(f.by_hint.as_deref(), Some("h"));
    assert_eq!(f.by_downstream, Some(true));
}

#[test]
fn show_without_flags_filters_nothing() {
    let f = show_args(&[]).filter.filter().unwrap();
    assert_eq!(f, show::Filter::default());
    let f = show_args(&["--selector", "a:b"]).filter.filter().unwrap();
    let default_match = types::selector_match::MatchBehavior::MatchSuperset as i32;
    assert_eq!(f.by_selectors.unwrap().r#match, default_match);
}

fn full_entry() -> types::Entry {
    types::Entry {
        id: "00000000-0000-0000-0000-000000000001".into(),
        spiffe_id: sid("domain.test", "/child"),
        parent_id: sid("domain.test", "/spire/server"),
        selectors: vec![sel("unix", "uid:1000"), sel("k8s", "ns:default")],
        x509_svid_ttl: 0,
        federates_with: vec!["federated.test".into()],
        admin: true,
        downstream: true,
        expires_at: 1_714_564_800,
        dns_names: vec!["dnsname1".into()],
        revision_number: 1,
        store_svid: true,
        jwt_svid_ttl: 300,
        hint: "external".into(),
        ..Default::default()
    }
}

#[test]
fn entry_layout_matches_spire() {
    let mut out = Vec::new();
    print_entry(&mut out, &full_entry()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Entry ID         : 00000000-0000-0000-0000-000000000001\n\
         SPIFFE ID        : spiffe://domain.test/child\n\
         Parent ID        : spiffe://domain.test/spire/server\n\
         Revision         : 1\n\
         Downstream       : true\n\
         X509-SVID TTL    : default\n\
         JWT-SVID TTL     : 300\n\
         Expiration time  : 2024-05-01 12:00:00 +0000 UTC\n\
         Selector         : unix:uid:1000\n\
         Selector         : k8s:ns:default\n\
         FederatesWith    : federated.test\n\
         DNS name         : dnsname1\n\
         Admin            : true\n\
         StoreSvid        : true\n\
         Hint             : external\n\
         \n"
    );
}

#[test]
fn minimal_entry_layout_omits_unset_lines() {
    let e = types::Entry {
        spiffe_id: sid("domain.test", "/a"),
        parent_id: sid("domain.test", "/p"),
        selectors: vec![sel("s1", "v1")],
        x509_svid_ttl: 123,
        ..Default::default()
    };
    let mut out = Vec::new();
    print_entry(&mut out, &e).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Entry ID         : (none)\n\
         SPIFFE ID        : spiffe://domain.test/a\n\
         Parent ID        : spiffe://domain.test/p\n\
         Revision         : 0\n\
         X509-SVID TTL    : 123\n\
         JWT-SVID TTL     : default\n\
         Selector         : s1:v1\n\
         \n"
    );
}

#[test]
fn failed_items_print_their_status_and_the_entry_sent() {
    let sent = vec![full_entry()];
    let status = types::Status {
        code: 6,
        message: "similar entry already exists".into(),
    };
    let results = batch_results([(Some(status), None)], &sent);
    let (mut stdin, mut stdout, mut stderr) = (&b""[..], Vec::new(), Vec::new());
    let mut env = Env {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let err = print_batch_results(&results, "create", false, &mut env).unwrap_err();
    assert_eq!(err.to_string(), "failed to create one or more entries");
    let stderr = String::from_utf8(stderr).unwrap();
    assert!(stderr.starts_with(
        "Failed to create the following entry (code: AlreadyExists, msg: \"similar entry already exists\"):\n\
         Entry ID         : 00000000-0000-0000-0000-000000000001\n"
    ));
    assert!(stdout.is_empty());
}

#[test]
fn batch_json_includes_the_entry_sent_for_failures() {
    let sent = vec![full_entry()];
    let status = types::Status {
        code: 6,
        message: "similar entry already exists".into(),
    };
    let results = batch_results([(Some(status), None)], &sent);
    let v = batch_results_json(&results);
    assert_eq!(v["results"][0]["status"]["code"], 6);
    assert_eq!(
        v["results"][0]["entry"]["id"],
        "00000000-0000-0000-0000-000000000001"
    );
}

#[test]
fn entries_sort_like_spire() {
    let mk = |path: &str, parent: &str, sels: Vec<types::Selector>| types::Entry {
        spiffe_id: sid("td", path),
        parent_id: sid("td", parent),
        selectors: sels,
        ..Default::default()
    };
    let mut entries = vec![
        mk("/b", "/p", vec![sel("a", "1")]),
        mk("/a", "/q", vec![sel("a", "1")]),
        mk("/a", "/p", vec![sel("z", "1"), sel("a", "2")]),
        mk("/a", "/p", vec![sel("a", "1")]),
    ];
    sort_entries(&mut entries);
    let keys: Vec<(String, String, usize)> = entries
        .iter()
        .map(|e| {
            (
                e.spiffe_id.as_ref().unwrap().path.clone(),
                e.parent_id.as_ref().unwrap().path.clone(),
                e.selectors.len(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("/a".into(), "/p".into(), 1),
            ("/a".into(), "/p".into(), 2),
            ("/a".into(), "/q".into(), 1),
            ("/b".into(), "/p".into(), 1),
        ]
    );
    assert_eq!(
        entries[1].selectors[0],
        sel("a", "2"),
        "selectors are sorted too"
    );
}

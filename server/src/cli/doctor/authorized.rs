//! Which attested agents are authorized for an entry: its parent, if that is an attested
//! agent, and every agent whose selectors include those of a node alias the parent names
//! (an entry with that SPIFFE ID whose parent is the server).

use signet_common::doctor::Report;
use signet_proto::spire::api::server::agent::v1::{
    GetAgentRequest, ListAgentsRequest, list_agents_request,
};
use signet_proto::spire::api::server::entry::v1::{
    GetEntryRequest, ListEntriesRequest, list_entries_request,
};
use signet_proto::types;
use tonic::Code;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{MatchMode, id_string, parse_id_proto};

const NAME: &str = "authorized agents";
const PAGE_SIZE: i32 = 1000;

/// Checks the entry `id`.
pub(super) async fn for_entry_id(r: &mut Report, admin: &mut Admin, id: &str) {
    let entry = match admin.entry().await {
        Ok(mut c) => c
            .get_entry(GetEntryRequest {
                id: id.to_owned(),
                output_mask: None,
            })
            .await
            .map(tonic::Response::into_inner),
        Err(e) => return r.fail(NAME, e.to_string(), "start signet-server"),
    };
    match entry {
        Ok(entry) => check_entry(r, admin, &entry).await,
        Err(s) if s.code() == Code::NotFound => r.fail(
            NAME,
            format!("no entry has ID {id}"),
            "pass an existing entry ID (signet-server entry show lists them)",
        ),
        Err(s) => r.fail(NAME, RpcError(s).to_string(), "read the server log"),
    }
}

/// Checks every entry with SPIFFE ID `id`.
pub(super) async fn for_spiffe_id(r: &mut Report, admin: &mut Admin, id: &str) {
    let proto = match parse_id_proto(id) {
        Ok(p) => p,
        Err(e) => {
            return r.fail(
                NAME,
                format!("--spiffe-id: {e}"),
                "pass a SPIFFE ID such as spiffe://example.org/web",
            );
        }
    };
    let entries = match list_entries(admin, proto).await {
        Ok(e) => e,
        Err(e) => return r.fail(NAME, e, "read the server log"),
    };
    if entries.is_empty() {
        return r.fail(
            NAME,
            format!("no entry has SPIFFE ID {id}"),
            format!("create one: signet-server entry create -parentID <agent ID> -spiffeID {id} -selector <selector>"),
        );
    }
    for entry in &entries {
        check_entry(r, admin, entry).await;
    }
}

async fn check_entry(r: &mut Report, admin: &mut Admin, entry: &types::Entry) {
    let parent = id_string(entry.parent_id.as_ref());
    let what = format!(
        "entry {} ({})",
        entry.id,
        id_string(entry.spiffe_id.as_ref())
    );
    let agents = match agents_for(admin, entry).await {
        Ok(a) => a,
        Err(e) => return r.fail(NAME, format!("{what}: {e}"), "read the server log"),
    };
    let (banned, usable): (Vec<_>, Vec<_>) = agents.into_iter().partition(|(_, banned, _)| *banned);
    if usable.is_empty() {
        let mut message = format!(
            "{what}: no attested agent is authorized; its parent {parent} is neither an attested agent nor a node alias whose selectors an agent has"
        );
        if !banned.is_empty() {
            let names: Vec<_> = banned.iter().map(|(id, ..)| id.as_str()).collect();
            message.push_str(&format!(" (banned: {})", names.join(", ")));
        }
        return r.fail(
            NAME,
            message,
            format!("attest an agent as {parent} (signet-server token generate -spiffeID {parent}), or set the entry's -parentID to an attested agent (signet-server agent list)"),
        );
    }
    let names: Vec<_> = usable
        .iter()
        .map(|(id, _, via)| format!("{id} ({via})"))
        .collect();
    r.pass(NAME, format!("{what}: {}", names.join(", ")));
}

/// `(agent ID, banned, how)` for each agent authorized for `entry`.
async fn agents_for(
    admin: &mut Admin,
    entry: &types::Entry,
) -> Result<Vec<(String, bool, String)>, String> {
    let Some(parent) = entry.parent_id.clone() else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    let mut agents = admin.agent().await.map_err(|e| e.to_string())?;
    match agents
        .get_agent(GetAgentRequest {
            id: Some(parent.clone()),
            output_mask: None,
        })
        .await
    {
        Ok(a) => {
            let a = a.into_inner();
            out.push((id_string(a.id.as_ref()), a.banned, "its parent".to_owned()));
        }
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(RpcError(s).to_string()),
    }
    let server = types::Spiffeid {
        trust_domain: parent.trust_domain.clone(),
        path: "/spire/server".into(),
    };
    // Node aliases have IDs outside SPIRE's reserved `/spire/` paths (agent IDs are inside).
    if parent.path.starts_with("/spire/") {
        return Ok(out);
    }
    let aliases = list_entries(admin, parent).await?;
    for alias in aliases
        .iter()
        .filter(|a| a.parent_id.as_ref() == Some(&server))
    {
        if alias.selectors.is_empty() {
            continue;
        }
        let filter = list_agents_request::Filter {
            by_selector_match: Some(types::SelectorMatch {
                selectors: alias.selectors.clone(),
                r#match: MatchMode::Superset.selector_match(),
            }),
            ..Default::default()
        };
        let found = all_pages(|page_token| {
            let mut client = agents.clone();
            let req = ListAgentsRequest {
                filter: Some(filter.clone()),
                output_mask: None,
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let resp = client.list_agents(req).await?.into_inner();
                Ok((resp.agents, resp.next_page_token))
            }
        })
        .await?;
        for a in found {
            out.push((
                id_string(a.id.as_ref()),
                a.banned,
                format!("node alias {}", alias.id),
            ));
        }
    }
    Ok(out)
}

async fn list_entries(admin: &mut Admin, id: types::Spiffeid) -> Result<Vec<types::Entry>, String> {
    let client = admin.entry().await.map_err(|e| e.to_string())?;
    all_pages(|page_token| {
        let mut client = client.clone();
        let req = ListEntriesRequest {
            filter: Some(list_entries_request::Filter {
                by_spiffe_id: Some(id.clone()),
                ..Default::default()
            }),
            output_mask: None,
            page_size: PAGE_SIZE,
            page_token,
        };
        async move {
            let resp = client.list_entries(req).await?.into_inner();
            Ok((resp.entries, resp.next_page_token))
        }
    })
    .await
}

/// Every page of a paged `List` call: `call(page_token)` answers one page and the next token.
async fn all_pages<T, F, Fut>(mut call: F) -> Result<Vec<T>, String>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut out = vec![];
    let mut page_token = String::new();
    loop {
        let (items, next) = call(page_token.clone())
            .await
            .map_err(|s| RpcError(s).to_string())?;
        out.extend(items);
        if next.is_empty() || next == page_token {
            return Ok(out);
        }
        page_token = next;
    }
}

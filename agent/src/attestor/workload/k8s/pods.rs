//! The kubelet's `/pods` answer (a `PodList`), the container lookup in it and SPIRE's `k8s`
//! selectors. Only the fields the selectors need are read; as in Go, a missing or `null`
//! field is its zero value.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

/// One pod list from the kubelet, pods keyed by UID (pods without one are left out).
#[derive(Debug, Default)]
pub struct PodList {
    /// UID → the pod, or why it could not be decoded (reported only if it is looked at).
    pub pods: BTreeMap<String, Result<Pod, String>>,
}

impl PodList {
    /// Parses a `/pods` body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("unable to parse kubelet response: {e}"))?;
        let serde_json::Value::Object(mut list) = value else {
            return Err("invalid kubelet response: expected an object".into());
        };
        let items = match list.remove("items") {
            Some(serde_json::Value::Array(items)) => items,
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(_) => {
                return Err("unable to parse kubelet response: items is not an array".into());
            }
        };
        let mut pods = BTreeMap::new();
        for item in items {
            let uid = item
                .pointer("/metadata/uid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if uid.is_empty() {
                tracing::warn!("Pod has no UID");
                continue;
            }
            let pod = serde_json::from_value::<Pod>(item).map_err(|e| e.to_string());
            pods.insert(uid, pod);
        }
        Ok(Self { pods })
    }
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of a Pod the selectors use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    #[serde(deserialize_with = "nullable")]
    metadata: Metadata,
    #[serde(deserialize_with = "nullable")]
    spec: Spec,
    #[serde(deserialize_with = "nullable")]
    status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Metadata {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    namespace: String,
    #[serde(deserialize_with = "nullable")]
    uid: String,
    #[serde(deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct OwnerReference {
    #[serde(deserialize_with = "nullable")]
    kind: String,
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    uid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    #[serde(deserialize_with = "nullable")]
    service_account_name: String,
    #[serde(deserialize_with = "nullable")]
    node_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    #[serde(deserialize_with = "nullable")]
    container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable")]
    init_container_statuses: Vec<ContainerStatus>,
}

/// One container's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerStatus {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
    #[serde(rename = "imageID", deserialize_with = "nullable")]
    image_id: String,
    #[serde(rename = "containerID", deserialize_with = "nullable")]
    container_id: String,
}

impl ContainerStatus {
    /// The container ID of `containerd://<id>`, `cri-o://<id>`, `docker://<id>`: the URL's
    /// host part.
    fn runtime_id(&self) -> &str {
        let Some((_, rest)) = self.container_id.split_once("://") else {
            return "";
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        &rest[..end]
    }
}

impl Pod {
    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    /// The status of container `id`: regular containers, then init containers (ephemeral
    /// containers are not matched, as in SPIRE).
    pub fn container(&self, id: &str) -> Option<&ContainerStatus> {
        self.status
            .container_statuses
            .iter()
            .chain(&self.status.init_container_statuses)
            .filter(|s| !s.container_id.is_empty())
            .find(|s| s.runtime_id() == id)
    }

    /// The pod selector values (without the `k8s:` type).
    pub fn selector_values(&self) -> Vec<String> {
        let (m, s) = (&self.metadata, &self.status);
        let mut out = vec![
            format!("sa:{}", self.spec.service_account_name),
            format!("ns:{}", m.namespace),
            format!("node-name:{}", self.spec.node_name),
            format!("pod-uid:{}", m.uid),
            format!("pod-name:{}", m.name),
            format!("pod-image-count:{}", s.container_statuses.len()),
            format!("pod-init-image-count:{}", s.init_container_statuses.len()),
        ];
        out.extend(images(&s.container_statuses).map(|i| format!("pod-image:{i}")));
        out.extend(images(&s.init_container_statuses).map(|i| format!("pod-init-image:{i}")));
        out.extend(m.labels.iter().map(|(k, v)| format!("pod-label:{k}:{v}")));
        for o in &m.owner_references {
            out.push(format!("pod-owner:{}:{}", o.kind, o.name));
            out.push(format!("pod-owner-uid:{}:{}", o.kind, o.uid));
        }
        out
    }
}

/// The container selector values of the workload's container.
pub fn container_selector_values(status: &ContainerStatus) -> Vec<String> {
    let mut out = vec![format!("container-name:{}", status.name)];
    out.extend(images(std::slice::from_ref(status)).map(|i| format!("container-image:{i}")));
    out
}

/// `image` and `imageID` of every status, deduplicated (an empty `imageID` counts, as in
/// SPIRE).
fn images(statuses: &[ContainerStatus]) -> impl Iterator<Item = &str> {
    statuses
        .iter()
        .flat_map(|s| [s.image_id.as_str(), s.image.as_str()])
        .collect::<BTreeSet<_>>()
        .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
    const INIT: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
    const EPHEMERAL: &str = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26";

    fn list() -> PodList {
        let body = serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": [
                {
                    "metadata": {
                        "name": "blog-24ck7",
                        "namespace": "default",
                        "uid": "2c48913c-b29f-11e7-9350-020968147796",
                        "labels": {"k8s-app": "blog", "version": "v0"},
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "ReplicationController", "name": "blog", "uid": "2c401175-b29f-11e7-9350-020968147796", "controller": true}
                        ]
                    },
                    "spec": {"serviceAccountName": "default", "nodeName": "k8s-node-1", "containers": [{"name": "blog"}]},
                    "status": {
                        "phase": "Running",
                        "containerStatuses": [
                            {"name": "blog", "image": "localhost/spiffe/blog:latest", "imageID": "docker-pullable://localhost/spiffe/blog@sha256:0cfdaced91cb46dd7af48309799a3c351e4ca2d5e1ee9737ca0cbd932cb79898", "containerID": format!("docker://{CID}"), "ready": true, "restartCount": 0},
                            {"name": "sidecar", "image": "envoy:1", "imageID": "", "containerID": ""}
                        ],
                        "initContainerStatuses": [
                            {"name": "init", "image": "busybox:1", "imageID": "docker-pullable://busybox@sha256:1", "containerID": format!("containerd://{INIT}")}
                        ],
                        "ephemeralContainerStatuses": [
                            {"name": "debug", "image": "busybox:1", "imageID": "x", "containerID": format!("containerd://{EPHEMERAL}")}
                        ]
                    }
                },
                {"metadata": {"name": "no-uid"}},
                {"metadata": {"uid": "bad", "labels": ["not", "a", "map"]}},
                {"metadata": {"uid": "nulls", "labels": null, "ownerReferences": null}, "spec": null, "status": {"containerStatuses": null}}
            ]
        });
        PodList::parse(body.to_string().as_bytes()).unwrap()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn spire_selectors_for_a_container_and_an_init_container() {
        let list = list();
        assert_eq!(list.pods.len(), 3, "the UID-less pod is skipped");
        let pod = list.pods["2c48913c-b29f-11e7-9350-020968147796"]
            .as_ref()
            .unwrap();
        let status = pod.container(CID).unwrap();
        let mut got = pod.selector_values();
        got.extend(container_selector_values(status));
        assert_eq!(
            sorted(got),
            sorted(
                [
                    "sa:default",
                    "ns:default",
                    "node-name:k8s-node-1",
                    "pod-uid:2c48913c-b29f-11e7-9350-020968147796",
                    "pod-name:blog-24ck7",
                    "pod-image-count:2",
                    "pod-init-image-count:1",
                    "pod-image:docker-pullable://localhost/spiffe/blog@sha256:0cfdaced91cb46dd7af48309799a3c351e4ca2d5e1ee9737ca0cbd932cb79898",
                    "pod-image:localhost/spiffe/blog:latest",
                    "pod-image:envoy:1",
                    "pod-image:",
                    "pod-init-image:busybox:1",
                    "pod-init-image:docker-pullable://busybox@sha256:1",
                    "pod-label:k8s-app:blog",
                    "pod-label:version:v0",
                    "pod-owner:ReplicationController:blog",
                    "pod-owner-uid:ReplicationController:2c401175-b29f-11e7-9350-020968147796",
                    "container-name:blog",
                    "container-image:docker-pullable://localhost/spiffe/blog@sha256:0cfdaced91cb46dd7af48309799a3c351e4ca2d5e1ee9737ca0cbd932cb79898",
                    "container-image:localhost/spiffe/blog:latest",
                ]
                .map(String::from)
                .to_vec()
            )
        );
        let init = pod.container(INIT).unwrap();
        assert_eq!(
            sorted(container_selector_values(init)),
            [
                "container-image:busybox:1",
                "container-image:docker-pullable://busybox@sha256:1",
                "container-name:init"
            ]
        );
        assert!(
            pod.container(EPHEMERAL).is_none(),
            "ephemeral containers are not matched"
        );
        assert!(
            pod.container("").is_none(),
            "empty container IDs never match"
        );
    }

    #[test]
    fn undecodable_and_null_fields() {
        let list = list();
        assert!(list.pods["bad"].is_err());
        let nulls = list.pods["nulls"].as_ref().unwrap();
        assert!(
            nulls
                .selector_values()
                .contains(&"pod-image-count:0".to_owned())
        );
        for (body, want) in [
            ("[]", "invalid kubelet response: expected an object"),
            ("{", "unable to parse kubelet response"),
            (r#"{"items":3}"#, "items is not an array"),
        ] {
            let err = PodList::parse(body.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
        assert!(
            PodList::parse(br#"{"items":null}"#)
                .unwrap()
                .pods
                .is_empty()
        );
    }
}

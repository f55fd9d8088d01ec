//! Pod UID and container ID from `/proc/<pid>/cgroup`, as SPIRE's container locator finds
//! them: in each path, from the last segment backwards, the first segment holding a
//! 64-hex-digit word is the container ID; the text before it and then the earlier segments
//! are searched for `pod<UID>` (dashes or, with the systemd driver, underscores). This
//! covers cgroup v1 and v2, the cgroupfs and systemd drivers, and the containerd, CRI-O and
//! docker spellings.
//!
//! Only the cgroup file is read. SPIRE (since v1.15.2) falls back to `/proc/<pid>/mountinfo`
//! when the cgroup file names no container; Signet does not, because a process can forge
//! its mountinfo (a bind mount of another container's cgroup directory in a mount namespace
//! of its own) but cannot put itself in a root-owned cgroup.

/// Where a process runs, as far as its cgroups tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The pod's UID, when a path names it.
    pub pod_uid: Option<String>,
    /// The container ID; `None` means "not in a container" (no k8s selectors).
    pub container_id: Option<String>,
}

/// Why the cgroup file cannot be trusted to name one container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// A line without `hierarchy:controllers:path`.
    #[error(
        "unable to obtain cgroups: cgroup entry contains {fields} colons, but expected at least 2 colons: {line:?}"
    )]
    Malformed {
        /// How many `:`-separated fields it had.
        fields: usize,
        /// The line.
        line: String,
    },
    /// Two paths name different pods.
    #[error("multiple pod UIDs found ({0:?}, {1:?})")]
    PodUids(String, String),
    /// Two paths name different containers.
    #[error("multiple container IDs found ({0:?}, {1:?})")]
    ContainerIds(String, String),
}

/// Locates the container of the process whose `/proc/<pid>/cgroup` is `text`.
pub fn locate(text: &str) -> Result<Location, LocateError> {
    let mut pod: Option<String> = None;
    let mut container: Option<String> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(3, ':').collect();
        let [_, _, path] = fields[..] else {
            return Err(LocateError::Malformed {
                fields: fields.len(),
                line: line.to_owned(),
            });
        };
        let (found_pod, found_container) = match extract(path) {
            Some((p, c)) => (p, Some(c)),
            None => (None, None),
        };
        // A path naming a pod beats one that does not (kind on a docker host lists the
        // host's container too); once a pod is known, pod-less paths are ignored.
        match (&pod, &found_pod) {
            (Some(_), None) => continue,
            (None, Some(_)) => {
                pod.clone_from(&found_pod);
                container.clone_from(&found_container);
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (&pod, &found_pod)
            && a != b
        {
            return Err(LocateError::PodUids(a.clone(), b.clone()));
        }
        if let Some(a) = &container
            && found_container.as_ref() != Some(a)
        {
            return Err(LocateError::ContainerIds(
                a.clone(),
                found_container.unwrap_or_default(),
            ));
        }
        container = found_container;
        pod = found_pod;
    }
    Ok(Location {
        pod_uid: pod,
        container_id: container,
    })
}

/// Pod UID (if any) and container ID of one cgroup path; `None` if it names no container.
fn extract(path: &str) -> Option<(Option<String>, String)> {
    let mut segments = Segments(path);
    let mut container = None;
    let mut before = "";
    while let Some(segment) = segments.next_back() {
        if let Some(at) = find_container_id(segment) {
            container = Some(segment[at..at + 64].to_owned());
            before = &segment[..at];
            break;
        }
    }
    let container = container?;
    let mut candidate = Some(before).filter(|s| !s.is_empty());
    if candidate.is_none() {
        candidate = segments.next_back();
    }
    while let Some(segment) = candidate {
        if let Some(uid) = find_pod_uid(segment) {
            return Some((Some(uid.replace('_', "-")), container));
        }
        candidate = segments.next_back();
    }
    Some((None, container))
}

/// The `/`-segments of a path, taken from the end; an empty segment (the root, a trailing
/// `/` or `//`) ends the walk, as it does in SPIRE.
struct Segments<'a>(&'a str);

impl<'a> Segments<'a> {
    fn next_back(&mut self) -> Option<&'a str> {
        let path = self.0;
        let (rest, segment) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        self.0 = rest;
        Some(segment).filter(|s| !s.is_empty())
    }
}

/// ASCII word characters, as regular expressions' `\b` sees them (`_` is one).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn boundary_before(s: &[u8], at: usize) -> bool {
    at == 0 || !is_word(s[at - 1])
}

fn boundary_after(s: &[u8], end: usize) -> bool {
    end == s.len() || !is_word(s[end])
}

/// Where the first 64-hex-digit word of `segment` starts.
fn find_container_id(segment: &str) -> Option<usize> {
    let s = segment.as_bytes();
    (0..s.len().saturating_sub(63)).find(|&at| {
        boundary_before(s, at)
            && s[at..at + 64].iter().all(u8::is_ascii_hexdigit)
            && boundary_after(s, at + 64)
    })
}

/// The UID in the first `pod<8>-<4>-<4>-<4>-<12>` word of `segment` (separators `-` or `_`).
fn find_pod_uid(segment: &str) -> Option<&str> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let s = segment.as_bytes();
    let uid_at = |start: usize| -> Option<usize> {
        let mut i = start;
        for (n, len) in GROUPS.iter().enumerate() {
            if n > 0 {
                if !matches!(s.get(i), Some(b'-' | b'_')) {
                    return None;
                }
                i += 1;
            }
            let group = s.get(i..i + len)?;
            if !group.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += len;
        }
        boundary_after(s, i).then_some(i)
    };
    segment.match_indices("pod").find_map(|(at, _)| {
        if !boundary_before(s, at) {
            return None;
        }
        let end = uid_at(at + 3)?;
        Some(&segment[at + 3..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
    const CID2: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
    const HOST: &str = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26";
    const UID: &str = "2c48913c-b29f-11e7-9350-020968147796";

    fn found(pod: Option<&str>, cid: &str) -> Location {
        Location {
            pod_uid: pod.map(str::to_owned),
            container_id: Some(cid.to_owned()),
        }
    }

    #[test]
    fn every_runtime_and_driver_form() {
        let u = UID.replace('-', "_");
        let cases = [
            // cgroup v1, cgroupfs driver (docker, containerd)
            (
                format!("11:hugetlb:/kubepods/burstable/pod{UID}/{CID}"),
                found(Some(UID), CID),
            ),
            (
                format!(
                    "4:memory:/kubepods/besteffort/pod{UID}/{CID}\n3:cpu:/kubepods/besteffort/pod{UID}/{CID}"
                ),
                found(Some(UID), CID),
            ),
            // guaranteed QoS: no class segment
            (
                format!("8:pids:/kubepods/pod{UID}/{CID}"),
                found(Some(UID), CID),
            ),
            // v1, systemd driver, docker
            (
                format!(
                    "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/docker-{CID}.scope"
                ),
                found(Some(UID), CID),
            ),
            // v1, systemd driver, CRI-O
            (
                format!(
                    "2:cpu:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-{CID}.scope"
                ),
                found(Some(UID), CID),
            ),
            // v2 (unified), systemd driver, containerd
            (
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope"
                ),
                found(Some(UID), CID),
            ),
            // containerd's colon form: pod and container in one segment
            (
                format!("0::/kubepods-besteffort-pod{u}.slice:cri-containerd:{CID}"),
                found(Some(UID), CID),
            ),
            // kind on a docker host: the pod-less host line is ignored
            (
                format!(
                    "1:cpuset:/docker/{HOST}/kubepods/besteffort/pod{UID}/{CID2}\n0::/docker/{HOST}/system.slice/containerd.service"
                ),
                found(Some(UID), CID2),
            ),
            // ... in either order
            (
                format!(
                    "0::/docker/{HOST}/system.slice/containerd.service\n1:cpuset:/docker/{HOST}/kubepods/besteffort/pod{UID}/{CID2}"
                ),
                found(Some(UID), CID2),
            ),
            // cgroup v2 seen from another cgroup namespace
            (format!("0::/../crio-{CID}.scope"), found(None, CID)),
            (format!("0::/../../pod{UID}/{CID}"), found(Some(UID), CID)),
            (format!("0::/../{CID}"), found(None, CID)),
            // a container ID followed by more segments
            (
                format!("0::/kubepods/pod{UID}/{CID}/init.scope"),
                found(Some(UID), CID),
            ),
            // upper-case hex is hex
            (
                format!(
                    "0::/kubepods/pod{}/{}",
                    UID.to_uppercase(),
                    CID.to_uppercase()
                ),
                found(Some(&UID.to_uppercase()), &CID.to_uppercase()),
            ),
            // docker without Kubernetes: a container, no pod
            (
                format!("0::/system.slice/docker-{CID}.scope"),
                found(None, CID),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(locate(&text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn not_in_a_container() {
        for text in [
            "11:hugetlb:/\n10:devices:/user.slice\n0::/",
            "0::/user.slice/user-1000.slice/session-2.scope",
            // this machine: a 32-hex-digit name is not a container ID
            "4:memory:/process_api/59bc8807580152b52481e81d6a90a367\n0::/",
            // 65 hex digits, and 64 glued to a word character, are no container ID
            &format!("0::/kubepods/pod{UID}/{CID}a"),
            &format!("0::/kubepods/pod{UID}/x_{CID}"),
            // a pod directory without a container
            &format!("0::/kubepods/burstable/pod{UID}"),
            "",
        ] {
            assert_eq!(locate(text).unwrap(), Location::default(), "{text}");
        }
    }

    #[test]
    fn pod_uid_needs_word_boundaries() {
        // `_` is a word character: "xpod..." and "pod..._x" do not count.
        assert_eq!(
            locate(&format!("0::/kubepods/xpod{UID}/{CID}")).unwrap(),
            found(None, CID)
        );
        assert_eq!(
            locate(&format!("0::/kubepods/pod{UID}_x/{CID}")).unwrap(),
            found(None, CID)
        );
        // A malformed UID (short group) is no UID.
        assert_eq!(
            locate(&format!(
                "0::/kubepods/pod2c48913c-b29f-11e7-9350-02096814779/{CID}"
            ))
            .unwrap(),
            found(None, CID)
        );
        // The nearest pod segment wins.
        let other = "7c48913c-b29f-11e7-9350-020968147796";
        assert_eq!(
            locate(&format!("0::/pod{other}/kubepods/pod{UID}/{CID}")).unwrap(),
            found(Some(UID), CID)
        );
    }

    #[test]
    fn conflicts_are_refused() {
        let other = "7c48913c-b29f-11e7-9350-020968147796";
        assert_eq!(
            locate(&format!(
                "1:cpu:/kubepods/pod{UID}/{CID}\n2:pids:/kubepods/pod{other}/{CID}"
            ))
            .unwrap_err(),
            LocateError::PodUids(UID.into(), other.into())
        );
        assert_eq!(
            locate(&format!(
                "1:cpu:/kubepods/pod{UID}/{CID}\n2:pids:/kubepods/pod{UID}/{CID2}"
            ))
            .unwrap_err(),
            LocateError::ContainerIds(CID.into(), CID2.into())
        );
        // As in SPIRE, a pod-less container line followed by a line naming no container.
        let err = locate(&format!("0::/../{CID}\n1:cpu:/")).unwrap_err();
        assert_eq!(err, LocateError::ContainerIds(CID.into(), String::new()));
        assert_eq!(
            err.to_string(),
            format!("multiple container IDs found (\"{CID}\", \"\")")
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        let err = locate("0::/\nnot a cgroup line").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to obtain cgroups: cgroup entry contains 1 colons, but expected at least 2 colons: \"not a cgroup line\""
        );
    }
}

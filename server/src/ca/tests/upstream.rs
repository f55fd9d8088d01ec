//! `UpstreamAuthority "disk"`: the server CA as an intermediate.

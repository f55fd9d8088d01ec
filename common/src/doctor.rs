//! The `doctor` report both binaries print: named checks, each PASS, WARN or FAIL with what
//! was found and, when it is not a PASS, the fix in one sentence. Rendered for people (one
//! aligned line per check, the fix indented under it) or as JSON; a report with any FAIL
//! exits non-zero.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Works now, but needs attention (or could not be checked).
    Warn,
    /// Broken: mTLS with this identity fails until it is fixed.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`server connection`).
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it (empty for a PASS).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// Every check of one `doctor` run, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

/// The JSON shape: the checks plus the counts and the verdict.
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    pass: usize,
    warn: usize,
    fail: usize,
    checks: &'a [Check],
}

impl Report {
    /// Records a PASS.
    pub fn pass(&mut self, name: &str, message: impl Into<String>) {
        self.push(name, Status::Pass, message.into(), String::new());
    }

    /// Records a WARN with its fix.
    pub fn warn(&mut self, name: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Warn, message.into(), fix.into());
    }

    /// Records a FAIL with its fix.
    pub fn fail(&mut self, name: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Fail, message.into(), fix.into());
    }

    fn push(&mut self, name: &str, status: Status, message: String, fix: String) {
        self.checks.push(Check {
            name: name.to_owned(),
            status,
            message,
            fix,
        });
    }

    /// Appends another report's checks.
    pub fn extend(&mut self, other: Report) {
        self.checks.extend(other.checks);
    }

    /// How many checks came out `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.count(Status::Fail) == 0
    }

    /// 0 if nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok())
    }

    /// One line per check (`PASS  name  message`), the fix indented under each WARN and
    /// FAIL, then a summary line.
    pub fn human(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{}  {:width$}  {}",
                c.status.label(),
                c.name,
                c.message
            );
            if !c.fix.is_empty() {
                let _ = writeln!(out, "      {:width$}  fix: {}", "", c.fix);
            }
        }
        let _ = writeln!(
            out,
            "{} passed, {} warnings, {} failed",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail)
        );
        out
    }

    /// The report as one JSON object: `ok`, the counts and `checks`.
    pub fn json(&self) -> String {
        let report = JsonReport {
            ok: self.ok(),
            pass: self.count(Status::Pass),
            warn: self.count(Status::Warn),
            fail: self.count(Status::Fail),
            checks: &self.checks,
        };
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    }
}

/// A duration in seconds as people read it (`59m 12s`, `-3s` for the past).
pub fn seconds(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let d = std::time::Duration::from_secs(secs.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::default();
        r.pass("agent", "attested");
        r.warn("clock skew", "3s ahead", "run NTP");
        r.fail("entries", "none matches", "create one");
        r
    }

    #[test]
    fn human_output_aligns_names_and_indents_fixes() {
        let text = sample().human();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "PASS  agent       attested");
        assert_eq!(lines[1], "WARN  clock skew  3s ahead");
        assert_eq!(lines[2], "                  fix: run NTP");
        assert_eq!(lines[3], "FAIL  entries     none matches");
        assert_eq!(lines[5], "1 passed, 1 warnings, 1 failed");
    }

    #[test]
    fn json_output_round_trips_and_carries_the_verdict() {
        let r = sample();
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["fail"], 1);
        assert_eq!(v["checks"][2]["status"], "FAIL");
        assert!(v["checks"][0].get("fix").is_none());
        let back: Report =
            serde_json::from_value(serde_json::json!({ "checks": v["checks"] })).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn exit_code_is_zero_only_without_failures() {
        let mut r = Report::default();
        r.warn("a", "b", "c");
        assert_eq!(r.exit_code(), 0);
        r.fail("d", "e", "f");
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(seconds(3600 + 61), "1h 1m 1s");
        assert_eq!(seconds(-5), "-5s");
    }
}

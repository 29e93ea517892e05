//! The `junction` command line: `check` and `--help`.

mod common;

use std::process::Command;

fn junction(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_summarizes_a_good_config() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml");
    let (code, out, _) = junction(&["check", "--config", demo]);
    assert_eq!(code, 0);
    assert!(out.contains("OK"));
    assert!(out.contains("demo-openai -> mock/gpt-4o-mini"), "{out}");
    assert!(out.contains("1 client key(s)"));
}

#[test]
fn check_lists_every_problem_with_its_location() {
    let path = common::tmp_path("bad.toml");
    std::fs::write(
        &path,
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"sk-literal\"\n\n[models.m]\nprovider = \"q\"\n",
    )
    .unwrap();
    let (code, _, err) = junction(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:4:11: providers.p.api_key must be an environment reference"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:7:12: models.m.provider: no provider named `q`"
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s) found."), "{err}");
}

#[test]
fn check_reports_an_unreadable_file() {
    let (code, _, err) = junction(&["check", "--config", "/nonexistent/junction.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the file"), "{err}");
}

#[test]
fn every_command_has_help() {
    for cmd in ["serve", "check", "mock", "demo"] {
        let (code, out, _) = junction(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}");
        assert!(out.contains("Usage: junction"), "{cmd}: {out}");
    }
    let (_, out, _) = junction(&["mock", "--help"]);
    assert!(out.contains("--chunk-delay-ms"));
}

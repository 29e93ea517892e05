//! Junction: an LLM API gateway on Pingora. One OpenAI-compatible endpoint in front of every
//! model provider. `ARCHITECTURE.md` is the map of the code.

pub mod access_log;
pub mod admin;
pub mod config;
pub mod error;
pub mod front;
pub mod gateway;
pub mod limits;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod net;
pub mod providers;
pub mod routing;
pub mod secret;
pub mod server;
pub mod store;
pub mod stream;
pub mod tenancy;
pub mod trace;
pub mod upstream;
pub mod usage;

/// `ARCHITECTURE.md` names every top-level module under `src/` (as `src/<name>`): a module
/// added without its place on the map fails here.
#[test]
fn architecture_names_every_top_level_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("src")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let named = if entry.file_type().unwrap().is_dir() {
            format!("`src/{name}/`")
        } else if name.ends_with(".rs") && name != "lib.rs" {
            format!("`src/{name}`")
        } else {
            continue;
        };
        if !map.contains(&named) {
            missing.push(named);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name {missing:?}"
    );
}

//! The operators' `deploy/` directory, checked against the real configuration
//! parser and command line: the container image (`deploy/Dockerfile`,
//! `.dockerignore`), the Kubernetes sidecar example (`deploy/kubernetes/`) and
//! the systemd unit (`deploy/systemd/`).
//!
//! Nothing here needs a container runtime or a cluster. When `systemd-analyze`
//! is installed, the unit is also verified by it; when `kubectl` is, the
//! kustomization is also built by it. Every other check always runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scrim::config::Config;
use serde::Deserialize;
use serde_json::Value;

/// Measured by the load harness (BENCHMARKS.md): peak resident memory while
/// streaming 1 GiB of NDJSON and under 64 connections.
const MEASURED_PEAK_RSS: u64 = 22 * 1024 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn parse_config(rel: &str) -> Config {
    Config::parse(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scrim-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether `tool` can be run. When it is missing, the test says it was
/// skipped and why; when `SCRIM_REQUIRE_TOOLS` (a list of tool names, set
/// by `.ci/run`, which installs them) names it, a missing tool fails the
/// test instead.
fn tool_present(tool: &str, skipped: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    let required = std::env::var("SCRIM_REQUIRE_TOOLS").unwrap_or_default();
    assert!(
        !required
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|t| t == tool),
        "{tool} is not installed, and SCRIM_REQUIRE_TOOLS says it must be"
    );
    println!("skipped: {tool} is not installed, so {skipped} was not run");
    false
}

/// Runs the real `scrim` binary; kills it (and fails) if it is still running
/// after 20 s, which would mean a `serve` got past its start-up checks.
fn run_scrim(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scrim"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("SCRIM_KEYS_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn scrim");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("scrim {args:?} was still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `--flag` in `args` is one that `scrim <subcommand> --help` lists.
fn assert_flags_exist(args: &[String]) {
    let sub = args.first().expect("a subcommand");
    let (code, help, err) = run_scrim(&[sub, "--help"], &[]);
    assert_eq!(code, 0, "scrim {sub} --help: {err}");
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "scrim {sub} has no {flag}:\n{help}"
        );
    }
}

/// Runs `scrim serve` exactly as deployed, with the configuration path mapped
/// to the file in this repository and the key ring missing. Clap usage
/// errors exit 2; a configuration error or a missing key ring exits 1 before
/// any listener is bound. So exit 1 naming the key ring proves that the
/// arguments are accepted, the configuration loads, and scrim refuses to run
/// without its key ring.
fn assert_serve_starts_until_keys(args: &[String], deployed_config: &str, repo_config: &str) {
    assert_flags_exist(args);
    assert_eq!(args[0], "serve", "{args:?}");
    let i = args
        .iter()
        .position(|a| a == "--config")
        .expect("serve is given --config");
    assert_eq!(args[i + 1], deployed_config, "{args:?}");
    let mut mapped: Vec<String> = args.to_vec();
    mapped[i + 1] = root().join(repo_config).display().to_string();
    // A path in a directory that is never created.
    let missing = std::env::temp_dir()
        .join(format!("scrim-deploy-{}-absent", std::process::id()))
        .join("keys.toml");
    let missing = missing.display().to_string();
    let argv: Vec<&str> = mapped.iter().map(String::as_str).collect();
    let (code, _out, err) = run_scrim(&argv, &[("SCRIM_KEYS_FILE", &missing)]);
    assert_eq!(code, 1, "scrim {argv:?}: {err}");
    assert!(
        err.contains("keys.toml") || err.contains("key ring"),
        "scrim {argv:?} failed for another reason than the missing key ring: {err}"
    );
    assert!(!err.contains("Usage:"), "{err}");
}

/// Runs `scrim serve` as deployed, with a valid key ring but with the
/// configuration's rules directory first missing, then empty (the
/// configuration is copied with `rules.dir` pointed at a scratch path):
/// scrim refuses to start, naming the directory, `rules.dir` and
/// `--allow-no-rules`, before it binds a listener.
fn assert_serve_refuses_without_rules(args: &[String], repo_config: &str) {
    let dir = scratch("no-rules");
    let rules = dir.join("rules");
    let keys = dir.join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "active = \"k1\"\n[keys]\nk1 = \"hex:{}\"\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let mut config: toml::Table = toml::from_str(&read(repo_config)).unwrap();
    config["rules"]
        .as_table_mut()
        .expect("[rules]")
        .insert("dir".into(), rules.display().to_string().into());
    let config_file = dir.join("scrim.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let i = args.iter().position(|a| a == "--config").unwrap();
    let mut mapped: Vec<String> = args.to_vec();
    mapped[i + 1] = config_file.display().to_string();
    let argv: Vec<&str> = mapped.iter().map(String::as_str).collect();
    let keys = keys.display().to_string();
    let env = [("SCRIM_KEYS_FILE", keys.as_str())];
    let shown = rules.display().to_string();

    let (code, _out, err) = run_scrim(&argv, &env);
    assert_eq!(code, 1, "scrim {argv:?}: {err}");
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        format!(
            "scrim: rules: the rules directory {shown} does not exist: set rules.dir in the \
             configuration (--config) to the directory of the recipients' rule files, or mount \
             them there"
        ),
    );

    std::fs::create_dir_all(&rules).unwrap();
    let (code, _out, err) = run_scrim(&argv, &env);
    assert_eq!(code, 1, "scrim {argv:?}: {err}");
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        format!(
            "scrim: rules: no rule file (*.toml) in the rules directory {shown}: put the \
             recipients' rule files there or set rules.dir in the configuration (--config); to \
             start with no recipient anyway (every request refused until rule files appear), \
             pass --allow-no-rules"
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_check_passes(rules: &[PathBuf]) {
    let args: Vec<String> = std::iter::once("check".to_string())
        .chain(rules.iter().map(|p| p.display().to_string()))
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run_scrim(&argv, &[]);
    assert_eq!(code, 0, "scrim {argv:?}:\n{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
}

/// Every `"env:NAME"` header credential in a rule file.
fn env_credentials(rule_text: &str) -> Vec<String> {
    rule_text
        .split("\"env:")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- configs

#[test]
fn deployed_configs_parse_and_fail_closed() {
    for rel in [
        "deploy/scrim.container.toml",
        "deploy/kubernetes/scrim.toml",
        "deploy/systemd/scrim.toml",
    ] {
        let c = parse_config(rel);
        assert!(
            !c.allow_ephemeral_key,
            "{rel}: production configs must not start with a throwaway key"
        );
        if !c.admin.ip().is_loopback() {
            assert_eq!(
                c.captured_max, 0,
                "{rel}: the admin listener is not on loopback, so /captured must keep nothing"
            );
        }
        assert_ne!(c.listen.port(), c.admin.port(), "{rel}");
        assert_eq!(c.log_format, scrim::config::LogFormat::Json, "{rel}");
    }
    // A container is reached through its interface; the systemd unit serves
    // its own host.
    let container = parse_config("deploy/scrim.container.toml");
    assert!(container.listen.ip().is_unspecified());
    assert!(container.admin.ip().is_unspecified());
    let host = parse_config("deploy/systemd/scrim.toml");
    assert!(host.admin.ip().is_loopback());
}

// ---------------------------------------------------------------- Dockerfile

#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    /// (instruction in upper case, rest of the line)
    lines: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = read("deploy/Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (instr, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let instr = instr.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        if instr == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = (words.len() == 3 && words[1].eq_ignore_ascii_case("as"))
                .then(|| words[2].to_string());
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                lines: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .lines
                .push((instr, rest));
        }
    }
    stages
}

fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest)
        .unwrap_or_else(|e| panic!("`{rest}` is not the exec (JSON array) form: {e}"))
}

/// (`--from` stage, sources, destination) of a COPY line.
fn copy_parts(rest: &str) -> (Option<String>, Vec<String>, String) {
    let mut from = None;
    let mut words: Vec<String> = Vec::new();
    for w in rest.split_whitespace() {
        if let Some(f) = w.strip_prefix("--from=") {
            from = Some(f.to_string());
        } else if !w.starts_with("--") {
            words.push(w.to_string());
        }
    }
    let dest = words.pop().expect("COPY has a destination");
    (from, words, dest)
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

/// The paths Cargo needs to find to read Cargo.toml: every declared target.
fn cargo_target_paths() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let mut paths = vec![
        manifest["lib"]["path"]
            .as_str()
            .unwrap_or("src/lib.rs")
            .to_string(),
    ];
    for (kind, dir) in [("bin", "src/bin"), ("bench", "benches"), ("test", "tests")] {
        for t in manifest
            .get(kind)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let name = t["name"].as_str().unwrap();
            let path = match t.get("path").and_then(|p| p.as_str()) {
                Some(p) => p.to_string(),
                None if kind == "bin" => format!("{dir}/{name}.rs"),
                None => format!("{dir}/{name}.rs"),
            };
            paths.push(path);
        }
    }
    paths
}

fn dockerignore_allows(path: &str) -> bool {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        ".dockerignore excludes everything, then lists what the build needs"
    );
    let path = path.trim_end_matches('/');
    patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .any(|allowed| {
            let allowed = allowed.trim_end_matches('/');
            path == allowed || path.starts_with(&format!("{allowed}/"))
        })
}

#[test]
fn dockerignore_keeps_build_output_and_history_out() {
    for p in [
        "target",
        "target/release/scrim",
        "fuzz/target",
        ".git",
        "fuzz",
        "keys.toml",
    ] {
        assert!(!dockerignore_allows(p), "{p} would be in the build context");
    }
    for p in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        assert!(dockerignore_allows(p), "{p} is needed by the build");
    }
    // The image ships no rule files (see the Dockerfile test).
    assert!(!dockerignore_allows("rules/example.toml"));
}

#[test]
fn dockerfile_builds_locked_from_a_pinned_toolchain_and_runs_non_root() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let builder = &stages[0];
    let runtime = stages.last().unwrap();

    // The builder's toolchain satisfies rust-version.
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    let tag = builder
        .image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("builder is not an official Rust image: {}", builder.image));
    let version = tag.split('-').next().unwrap();
    assert!(
        version.split('.').count() >= 2 && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "builder image is not pinned to a version: {}",
        builder.image
    );
    assert!(
        version_tuple(version) >= version_tuple(msrv),
        "builder Rust {version} is older than rust-version {msrv}"
    );

    // Manifests first, with a stub for every declared target, then sources.
    let first_copy = builder.lines.iter().position(|(i, _)| i == "COPY").unwrap();
    let (_, srcs, _) = copy_parts(&builder.lines[first_copy].1);
    assert_eq!(
        srcs,
        ["Cargo.toml", "Cargo.lock"],
        "dependency layer copies the manifests only"
    );
    let (i, deps_run) = &builder.lines[first_copy + 1];
    assert_eq!(i, "RUN");
    let stub_list = deps_run
        .split("for f in ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("stub sources created in a `for f in ...;` loop");
    let stubs: Vec<&str> = stub_list.split_whitespace().collect();
    for path in cargo_target_paths() {
        assert!(
            stubs.contains(&path.as_str()),
            "Cargo.toml declares {path}, which the dependency layer does not stub: cargo would refuse the manifest"
        );
    }
    let builds: Vec<&String> = builder
        .lines
        .iter()
        .filter(|(i, r)| i == "RUN" && r.contains("cargo build"))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(builds.len(), 2, "dependencies, then scrim");
    for b in builds {
        assert!(b.contains("--locked") && b.contains("--release"), "{b}");
    }

    // Every COPY from the build context names a file in the repository that
    // .dockerignore lets through.
    for stage in &stages {
        for (i, rest) in &stage.lines {
            if i != "COPY" && i != "ADD" {
                continue;
            }
            assert_eq!(i, "COPY", "ADD fetches and unpacks: use COPY");
            let (from, srcs, _) = copy_parts(rest);
            if from.is_some() {
                continue;
            }
            for s in srcs {
                assert!(
                    root().join(&s).exists(),
                    "COPY {s}: no such path in the repository"
                );
                assert!(
                    dockerignore_allows(&s),
                    "COPY {s}: excluded by .dockerignore"
                );
            }
        }
    }

    // The runtime image: small, non-root with a numeric UID.
    assert!(
        !runtime.image.starts_with("rust:"),
        "runtime is not the toolchain image"
    );
    assert!(
        runtime.image.contains("distroless") || runtime.image.contains("slim"),
        "runtime image should be small: {}",
        runtime.image
    );
    let user = runtime
        .lines
        .iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, r)| r.clone())
        .expect("the runtime stage sets USER");
    for id in user.split(':') {
        let n: u32 = id.parse().unwrap_or_else(|_| {
            panic!("USER {user}: not numeric (Kubernetes' runAsNonRoot needs a number)")
        });
        assert_ne!(n, 0, "USER {user} is root");
    }

    // Only the binary and the configuration reach the runtime: no rule
    // file, so a forgotten rules mount cannot leave a gateway running with
    // the `example` recipient, whose capture upstream answers 202 and
    // discards the data.
    let copies: Vec<(Option<String>, Vec<String>, String)> = runtime
        .lines
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, r)| copy_parts(r))
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(
        !copies
            .iter()
            .any(|(_, s, _)| s.iter().any(|x| x.starts_with("rules"))),
        "the image ships no rule files: {copies:?}"
    );
    let dest_of = |src: &str| {
        copies
            .iter()
            .find(|(from, s, _)| from.is_none() && s.iter().any(|x| x.trim_end_matches('/') == src))
            .map(|(_, _, d)| d.trim_end_matches('/').to_string())
            .unwrap_or_else(|| panic!("the runtime stage does not copy {src}"))
    };
    let config_path = dest_of("deploy/scrim.container.toml");
    let (bin_from, _, bin_path) = copies
        .iter()
        .find(|(from, _, _)| from.is_some())
        .expect("the binary comes from the builder");
    assert_eq!(bin_from.as_deref(), builder.name.as_deref());

    let entrypoint = runtime
        .lines
        .iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, r)| exec_form(r))
        .expect("ENTRYPOINT");
    assert!(
        entrypoint == [bin_path.clone()] || entrypoint == ["scrim"],
        "ENTRYPOINT {entrypoint:?} is not the copied binary {bin_path}"
    );
    let cmd = runtime
        .lines
        .iter()
        .find(|(i, _)| i == "CMD")
        .map(|(_, r)| exec_form(r))
        .expect("CMD");
    assert_serve_starts_until_keys(&cmd, &config_path, "deploy/scrim.container.toml");

    // The baked-in configuration matches the image around it: its rules
    // directory sits beside it, where the rule files are mounted.
    let c = parse_config("deploy/scrim.container.toml");
    assert_eq!(
        c.rules_dir,
        Path::new(&config_path).parent().unwrap().join("rules")
    );
    assert_serve_refuses_without_rules(&cmd, "deploy/scrim.container.toml");
    let exposed: Vec<u16> = runtime
        .lines
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, r)| {
            r.split_whitespace()
                .map(|p| p.split('/').next().unwrap().parse().unwrap())
                .collect::<Vec<u16>>()
        })
        .collect();
    let mut want = vec![c.listen.port(), c.admin.port()];
    let mut got = exposed.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(
        got, want,
        "EXPOSE matches the listeners of the baked-in configuration"
    );
    let text = read("deploy/scrim.container.toml");
    assert!(
        !text.contains("\nfile ="),
        "the image's key ring path comes from SCRIM_KEYS_FILE"
    );
    assert!(
        runtime
            .lines
            .iter()
            .any(|(i, r)| i == "ENV" && r.starts_with("SCRIM_KEYS_FILE=/")),
        "the configuration names no key ring and refuses to run without one: the image must say where it is"
    );
}

// ---------------------------------------------------------------- Kubernetes

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn k8s_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

fn manifests() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|f| yaml_docs(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn kind<'a>(docs: &'a [(PathBuf, Value)], k: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == k)
        .map(|(_, d)| d)
        .collect()
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// A Kubernetes quantity of bytes (`32Mi`, `1Gi`, `64M`, `1048576`).
fn bytes(q: &str) -> u64 {
    let (num, mul) = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ]
    .iter()
    .find_map(|(suffix, m)| q.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((q, 1));
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("quantity {q}"))
        * mul
}

/// A file mode as Kubernetes reads it: its YAML is 1.1, where `0400` is
/// octal; this parser reads YAML 1.2 and leaves `0400` a string.
fn file_mode(v: &Value) -> u32 {
    match v {
        Value::Number(n) => u32::try_from(n.as_u64().unwrap()).unwrap(),
        Value::String(t) if t.starts_with('0') => u32::from_str_radix(t, 8).unwrap(),
        other => panic!("file mode {other}"),
    }
}

#[derive(Debug)]
struct Generated {
    /// ConfigMap key -> file in the repository.
    files: BTreeMap<String, PathBuf>,
}

fn kustomization() -> Value {
    yaml_docs(&k8s_dir().join("kustomization.yaml")).remove(0)
}

fn config_map_generators() -> BTreeMap<String, Generated> {
    let k = kustomization();
    let mut out = BTreeMap::new();
    for g in k["configMapGenerator"]
        .as_array()
        .expect("configMapGenerator")
    {
        let mut files = BTreeMap::new();
        for f in g["files"].as_array().unwrap() {
            let f = s(f, "generator file");
            let (key, path) = match f.split_once('=') {
                Some((k, p)) => (k.to_string(), p),
                None => (
                    Path::new(f)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    f,
                ),
            };
            files.insert(key, k8s_dir().join(path));
        }
        out.insert(
            s(&g["name"], "generator name").to_string(),
            Generated { files },
        );
    }
    out
}

#[test]
fn every_manifest_parses_and_is_named() {
    let docs = manifests();
    assert!(docs.len() >= 5, "{} documents", docs.len());
    for (file, d) in &docs {
        let f = file.display();
        assert!(
            d["apiVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{f}: apiVersion"
        );
        assert!(
            d["kind"].as_str().is_some_and(|v| !v.is_empty()),
            "{f}: kind"
        );
        assert!(
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{f}: metadata.name"
        );
    }
}

#[test]
fn kustomization_references_files_that_exist() {
    let k = kustomization();
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| s(r, "resource"))
        .collect();
    assert!(!resources.is_empty());
    for r in &resources {
        assert!(k8s_dir().join(r).is_file(), "resource {r} does not exist");
    }
    let generators = config_map_generators();
    assert!(generators.contains_key("scrim-config") && generators.contains_key("scrim-rules"));
    for (name, g) in &generators {
        assert!(!g.files.is_empty(), "{name}");
        for path in g.files.values() {
            assert!(path.is_file(), "{name}: {} does not exist", path.display());
        }
    }
    // Every manifest beside it is either applied or mentioned (optional ones
    // are commented in, e.g. the PodMonitor).
    let text = std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap();
    for (file, _) in manifests() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            assert!(
                text.contains(&name),
                "{name} is not referenced by kustomization.yaml"
            );
        }
    }
}

#[test]
fn sidecar_matches_its_configuration_and_the_cli() {
    let docs = manifests();
    let deployments = kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = &deployments[0]["spec"]["template"];
    let spec = &pod["spec"];
    let generators = config_map_generators();

    // scrim runs as a native sidecar: an init container that keeps running.
    let scrim = spec["initContainers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "scrim"))
        .expect("scrim among the initContainers");
    assert_eq!(scrim["restartPolicy"], "Always", "a native sidecar");
    assert!(
        scrim["startupProbe"].is_object(),
        "the app starts once scrim is ready"
    );
    let apps = spec["containers"].as_array().expect("the app container");
    assert!(!apps.is_empty());

    // Volumes: mount path -> (kind, name, volume).
    let volumes = spec["volumes"].as_array().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let mounts = scrim["volumeMounts"].as_array().unwrap();
    let mount_of = |path: &Path| -> (&Value, String) {
        let m = mounts
            .iter()
            .filter(|m| path.starts_with(s(&m["mountPath"], "mountPath")))
            .max_by_key(|m| s(&m["mountPath"], "mountPath").len())
            .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()));
        let rest = path
            .strip_prefix(s(&m["mountPath"], "mountPath"))
            .unwrap()
            .display()
            .to_string();
        (m, rest)
    };
    for m in mounts {
        assert_eq!(m["readOnly"], true, "{m}: scrim writes nothing");
    }

    // The arguments: accepted by the CLI, and the configuration they name is
    // the one the ConfigMap generator reads from this repository.
    let args: Vec<String> = scrim["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| s(a, "arg").to_string())
        .collect();
    let config_at = &args[args.iter().position(|a| a == "--config").expect("--config") + 1];
    let (m, key) = mount_of(Path::new(config_at));
    let cm = s(
        &volume(s(&m["name"], "mount name"))["configMap"]["name"],
        "configMap",
    )
    .to_string();
    let source = generators[&cm]
        .files
        .get(&key)
        .unwrap_or_else(|| panic!("ConfigMap {cm} has no key {key}"));
    let rel = source.strip_prefix(root()).unwrap().display().to_string();
    assert_eq!(rel, "deploy/kubernetes/scrim.toml");
    let config = parse_config(&rel);
    assert_serve_starts_until_keys(&args, config_at, &rel);

    // Only the app in this pod reaches the service listener.
    assert!(
        config.listen.ip().is_loopback(),
        "sidecar service listener on loopback"
    );

    // Rules: mounted where the configuration looks, and valid.
    let (m, rest) = mount_of(&config.rules_dir);
    assert!(
        rest.is_empty(),
        "the rules ConfigMap is mounted at rules.dir itself"
    );
    let rules_cm = s(
        &volume(s(&m["name"], "mount name"))["configMap"]["name"],
        "configMap",
    );
    let rule_files: Vec<PathBuf> = generators[rules_cm].files.values().cloned().collect();
    assert_check_passes(&rule_files);
    let policies = scrim::policy::load_all(&rule_files).unwrap_or_else(|e| panic!("{e:?}"));
    let recipients: Vec<&str> = policies.iter().map(|p| p.recipient.as_str()).collect();

    // The key ring: a Secret, read-only, owner-read only, where the
    // configuration looks; and the README shows how to create that Secret.
    let keys_file = config.keys_file.clone().expect("keys.file");
    let (m, key) = mount_of(&keys_file);
    assert_eq!(m["readOnly"], true);
    let v = volume(s(&m["name"], "mount name"));
    let secret = s(&v["secret"]["secretName"], "secretName");
    assert_eq!(
        file_mode(&v["secret"]["defaultMode"]),
        0o400,
        "key ring mode"
    );
    let readme = read("deploy/README.md");
    assert!(
        readme.contains(&format!("kubectl create secret generic {secret}"))
            && readme.contains(&format!("--from-file={key}=")),
        "deploy/README.md shows how to create Secret {secret} with key {key}"
    );
    assert!(
        readme.contains("scrim keygen"),
        "README generates the key ring with scrim keygen"
    );

    // Every "env:NAME" credential of the loaded rules is set from a Secret.
    let env_names: Vec<&str> = scrim["env"]
        .as_array()
        .map(|e| e.iter().map(|v| s(&v["name"], "env name")).collect())
        .unwrap_or_default();
    for f in &rule_files {
        for name in env_credentials(&std::fs::read_to_string(f).unwrap()) {
            assert!(
                env_names.contains(&name.as_str()),
                "{}: env:{name} is not set",
                f.display()
            );
            let from = &scrim["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == *name)
                .unwrap()["valueFrom"]["secretKeyRef"];
            assert!(
                from.is_object(),
                "env:{name} comes from a Secret, not a literal"
            );
        }
    }

    // The app sends to the sidecar on loopback, to loaded recipients.
    let prefix = format!("http://127.0.0.1:{}/", config.listen.port());
    let mut seen = 0;
    for app in apps {
        for e in app["env"].as_array().into_iter().flatten() {
            if let Some(rest) = e["value"].as_str().and_then(|v| v.strip_prefix(&prefix)) {
                let r = rest.split('/').next().unwrap();
                assert!(
                    recipients.contains(&r),
                    "{e}: no rule file for recipient {r}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "the app is shown calling {prefix}<recipient>");

    // Probes hit the admin listener of that configuration.
    let port_of = |p: &Value| -> u16 {
        match p {
            Value::Number(n) => u16::try_from(n.as_u64().unwrap()).unwrap(),
            Value::String(name) => scrim["ports"]
                .as_array()
                .and_then(|ps| ps.iter().find(|x| x["name"] == *name))
                .and_then(|x| x["containerPort"].as_u64())
                .map(|n| u16::try_from(n).unwrap())
                .unwrap_or_else(|| panic!("no port named {name}")),
            other => panic!("port {other}"),
        }
    };
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        let get = &scrim[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(port_of(&get["port"]), config.admin.port(), "{probe} port");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert_eq!(
        s(&ann["prometheus.io/port"], "port")
            .parse::<u16>()
            .unwrap(),
        config.admin.port()
    );
    for pm in kind(&docs, "PodMonitor") {
        for ep in pm["spec"]["podMetricsEndpoints"].as_array().unwrap() {
            assert_eq!(port_of(&ep["port"]), config.admin.port());
            assert_eq!(ep["path"], "/metrics");
        }
    }

    // Locked down.
    let sc = &scrim["securityContext"];
    let psc = &spec["securityContext"];
    let either = |k: &str| if sc[k].is_null() { &psc[k] } else { &sc[k] };
    assert_eq!(*either("runAsNonRoot"), true);
    assert!(
        either("runAsUser").as_u64().is_some_and(|u| u != 0),
        "numeric non-root UID"
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(
        sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&Value::from("ALL"))),
        "drop ALL capabilities"
    );
    assert_eq!(either("seccompProfile")["type"], "RuntimeDefault");
    assert_eq!(
        spec["automountServiceAccountToken"], false,
        "scrim never calls the API server"
    );

    // Resources from measurements: the request covers the measured peak, the
    // limit adds the budget of rewritten bodies waiting to be sent whole.
    let req = bytes(s(
        &scrim["resources"]["requests"]["memory"],
        "memory request",
    ));
    let lim = bytes(s(&scrim["resources"]["limits"]["memory"], "memory limit"));
    assert!(
        req >= MEASURED_PEAK_RSS,
        "memory request {req} below the measured peak"
    );
    let buffered = config.limits.buffer_bytes;
    assert!(
        lim >= MEASURED_PEAK_RSS + buffered,
        "memory limit {lim} below peak + limits.buffer_bytes ({})",
        MEASURED_PEAK_RSS + buffered
    );
    assert!(scrim["resources"]["requests"]["cpu"].is_string());

    // The kubelet waits for the drain before SIGKILL.
    let tgps = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let grace = config.limits.shutdown_grace.as_millis() as u64;
    assert!(
        tgps * 1000 >= grace + 5000,
        "terminationGracePeriodSeconds {tgps} s < shutdown grace {grace} ms + 5 s"
    );
}

#[test]
fn admin_port_is_on_no_service_and_only_monitoring_reaches_it() {
    let docs = manifests();
    let config = parse_config("deploy/kubernetes/scrim.toml");
    let admin = config.admin.port();
    let services = kind(&docs, "Service");
    assert!(!services.is_empty());
    for svc in services {
        for p in svc["spec"]["ports"].as_array().unwrap() {
            for k in ["port", "targetPort"] {
                assert_ne!(
                    p[k].as_u64(),
                    Some(u64::from(admin)),
                    "Service exposes the admin port: {p}"
                );
                assert_ne!(p[k].as_u64(), Some(u64::from(config.listen.port())), "{p}");
            }
            assert_ne!(
                p["targetPort"], "admin",
                "Service exposes the admin port: {p}"
            );
        }
    }
    let policies = kind(&docs, "NetworkPolicy");
    assert!(!policies.is_empty());
    let mut admitted = false;
    for np in policies {
        for rule in np["spec"]["ingress"].as_array().into_iter().flatten() {
            let covers_admin = rule["ports"].as_array().is_none_or(|ps| {
                ps.iter()
                    .any(|p| p["port"].as_u64() == Some(u64::from(admin)) || p["port"] == "admin")
            });
            if covers_admin {
                assert!(
                    rule["from"].as_array().is_some_and(|f| !f.is_empty()),
                    "an ingress rule opens the admin port to everyone: {rule}"
                );
                admitted = true;
            }
        }
    }
    assert!(admitted, "Prometheus is admitted to the admin port");
}

#[test]
fn kustomize_builds_when_kubectl_is_installed() {
    if !tool_present("kubectl", "`kubectl kustomize`") {
        return;
    }
    let out = Command::new("kubectl")
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(k8s_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let cms: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| s(&d["metadata"]["name"], "name"))
        .collect();
    assert_eq!(cms.len(), 2, "{cms:?}");
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    for v in dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
    {
        if let Some(name) = v["configMap"]["name"].as_str() {
            assert!(
                cms.contains(&name),
                "volume refers to {name}, generated: {cms:?}"
            );
            assert!(name.len() > "scrim-rules-".len(), "hash-suffixed: {name}");
        }
        if !v["secret"].is_null() {
            assert_eq!(
                v["secret"]["defaultMode"], 0o400,
                "kustomize reads 0400 as octal"
            );
        }
    }
}

// ---------------------------------------------------------------- systemd

/// `[Service]` key -> values, in order (keys may repeat).
fn unit() -> BTreeMap<String, Vec<String>> {
    let text = read("deploy/systemd/scrim.service");
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry(format!("{section}.{}", k.trim()))
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

fn one<'a>(u: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match u.get(&format!("Service.{key}")).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected once, found {other:?}"),
    }
}

fn seconds(v: &str) -> u64 {
    if let Some(n) = v.strip_suffix("min") {
        return n.parse::<u64>().unwrap() * 60;
    }
    v.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("time span {v}"))
}

#[test]
fn systemd_unit_is_sandboxed_and_runs_what_the_cli_accepts() {
    let u = unit();
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        // scrim does not speak sd_notify.
        ("Type", "exec"),
    ] {
        assert_eq!(one(&u, k), v, "{k}");
    }
    assert!(
        u["Service.SystemCallFilter"]
            .iter()
            .any(|f| f == "@system-service"),
        "SystemCallFilter=@system-service"
    );
    assert!(
        one(&u, "DynamicUser") == "yes"
            || u.get("Service.User")
                .is_some_and(|us| us.iter().all(|x| x != "root")),
        "a dynamic or dedicated user"
    );
    let nofile: u64 = one(&u, "LimitNOFILE").parse().unwrap();
    let config = parse_config("deploy/systemd/scrim.toml");
    assert!(
        nofile >= 4 * config.limits.concurrency as u64,
        "LimitNOFILE {nofile}: two sockets per request in flight plus the pool"
    );
    assert!(
        u["Service.ExecReload"]
            .iter()
            .any(|r| r == "/bin/kill -HUP $MAINPID"),
        "reload is SIGHUP"
    );
    let grace = config.limits.shutdown_grace.as_secs();
    assert!(
        seconds(one(&u, "TimeoutStopSec")) >= grace + 5,
        "systemd waits for the drain"
    );

    // The key ring is a credential, found through SCRIM_KEYS_FILE because the
    // configuration names none.
    let (cred, cred_src) = one(&u, "LoadCredential")
        .split_once(':')
        .expect("LoadCredential=NAME:PATH");
    assert!(cred_src.starts_with('/'));
    assert!(
        u["Service.Environment"]
            .iter()
            .any(|e| *e == format!("SCRIM_KEYS_FILE=%d/{cred}")),
        "SCRIM_KEYS_FILE points into the credentials directory"
    );
    assert!(
        !read("deploy/systemd/scrim.toml").contains("\nfile ="),
        "no keys.file in the unit's scrim.toml"
    );

    // ExecStart: the real CLI accepts it, with /etc/scrim mapped to deploy/systemd.
    let exec: Vec<String> = one(&u, "ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(Path::new(&exec[0]).file_name().unwrap(), "scrim");
    assert_serve_starts_until_keys(
        &exec[1..],
        "/etc/scrim/scrim.toml",
        "deploy/systemd/scrim.toml",
    );
    // The reload's rule check, with /etc/scrim/rules mapped to rules/.
    let check = u["Service.ExecReload"]
        .iter()
        .find(|r| r.contains(" check "))
        .expect("ExecReload checks the rules");
    let check: Vec<&str> = check.split_whitespace().collect();
    assert_eq!(check[1..], ["check", "/etc/scrim/rules"]);
    assert_check_passes(&[root().join("rules")]);

    // systemd's own verdict, where systemd-analyze exists.
    if !tool_present("systemd-analyze", "`systemd-analyze verify`") {
        return;
    }
    let dir = scratch("unit");
    let unit_text =
        read("deploy/systemd/scrim.service").replace(&exec[0], env!("CARGO_BIN_EXE_scrim"));
    let path = dir.join("scrim.service");
    std::fs::write(&path, unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    // Unknown keys and bad values are only warnings; they must not occur.
    assert!(
        !err.contains("scrim.service"),
        "systemd-analyze verify: {err}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for scrim.service: "))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        exposure <= 2.0,
        "systemd-analyze security exposure {exposure} (at most 2.0)"
    );
}

//! Property tests, bounded to a few seconds: the configuration parser answers any text with a
//! configuration or diagnostics (never a panic, never a value the runner cannot hold), and any
//! path survives `{files}` through `sh -c` and the argument form byte for byte.

use preflight::config::{self, Command, MAX_DURATION, MAX_JOBS};
use preflight::exec::invocation::invocations;
use proptest::prelude::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn bounded(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Parses `text` as preflight.toml; every diagnostic must render, and what is accepted must
/// be something the runner can hold.
fn parse_never_panics(text: &str) {
    match config::parse(Path::new("preflight.toml"), text) {
        Ok(config) => {
            assert!(config.settings.jobs <= MAX_JOBS);
            for step in config.steps.values() {
                assert!(!step.run.to_string().contains('\0'));
                if let Some(t) = step.timeout {
                    assert!(t <= MAX_DURATION);
                    assert!(std::time::Instant::now().checked_add(t).is_some());
                }
                for name in step.env.keys().chain(config.env.keys()) {
                    assert!(!name.is_empty() && !name.contains(['=', '\0']), "{name:?}");
                }
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty());
            for d in diagnostics {
                d.render(text, "preflight.toml");
            }
        }
    }
}

/// Pieces of preflight.toml, good and bad, for strings that look like configurations.
const TOKENS: &[&str] = &[
    "[steps.a]",
    "[steps.b]",
    "[settings]",
    "[env]",
    "[remote]",
    "[hooks]",
    "[steps.a.env]",
    "[ci]",
    "run",
    "timeout",
    "jobs",
    "cache_max",
    "outputs",
    "inputs",
    "files",
    "needs",
    "env",
    "key_env",
    "retries",
    "endpoint",
    "queue_timeout",
    "pre-commit",
    " = ",
    "=",
    "\n",
    " ",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\"true\"",
    "\"{files}\"",
    "\"a\"",
    "\"b\"",
    "\"1s\"",
    "\"9223372036854775807s\"",
    "\"18446744073709551615ms\"",
    "\"400d\"",
    "\"5GB\"",
    "\"99999999999999999999TB\"",
    "\"A=B\"",
    "\"\"",
    "\"\\u0000\"",
    "\".GIT/hooks\"",
    "\"grpc://h:1\"",
    "0",
    "-1",
    "4294967296",
    "99999999999",
    "9223372036854775807",
    "1e308",
    "true",
    "é",
    "\u{feff}",
    "#",
];

fn toml_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..48).prop_map(|t| t.concat())
}

/// A configuration built as TOML, with random values where users type values.
fn structured() -> impl Strategy<Value = String> {
    let text = || {
        prop_oneof![
            any::<String>(),
            prop::sample::select(TOKENS).prop_map(|t| t.trim_matches('"').to_string()),
            (
                any::<u64>(),
                prop::sample::select(&["s", "ms", "d", "y", "GB", "TiB", ""][..])
            )
                .prop_map(|(n, unit)| format!("{n}{unit}")),
        ]
    };
    (
        text(),
        text(),
        text(),
        text(),
        text(),
        any::<i64>(),
        any::<i64>(),
        text(),
    )
        .prop_map(
            |(run, timeout, env_name, env_value, output, jobs, retries, size)| {
                let mut step = toml::Table::new();
                step.insert("run".into(), run.into());
                step.insert("timeout".into(), timeout.clone().into());
                step.insert("outputs".into(), toml::Value::Array(vec![output.into()]));
                step.insert("inputs".into(), toml::Value::Array(vec!["src/**".into()]));
                step.insert(
                    "key_env".into(),
                    toml::Value::Array(vec![env_name.clone().into()]),
                );
                let mut env = toml::Table::new();
                env.insert(env_name, env_value.into());
                step.insert("env".into(), env.into());
                let mut steps = toml::Table::new();
                steps.insert("a".into(), step.into());
                let mut settings = toml::Table::new();
                settings.insert("jobs".into(), jobs.into());
                settings.insert("cache_max".into(), size.into());
                let mut remote = toml::Table::new();
                remote.insert("endpoint".into(), "grpc://localhost:1".into());
                remote.insert("retries".into(), retries.into());
                remote.insert("queue_timeout".into(), timeout.into());
                let mut whole = toml::Table::new();
                whole.insert("settings".into(), settings.into());
                whole.insert("steps".into(), steps.into());
                whole.insert("remote".into(), remote.into());
                toml::to_string(&whole).unwrap_or_default()
            },
        )
}

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn any_text_is_a_config_or_diagnostics(text in any::<String>()) {
        parse_never_panics(&text);
    }

    #[test]
    fn config_like_text_is_a_config_or_diagnostics(text in toml_ish()) {
        parse_never_panics(&text);
    }

    #[test]
    fn random_values_are_accepted_or_diagnosed(text in structured()) {
        parse_never_panics(&text);
    }

    #[test]
    fn sizes_and_durations_parse_or_say_why(text in any::<String>(), n in any::<u64>()) {
        let _ = config::parse_size(&text);
        let _ = config::parse_duration(&text);
        for unit in ["", "KB", "TiB", "tb"] {
            let _ = config::parse_size(&format!("{n}{unit}"));
            let _ = config::parse_size(&format!("{n}.{n}{unit}"));
        }
        for unit in ["s", "ms", "d", "y", "ns"] {
            if let Ok(d) = config::parse_duration(&format!("{n}{unit}")) {
                prop_assert!(d <= MAX_DURATION);
            }
        }
    }
}

/// A path: any bytes but NUL (which no path holds), at least one.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 1..24)
}

/// Runs every invocation and returns the NUL-separated words they printed, in order.
fn printed(command: &Command, paths: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let paths: Vec<&Path> = paths
        .iter()
        .map(|p| Path::new(OsStr::from_bytes(p)))
        .collect();
    let mut words = Vec::new();
    for inv in invocations(command, Some(&paths)) {
        let out = std::process::Command::new(&inv.program)
            .args(&inv.args)
            .env("LC_ALL", "C")
            .output()
            .expect("the invocation runs");
        assert!(out.status.success(), "{inv:?}: {out:?}");
        words.extend(
            out.stdout
                .split(|&b| b == 0)
                .filter(|w| !w.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    words
}

/// What a command receives for `path`: itself, or `./path` when it starts with a dash.
fn as_received(path: &[u8]) -> Vec<u8> {
    if path.starts_with(b"-") {
        [b"./", path].concat()
    } else {
        path.to_vec()
    }
}

proptest! {
    #![proptest_config(bounded(48))]

    #[test]
    fn any_path_survives_the_shell_and_the_argument_form(
        paths in prop::collection::vec(path_bytes(), 1..6)
    ) {
        let expected: Vec<Vec<u8>> = paths.iter().map(|p| as_received(p)).collect();
        let shell = Command::Shell(
            "for f in {files}; do printf '%s' \"$f\"; printf '\\000'; done".into(),
        );
        prop_assert_eq!(printed(&shell, &paths), expected.clone());
        let argv = Command::Argv(vec![
            "sh".into(),
            "-c".into(),
            "for f in \"$@\"; do printf '%s' \"$f\"; printf '\\000'; done".into(),
            "sh".into(),
            "{files}".into(),
        ]);
        prop_assert_eq!(printed(&argv, &paths), expected);
    }
}

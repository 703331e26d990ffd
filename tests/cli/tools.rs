//! Managed tools: `[tools]`, `preflight.lock`, the shared store, steps that use them.
//! The install tests use the real registries (PyPI, npm, crates.io).

use crate::common::{Repo, accepted_keys, schema_keys};

#[test]
fn a_step_naming_a_tool_not_in_tools_is_an_error_with_its_place() {
    let repo = Repo::with_config(
        "[tools]\nruff = \"pypi:ruff@0.17.5\"\n\n[steps.lint]\nrun = \"ruff check\"\ntools = [\"ruf\"]\n",
    );
    let run = repo.run(&["validate"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("step `lint` uses tool `ruf`, which is not in [tools]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("preflight.toml:6:10"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `ruff`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn tool_specs_are_checked() {
    let cases = [
        ("ruff = \"pypi:ruff\"", "the version is missing"),
        ("ruff = \"pypi:ruff@>=1\"", "is not an exact version"),
        ("ruff = \"pip:ruff@1\"", "did you mean `pypi`?"),
        (
            "x = { url = \"https://e.invalid/x\", sha256 = \"00\", bin = \"x\" }",
            "invalid `sha256` for tool `x`",
        ),
        (
            "x = { url = \"https://e.invalid/x.tar.gz\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"x\" }",
            "is an archive: say where the program is in it",
        ),
        (
            "x = { url = \"https://e.invalid/x\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"../x\" }",
            "invalid `bin` for tool `x`",
        ),
        ("Bad = \"pypi:ruff@1\"", "invalid tool name `Bad`"),
    ];
    for (line, message) in cases {
        let repo = Repo::with_config(&format!("[tools]\n{line}\n[steps.a]\nrun = \"true\"\n"));
        let run = repo.run(&["validate"]);
        run.code(2);
        assert!(run.stderr.contains(message), "{line}: {}", run.stderr);
        assert!(
            run.stderr.contains("preflight.toml:2:"),
            "{line}: {}",
            run.stderr
        );
    }
    let good = Repo::with_config(
        "[tools]\nruff = \"pypi:ruff@0.17.5\"\np = \"npm:@scope/p@1.0.0-rc.1\"\n\
         x = { url = \"https://e.invalid/x.zip\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"x\", path = \"dist/x\" }\n\
         [steps.a]\nrun = \"true\"\ntools = [\"ruff\", \"x\"]\n[steps.b]\nrun = \"true\"\ntools = []\n",
    );
    good.run(&["validate"]).code(0);
}

#[test]
fn the_schema_has_the_tool_keys() {
    let run = Repo::new().run(&["schema"]);
    run.code(0);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("the schema is JSON");
    let config =
        "[tools]\nx = { url = \"https://e.invalid/x\", sha256 = \"00\", bin = \"x\", zzz = 1 }\n";
    assert_eq!(
        schema_keys(&schema, "/definitions/url_tool/properties"),
        accepted_keys(config)
    );
    assert!(
        schema
            .pointer("/definitions/step/properties/tools")
            .is_some()
    );
}

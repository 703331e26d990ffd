//! The serde view of `preflight.toml`: the tables as written, keeping the spans of the values
//! a later check may point at. Nothing here judges a value; `validate` does.

use super::Command;
use super::cache_keys::SizeValue;
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) settings: RawSettings,
    #[serde(default)]
    pub(super) env: IndexMap<Spanned<String>, Spanned<EnvValue>>,
    #[serde(default)]
    pub(super) steps: IndexMap<Spanned<String>, RawStep>,
    #[serde(default)]
    pub(super) hooks: IndexMap<Spanned<String>, Spanned<RawHook>>,
    #[serde(default)]
    pub(super) ci: super::ci::RawCi,
    pub(super) remote: Option<Spanned<super::remote::RawRemote>>,
    #[serde(default)]
    pub(super) tools: IndexMap<Spanned<String>, Spanned<super::tools::RawTool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) jobs: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) fail_fast: bool,
    #[serde(default)]
    pub(super) salt: String,
    pub(super) cache_dir: Option<Spanned<String>>,
    pub(super) cache_max: Option<Spanned<SizeValue>>,
    /// `false`: no step's file reads are observed.
    pub(super) observe: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) run: Option<Spanned<Command>>,
    pub(super) fix: Option<Spanned<Command>>,
    pub(super) dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) env: IndexMap<Spanned<String>, Spanned<EnvValue>>,
    #[serde(default)]
    pub(super) needs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) files: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    /// File types (`shell`, `python`, ...): with `files`, a file must match both.
    #[serde(default)]
    pub(super) types: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) outputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) key_env: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) key_commands: Vec<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    /// `false` keeps the step on this machine (no remote cache, no remote execution).
    pub(super) remote: Option<bool>,
    #[serde(default)]
    pub(super) platform: std::collections::BTreeMap<String, String>,
    /// The `[tools]` the step uses (absent: all of them).
    pub(super) tools: Option<Vec<Spanned<String>>>,
    /// `false`: this step's file reads are not observed.
    pub(super) observe: Option<bool>,
}

/// `pre-commit = ["a", "b"]` or `pre-commit = { steps = ["a"], fix = true }`.
pub(super) struct RawHook {
    pub(super) steps: Vec<Spanned<String>>,
    pub(super) fix: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHookTable {
    pub(super) steps: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) fix: bool,
}

/// An environment value: TOML strings, numbers and booleans all become strings.
pub(super) struct EnvValue(pub(super) String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string (run by `sh -c`) or an array of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    args.push(arg);
                }
                Ok(Command::Argv(args))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawHook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHook;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of step names, or a table { steps = [...], fix = true }")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawHook, A::Error> {
                let mut steps = Vec::new();
                while let Some(step) = seq.next_element()? {
                    steps.push(step);
                }
                Ok(RawHook { steps, fix: false })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHook, A::Error> {
                let t = RawHookTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHook {
                    steps: t.steps,
                    fix: t.fix,
                })
            }
        }
        d.deserialize_any(V)
    }
}

//! The serde view of `[ci]`: the tables as written, with the spans a check may point at.
//! Nothing here judges a value; `validate` and the modules below it do.

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawCi {
    #[serde(default)]
    pub(super) targets: Vec<Spanned<String>>,
    pub(super) install: Option<Spanned<String>>,
    pub(super) allow_dirty: Option<Spanned<AllowDirty>>,
    pub(super) cancel_in_progress: Option<bool>,
    pub(super) permissions: Option<Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    #[serde(default)]
    pub(super) triggers: Option<Spanned<RawTriggers>>,
    #[serde(default)]
    pub(super) matrix: IndexMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    pub(super) cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    pub(super) jobs: IndexMap<Spanned<String>, RawCiJob>,
    #[serde(default)]
    pub(super) github: RawActions,
    #[serde(default)]
    pub(super) forgejo: RawActions,
    #[serde(default)]
    pub(super) gitlab: RawGitlab,
    #[serde(default)]
    pub(super) woodpecker: RawWoodpecker,
    #[serde(default)]
    pub(super) buildkite: RawBuildkite,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTriggers {
    #[serde(default)]
    pub(super) push: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) pull_request: bool,
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) schedule: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) manual: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCiJob {
    pub(super) steps: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) needs: Vec<Spanned<String>>,
    pub(super) matrix: Option<Vec<Spanned<String>>>,
    pub(super) timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) secrets: Vec<Spanned<String>>,
    pub(super) permissions: Option<Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    pub(super) artifacts: Option<Spanned<RawArtifacts>>,
    pub(super) cache: Option<Spanned<RawCache>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) key_files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArtifacts {
    pub(super) paths: Vec<Spanned<String>>,
    pub(super) when: Option<Spanned<String>>,
    pub(super) expire: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActions {
    pub(super) runs_on: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) pins: IndexMap<Spanned<String>, Spanned<RawPin>>,
    #[serde(default)]
    pub(super) os: IndexMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGitlab {
    pub(super) image: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) os: IndexMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWoodpecker {
    pub(super) image: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuildkite {
    #[serde(default)]
    pub(super) agents: IndexMap<Spanned<String>, Spanned<String>>,
}

/// `allow_dirty = true` or `allow_dirty = ["github", ...]`.
pub(super) enum AllowDirty {
    All(bool),
    Targets(Vec<String>),
}

impl<'de> Deserialize<'de> for AllowDirty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AllowDirty;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or a list of CI targets")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AllowDirty, E> {
                Ok(AllowDirty::All(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AllowDirty, A::Error> {
                let mut targets = Vec::new();
                while let Some(t) = seq.next_element::<String>()? {
                    targets.push(t);
                }
                Ok(AllowDirty::Targets(targets))
            }
        }
        d.deserialize_any(V)
    }
}

/// `"<sha>"` or `{ sha = "<sha>", version = "v4.2.2" }`.
pub(super) struct RawPin {
    pub(super) sha: String,
    pub(super) version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPinTable {
    pub(super) sha: String,
    pub(super) version: Option<String>,
}

impl<'de> Deserialize<'de> for RawPin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPin;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a commit SHA, or a table { sha = \"...\", version = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPin, E> {
                Ok(RawPin {
                    sha: v.to_string(),
                    version: None,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawPin, A::Error> {
                let t = RawPinTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawPin {
                    sha: t.sha,
                    version: t.version,
                })
            }
        }
        d.deserialize_any(V)
    }
}

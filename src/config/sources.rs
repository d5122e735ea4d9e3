//! The raw inputs of a configuration: the process environment and the env
//! file's assignments, and where each value came from.
//!
//! Precedence: the process environment wins over the env file (systemd's
//! `EnvironmentFile=` already puts the file into the environment; a value
//! exported by hand in a terminal is the one the operator means).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::envfile;
use super::settings::Setting;

/// Where a value came from, for `check-config`'s listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The process environment, under this name.
    Env(String),
    /// The env file, under this name, at this line.
    File(String, usize),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::File(name, line) => write!(f, "env file {name} (line {line})"),
            Origin::Default => write!(f, "default"),
        }
    }
}

/// The raw inputs: environment variables and the env file's assignments.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The process environment (or a test's stand-in for it).
    pub env: BTreeMap<String, String>,
    /// Assignments read from the env file, in file order.
    pub file: Vec<envfile::Assignment>,
    /// The env file's path, for messages.
    pub file_path: Option<PathBuf>,
    /// Syntax errors in the env file.
    pub file_errors: Vec<envfile::SyntaxError>,
}

impl Sources {
    /// The real process environment, plus `env_file` when given.
    ///
    /// A missing file named explicitly is a problem; reading is not retried.
    pub fn load(env_file: Option<&Path>) -> Result<Sources, String> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let mut sources = Sources {
            env,
            ..Sources::default()
        };
        if let Some(path) = env_file {
            let text = envfile::read_file(path)?;
            let (file, errors) = envfile::parse(&text);
            sources.file = file;
            sources.file_errors = errors;
            sources.file_path = Some(path.to_path_buf());
        }
        Ok(sources)
    }

    /// Sources from literal values: `env` pairs and an env file's `text`
    /// (for tests and tools that do not read the real environment).
    pub fn from_text(env: &[(&str, &str)], text: &str) -> Sources {
        let (file, file_errors) = envfile::parse(text);
        Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file,
            file_path: Some(PathBuf::from(crate::service::paths::ENV_FILE)),
            file_errors,
        }
    }

    /// Finds a setting under any of its names: environment first, then file.
    pub fn lookup(&self, setting: &Setting) -> Option<(String, Origin)> {
        for name in setting.names {
            if let Some(value) = self.env.get(*name) {
                return Some((value.clone(), Origin::Env((*name).to_string())));
            }
        }
        for name in setting.names {
            // The last assignment in a file wins, as with systemd.
            if let Some(a) = self.file.iter().rev().find(|a| a.key == *name) {
                return Some((a.value.clone(), Origin::File(a.key.clone(), a.line)));
            }
        }
        None
    }

    /// The value `run` would use: set under any name (an empty value counts
    /// as unset, as in the old scripts), else the declared default.
    pub fn value(&self, setting: &Setting) -> Option<String> {
        match self.lookup(setting) {
            Some((v, _)) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => setting.default.map(str::to_string),
        }
    }
}

//! Where client commands find their gateway and key: a flag, else an
//! environment variable (`TANDEM_GATEWAY`, `TANDEM_KEY`), else the config file
//! (`--config FILE`, `$TANDEM_CONFIG`, or `~/.config/tandem/config.toml` when
//! it exists), else the default gateway `http://127.0.0.1:8080`.
//!
//! The config file is TOML with two optional keys:
//!
//! ```toml
//! gateway = "http://127.0.0.1:8080"
//! key = "keys/operator-1.json"   # relative to the config file's folder
//! ```

use std::path::{Path, PathBuf};

use tandem_client::{Client, KeyFile};
use tandem_core::SecretKey;

use crate::fail::{Failure, EXIT_LOCAL};

/// The gateway used when nothing else names one.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// Settings every client command shares.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GlobalArgs {
    /// Gateway URL [default: http://127.0.0.1:8080, or `gateway` in the config file].
    #[arg(long, global = true, env = "TANDEM_GATEWAY", value_name = "URL")]
    pub gateway: Option<String>,
    /// Config file (TOML with `gateway` and `key`) [default: ~/.config/tandem/config.toml if present].
    #[arg(long, global = true, env = "TANDEM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The signing key of a command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KeyArg {
    /// Key file to sign with (JSON: name, role, public_key, secret_key) [or `key` in the config file].
    #[arg(long, env = "TANDEM_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// What the config file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// `gateway`.
    pub gateway: Option<String>,
    /// `key`, resolved against the file's folder.
    pub key: Option<PathBuf>,
}

impl ConfigFile {
    /// Parse a config file's text; `dir` is where relative key paths start.
    pub fn parse(text: &str, dir: &Path) -> Result<ConfigFile, String> {
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
        let mut cfg = ConfigFile::default();
        for (k, v) in doc.iter() {
            let s = v.as_str().ok_or_else(|| format!("`{k}` must be a string"))?;
            match k {
                "gateway" => cfg.gateway = Some(s.to_string()),
                "key" => cfg.key = Some(dir.join(s)),
                other => tracing::warn!(key = other, "unknown key in the config file, ignored"),
            }
        }
        Ok(cfg)
    }
}

fn default_config_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".config/tandem/config.toml");
    p.exists().then_some(p)
}

impl GlobalArgs {
    /// The config file in effect (an explicitly named one must exist).
    pub fn config_file(&self) -> Result<ConfigFile, Failure> {
        let path = match &self.config {
            Some(p) => p.clone(),
            None => match default_config_path() {
                Some(p) => p,
                None => return Ok(ConfigFile::default()),
            },
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| Failure::new(EXIT_LOCAL, "bad_config", format!("{}: {e}", path.display())))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        ConfigFile::parse(&text, &dir).map_err(|e| Failure::new(EXIT_LOCAL, "bad_config", format!("{}: {e}", path.display())))
    }

    /// The gateway URL in effect.
    pub fn gateway_url(&self) -> Result<String, Failure> {
        if let Some(g) = &self.gateway {
            return Ok(g.clone());
        }
        Ok(self.config_file()?.gateway.unwrap_or_else(|| DEFAULT_GATEWAY.to_string()))
    }

    /// Connect to the gateway in effect.
    pub async fn connect(&self) -> Result<Client, Failure> {
        let url = self.gateway_url()?;
        tracing::debug!(%url, "connecting");
        Ok(Client::connect(&url).await?)
    }

    /// The key file in effect: `--key`/`TANDEM_KEY`, else the config's `key`.
    pub fn key_path(&self, key: &KeyArg) -> Result<PathBuf, Failure> {
        if let Some(k) = &key.key {
            return Ok(k.clone());
        }
        self.config_file()?
            .key
            .ok_or_else(|| Failure::usage("no key file: pass --key FILE, set TANDEM_KEY, or set `key` in the config file"))
    }

    /// Load the key in effect.
    pub fn load_key(&self, key: &KeyArg) -> Result<(KeyFile, SecretKey), Failure> {
        load_key_file(&self.key_path(key)?)
    }
}

/// Load and check a key file.
pub fn load_key_file(path: &Path) -> Result<(KeyFile, SecretKey), Failure> {
    let file = KeyFile::load(path)?;
    let secret = file.secret().map_err(|reason| Failure::new(EXIT_LOCAL, "bad_key", format!("{}: {reason}", path.display())))?;
    Ok((file, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_gives_gateway_and_a_key_relative_to_itself() {
        let cfg = ConfigFile::parse("gateway = \"http://g:1\"\nkey = \"k/op.json\"\n", Path::new("/etc/tandem")).expect("parse");
        assert_eq!(cfg.gateway.as_deref(), Some("http://g:1"));
        assert_eq!(cfg.key, Some(PathBuf::from("/etc/tandem/k/op.json")));
        let abs = ConfigFile::parse("key = \"/abs/k.json\"\n", Path::new("/etc")).expect("parse");
        assert_eq!(abs.key, Some(PathBuf::from("/abs/k.json")));
        assert!(ConfigFile::parse("gateway = 3\n", Path::new("/")).is_err());
        assert!(ConfigFile::parse("gateway = \n", Path::new("/")).is_err());
    }
}

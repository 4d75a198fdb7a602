//! `tandem keys new|show`: create a key file, or show whose it is.

use std::path::PathBuf;

use serde_json::json;
use tandem_client::KeyFile;

use super::print_json;
use crate::fail::{Failure, EXIT_LOCAL};
use crate::settings::{GlobalArgs, KeyArg};

/// Roles a key file may name.
const ROLES: [&str; 6] = ["admin", "supplier", "operator", "inspector", "courier", "gateway"];

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new random identity in a key file (never overwrites one).
    ///
    /// The key still has to be registered on L1 by an administrator before it
    /// can sign steps.
    ///
    /// Example: tandem keys new --name operator-9 --role operator --out operator-9.json
    New {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role: admin, supplier, operator, inspector, courier or gateway.
        #[arg(long)]
        role: String,
        /// Where to write it [default: NAME.json].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show a key file's name, role and public key (never the secret).
    ///
    /// Example: tandem keys show --key .devnet/keys/operator-1.json
    Show {
        #[command(flatten)]
        key: KeyArg,
    },
}

pub fn run(cmd: KeysCommand, g: &GlobalArgs) -> Result<(), Failure> {
    match cmd {
        KeysCommand::New { name, role, out } => {
            if !ROLES.contains(&role.as_str()) {
                return Err(Failure::usage(format!("unknown role {role:?}; one of {}", ROLES.join(", "))));
            }
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(Failure::usage(format!("bad name {name:?}: no spaces or slashes")));
            }
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.json")));
            if out.exists() {
                return Err(Failure::new(EXIT_LOCAL, "exists", format!("{} exists; refusing to overwrite it", out.display())));
            }
            let file = KeyFile::generate(&name, &role);
            file.save(&out)?;
            tracing::info!(path = %out.display(), %name, %role, "key file written");
            if g.json {
                print_json(&json!({ "name": file.name, "role": file.role, "public_key": file.public_key, "path": out }));
            } else {
                println!("wrote {} ({} {}, readable by you only)", out.display(), file.role, file.name);
                println!("public key: {}", file.public_key);
                println!("an administrator must register this key on L1 before it can sign steps");
            }
            Ok(())
        }
        KeysCommand::Show { key } => {
            let path = g.key_path(&key)?;
            let (file, _) = crate::settings::load_key_file(&path)?;
            if g.json {
                print_json(&json!({ "name": file.name, "role": file.role, "public_key": file.public_key, "path": path }));
            } else {
                println!("name:       {}", file.name);
                println!("role:       {}", file.role);
                println!("public key: {}", file.public_key);
                println!("file:       {}", path.display());
            }
            Ok(())
        }
    }
}

//! Finding or installing the pinned CometBFT binary.
//!
//! The version is pinned exactly because `@latest` resolves to the v1.x line, which the Rust
//! ABCI crates in this workspace do not speak. Installing goes through `go install`, the one
//! route that works on a fresh machine that only reaches package registries (the Go module
//! proxy), so nothing prebuilt is downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

/// The CometBFT release this project is built and tested against.
pub const COMETBFT_VERSION: &str = "0.38.25";

/// Serialises installs within one process: parallel tests would otherwise run several
/// `go install`s writing the same binary at once.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Where tools such as CometBFT live: `$TANDEM_TOOLS_DIR` if set, else `<workspace>/.tools`.
///
/// The workspace root is derived from this crate's manifest dir at compile time (two levels
/// up from `crates/tandem-devnet`), so it works from any current directory.
pub fn default_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TANDEM_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).unwrap_or(manifest).join(".tools")
}

/// Runs `<bin> version` and returns what it prints, trimmed.
pub fn cometbft_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin).arg("version").output().with_context(|| format!("running {} version", bin.display()))?;
    if !out.status.success() {
        bail!("{} version failed ({}): {}", bin.display(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Returns `tools_dir/bin/cometbft`, installing CometBFT v0.38.25 there first with
/// `go install` unless a binary of exactly that version is already present.
pub fn ensure_cometbft(tools_dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_with_go(tools_dir, Path::new("go"))
}

/// [`ensure_cometbft`] with the `go` command given, so tests can exercise the error path.
fn ensure_with_go(tools_dir: &Path, go: &Path) -> anyhow::Result<PathBuf> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let bin_dir = tools_dir.join("bin");
    let bin = bin_dir.join("cometbft");
    if bin.exists() {
        match cometbft_version(&bin) {
            Ok(v) if v == COMETBFT_VERSION => return Ok(bin),
            Ok(v) => eprintln!("found CometBFT {v} at {}, but this project needs {COMETBFT_VERSION}", bin.display()),
            Err(e) => eprintln!("found {} but could not run it: {e:#}", bin.display()),
        }
    }

    std::fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    // GOBIN must be absolute or `go install` refuses it.
    let bin_dir = std::path::absolute(&bin_dir)?;
    let module = format!("github.com/cometbft/cometbft/cmd/cometbft@v{COMETBFT_VERSION}");
    eprintln!(
        "installing CometBFT v{COMETBFT_VERSION} into {} with go install {module} \
         (needs Go >= 1.22.11; this takes a few minutes the first time) ...",
        bin_dir.display()
    );
    let out = match Command::new(go).args(["install", &module]).env("GOBIN", &bin_dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "CometBFT v{COMETBFT_VERSION} is not installed at {} and `go` is not on PATH: \
             install Go (>= 1.22.11) and retry, or set TANDEM_TOOLS_DIR to a directory whose \
             bin/ holds cometbft {COMETBFT_VERSION}",
            bin.display()
        ),
        Err(e) => return Err(e).context("running go install"),
    };
    if !out.status.success() {
        bail!("go install {module} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let v = cometbft_version(&bin).context("checking the freshly installed cometbft")?;
    if v != COMETBFT_VERSION {
        bail!("go install produced CometBFT {v}, expected {COMETBFT_VERSION}");
    }
    eprintln!("installed CometBFT {v} at {}", bin.display());
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_go_gives_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = ensure_with_go(tmp.path(), &tmp.path().join("no-such-go")).expect_err("must fail without go");
        let msg = format!("{err:#}");
        assert!(msg.contains("`go` is not on PATH"), "{msg}");
        assert!(msg.contains(COMETBFT_VERSION), "{msg}");
    }

    #[test]
    fn failing_go_install_reports_its_stderr() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fake_go = tmp.path().join("go");
        std::fs::write(&fake_go, "#!/bin/sh\necho 'proxy unreachable' >&2\nexit 1\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_go, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = ensure_with_go(&tmp.path().join("tools"), &fake_go).expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("proxy unreachable"), "{msg}");
    }

    #[test]
    fn tools_dir_is_under_the_workspace_root() {
        if std::env::var_os("TANDEM_TOOLS_DIR").is_none() {
            let dir = default_tools_dir();
            assert!(dir.ends_with(".tools"));
            assert!(dir.parent().is_some_and(|root| root.join("Cargo.toml").exists()));
        }
    }
}

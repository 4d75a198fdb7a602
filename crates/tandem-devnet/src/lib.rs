//! `tandem-devnet`: generates and runs a local network of N real CometBFT validators, each
//! talking ABCI to its own Tandem L1 app process, all on this one machine.
//!
//! Every node gets its own loopback address (`base_ip + i`) so that all nodes can keep the
//! standard CometBFT ports and so that parallel test suites can each use a `127.0.N.x` range of
//! their own without port clashes.
//!
//! The pieces, in the order a caller uses them:
//! - [`ensure_cometbft`] finds (or `go install`s) the pinned CometBFT binary;
//! - [`generate`] writes homes, configs, a shared genesis with demo identities, and a
//!   [`Layout`] (persisted as `devnet.json`);
//! - [`Devnet::start`] checks that no other process holds its addresses ([`ensure_free`]),
//!   runs the processes and supervises them (kill/restart for fault tests);
//! - [`cli`] is the glue for `tandem up` / `tandem down`.

pub mod cli;
mod devnet;
mod generate;
mod install;
mod keys;
mod layout;
mod ports;
mod profile;
pub mod rpc;

pub use cli::{bring_up, run_down, run_up, shutdown_signal, DownArgs, UpArgs};
pub use devnet::{devnet_niceness, AppMode, Devnet, ProcInfo, ProcKind, NICE_ENV};
pub use generate::{generate, DevnetSpec};
pub use install::{cometbft_version, default_tools_dir, ensure_cometbft, COMETBFT_VERSION};
pub use keys::{load_keys, DemoKey, DEMO_IDENTITIES};
pub use layout::{Layout, NodeLayout};
pub use ports::ensure_free;
pub use profile::{timeouts, Profile};

//! `cargo xtask setup`: the install steps live in scripts/setup.sh so they also work before
//! any Rust is built.
use std::process::Command;

use crate::util;

pub(crate) fn run() -> anyhow::Result<()> {
    util::run(Command::new("bash").arg(util::workspace().join("scripts/setup.sh")))
}

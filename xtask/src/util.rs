//! Running commands: each one printed, and a failure names the command line.
use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, bail};

pub(crate) fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    eprintln!("+ {}", line(cmd));
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(workspace());
    }
    cmd.status().with_context(|| format!("could not start `{}`", line(cmd)))
}

/// Runs `cmd` and fails unless it succeeds.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = status(cmd)?;
    if !st.success() {
        bail!("`{}` failed: {st}", line(cmd));
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

//! `cargo xtask fresh`: does the README's set-up work on a fresh machine? `scripts/setup.sh` and
//! the builds the tests need (host, the eBPF crate, the arm64 cross build) run inside a clean
//! Debian bookworm container made from the project's own debootstrap base, with nothing from this
//! machine but
//! - the checkout (its tracked files as they are in the work tree, or a commit's with `--rev`),
//! - the Rust toolchain the README assumes (rustup's `~/.rustup` and `~/.cargo/bin`, mounted as
//!   overlays: what the container writes there is thrown away, and Debian's toolchain link that
//!   setup makes is removed first so setup has to make it),
//! - apt's downloaded-package cache (`.tools/apt-archives`, which setup fills on the host too), so
//!   packages are not downloaded again,
//! - and the host's CA bundle, read-only, because this machine's network passes a TLS proxy that
//!   only the host trusts (cargo and pip reach their registries through it).
//!
//! A package that setup leaves out shows as setup's own one-line error (its proofs) or as the
//! failing build, whose output is printed. Machines of this kind have no Docker engine: podman
//! with runc, as for the image (`tests/podman/containers.conf`).
use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{image, util};

/// Where the container finds the checkout.
const SRC: &str = "/src";

/// The host's binaries the integration tests run, the eBPF crate built into memwatch by
/// memwatch/build.rs with Debian's toolchain.
pub(crate) fn host_build() -> Command {
    let mut c = util::cargo();
    c.args(["build", "--bins"]);
    c
}

/// memwatch and the workload for the arm64 VM tests, cross-compiled as the image's arm64
/// binary is.
pub(crate) fn arm64_build() -> Command {
    let mut c = image::Arch::Arm64.cargo_build();
    c.args(["--bins", "-p", "memwatch", "-p", "memwatch-tests"]);
    c
}

/// `cmd` as one shell line (`VAR=value program 'arg' …`), its program named `program` when given.
fn shell_line(cmd: &Command, program: Option<&str>) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let envs = cmd.get_envs().filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))));
    let prog = program.map_or_else(|| quote(cmd.get_program()), String::from);
    envs.chain(std::iter::once(prog)).chain(cmd.get_args().map(quote)).collect::<Vec<_>>().join(" ")
}

/// What the container runs: setup as the README says, then the builds, each timed. The
/// commands are this xtask's, so an older commit (`--rev`) is built the way the tests build now.
fn script() -> String {
    let step = |what: &str, line: String| {
        format!(
            "t=$SECONDS; echo 'fresh: {what}' >&2; {line} || {{ echo \"fresh: {what} failed on a fresh machine\" >&2; exit 1; }}; echo \"fresh: {what} took $((SECONDS - t)) s\" >&2\n"
        )
    };
    // Debian's toolchain under rustup's name is setup's to make. Packages' services are not
    // started by their installation, as on this kind of machine (Debian's container images ship
    // this policy too).
    let mut s = String::from(
        "set -u\nrm -f /root/.rustup/toolchains/debian-web\nprintf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d\n",
    );
    s += &step("scripts/setup.sh", "bash scripts/setup.sh".into());
    s += &step("the host build", shell_line(&host_build(), Some("cargo")));
    s += &step("the arm64 cross build", shell_line(&arm64_build(), None));
    s
}

/// The checkout's tracked files into `dest`: as of `rev`, or as in the work tree (`git stash
/// create` makes a commit of its changes without touching it; none when it is clean).
fn export(dest: &Path, rev: Option<&str>) -> anyhow::Result<String> {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest)?;
    let ws = util::workspace();
    let git = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("git").arg("-C").arg(&ws).args(args).output().context("git")?;
        if !out.status.success() {
            bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = match rev {
        Some(r) => git(&["rev-parse", "--verify", &format!("{r}^{{commit}}")])?,
        None => Some(git(&["stash", "create"])?).filter(|c| !c.is_empty()).map_or_else(|| git(&["rev-parse", "HEAD"]), Ok)?,
    };
    let script = format!("git -C '{}' archive --format=tar '{commit}' | tar -C '{}' -x", ws.display(), dest.display());
    util::run(Command::new("bash").args(["-o", "pipefail", "-c", &script]))?;
    Ok(commit)
}

/// podman's cgroups of one container, which it leaves behind (containers.md), and its parent
/// directories where they did not exist before.
struct Cgroups {
    cidfile: std::path::PathBuf,
    new_parents: Vec<std::path::PathBuf>,
}

impl Cgroups {
    fn before(cidfile: std::path::PathBuf) -> Cgroups {
        let _ = fs::remove_file(&cidfile);
        let new_parents = fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| h.path().join("libpod_parent"))
            .filter(|p| !p.exists())
            .collect();
        Cgroups { cidfile, new_parents }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if let Ok(id) = fs::read_to_string(&self.cidfile) {
            for h in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                let _ = fs::remove_dir(h.path().join("libpod_parent").join(format!("libpod-{}", id.trim())));
            }
        }
        for p in &self.new_parents {
            let _ = fs::remove_dir(p.join("conmon"));
            let _ = fs::remove_dir(p);
        }
        let _ = fs::remove_file(&self.cidfile);
    }
}

/// `cargo xtask fresh [--rev REV]`.
pub(crate) fn run(rev: Option<&str>) -> anyhow::Result<()> {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask fresh runs a container as root: run it as root");
    }
    // The host's own set-up gives podman, debootstrap and the package cache.
    crate::setup::run()?;
    let base = image::base(image::Arch::Amd64)?;
    let ws = util::workspace();
    let work = ws.join("target/fresh");
    let src = work.join("src");
    let commit = export(&src, rev)?;
    eprintln!("fresh: checking {commit} ({}) in a clean container from {base}", rev.unwrap_or("the work tree"));
    let home = std::env::var("HOME").context("HOME")?;
    let cache = ws.join(".tools/apt-archives");
    fs::create_dir_all(cache.join("partial"))?;
    let ca = "/etc/ssl/certs/ca-certificates.crt";
    let cgroups = Cgroups::before(work.join("cid"));
    let mut run = image::tool("podman")?;
    run.args(["run", "--rm", "--privileged", "--network", "host", "--workdir", SRC]);
    run.arg("--cidfile").arg(&cgroups.cidfile);
    run.arg("-v").arg(format!("{}:{SRC}", src.display()));
    run.arg("-v").arg(format!("{}:{SRC}/.tools/apt-archives", cache.display()));
    run.arg("-v").arg(format!("{home}/.rustup:/root/.rustup:O"));
    run.arg("-v").arg(format!("{home}/.cargo/bin:/root/.cargo/bin:O"));
    if Path::new(ca).exists() {
        run.arg("-v").arg(format!("{ca}:/run/host-ca.crt:ro"));
        for var in ["CARGO_HTTP_CAINFO", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            run.args(["-e", &format!("{var}=/run/host-ca.crt")]);
        }
    }
    run.args(["-e", "PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-e", "HOME=/root"]);
    // Builds made once and thrown away: no debug info, no incremental state (what they check is
    // that everything compiles and links, not how it debugs).
    run.args(["-e", "CARGO_PROFILE_DEV_DEBUG=0", "-e", "CARGO_INCREMENTAL=0"]);
    run.arg(&base);
    run.args(["bash", "-c", &script()]);
    let st = util::status(&mut run)?;
    drop(cgroups);
    let _ = fs::remove_dir_all(&src);
    if !st.success() {
        bail!("the fresh-machine check failed after {:.0} s: see the first error above", started.elapsed().as_secs_f64());
    }
    eprintln!("fresh: setup and the builds passed in a clean bookworm container in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

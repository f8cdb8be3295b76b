//! `cargo xtask image`: memwatch's OCI image, built without a Docker engine (Debian's podman,
//! buildah and skopeo, with runc: crun refuses this project's hybrid-cgroup hosts).
//!
//! The default path assembles `deploy/Dockerfile`'s runtime stage from the binary built on the
//! host: a Debian bookworm base (`localhost/debian:bookworm-slim`, made by debootstrap where no
//! registry is reachable, trimmed as Docker's slim image is), the binary at
//! `/usr/local/bin/memwatch`, the Dockerfile's entrypoint and command, OCI annotations (source,
//! revision, version). `--dockerfile` builds through `deploy/Dockerfile` itself (about 7 min on
//! 2 cores), mounting the host's CA bundle read-only for cargo (never baked in). Either way the
//! image is tagged `localhost/memwatch:VERSION` and `:latest` in podman's store and written as
//! an OCI layout (an image index) to `target/image/oci`.
//!
//! Only linux/amd64 is built here: an arm64 base needs debootstrap's second stage to run arm64
//! code (emulation), which this does not set up; the arm64 binary is tested in CI's arm64 VMs.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{setup, util};

/// The base the image is built on, as the Dockerfile names it.
pub(crate) const BASE: &str = "localhost/debian:bookworm-slim";
pub(crate) const IMAGE: &str = "localhost/memwatch";

/// The Dockerfile's runtime stage, as buildah config: entrypoint and command.
const ENTRYPOINT: &str = r#"["/usr/local/bin/memwatch"]"#;
const CMD: &str = r#"["serve", "--listen", "0.0.0.0:9753"]"#;

fn dir() -> PathBuf {
    util::workspace().join("target/image")
}

/// podman's and buildah's settings for this machine kind (`tests/podman/containers.conf`, shared
/// with the container tests; the host's /etc stays untouched).
pub(crate) fn containers_conf() -> anyhow::Result<PathBuf> {
    let p = util::workspace().join("tests/podman/containers.conf");
    if !p.exists() {
        bail!("{} missing", p.display());
    }
    Ok(p)
}

/// A command of podman's family with our settings.
pub(crate) fn tool(name: &str) -> anyhow::Result<Command> {
    let mut c = Command::new(name);
    c.env("CONTAINERS_CONF", containers_conf()?);
    Ok(c)
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Debian mirror apt uses here (the base is made from the same one).
fn mirror() -> String {
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default()
        + &fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    sources
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let uri =
                l.strip_prefix("URIs:").map(str::trim).or_else(|| l.strip_prefix("deb ").and_then(|r| r.split_whitespace().next()))?;
            (!uri.contains("security")).then(|| uri.to_string())
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// `localhost/debian:bookworm` and `:bookworm-slim`, made by debootstrap unless podman has them.
fn base() -> anyhow::Result<()> {
    if tool("podman")?.args(["image", "exists", BASE]).status()?.success() {
        return Ok(());
    }
    let rootfs = dir().join("rootfs");
    let _ = fs::remove_dir_all(&rootfs);
    fs::create_dir_all(dir())?;
    util::run(Command::new("debootstrap").args(["--variant=minbase", "bookworm"]).arg(&rootfs).arg(mirror()))?;
    // As Docker's slim images: no documentation but the copyright files, no man pages, no
    // locales, no apt lists or caches.
    for d in ["usr/share/man", "usr/share/locale", "usr/share/info", "var/cache/apt", "var/lib/apt/lists"] {
        let p = rootfs.join(d);
        if p.exists() {
            for e in fs::read_dir(&p)? {
                let e = e?.path();
                if e.is_dir() { fs::remove_dir_all(&e)? } else { fs::remove_file(&e)? }
            }
        }
    }
    util::run(Command::new("find").arg(rootfs.join("usr/share/doc")).args(["-type", "f", "!", "-name", "copyright", "-delete"]))?;
    // Apt's sources as Debian's own images have them: the release, its updates and its
    // security archive (Debian's LLVM 22, which the Dockerfile's build stage installs, is only
    // in bookworm-security).
    let security = if mirror().contains("deb.debian.org") {
        "http://deb.debian.org/debian-security".to_string()
    } else {
        mirror().replace("/debian", "/debian-security")
    };
    let _ = fs::remove_file(rootfs.join("etc/apt/sources.list"));
    fs::create_dir_all(rootfs.join("etc/apt/sources.list.d"))?;
    fs::write(
        rootfs.join("etc/apt/sources.list.d/debian.sources"),
        format!(
            "Types: deb\nURIs: {}\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            mirror()
        ),
    )?;
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("tar")?;
    let st = tool("podman")?.args(["import", "-", "localhost/debian:bookworm"]).stdin(tar.stdout.unwrap()).status()?;
    if !st.success() {
        bail!("podman import failed: {st}");
    }
    util::run(tool("podman")?.args(["tag", "localhost/debian:bookworm", BASE]))?;
    fs::remove_dir_all(&rootfs)?;
    Ok(())
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The OCI annotations (and labels) every build carries.
fn annotations() -> anyhow::Result<Vec<(String, String)>> {
    let revision = output(Command::new("git").arg("-C").arg(util::workspace()).args(["rev-parse", "HEAD"]))?;
    Ok(vec![
        ("org.opencontainers.image.source".into(), "https://github.com/memwatch/memwatch".into()),
        ("org.opencontainers.image.revision".into(), revision),
        ("org.opencontainers.image.version".into(), version()),
        ("org.opencontainers.image.title".into(), "memwatch".into()),
    ])
}

/// The fast path: the runtime stage assembled from `binary`.
fn assemble(binary: &Path) -> anyhow::Result<()> {
    let ctr = output(tool("buildah")?.args(["from", BASE]))?;
    let result = (|| {
        util::run(tool("buildah")?.args(["copy", "--chmod", "0755", &ctr]).arg(binary).arg("/usr/local/bin/memwatch"))?;
        let mut config = tool("buildah")?;
        config.args(["config", "--entrypoint", ENTRYPOINT, "--cmd", CMD]);
        for (k, v) in annotations()? {
            config.args(["--annotation", &format!("{k}={v}"), "--label", &format!("{k}={v}")]);
        }
        util::run(config.arg(&ctr))?;
        util::run(tool("buildah")?.args(["commit", "--quiet", "--format", "oci", &ctr, &format!("{IMAGE}:{}", version())]))
    })();
    let _ = tool("buildah")?.args(["rm", &ctr]).output();
    result
}

/// Through `deploy/Dockerfile`, with the host's CA bundle for cargo mounted at build time only.
fn dockerfile() -> anyhow::Result<()> {
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let cargo_config = dir().join("cargo-config.toml");
    fs::write(&cargo_config, "[http]\ncainfo = \"/run/host-ca.crt\"\n")?;
    let mut build = tool("podman")?;
    build.args(["build", "--network", "host", "-f", "deploy/Dockerfile", "-t", &format!("{IMAGE}:{}", version())]);
    build.arg("-v").arg(format!("{}:/run/host-ca.crt:ro", ca.display()));
    build.arg("-v").arg(format!("{}:/root/.cargo/config.toml:ro", cargo_config.display()));
    for (k, v) in annotations()? {
        build.args(["--annotation", &format!("{k}={v}"), "--label", &format!("{k}={v}")]);
    }
    util::run(build.arg("."))
}

/// `cargo xtask image`: set up, then [`build`].
pub(crate) fn run(dockerfile_path: bool) -> anyhow::Result<()> {
    setup::run()?;
    build(dockerfile_path)
}

/// Builds the image (`dockerfile_path`: through deploy/Dockerfile) and writes its OCI layout.
pub(crate) fn build(dockerfile_path: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    base()?;
    if dockerfile_path {
        dockerfile()?;
    } else {
        util::run(util::cargo().args(["build", "--release", "--package", "memwatch", "--bin", "memwatch"]))?;
        assemble(&util::workspace().join("target/release/memwatch"))?;
    }
    let tag = format!("{IMAGE}:{}", version());
    util::run(tool("podman")?.args(["tag", &tag, &format!("{IMAGE}:latest")]))?;
    let oci = dir().join("oci");
    let _ = fs::remove_dir_all(&oci);
    fs::create_dir_all(dir())?;
    util::run(tool("skopeo")?.args(["copy", "--quiet", &format!("containers-storage:{tag}")]).arg(format!(
        "oci:{}:{}",
        oci.display(),
        version()
    )))?;
    let size = output(tool("podman")?.args(["image", "inspect", &tag, "--format", "{{.Size}}"]))?;
    eprintln!(
        "image {tag} (linux/amd64) built in {:.0} s: {:.1} MB; OCI layout in {}",
        started.elapsed().as_secs_f64(),
        size.parse::<f64>().unwrap_or(0.0) / 1e6,
        oci.display()
    );
    Ok(())
}

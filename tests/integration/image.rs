//! The image run as the DaemonSet runs it: the settings are read from the DaemonSet that
//! `kubectl kustomize deploy/tls` renders (the base with TLS, client certificates and basic auth
//! on both doors: capabilities, privilege, seccomp, read-only root, host PID, memory and CPU
//! limits, host mounts, the web configuration's Secret as `deploy/tls/make-secrets.sh` makes it,
//! arguments and their `$(POD_IP)`) and translated to podman (runc), not written out by hand. The image is `localhost/memwatch:latest`, built by
//! `cargo xtask image` (which `cargo xtask test` runs first). The node's kubelet log layout, which
//! only names containers, is made by the test for the sibling container it starts; everything
//! else (kernel, cgroups, probes, the OOM kill) is real.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::util::{self, programs};

const IMAGE: &str = "localhost/memwatch:latest";
const BASE: &str = "localhost/debian:bookworm-slim";
/// The pod's IP: a loopback address of its own, so its port cannot clash with other daemons.
const POD_IP: &str = "127.0.0.2";
/// The pod's own loopback, where the API door listens: podman runs it in the host's network
/// here, so it gets an address of its own too (in a pod, 127.0.0.1 is the pod's alone).
const POD_LOOPBACK: &str = "127.0.0.3";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", workspace().join("tests/podman/containers.conf"));
    c
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The DaemonSet as `kubectl apply -k deploy/tls` would create it, as JSON.
fn daemonset() -> Value {
    let kubectl = workspace().join(".tools/venv/bin/kubectl");
    let yaml = run(Command::new(kubectl).arg("kustomize").arg(workspace().join("deploy/tls")));
    let mut py = Command::new("python3");
    py.args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"]);
    py.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = py.spawn().expect("python3 with PyYAML (Debian's python3-yaml)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet in deploy/")
}

/// Kubernetes quantities as podman takes them: `128Mi` -> bytes, `500m` -> CPUs.
fn bytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        u => panic!("unit {u}"),
    }
}

fn cpus(q: &str) -> f64 {
    q.strip_suffix('m').map_or_else(|| q.parse().unwrap(), |m| m.parse::<f64>().unwrap() / 1000.0)
}

/// Mount points at or below `path` on this host (a recursive bind's submounts).
fn mounts_under(path: &str) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == path || m.starts_with(&format!("{path}/")))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The node the pod runs on: where its hostPaths point. The cgroup hierarchy, tracefs and
/// `/proc` are the host's own; the kubelet's log directories and the journal's directory are
/// the test's, so that nothing of the host's is written.
struct Node {
    dir: tempfile::TempDir,
    /// The memwatch-web Secret's files (make-secrets.sh's, for the pod's two addresses).
    secrets: PathBuf,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let secrets = crate::web::secrets(&dir.path().join("secrets"), &[POD_IP, POD_LOOPBACK]);
        Node { dir, secrets }
    }

    /// How Prometheus and a person speak to the pod: its CA, the client certificate, the user.
    fn client(&self) -> Client {
        Client {
            agent: crate::web::agent(&self.secrets, true),
            auth: crate::web::basic("prometheus", &crate::web::password(&self.secrets)),
        }
    }
}

struct Client {
    agent: ureq::Agent,
    auth: String,
}

impl Client {
    fn get(&self, base: &str, path: &str) -> Option<(u16, String)> {
        match self.agent.get(&format!("{base}{path}")).set("Authorization", &self.auth).timeout(Duration::from_secs(5)).call() {
            Ok(r) => Some((r.status(), r.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(code, r)) => Some((code, r.into_string().unwrap_or_default())),
            Err(_) => None,
        }
    }
}

impl Node {
    fn host_path(&self, path: &str) -> PathBuf {
        match path {
            "/var/log/pods" | "/var/log/containers" | "/var/lib/memwatch" => {
                let p = self.dir.path().join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&p).unwrap();
                p
            }
            other => PathBuf::from(other),
        }
    }
}

/// `podman run` arguments for the DaemonSet's pod, translated from its spec.
fn pod_args(ds: &Value, node: &Node, name: &str) -> Vec<String> {
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    let mut a: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into(), "--network".into(), "host".into()];
    if spec["hostPID"] == true {
        a.extend(["--pid".into(), "host".into()]);
    }
    assert_eq!(sc["privileged"], false, "the DaemonSet is not privileged");
    if let Some(uid) = sc["runAsUser"].as_u64() {
        a.extend(["--user".into(), uid.to_string()]);
    }
    if sc["readOnlyRootFilesystem"] == true {
        a.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        a.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if sc["seccompProfile"]["type"] == "Unconfined" {
        a.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
    for d in sc["capabilities"]["drop"].as_array().unwrap() {
        a.extend(["--cap-drop".into(), d.as_str().unwrap().into()]);
    }
    for add in sc["capabilities"]["add"].as_array().unwrap() {
        a.extend(["--cap-add".into(), add.as_str().unwrap().into()]);
    }
    let limits = &c["resources"]["limits"];
    if let Some(m) = limits["memory"].as_str() {
        a.extend(["--memory".into(), bytes(m).to_string(), "--memory-swap".into(), bytes(m).to_string()]);
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        a.extend(["--cpus".into(), cpus(cpu).to_string()]);
    }
    let volumes = spec["volumes"].as_array().unwrap();
    for m in c["volumeMounts"].as_array().unwrap() {
        let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
        let dst = m["mountPath"].as_str().unwrap();
        let ro = m["readOnly"] == true;
        if v["secret"]["secretName"] == "memwatch-web" {
            a.extend(["-v".into(), format!("{}:{dst}:ro", node.secrets.display())]);
            continue;
        }
        let src = v["hostPath"]["path"].as_str().expect("hostPath and the web Secret volumes only");
        if ro && m["recursiveReadOnly"].is_string() {
            // Recursive read-only, as the kubelet does it: every submount read-only too.
            for sub in mounts_under(src) {
                a.extend(["-v".into(), format!("{sub}:{dst}{}:ro", &sub[src.len()..])]);
            }
        } else {
            let host = node.host_path(src);
            a.extend(["-v".into(), format!("{}:{dst}{}", host.display(), if ro { ":ro" } else { "" })]);
        }
    }
    // The downward API: POD_IP.
    for e in c["env"].as_array().unwrap() {
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP", "{e}");
        a.extend(["-e".into(), format!("{}={POD_IP}", e["name"].as_str().unwrap())]);
    }
    a.push(IMAGE.into());
    for arg in c["args"].as_array().unwrap() {
        a.push(arg.as_str().unwrap().replace("$(POD_IP)", POD_IP).replace("127.0.0.1:", &format!("{POD_LOOPBACK}:")));
    }
    a
}

fn port(ds: &Value) -> u64 {
    ds["spec"]["template"]["spec"]["containers"][0]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "metrics").unwrap()["containerPort"]
        .as_u64()
        .unwrap()
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the containers the test made, and the cgroups podman made for them (it leaves
/// them behind), also on a failure.
struct Cleanup {
    names: Vec<String>,
    ids: HashSet<String>,
    /// podman's parent cgroup directories that did not exist before the test.
    parents: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = podman().args(["rm", "-f", "-t", "2", n]).output();
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for id in &self.ids {
                let _ = std::fs::remove_dir(hierarchy.path().join("libpod_parent").join(format!("libpod-{id}")));
            }
        }
        for p in &self.parents {
            let _ = std::fs::remove_dir(p.join("conmon"));
            let _ = std::fs::remove_dir(p);
        }
    }
}

impl Cleanup {
    /// Before the test's first podman command.
    fn new() -> Cleanup {
        let parents = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|h| h.path().join("libpod_parent"))
            .filter(|p| !p.exists())
            .collect();
        Cleanup { names: vec![], ids: HashSet::new(), parents }
    }
}

#[test]
fn the_image_runs_as_the_daemonset_and_records_a_sibling_containers_kill() {
    util::require_root!();
    let _serial = util::serial();
    assert!(
        podman().args(["image", "exists", IMAGE]).status().is_ok_and(|s| s.success()),
        "{IMAGE} missing: `cargo xtask image` builds it (`cargo xtask test` does first)"
    );
    let ds = daemonset();
    let node = Node::new();
    let client = node.client();
    let get = |base: &str, path: &str| client.get(base, path);
    let mut clean = Cleanup::new();
    let pod = format!("memwatch-ds-{}", std::process::id());
    clean.names.push(pod.clone());
    let start = |clean: &mut Cleanup| {
        let id = run(podman().args(pod_args(&ds, &node, &pod)));
        clean.ids.insert(id);
    };
    start(&mut clean);
    let base = format!("https://{POD_IP}:{}", port(&ds));
    let api = format!("https://{POD_LOOPBACK}:9754");
    let logs = || run(podman().args(["logs", &pod])) + &String::from_utf8_lossy(&podman().args(["logs", &pod]).output().unwrap().stderr);
    wait("the pod's /readyz", Duration::from_secs(60), || get(&base, "/readyz").is_some_and(|r| r.0 == 200));
    assert_eq!(get(&base, "/healthz").map(|r| r.0), Some(200));
    let (status, metrics) = get(&base, "/metrics").unwrap();
    assert_eq!(status, 200);
    // Two doors, both over TLS with the user: the API not on the pod's address.
    assert_eq!(get(&base, "/api/v1/events").map(|r| r.0), Some(404));
    assert_eq!(get(&api, "/api/v1/events").map(|r| r.0), Some(200));
    assert!(crate::web::agent(&node.secrets, false).get(&format!("{base}/healthz")).call().is_err(), "a client certificate is required");
    // Inside, with exactly the DaemonSet's capabilities, the probes it needs attached.
    for probe in ["oom_mark_victim", "process_exec", "process_exit"] {
        assert!(metrics.contains(&format!("memwatch_probe_attached{{probe=\"{probe}\",method=")), "{probe}: {metrics}\n{}", logs());
    }

    // A sibling container, named by the kubelet's log layout, filling its memory limit.
    let memtest = programs::memtest();
    let sib = format!("memwatch-sib-{}", std::process::id());
    clean.names.push(sib.clone());
    let sib_id = run(podman()
        .args(["create", "--name", &sib, "--memory", "64m", "--memory-swap", "64m", "-v"])
        .arg(format!("{}:/memtest:ro", memtest.display()))
        .args([BASE, "/memtest", "hog"]));
    clean.ids.insert(sib_id.clone());
    let pods = node.host_path("/var/log/pods");
    let containers = node.host_path("/var/log/containers");
    let uid = "6f1c2e2a-0000-4000-8000-000000000001";
    std::fs::create_dir_all(pods.join(format!("shop_api-7d9f_{uid}/api"))).unwrap();
    std::fs::write(containers.join(format!("api-7d9f_shop_api-{sib_id}.log")), "").unwrap();
    let st = podman().args(["start", "--attach", &sib]).output().unwrap();
    assert_eq!(st.status.code(), Some(137), "the sibling was OOM-killed: {st:?}");
    let mut event = Value::Null;
    wait("the sibling's OOM event", Duration::from_secs(30), || {
        let Some((_, body)) = get(&api, "/api/v1/events?kind=oom_kill") else { return false };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match v["events"].as_array().and_then(|es| es.iter().find(|e| e["container_id"] == sib_id.as_str())) {
            Some(e) => {
                event = e.clone();
                true
            }
            None => false,
        }
    });
    assert_eq!(event["container"], "api", "{event:#}");
    assert_eq!(event["pod"], "api-7d9f", "{event:#}");
    assert_eq!(event["namespace"], "shop", "{event:#}");
    assert_eq!(event["victim"]["comm"], "memtest", "{event:#}");
    assert!(event["explanation"].as_array().is_some_and(|x| !x.is_empty()), "{event:#}");

    // Nothing of the host is writable through the cgroupfs mount, submounts included.
    let mounted = mounts_under("/sys/fs/cgroup");
    assert!(!mounted.is_empty());
    for m in &mounted {
        let probe = format!("/host{m}/memwatch-ds-probe-{}", std::process::id());
        let out = podman().args(["exec", &pod, "/bin/mkdir", &probe]).output().unwrap();
        let _ = std::fs::remove_dir(format!("{m}/memwatch-ds-probe-{}", std::process::id()));
        assert!(!out.status.success(), "{probe} was writable inside the pod");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
            "{probe}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `memwatch check` in the pod exits the same with the statistics sysctl on as off.
    let sysctl = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let was = std::fs::read_to_string(sysctl).unwrap();
    let check = || podman().args(["exec", &pod, "/usr/local/bin/memwatch", "check", "--bpf-stats-window", "1s"]).output().unwrap();
    std::fs::write(sysctl, "0").unwrap();
    let off = check();
    std::fs::write(sysctl, "1").unwrap();
    let on = check();
    std::fs::write(sysctl, &was).unwrap();
    assert_eq!(
        on.status.code(),
        off.status.code(),
        "on: {}\noff: {}",
        String::from_utf8_lossy(&on.stderr),
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(String::from_utf8_lossy(&on.stdout).contains("cost per event"), "{}", String::from_utf8_lossy(&on.stdout));

    // The journal is on the host path: a new pod (the old one removed) has the event.
    run(podman().args(["rm", "-f", "-t", "5", &pod]));
    assert!(std::fs::read_dir(node.host_path("/var/lib/memwatch")).unwrap().count() > 0, "the journal is on the host");
    start(&mut clean);
    wait("the new pod's /readyz", Duration::from_secs(60), || get(&base, "/readyz").is_some_and(|r| r.0 == 200));
    let (_, body) = get(&api, "/api/v1/events").unwrap();
    assert!(body.contains(&sib_id), "the event survived the pod's restart: {body}");
}

/// The image `cargo xtask image` assembles is the Dockerfile's runtime stage: its base, its
/// entrypoint and command, its user, and the OCI annotations every build carries.
#[test]
fn the_assembled_image_is_the_dockerfiles_runtime_stage() {
    util::require_root!();
    let _serial = util::serial();
    let mut clean = Cleanup::new();
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).unwrap();
    let stage = &dockerfile[dockerfile.rfind("\nFROM ").expect("a FROM line")..];
    let directive = |name: &str| stage.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(str::trim).map(String::from);
    let from = directive("FROM").unwrap();
    assert_eq!(format!("localhost/{from}"), BASE, "the base the fast path uses is the Dockerfile's");
    let inspect: Value = serde_json::from_str(&run(podman().args(["image", "inspect", IMAGE]))).unwrap();
    let config = &inspect[0]["Config"];
    let json = |s: String| -> Value { serde_json::from_str(&s).unwrap() };
    assert_eq!(config["Entrypoint"], json(directive("ENTRYPOINT").unwrap()));
    assert_eq!(config["Cmd"], json(directive("CMD").unwrap()));
    assert_eq!(config["User"].as_str().unwrap_or(""), directive("USER").unwrap_or_default());
    let labels = &inspect[0]["Labels"];
    assert_eq!(labels["org.opencontainers.image.source"], "https://github.com/memwatch/memwatch", "{labels}");
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{labels}");
    assert!(labels["org.opencontainers.image.revision"].as_str().is_some_and(|r| r.len() == 40), "{labels}");
    // The base layer is the base image's, and the image adds one layer: the binary.
    let base: Value = serde_json::from_str(&run(podman().args(["image", "inspect", BASE]))).unwrap();
    let layers = |v: &Value| v[0]["RootFS"]["Layers"].as_array().unwrap().clone();
    let (ours, theirs) = (layers(&inspect), layers(&base));
    assert_eq!(&ours[..theirs.len()], &theirs[..], "built on the base");
    assert_eq!(ours.len(), theirs.len() + 1, "one layer, the binary");
    let size = inspect[0]["Size"].as_u64().unwrap();
    assert!(size < 150_000_000, "the image is {size} bytes, over 150 MB");
    // The binary in it is the one built here, and runs.
    let name = format!("memwatch-version-{}", std::process::id());
    clean.names.push(name.clone());
    let out = run(podman().args(["run", "--name", &name, "--network", "host", IMAGE, "--version"]));
    clean.ids.insert(run(podman().args(["inspect", &name, "--format", "{{.Id}}"])));
    assert_eq!(out, format!("memwatch {}", env!("CARGO_PKG_VERSION")));
}

/// `cargo xtask image` writes one OCI image index for linux/amd64 and linux/arm64 (v8), also
/// the local `:latest`: each platform's image is the same runtime stage (entrypoint, command,
/// labels) on that platform's base with that platform's binary, under 150 MB, and the arm64 one
/// runs its own binary (under qemu-user here: `--version` only, BPF needs an arm64 kernel, which
/// the arm64 VM tests boot).
#[test]
fn the_image_index_holds_an_amd64_and_an_arm64_image_of_the_same_stage() {
    util::require_root!();
    let _serial = util::serial();
    let mut clean = Cleanup::new();
    let version = env!("CARGO_PKG_VERSION");
    let oci = workspace().join("target/image/oci");
    let mut skopeo = Command::new("skopeo");
    skopeo.env("CONTAINERS_CONF", workspace().join("tests/podman/containers.conf"));
    let index: Value =
        serde_json::from_str(&run(skopeo.args(["inspect", "--raw"]).arg(format!("oci:{}:{version}", oci.display())))).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{index}");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            [p["os"].as_str(), p["architecture"].as_str(), p["variant"].as_str()].into_iter().flatten().collect::<Vec<_>>().join("/")
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"], "{index}");
    let inspect =
        |image: &str| -> Value { serde_json::from_str::<Value>(&run(podman().args(["image", "inspect", image]))).unwrap()[0].clone() };
    let amd64 = inspect(&format!("localhost/memwatch:{version}-amd64"));
    // (podman 4.3's inspect has no variant: the index's platforms above carry it.)
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let img = inspect(&format!("localhost/memwatch:{version}-{arch}"));
        assert_eq!((img["Os"].as_str(), img["Architecture"].as_str()), (Some("linux"), Some(arch)), "{arch}");
        for field in ["Entrypoint", "Cmd", "User"] {
            assert_eq!(img["Config"][field], amd64["Config"][field], "{arch}: {field}");
        }
        assert_eq!(img["Labels"], amd64["Labels"], "{arch}");
        let size = img["Size"].as_u64().unwrap();
        assert!(size < 150_000_000, "{arch}: the image is {size} bytes, over 150 MB");
        // On that platform's base, plus one layer: the binary.
        let base = inspect(&format!("localhost/debian:bookworm-{arch}"));
        assert_eq!(base["Architecture"].as_str(), Some(arch));
        let layers = |v: &Value| v["RootFS"]["Layers"].as_array().unwrap().clone();
        let (ours, theirs) = (layers(&img), layers(&base));
        assert_eq!((&ours[..theirs.len()], ours.len()), (&theirs[..], theirs.len() + 1), "{arch}: built on its base");
        // `:latest` is the list: podman picks the platform asked for, and its binary runs.
        let name = format!("memwatch-{arch}-{}", std::process::id());
        clean.names.push(name.clone());
        let out =
            run(podman().args(["run", "--name", &name, "--network", "host", "--arch", arch, "--entrypoint", "/bin/uname", IMAGE, "-m"]));
        clean.ids.insert(run(podman().args(["inspect", &name, "--format", "{{.Id}}"])));
        assert_eq!(out, uname, "{arch}: the platform podman ran");
        let name = format!("memwatch-{arch}-version-{}", std::process::id());
        clean.names.push(name.clone());
        let out = run(podman().args(["run", "--name", &name, "--network", "host", "--arch", arch, IMAGE, "--version"]));
        clean.ids.insert(run(podman().args(["inspect", &name, "--format", "{{.Id}}"])));
        assert_eq!(out, format!("memwatch {version}"), "{arch}");
    }
}

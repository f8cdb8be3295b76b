//! deploy/: manifests against the Kubernetes API schemas, the Dockerfile linted, alert rules
//! checked and unit-tested by promtool, and every PromQL expression in the dashboard and the
//! rules evaluated by a real Prometheus that scraped a real memwatch.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    serve::Prometheus,
    util::{self, Workload, cgroup::TestCgroup, daemon::Daemon},
};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin").join(name);
    assert!(p.exists(), "{} missing: scripts/setup.sh installs it", p.display());
    p
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `kubectl kustomize DIR` (kubectl from PyPI, installed by setup): the objects as a cluster
/// would get them from `kubectl apply -k DIR`, written to a file for the validator.
fn rendered(dir: &str, out: &Path) -> String {
    let text = run_ok(Command::new(tool("kubectl")).arg("kustomize").arg(deploy().join(dir)));
    std::fs::write(out, &text).unwrap();
    text
}

/// The `kind:` of each rendered object, in order.
fn kinds(yaml: &str) -> Vec<&str> {
    yaml.lines().filter_map(|l| l.strip_prefix("kind: ")).collect()
}

#[test]
fn manifests_render_with_kustomize_and_validate_against_kubernetes_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.yaml");
    let text = rendered("", &base);
    assert_eq!(kinds(&text), ["Namespace", "ServiceAccount", "Service", "DaemonSet", "NetworkPolicy"], "{text}");
    // Every manifest in kubernetes/ is in the base, and nothing else.
    let mut files: Vec<String> =
        std::fs::read_dir(deploy().join("kubernetes")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "daemonset.yaml",
            "kustomization.yaml",
            "namespace.yaml",
            "networkpolicy.yaml",
            "params.yaml",
            "service.yaml",
            "serviceaccount.yaml"
        ]
    );
    // The parameters are not applied (local-config) but fill the NetworkPolicy's selectors.
    assert!(!text.contains("memwatch-params") && !text.contains("PROMETHEUS_"), "{text}");
    // The API door stays on the pod's loopback; the metrics door on its address.
    assert!(text.contains("- --listen.api=127.0.0.1:9754") && text.contains("- --listen=$(POD_IP):9753"), "{text}");
    assert!(text.contains("image: ghcr.io/memwatch/memwatch:"), "the image name is set: {text}");
    assert_eq!(text.matches("app.kubernetes.io/part-of: memwatch").count(), 5, "every object labelled: {text}");
    // The rendered objects validate, strictly, against the newest schemas and against 1.30, the
    // oldest Kubernetes that knows recursiveReadOnly; 1.29 rejects that field and nothing else.
    for version in [None, Some("1.30.0")] {
        let mut cmd = Command::new(tool("kubernetes-validate"));
        cmd.arg("--strict").args(version.iter().flat_map(|v| ["-k", v])).arg(&base);
        let out = run_ok(&mut cmd);
        assert_eq!(out.matches(" passed for resource ").count(), 5, "{version:?}: {out}");
    }
    let old = Command::new(tool("kubernetes-validate")).args(["--strict", "-k", "1.29.0"]).arg(&base).output().unwrap();
    let old = String::from_utf8_lossy(&old.stdout).into_owned() + &String::from_utf8_lossy(&old.stderr);
    assert_eq!(old.matches("did not validate").count(), 1, "{old}");
    assert!(old.contains("'recursiveReadOnly' was unexpected"), "{old}");
    // The operator overlay: the base plus its two objects, labelled the same.
    let overlay = rendered("prometheus-operator", &tmp.path().join("operator.yaml"));
    assert_eq!(
        kinds(&overlay),
        ["Namespace", "ServiceAccount", "Service", "DaemonSet", "PodMonitor", "PrometheusRule", "NetworkPolicy"],
        "{overlay}"
    );
    assert_eq!(overlay.matches("namespace: memwatch").count(), 6, "{overlay}");
    // The TLS overlay: the base with the web configuration mounted and given, TCP probes, and
    // it validates too.
    let tls_path = tmp.path().join("tls.yaml");
    let tls = rendered("tls", &tls_path);
    assert_eq!(kinds(&tls), ["Namespace", "ServiceAccount", "Service", "DaemonSet", "NetworkPolicy"], "{tls}");
    assert!(tls.contains("- --web.config.file=/etc/memwatch/web/web.yml") && tls.contains("secretName: memwatch-web"), "{tls}");
    assert_eq!(tls.matches("tcpSocket:").count(), 2, "{tls}");
    assert!(!tls.contains("httpGet"), "{tls}");
    let out = run_ok(Command::new(tool("kubernetes-validate")).arg("--strict").arg(&tls_path));
    assert_eq!(out.matches(" passed for resource ").count(), 5, "{out}");
}

/// The NetworkPolicy admits only the Prometheus that params.yaml names, to the metrics port:
/// change the parameters and the rendered selectors follow.
#[test]
fn the_network_policy_takes_its_selectors_from_the_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let text = rendered("", &tmp.path().join("base.yaml"));
    let np = &text[text.find("kind: NetworkPolicy").expect("a NetworkPolicy")..];
    assert!(np.contains("kubernetes.io/metadata.name: monitoring") && np.contains("app.kubernetes.io/name: prometheus"), "{np}");
    assert!(np.contains("port: metrics") && np.contains("policyTypes:\n  - Ingress"), "{np}");
    // Parameters edited (in a copy of the base): the selectors follow.
    let copy = tmp.path().join("kubernetes");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(deploy().join("kubernetes")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let params = std::fs::read_to_string(copy.join("params.yaml")).unwrap();
    let params = params.replace("prometheusNamespace: monitoring", "prometheusNamespace: observability");
    std::fs::write(copy.join("params.yaml"), params.replace("prometheusPodName: prometheus", "prometheusPodName: prom-server")).unwrap();
    let changed = run_ok(Command::new(tool("kubectl")).arg("kustomize").arg(&copy));
    let np = &changed[changed.find("kind: NetworkPolicy").unwrap()..];
    assert!(np.contains("kubernetes.io/metadata.name: observability") && np.contains("app.kubernetes.io/name: prom-server"), "{np}");
}

#[test]
fn the_podmonitor_and_service_find_the_daemonset_pods() {
    let ds = std::fs::read_to_string(deploy().join("kubernetes/daemonset.yaml")).unwrap();
    let pm = std::fs::read_to_string(deploy().join("prometheus-operator/podmonitor.yaml")).unwrap();
    let svc = std::fs::read_to_string(deploy().join("kubernetes/service.yaml")).unwrap();
    // The pod template's label, the selectors, and the named port line up.
    assert!(ds.contains("      labels:\n        app.kubernetes.io/name: memwatch\n"), "pod template label");
    assert!(pm.contains("matchLabels:\n      app.kubernetes.io/name: memwatch\n"));
    assert!(svc.contains("selector:\n    app.kubernetes.io/name: memwatch\n"));
    assert!(ds.contains("- name: metrics\n              containerPort: 9753"));
    assert!(pm.contains("- port: metrics") && svc.contains("targetPort: metrics"));
    // Least privilege: named capabilities, never privileged, read-only root.
    assert!(ds.contains("privileged: false") && !ds.contains("privileged: true"));
    assert!(ds.contains("drop: [\"ALL\"]") && ds.contains("- BPF") && ds.contains("- PERFMON"));
    assert!(ds.contains("readOnlyRootFilesystem: true"));
    for path in ["/healthz", "/readyz"] {
        assert!(ds.contains(&format!("path: {path}")), "{path} probe");
    }
}

#[test]
fn the_dockerfile_lints_clean() {
    run_ok(Command::new(tool("hadolint")).arg(deploy().join("Dockerfile")));
}

/// The PrometheusRule is the plain rules file under `spec:`.
#[test]
fn prometheusrule_matches_the_rules_file() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yaml")).unwrap();
    let path = deploy().join("prometheus-operator/prometheusrule.yaml");
    let current = std::fs::read_to_string(&path).unwrap();
    let header_end = current.find("spec:\n").expect("spec:") + "spec:\n".len();
    let indented: String = rules.lines().map(|l| if l.trim().is_empty() { "\n".to_string() } else { format!("  {l}\n") }).collect();
    let want = format!("{}{indented}", &current[..header_end]);
    if std::env::var_os("MEMWATCH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(current == want, "{} is out of date with prometheus/alerts.yaml; MEMWATCH_UPDATE_GOLDEN=1 rewrites it", path.display());
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy().join("prometheus");
    run_ok(Command::new("promtool").args(["check", "rules", "alerts.yaml"]).current_dir(&dir));
    let out = run_ok(Command::new("promtool").args(["test", "rules", "alerts_test.yaml"]).current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    // The rightsize recording rules on 14 days of input.
    let out = run_ok(Command::new("promtool").args(["test", "rules", "rightsize_test.yaml"]).current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test, firing and not firing.
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts_test.yaml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(cases >= 2, "{alert} has {cases} test cases");
    }
}

/// Every PromQL expression: the dashboard's targets (template variables filled in as "All")
/// and the rules' `expr`s.
fn expressions() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(deploy().join("grafana/memwatch.json")).unwrap()).unwrap();
    let mut out = vec![];
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$namespace", ".*")
                .replace("$pod", ".*")
                .replace("$container", ".*");
            out.push((format!("dashboard: {}", p["title"].as_str().unwrap()), e));
        }
    }
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yaml")).unwrap();
    let mut alert = String::new();
    for line in rules.lines() {
        if let Some(a) = line.trim().strip_prefix("- alert: ").or_else(|| line.trim().strip_prefix("- record: ")) {
            alert = a.to_string();
        } else if let Some(e) = line.trim().strip_prefix("expr: ") {
            out.push((format!("alert: {alert}"), e.to_string()));
        }
    }
    out
}

#[test]
fn dashboard_and_alert_queries_work_on_a_real_scrape() {
    util::require_root!();
    // BPF statistics are on for this daemon (the cost panels), which other tests check are off.
    let _serial = util::serial();
    let exprs = expressions();
    assert!(exprs.len() >= 15, "{} expressions", exprs.len());
    // A container nearly full and still growing: 110 MiB held by its main process, then
    // 100 KiB/s more for two minutes, in 128 MiB. The time to OOM needs the main process past
    // its 30 s start-up and 30 s of sustained growth after it (model::trend), and the alert
    // under 10% headroom: both hold from about a minute in.
    let cg = TestCgroup::new("nearoom", 128 << 20);
    let d = Daemon::start(&["--interval", "500ms", "--bpf-stats", "--ebpf-page-faults"]);
    let mut held = Workload::start(&["fill", "110"], Some(&cg));
    held.expect_line("ready");
    let prom = Prometheus::start(d.base.trim_start_matches("http://"));
    let mut grower = Workload::start(&["grow", "10", "12"], Some(&cg));
    grower.expect_line("ready");
    // Every expression evaluates without error once Prometheus has data.
    d.wait_until("Prometheus to have memwatch's series", Duration::from_secs(30), || prom.query("memwatch_build_info").is_some());
    for (what, e) in &exprs {
        let reply = prom.raw_query(e);
        assert_eq!(reply["status"], "success", "{what}: {e}\n{reply}");
    }
    // The near-OOM alert's expression picks out this container.
    let alert = exprs.iter().find(|(w, _)| w == "alert: ContainerNearOOM").unwrap().1.clone();
    let label = cg.label();
    d.wait_until("the near-OOM expression to return the test container", Duration::from_secs(110), || {
        prom.raw_query(&alert)["data"]["result"].as_array().is_some_and(|r| r.iter().any(|s| s["metric"]["cgroup"] == label.as_str()))
    });
    // The cost panel has the fault probe's nanoseconds per event.
    let cost = exprs.iter().find(|(_, e)| e.contains("memwatch_probe_run_seconds_total") && e.contains("/ rate(")).unwrap().1.clone();
    d.wait_until("the cost panel to show the fault probe", Duration::from_secs(40), || {
        prom.raw_query(&cost)["data"]["result"].as_array().is_some_and(|r| {
            r.iter().any(|s| {
                s["metric"]["probe"] == "page_fault_user"
                    && s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0 && v < 1e-3)
            })
        })
    });
    // And the dashboard's headroom panel ranks it among the fullest.
    let fullest = prom.raw_query(r#"bottomk(15, memwatch_container_memory_headroom_ratio{instance=~".*"})"#);
    assert!(fullest["data"]["result"].as_array().unwrap().iter().any(|s| s["metric"]["cgroup"] == label.as_str()), "{fullest}");
    grower.finish();
    held.finish();
}

/// An idle daemon, as every healthy node runs it (the default probes: the fault-stack sampler
/// on standby, syscall probes whose only way here is a fallback left off), scraped by a real
/// Prometheus: no alert expression returns anything. (`for:` is left out: an expression that
/// returns nothing cannot fire after any wait.)
#[test]
fn an_idle_daemon_fires_no_alert() {
    util::require_root!();
    let _serial = util::serial();
    let cg = TestCgroup::new("idle", 256 << 20);
    let mut w = Workload::start(&["fill", "8"], Some(&cg));
    w.expect_line("ready");
    let include = format!("^{}$", cg.label());
    let d = Daemon::start(&["--interval", "500ms", "--cgroups.include", &include]);
    let prom = Prometheus::start(d.base.trim_start_matches("http://"));
    d.wait_until("the sampler on standby", Duration::from_secs(30), || {
        d.metrics().get_plain("memwatch_probe_attached", &[("probe", "fault_stacks"), ("method", "standby")]) == Some(0.0)
    });
    d.wait_until("Prometheus to have the idle container and the probes", Duration::from_secs(30), || {
        prom.query(&format!("memwatch_container_memory_limit_bytes{{cgroup=\"{}\"}}", cg.label())).is_some()
            && prom.query("count(memwatch_probe_attached)").is_some_and(|n| n >= 3.0)
    });
    // Every probe's state is there, at least one of them a chosen 0 (standby).
    let states = prom.raw_query("memwatch_probe_attached == 0");
    assert!(states["data"]["result"].as_array().is_some_and(|r| !r.is_empty()), "{states}");
    let alerts: Vec<(String, String)> = expressions().into_iter().filter(|(w, _)| w.starts_with("alert: ")).collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for (what, e) in &alerts {
        let reply = prom.raw_query(e);
        assert_eq!(reply["status"], "success", "{what}: {e}\n{reply}");
        assert!(reply["data"]["result"].as_array().is_some_and(|r| r.is_empty()), "{what} would fire on an idle node: {e}\n{reply}");
    }
    w.finish();
}

/// deploy/prometheus/scrape-config-tls.yaml with the files of deploy/tls/make-secrets.sh, run by
/// a real Prometheus against a daemon with the script's web configuration: the target is up.
/// (Debian's Prometheus is built without Kubernetes discovery: the job's pod discovery and its
/// relabelling are replaced by the daemon's address; its TLS and basic auth are as written.)
#[test]
fn the_tls_scrape_config_and_the_secrets_script_work_with_a_real_prometheus() {
    util::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let s = crate::web::secrets(&tmp.path().join("s"), &[]);
    let web = s.join("web.yml");
    let d = Daemon::start_https(
        &["--no-ebpf", "--web.config.file", web.to_str().unwrap(), "--state-dir", tmp.path().to_str().unwrap()],
        crate::web::agent(&s, true),
        Some(crate::web::basic("prometheus", &crate::web::password(&s))),
    );
    let target = d.base.trim_start_matches("https://").to_string();
    let file = std::fs::read_to_string(deploy().join("prometheus/scrape-config-tls.yaml")).unwrap();
    let job = &file[file.find("  - job_name: memwatch").unwrap()..file.find("    kubernetes_sd_configs:").unwrap()];
    let job = job.replace("/etc/prometheus/memwatch/", &format!("{}/", s.display()));
    let job = format!("{job}    static_configs:\n      - targets: ['{target}']\n");
    let prom = Prometheus::start_jobs(&job);
    d.wait_until("Prometheus's scrape over TLS", Duration::from_secs(30), || prom.query("up{job=\"memwatch\"}") == Some(1.0));
    assert!(prom.query("memwatch_build_info").is_some());
    // The Secrets the script writes are valid manifests.
    let out = run_ok(Command::new(tool("kubernetes-validate")).arg("--strict").arg(s.join("secrets.yaml")));
    assert_eq!(out.matches(" passed for resource ").count(), 2, "{out}");
}

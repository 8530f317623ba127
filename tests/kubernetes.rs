//! The container image and the Kubernetes manifests agree with each other and with pgate:
//! ports, probe paths, the config path, mounts for every file the configuration names,
//! shutdown timing. Parsed, not grepped.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn manifest(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kubernetes").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap()
}

/// The port of a `host:port` address in the TOML configuration.
fn port_of(config: &toml::Value, table: &str) -> i64 {
    let address = config[table]["address"].as_str().unwrap_or_else(|| panic!("[{table}] address"));
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// The pgate.toml a ConfigMap carries, parsed as TOML and validated by pgate's own model.
fn configmap_toml(name: &str) -> toml::Value {
    let map = manifest(name);
    let text = map["data"]["pgate.toml"].as_str().expect("data.pgate.toml");
    toml::from_str::<pgate::config::RawConfig>(text)
        .unwrap_or_else(|e| panic!("{name}: not a pgate configuration: {e}"));
    toml::from_str(text).unwrap()
}

/// The command-line config path the image runs with.
fn image_config_path() -> String {
    let docker = dockerfile();
    let cmd = docker.lines().find(|l| l.starts_with("CMD ")).expect("CMD");
    let at = cmd.find("--config").expect("--config in CMD");
    cmd[at..].split('"').nth(2).expect("the path after --config").to_owned()
}

#[test]
fn the_image_exposes_both_ports_and_stops_with_sigterm() {
    let docker = dockerfile();
    let expose = docker.lines().find(|l| l.starts_with("EXPOSE ")).expect("EXPOSE");
    assert!(expose.contains("5432") && expose.contains("9127"), "{expose}");
    assert!(docker.lines().any(|l| l.trim() == "STOPSIGNAL SIGTERM"));
    assert_eq!(image_config_path(), "/etc/pgate/pgate.toml");
    assert!(docker.contains("COPY config/pgate.toml /etc/pgate/pgate.toml"));
    // The dependency layer comes before the sources.
    let deps = docker.find("COPY Cargo.toml Cargo.lock").unwrap();
    assert!(deps < docker.find("COPY src").unwrap());
}

#[test]
fn the_deployment_matches_the_configuration() {
    let deployment = manifest("deployment.yaml");
    let config = configmap_toml("configmap.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = |name: &str| {
        let ports = container["ports"].as_vec().expect("ports");
        ports.iter().find(|p| p["name"].as_str() == Some(name)).and_then(|p| p["containerPort"].as_i64())
    };
    assert_eq!(port("postgres"), Some(port_of(&config, "listen")));
    assert_eq!(port("metrics"), Some(port_of(&config, "metrics")));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"].as_str(), Some("metrics"), "{probe}");
    }
    let args: Vec<&str> = container["args"].as_vec().unwrap().iter().filter_map(Yaml::as_str).collect();
    assert_eq!(args, ["run", "--config", image_config_path().as_str()]);
    assert_eq!(container["resources"]["requests"]["cpu"].as_str(), Some("250m"));
    assert_eq!(container["resources"]["requests"]["memory"].as_str(), Some("512Mi"));

    // Every file the configuration names is mounted, the configuration itself where the
    // image reads it.
    let mounts: Vec<&str> =
        container["volumeMounts"].as_vec().unwrap().iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&image_config_path().as_str()), "{mounts:?}");
    let files = [&config["tls"]["cert"], &config["tls"]["key"], &config["auth"]["auth_password_file"]];
    for file in files.iter().filter_map(|v| v.as_str()) {
        assert!(mounts.iter().any(|m| file.starts_with(&format!("{m}/"))), "{file} is not under a mount: {mounts:?}");
    }
    // The drain finishes before the kubelet kills the pod.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let drain: std::time::Duration =
        humantime::parse_duration(config["listen"]["shutdown_timeout"].as_str().unwrap()).unwrap();
    let pause = container["lifecycle"]["preStop"]["exec"]["command"][1].as_str().unwrap().parse::<u64>().unwrap();
    assert!(grace as u64 > drain.as_secs() + pause, "grace {grace}s, drain {drain:?} + preStop {pause}s");
}

#[test]
fn service_monitor_and_disruption_budget_select_the_pods() {
    let deployment = manifest("deployment.yaml");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let app = labels["app.kubernetes.io/name"].as_str().unwrap();
    let service = manifest("service.yaml");
    assert_eq!(service["spec"]["selector"]["app.kubernetes.io/name"].as_str(), Some(app));
    let ports: Vec<(Option<&str>, Option<i64>)> =
        service["spec"]["ports"].as_vec().unwrap().iter().map(|p| (p["name"].as_str(), p["port"].as_i64())).collect();
    assert_eq!(ports, [(Some("postgres"), Some(5432)), (Some("metrics"), Some(9127))]);
    let monitor = manifest("servicemonitor.yaml");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(), Some(app));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"].as_str(), Some("metrics"));
    assert_eq!(monitor["spec"]["endpoints"][0]["path"].as_str(), Some("/metrics"));
    let budget = manifest("poddisruptionbudget.yaml");
    assert_eq!(budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str(), Some(app));
}

#[test]
fn the_jupyterhub_sidecar_serves_its_notebook_on_localhost() {
    let values = manifest("jupyterhub-sidecar.yaml");
    let config = configmap_toml("sidecar-configmap.yaml");
    let singleuser = &values["singleuser"];
    assert!(config["listen"]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(singleuser["extraEnv"]["PGHOST"].as_str(), Some("127.0.0.1"));
    assert_eq!(
        singleuser["extraEnv"]["PGPORT"].as_str().map(|p| p.parse::<i64>().unwrap()),
        Some(port_of(&config, "listen"))
    );
    let sidecar = &singleuser["extraContainers"][0];
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"].as_i64(), Some(port_of(&config, "metrics")));
    let mounts: Vec<&str> =
        sidecar["volumeMounts"].as_vec().unwrap().iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&"/etc/pgate/pgate.toml"));
    let user_secret = config["users"][0]["server_password_file"].as_str().unwrap();
    assert!(mounts.iter().any(|m| user_secret.starts_with(&format!("{m}/"))), "{user_secret} not mounted");
    let volumes = singleuser["storage"]["extraVolumes"].as_vec().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"].as_str() == Some("pgate-sidecar-config")));
}

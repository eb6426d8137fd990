//! deploy/k8s: every overlay's pods (the base's manifests with the overlay's strategic-merge
//! patches applied) run `tasker config check` with their arguments and environment, their
//! Secrets and the generated ConfigMap mounted where the manifests mount them. Nothing is
//! rendered with kubectl here (CI's lint-deploy does that); the YAML files are read directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use yaml_serde::Value as Yaml;

use super::{Container, Mounts, errors, items, read_yaml, repo, scalar, setting, strings};

/// A kustomization's objects: its resources (files, or directories with a kustomization of
/// their own) with its `patches` applied.
fn objects(dir: &Path) -> Vec<Yaml> {
    let kustomization = read_yaml(&dir.join("kustomization.yaml"));
    let mut found = Vec::new();
    for resource in strings(&kustomization["resources"]) {
        let path = dir.join(&resource);
        if path.is_dir() {
            found.extend(objects(&path));
        } else {
            found.push(read_yaml(&path));
        }
    }
    assert!(
        kustomization["patchesStrategicMerge"].is_null()
            && kustomization["patchesJson6902"].is_null(),
        "{}: only `patches` are read here",
        dir.display()
    );
    for patch in items(&kustomization["patches"]) {
        assert!(
            patch["target"].is_null(),
            "a patch names its object in its own metadata"
        );
        let patch = read_yaml(&dir.join(scalar(&patch["path"])));
        let object = found
            .iter_mut()
            .find(|o| {
                o["kind"] == patch["kind"] && o["metadata"]["name"] == patch["metadata"]["name"]
            })
            .unwrap_or_else(|| panic!("{}: a patch for no object: {patch:?}", dir.display()));
        merge(object, &patch);
    }
    found
}

/// The key a list's items merge on in a strategic-merge patch, when they are objects.
fn merge_key(items: &[Yaml]) -> Option<&'static str> {
    ["name", "mountPath"]
        .into_iter()
        .find(|key| items.iter().all(|item| !item[*key].is_null()))
}

/// A strategic-merge patch as kustomize applies one: maps merge, `null` deletes, lists of
/// named objects (containers, env, volumes) merge by name, other lists are replaced.
fn merge(base: &mut Yaml, patch: &Yaml) {
    match (base, patch) {
        (Yaml::Mapping(base), Yaml::Mapping(patch)) => {
            for (key, value) in patch {
                assert!(
                    !scalar(key).starts_with("$patch"),
                    "patch directives are not read here"
                );
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Yaml::Sequence(base), Yaml::Sequence(patch))
            if !patch.is_empty() && patch.iter().all(Yaml::is_mapping) =>
        {
            let Some(key) = merge_key(patch) else {
                *base = patch.clone();
                return;
            };
            for item in patch {
                match base.iter_mut().find(|b| b[key] == item[key]) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// Secrets by name, each key to its contents.
type Secrets = BTreeMap<&'static str, BTreeMap<&'static str, String>>;

/// What an operator creates before applying an overlay (docs/deployment.md, Secrets).
fn secrets() -> Secrets {
    let public_key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasker-auth/tests/keys/ed25519-public.pem"),
    )
    .unwrap();
    BTreeMap::from([
        (
            "tasker-database",
            BTreeMap::from([(
                "url",
                "postgres://tasker:s3cret-pw@postgres.example.internal:5432/tasker\n".to_owned(),
            )]),
        ),
        (
            "tasker-jwt",
            BTreeMap::from([("jwt_public.pem", public_key)]),
        ),
        (
            "tasker-redis",
            BTreeMap::from([("url", "redis://tasker-redis:6379/0\n".to_owned())]),
        ),
    ])
}

/// One overlay: its objects and the base's generated ConfigMaps.
struct Overlay {
    name: String,
    objects: Vec<Yaml>,
}

impl Overlay {
    fn all() -> Vec<Overlay> {
        let dir = repo().join("deploy/k8s/overlays");
        let mut overlays: Vec<Overlay> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("kustomization.yaml").exists())
            .map(|path| Overlay {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                objects: objects(&path),
            })
            .collect();
        overlays.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(overlays.len() >= 2, "dev and prod at least");
        overlays
    }

    fn named(name: &str) -> Overlay {
        Overlay::all()
            .into_iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no overlay {name}"))
    }

    /// The Deployments and Jobs: (kind, name, pod spec).
    fn workloads(&self) -> Vec<(String, String, &Yaml)> {
        self.objects
            .iter()
            .filter(|o| ["Deployment", "Job"].contains(&scalar(&o["kind"]).as_str()))
            .map(|o| {
                (
                    scalar(&o["kind"]),
                    scalar(&o["metadata"]["name"]),
                    &o["spec"]["template"]["spec"],
                )
            })
            .collect()
    }

    /// How many pods of the workload may run at once: a Deployment's replicas, or the maximum
    /// of the autoscaler that owns them; 1 for a Job.
    fn most_pods(&self, kind: &str, name: &str) -> u64 {
        if kind == "Job" {
            return 1;
        }
        let autoscaled = self.objects.iter().find(|o| {
            o["kind"] == "HorizontalPodAutoscaler"
                && o["spec"]["scaleTargetRef"]["name"].as_str() == Some(name)
        });
        let deployment = self
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"].as_str() == Some(name))
            .unwrap();
        match autoscaled {
            Some(hpa) => hpa["spec"]["maxReplicas"].as_u64().unwrap(),
            None => deployment["spec"]["replicas"].as_u64().unwrap_or(1),
        }
    }
}

/// The generated ConfigMaps of the base kustomization: name to (key, local file).
fn config_maps() -> BTreeMap<String, Vec<(String, PathBuf)>> {
    let base = repo().join("deploy/k8s/base");
    let kustomization = read_yaml(&base.join("kustomization.yaml"));
    items(&kustomization["configMapGenerator"])
        .iter()
        .map(|generator| {
            let files = strings(&generator["files"])
                .into_iter()
                .map(|file| match file.split_once('=') {
                    Some((key, path)) => (key.to_owned(), base.join(path)),
                    None => (
                        Path::new(&file)
                            .file_name()
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                        base.join(&file),
                    ),
                })
                .collect();
            (scalar(&generator["name"]), files)
        })
        .collect()
}

/// The pod's volume `name` as a local folder under `dir`: a Secret's keys (those `secrets`
/// holds) or a generated ConfigMap's files as files, an `emptyDir` empty.
fn volume_dir(label: &str, pod: &Yaml, name: &str, secrets: &Secrets, dir: &Path) -> PathBuf {
    let volume = items(&pod["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{label}: no volume {name}"));
    let local = dir.join("volumes").join(name);
    std::fs::create_dir_all(&local).unwrap();
    if let Some(secret) = volume["secret"]["secretName"].as_str() {
        assert!(
            volume["secret"]["items"].is_null(),
            "{label}: whole Secrets only"
        );
        for (key, contents) in secrets.get(secret).into_iter().flatten() {
            std::fs::write(local.join(key), contents).unwrap();
        }
    } else if let Some(map) = volume["configMap"]["name"].as_str() {
        let config_maps = config_maps();
        let files = config_maps
            .get(map)
            .unwrap_or_else(|| panic!("{label}: no generated ConfigMap {map}"));
        for (key, file) in files {
            std::fs::copy(file, local.join(key)).unwrap();
        }
    } else {
        assert!(
            !volume["emptyDir"].is_null(),
            "{label}: volume {name} of an unknown kind"
        );
    }
    local
}

/// The containers of a pod spec, each as the kubelet would start it: the image's entry point
/// given `args`, the environment with `secretKeyRef`s resolved from `secrets` (a missing
/// Secret leaves its variable out), and the volumes mounted as local folders under `dir`.
fn containers(label: &str, pod: &Yaml, secrets: &Secrets, dir: &Path) -> Vec<Container> {
    items(&pod["containers"])
        .iter()
        .map(|container| {
            let label = format!("{label}/{}", scalar(&container["name"]));
            assert!(
                container["command"].is_null(),
                "{label}: the image's entry point runs"
            );
            let mut env = BTreeMap::new();
            for var in items(&container["env"]) {
                let name = scalar(&var["name"]);
                let reference = &var["valueFrom"]["secretKeyRef"];
                if !var["valueFrom"].is_null() {
                    assert!(
                        !reference.is_null(),
                        "{label}: {name}: only secretKeyRef is read here"
                    );
                    let value = secrets
                        .get(scalar(&reference["name"]).as_str())
                        .and_then(|keys| keys.get(scalar(&reference["key"]).as_str()));
                    if let Some(value) = value {
                        env.insert(name, value.clone());
                    }
                } else {
                    env.insert(name, scalar(&var["value"]));
                }
            }
            let mut mounts = Mounts::default();
            for mount in items(&container["volumeMounts"]) {
                assert!(mount["subPath"].is_null(), "{label}: whole volumes only");
                let volume = volume_dir(&label, pod, &scalar(&mount["name"]), secrets, dir);
                mounts.add(&scalar(&mount["mountPath"]), volume);
            }
            Container {
                label,
                args: strings(&container["args"]),
                env,
                mounts,
            }
        })
        .collect()
}

/// The pod of one workload of an overlay, its containers with their mounts under `dir`.
fn pod(overlay: &Overlay, workload: &str, secrets: &Secrets, dir: &Path) -> Vec<Container> {
    let (_, name, spec) = overlay
        .workloads()
        .into_iter()
        .find(|(_, name, _)| name == workload)
        .unwrap_or_else(|| panic!("{}: no {workload}", overlay.name));
    containers(&format!("k8s {} {name}", overlay.name), spec, secrets, dir)
}

#[test]
fn every_overlays_pods_pass_config_check_with_their_secrets_mounted() {
    let mut production = Vec::new();
    for overlay in Overlay::all() {
        for (kind, name, spec) in overlay.workloads() {
            let dir = tempfile::tempdir().unwrap();
            let label = format!("k8s {} {name}", overlay.name);
            for container in containers(&label, spec, &secrets(), dir.path()) {
                let (report, code) = container.config_check(dir.path());
                assert_eq!(code, Some(0), "{}: {report}", container.label);
                let text = report.to_string();
                assert!(
                    !text.contains("s3cret-pw"),
                    "{}: the password is redacted",
                    container.label
                );
                let url = container
                    .mounts
                    .file(&container.env["TASKER_DATABASE_URL_FILE"]);
                assert_eq!(
                    setting(&report, "database.url"),
                    (
                        &json!("postgres://tasker:***@postgres.example.internal:5432/tasker"),
                        format!("file {} (from TASKER_DATABASE_URL_FILE)", url.display()).as_str()
                    ),
                    "{}",
                    container.label
                );
                let (profile, _) = setting(&report, "server.profile");
                if profile == "production" {
                    production.push(container.label.clone());
                    // The profile's rules count the processes sharing the database.
                    let (replicas, _) = setting(&report, "server.replicas");
                    assert!(
                        replicas.as_u64().unwrap() >= overlay.most_pods(&kind, &name),
                        "{}: server.replicas = {replicas}, below the pods that may run",
                        container.label
                    );
                }
                if overlay.name == "prod" {
                    assert_eq!(profile, "production", "{}", container.label);
                }
            }
        }
    }
    assert_eq!(
        production,
        [
            "k8s prod tasker-migrate/migrate",
            "k8s prod tasker-api/api",
            "k8s prod tasker-worker/worker",
        ]
    );
}

/// The local file behind the one key `auth.jwt.public_keys` names in the container.
fn jwt_key_file(api: &Container) -> PathBuf {
    let keys: Vec<String> =
        serde_json::from_str(&api.env["TASKER_AUTH__JWT__PUBLIC_KEYS"]).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    api.mounts.file(&keys[0])
}

#[test]
fn the_production_api_reads_its_jwt_key_where_the_secret_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = Overlay::named("prod");
    let api = &pod(&overlay, "tasker-api", &secrets(), dir.path())[0];
    let (report, code) = api.config_check(dir.path());
    assert_eq!(code, Some(0), "{report}");
    let key = jwt_key_file(api);
    assert!(
        key.exists(),
        "the tasker-jwt Secret's key is mounted at {}",
        key.display()
    );
    assert_eq!(
        setting(&report, "auth.jwt.public_keys"),
        (&json!([key]), "env TASKER_AUTH__JWT__PUBLIC_KEYS")
    );
    assert_eq!(setting(&report, "auth.authenticators").0, &json!(["jwt"]));
    assert_eq!(
        setting(&report, "metrics.auth").0,
        "none",
        "Prometheus scrapes the pods"
    );

    let mut missing = secrets();
    missing.get_mut("tasker-jwt").unwrap().clear();
    let dir = tempfile::tempdir().unwrap();
    let api = &pod(&overlay, "tasker-api", &missing, dir.path())[0];
    let (report, code) = api.config_check(dir.path());
    assert_eq!(code, Some(2), "{report}");
    let key = jwt_key_file(api);
    assert_eq!(
        errors(&report),
        [format!(
            "auth: auth.jwt.public_keys[0]: cannot read {}: No such file or directory (os error 2)",
            key.display()
        )]
    );
}

#[test]
fn production_replicas_without_the_redis_secret_are_refused_naming_the_settings() {
    let overlay = Overlay::named("prod");
    let mut missing = secrets();
    missing.remove("tasker-redis");
    for (workload, replicas) in [("tasker-api", 3), ("tasker-worker", 30)] {
        let dir = tempfile::tempdir().unwrap();
        let container = &pod(&overlay, workload, &missing, dir.path())[0];
        assert!(!container.env.contains_key("TASKER_CACHE__REDIS_URL"));
        let (report, code) = container.config_check(dir.path());
        assert_eq!(code, Some(2), "{workload}: {report}");
        assert_eq!(
            errors(&report),
            [format!(
                "server.replicas = {replicas} in the production profile needs a shared cache: without cache.redis_url each replica caches alone, so a revoked token stays accepted elsewhere for up to cache.ttl; set cache.redis_url"
            )],
            "{workload}"
        );
    }
}

/// An HTTP GET something makes of the API pod.
pub(super) struct HttpCheck {
    /// Who asks: `readinessProbe`, `prometheus.io/scrape`.
    pub(super) by: String,
    pub(super) path: String,
    /// The container port it asks.
    pub(super) port: u16,
}

/// The API pod's probes, then its Prometheus scrape annotation, from the base Deployment.
pub(super) fn api_http_checks() -> Vec<HttpCheck> {
    let base = objects(&repo().join("deploy/k8s/base"));
    let deployment = base
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tasker-api")
        .expect("the tasker-api Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port_named = |port: &Yaml| -> u16 {
        match port {
            Yaml::Number(n) => n.as_u64().unwrap() as u16,
            named => items(&container["ports"])
                .iter()
                .find(|p| p["name"] == *named)
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port {named:?}"))
                as u16,
        }
    };
    let bind = strings(&container["args"])
        .windows(2)
        .find(|w| w[0] == "--bind")
        .map(|w| w[1].clone())
        .expect("the API binds");
    let mut checks = Vec::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert!(!get.is_null(), "the API has a {probe} over HTTP");
        let port = port_named(&get["port"]);
        assert_eq!(
            bind.rsplit_once(':').unwrap().1,
            port.to_string(),
            "{probe} asks the port the API binds"
        );
        checks.push(HttpCheck {
            by: probe.to_owned(),
            path: scalar(&get["path"]),
            port,
        });
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(scalar(&annotations["prometheus.io/scrape"]), "true");
    checks.push(HttpCheck {
        by: "prometheus.io/scrape".into(),
        path: scalar(&annotations["prometheus.io/path"]),
        port: scalar(&annotations["prometheus.io/port"]).parse().unwrap(),
    });
    checks
}

#[test]
fn overlays_patch_by_name_and_null_deletes() {
    let mut base: Yaml = yaml_serde::from_str(
        "spec:\n  replicas: 2\n  maxUnavailable: 1\n  containers:\n    - name: api\n      args: [a]\n      env:\n        - {name: A, value: '1'}\n",
    )
    .unwrap();
    let patch: Yaml = yaml_serde::from_str(
        "spec:\n  maxUnavailable: null\n  containers:\n    - name: api\n      args: [b]\n      env:\n        - {name: A, value: '2'}\n        - {name: B, value: '3'}\n",
    )
    .unwrap();
    merge(&mut base, &patch);
    let expected: Yaml = yaml_serde::from_str(
        "spec:\n  replicas: 2\n  containers:\n    - name: api\n      args: [b]\n      env:\n        - {name: A, value: '2'}\n        - {name: B, value: '3'}\n",
    )
    .unwrap();
    assert_eq!(base, expected);
}

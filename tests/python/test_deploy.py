"""The deployment files against the binary they deploy: the Dockerfile, deploy/kubernetes/
and deploy/envoy/envoy.yaml.

The gateway.toml the Deployment points at (in the ConfigMap) must pass `check-config`, with
its secret files taken from the Secret the Deployment mounts; then every port, health-check
service name and timeout in the other files must agree with that effective configuration
and with the services and methods of proto/vmware/gateway/v1/*.proto. A port changed in one
place only fails here.

Needs the debug binary `cargo test` built: ${CARGO_TARGET_DIR:-target}/debug/vmware-grpc-gateway
(GATEWAY_BIN=path to use another), and PyYAML. Run by .ci/python; alone:
  .venv/bin/python -m unittest tests/python/test_deploy.py -v
"""

import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import unittest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
ENVOY = ROOT / "deploy" / "envoy" / "envoy.yaml"
PROTOS = sorted((ROOT / "proto" / "vmware" / "gateway" / "v1").glob("*.proto"))
ALL_INTERFACES = {"0.0.0.0", "::", "[::]"}


def gateway_bin():
    if os.environ.get("GATEWAY_BIN"):
        return pathlib.Path(os.environ["GATEWAY_BIN"])
    return ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "debug" / "vmware-grpc-gateway"


# --- what the binary serves, from the protos ------------------------------------------

def proto_services():
    """{full service name: {method name: server_streaming}} of the published contract."""
    services = {}
    for proto in PROTOS:
        text = re.sub(r"//[^\n]*", "", proto.read_text())
        package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M).group(1)
        for name, body in re.findall(r"\bservice\s+(\w+)\s*\{(.*?)\n\}", text, re.S):
            services[f"{package}.{name}"] = {
                m: bool(stream)
                for m, stream in re.findall(
                    r"\brpc\s+(\w+)\s*\([^)]*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)", body)
            }
    return services


def is_idempotent_read(method):
    return method.startswith(("Get", "List")) or method == "WaitTask"


# --- durations ----------------------------------------------------------------------------

HUMANTIME_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}


def humantime(text):
    """Seconds in a duration as the gateway's configuration writes it: "500ms", "1m 30s"."""
    parts = re.findall(r"(\d+)\s*([a-zµ]+)", text)
    if not parts or re.sub(r"(\d+)\s*([a-zµ]+)|\s", "", text):
        raise ValueError(f"not a humantime duration: {text!r}")
    return sum(int(n) * HUMANTIME_UNITS[unit] for n, unit in parts)


def proto_duration(text):
    """Seconds in a duration as protobuf's JSON (and Envoy's YAML) writes it: "90s", "0.2s"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(text))
    if not match:
        raise ValueError(f"not a protobuf JSON duration: {text!r}")
    return float(match.group(1))


def listen_port(listen):
    host, _, port = listen.rpartition(":")
    return host, int(port)


# --- the files ------------------------------------------------------------------------------

def load_k8s():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(docs, kind, name=None):
    found = [d for d in docs
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def object_data(obj):
    """A ConfigMap's or Secret's keys and text values (data is base64 in a Secret)."""
    out = dict(obj.get("stringData") or {})
    for key, value in (obj.get("data") or {}).items():
        out[key] = base64.b64decode(value).decode() if obj["kind"] == "Secret" else value
    return out


def mounted_files(docs, pod_spec, container):
    """{mount path: {file name: text}} of the ConfigMaps and Secrets mounted in the container."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            source = one(docs, "ConfigMap", volume["configMap"]["name"])
        elif "secret" in volume:
            source = one(docs, "Secret", volume["secret"]["secretName"])
        else:
            continue
        mounts[mount["mountPath"].rstrip("/")] = object_data(source)
    return mounts


def mounted_file(mounts, path):
    """The text of a file the container sees at `path`, from the mounted ConfigMaps and Secrets."""
    directory, _, name = str(path).rpartition("/")
    if directory not in mounts:
        raise AssertionError(f"{path} is in no mounted ConfigMap or Secret ({sorted(mounts)})")
    if name not in mounts[directory]:
        raise AssertionError(f"{path}: the volume mounted at {directory} has no key {name!r}")
    return mounts[directory][name]


def files_named_in(config):
    """Every `*_file` value of a raw configuration, wherever it is."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key.endswith("_file") and isinstance(value, str):
                yield value
            else:
                yield from files_named_in(value)
    elif isinstance(config, list):
        for item in config:
            yield from files_named_in(item)


def envs_named_in(config):
    if isinstance(config, dict):
        for key, value in config.items():
            if key.endswith("_env") and isinstance(value, str):
                yield value
            else:
                yield from envs_named_in(value)
    elif isinstance(config, list):
        for item in config:
            yield from envs_named_in(item)


def check_config(toml_text, mounts, tmp):
    """Runs `check-config` on the text as the pod would read it: the files it names written
    from the mounted Secret/ConfigMap under `tmp`, each `*_env` variable set. Returns the
    effective configuration."""
    raw = tomllib.loads(toml_text)
    text = toml_text
    for path in sorted(set(files_named_in(raw))):
        local = pathlib.Path(tmp, "root", path.lstrip("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(mounted_file(mounts, path))
        text = text.replace(f'"{path}"', f'"{local}"')
    env = dict(os.environ)
    env.update({var: "test-deploy-secret" for var in envs_named_in(raw)})
    env.pop("RUST_BACKTRACE", None)

    def run(text):
        cfg = pathlib.Path(tmp, "gateway.toml")
        cfg.write_text(text)
        return subprocess.run([str(gateway_bin()), "check-config", "--config", str(cfg)],
                              capture_output=True, text=True, env=env, timeout=60)

    result = run(text)
    if result.returncode != 0:
        raise AssertionError(f"check-config refused the ConfigMap's gateway.toml:\n"
                             f"{result.stderr}")
    return tomllib.loads(result.stdout)


class Deployment(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not gateway_bin().is_file():
            raise RuntimeError(f"{gateway_bin()} missing: run cargo test first "
                               "(or set GATEWAY_BIN)")
        cls.docs = load_k8s()
        cls.deployment = one(cls.docs, "Deployment")
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        [cls.container] = cls.pod["containers"]
        cls.services = [d for d in cls.docs if d["kind"] == "Service"]
        cls.mounts = mounted_files(cls.docs, cls.pod, cls.container)
        args = cls.container.get("args", [])
        cls.config_path = args[args.index("--config") + 1]
        toml_text = mounted_file(cls.mounts, cls.config_path)
        with tempfile.TemporaryDirectory() as tmp:
            cls.effective = check_config(toml_text, cls.mounts, tmp)
        cls.grpc_host, cls.grpc_port = listen_port(cls.effective["server"]["listen"])
        cls.admin_host, cls.admin_port = listen_port(cls.effective["admin"]["listen"])
        cls.services_served = proto_services()
        if not cls.services_served or not all(cls.services_served.values()):
            raise AssertionError(f"no services or methods read from {PROTOS}")
        # What grpc.health.v1 answers for: the overall "" and each service of the contract.
        cls.health_names = {""} | set(cls.services_served)

    def container_port(self, name):
        ports = [p["containerPort"] for p in self.container["ports"] if p.get("name") == name]
        self.assertEqual(len(ports), 1, f"one container port named {name!r}")
        return ports[0]

    def resolve_target_port(self, target):
        return self.container_port(target) if isinstance(target, str) else target

    def test_the_servers_listen_on_every_interface(self):
        unreachable = "unreachable from outside the pod"
        self.assertIn(self.grpc_host, ALL_INTERFACES, f"[server] listen: {unreachable}")
        self.assertIn(self.admin_host, ALL_INTERFACES, f"[admin] listen: {unreachable}")

    def test_container_ports_are_the_listen_ports(self):
        self.assertEqual(self.container_port("grpc"), self.grpc_port)
        self.assertEqual(self.container_port("admin"), self.admin_port)

    def test_services_select_the_pods_and_reach_the_listen_ports(self):
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(self.services)
        for svc in self.services:
            name = svc["metadata"]["name"]
            for key, value in svc["spec"]["selector"].items():
                self.assertEqual(labels.get(key), value, f"Service {name} selects no gateway pod")
            ports = {p["name"]: p for p in svc["spec"]["ports"]}
            grpc = ports["grpc"]
            self.assertEqual(self.resolve_target_port(grpc["targetPort"]), self.grpc_port, name)
            self.assertEqual(grpc["port"], self.grpc_port, f"{name}: clients and Envoy dial this")
            self.assertEqual(grpc.get("appProtocol"), "grpc", name)
            if "metrics" in ports:
                self.assertEqual(self.resolve_target_port(ports["metrics"]["targetPort"]),
                                 self.admin_port, name)
        main = one(self.docs, "Service", self.deployment["metadata"]["name"])
        self.assertIn("metrics", {p["name"] for p in main["spec"]["ports"]})

    def test_prometheus_scrapes_the_admin_port(self):
        annotations = self.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), self.admin_port)
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")

    def test_probes_ask_the_health_service_on_the_grpc_port(self):
        tls = "tls" in self.effective["server"]
        for kind in ("readinessProbe", "livenessProbe"):
            probe = self.container[kind]
            if "grpc" in probe:
                self.assertFalse(tls, f"{kind}: the kubelet's gRPC probes cannot speak TLS")
                self.assertEqual(probe["grpc"]["port"], self.grpc_port, kind)
                self.assertIn(probe["grpc"].get("service", ""), self.health_names,
                              f"{kind}: the gateway reports no health for that name")
            else:  # the admin listener's plain-HTTP endpoints (with [server.tls] on)
                port = self.resolve_target_port(probe["httpGet"]["port"])
                self.assertEqual(port, self.admin_port, kind)
                want = "/readyz" if kind == "readinessProbe" else "/healthz"
                self.assertEqual(probe["httpGet"]["path"], want, kind)

    def test_termination_grace_outlasts_drain_and_shutdown_grace(self):
        server = self.effective["server"]
        needed = humantime(server["drain_delay"]) + humantime(server["shutdown_grace"])
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], needed)

    def test_secrets_come_from_the_mounted_secret(self):
        # Every file the configuration names resolved inside a mount (check_config did it);
        # the upstreams' credentials must be Secret files, not ConfigMap ones.
        secret = one(self.docs, "Secret")
        secret_keys = set(object_data(secret))
        raw = tomllib.loads(mounted_file(self.mounts, self.config_path))
        for upstream in raw["upstreams"]:
            for key in ("password_file", "api_token_file"):
                if key in upstream:
                    self.assertIn(upstream[key].rpartition("/")[2], secret_keys, upstream["name"])
            self.assertNotIn("password", upstream, "passwords never go in the TOML")

    def test_the_container_runs_unprivileged(self):
        pod_ctx, ctx = self.pod["securityContext"], self.container["securityContext"]
        self.assertTrue(pod_ctx["runAsNonRoot"])
        self.assertNotEqual(pod_ctx.get("runAsUser"), 0)
        self.assertTrue(ctx["readOnlyRootFilesystem"])
        self.assertFalse(ctx["allowPrivilegeEscalation"])
        self.assertEqual(ctx["capabilities"]["drop"], ["ALL"])
        self.assertEqual(str(pod_ctx["runAsUser"]), dockerfile_stages()[-1]["user"].split(":")[0],
                         "the Deployment's user is the image's")

    # --- the Dockerfile --------------------------------------------------------------------

    def test_dockerfile_builds_locked_in_one_stage_and_runs_unprivileged_in_another(self):
        stages = dockerfile_stages()
        self.assertGreaterEqual(len(stages), 2, "multi-stage")
        build, runtime = stages[0], stages[-1]
        self.assertRegex(build["from"], r"^rust:\d+\.\d+(\.\d+)?-bookworm\b")
        builds = [c for r in build["run"] for c in re.findall(r"cargo build[^&;|]*", r)]
        self.assertTrue(builds, "the first stage runs cargo build")
        for command in builds:
            self.assertRegex(command, r"--release\b.*--locked\b|--locked\b.*--release\b", command)
        self.assertTrue(runtime["user"], "the runtime stage sets USER")
        self.assertNotIn(runtime["user"].split(":")[0], {"root", "0"})
        self.assertTrue(any(c.startswith(f"--from={build['name']} ") for c in runtime["copy"]))
        package = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["name"]
        self.assertTrue(runtime["entrypoint"][0].endswith("/" + package), runtime["entrypoint"])
        self.assertEqual(set(runtime["expose"]), {self.grpc_port, self.admin_port})
        self.assertEqual(runtime["cmd"], self.container["args"],
                         "the image's default command is the one the Deployment runs")
        dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
        ignored = {line.strip().rstrip("/") for line in dockerignore}
        self.assertLessEqual({"target", ".venv", "gen"}, ignored)

    def test_the_rust_image_is_new_enough_for_cargo_toml(self):
        image = dockerfile_rust_version()
        wanted = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["rust-version"]
        self.assertGreaterEqual(image, version(wanted))

    @unittest.skipUnless(shutil.which("cargo"), "cargo not on PATH")
    def test_the_rust_image_is_new_enough_for_cargo_lock(self):
        # cargo refuses to build a dependency whose rust-version is above the toolchain's.
        result = subprocess.run(
            ["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, f"cargo metadata: {result.stderr}")
        meta = json.loads(result.stdout)
        packages = {p["id"]: p for p in meta["packages"]}
        nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
        built, todo = set(), [meta["resolve"]["root"]]
        while todo:  # the release build's graph: normal and build dependencies, no dev ones
            node = todo.pop()
            if node not in built:
                built.add(node)
                todo += [d["pkg"] for d in nodes[node]["deps"]
                         if any(k["kind"] != "dev" for k in d["dep_kinds"])]
        image = dockerfile_rust_version()
        for pkg in (packages[i] for i in built):
            if pkg.get("rust_version"):
                self.assertGreaterEqual(
                    image, version(pkg["rust_version"]),
                    f"{pkg['name']} {pkg['version']} needs rustc {pkg['rust_version']}")

    # --- Envoy -----------------------------------------------------------------------------

    def envoy(self):
        doc = yaml.safe_load(ENVOY.read_text())
        [hcm] = [f["typed_config"] for listener in doc["static_resources"]["listeners"]
                 for chain in listener["filter_chains"] for f in chain["filters"]
                 if f["name"] == "envoy.filters.network.http_connection_manager"]
        routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
        clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
        return hcm, routes, clusters

    def route_methods(self, route):
        """The gateway methods a route matches, as /package.Service/Method paths."""
        match = route["match"]
        paths = [f"/{svc}/{m}" for svc, methods in self.services_served.items() for m in methods]
        if "safe_regex" in match:
            return {p for p in paths if re.search(match["safe_regex"]["regex"], p)}
        if "path" in match:
            return {p for p in paths if p == match["path"]}
        return {p for p in paths if p.startswith(match["prefix"])}

    def test_envoy_reaches_the_grpc_port_of_every_replica(self):
        _, routes, clusters = self.envoy()
        headless = [s for s in self.services if s["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(headless), 1, "Envoy resolves a headless Service")
        for route in routes:
            cluster = clusters[route["route"]["cluster"]]
            self.assertEqual(cluster["type"], "STRICT_DNS")
            for group in cluster["load_assignment"]["endpoints"]:
                for endpoint in group["lb_endpoints"]:
                    address = endpoint["endpoint"]["address"]["socket_address"]
                    self.assertEqual(address["port_value"], self.grpc_port)
                    self.assertTrue(
                        address["address"].startswith(headless[0]["metadata"]["name"] + "."),
                        address["address"])

    def test_envoy_speaks_http2_within_the_gateways_per_connection_limits(self):
        _, _, clusters = self.envoy()
        for name, cluster in clusters.items():
            options = cluster["typed_extension_protocol_options"][
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            h2 = options["explicit_http_config"]["http2_protocol_options"]
            limit = min(self.effective["server"]["max_concurrent_streams"],
                        self.effective["limits"]["max_watch_streams_per_connection"])
            self.assertLessEqual(h2["max_concurrent_streams"], limit, name)
            [thresholds] = cluster["circuit_breakers"]["thresholds"]
            self.assertGreaterEqual(thresholds["max_requests"],
                                    self.effective["limits"]["max_watch_streams"], name)

    def test_envoy_health_checks_ask_a_served_name_and_see_the_drain_in_time(self):
        _, _, clusters = self.envoy()
        drain = humantime(self.effective["server"]["drain_delay"])
        for name, cluster in clusters.items():
            self.assertTrue(cluster["health_checks"], name)
            for check in cluster["health_checks"]:
                self.assertIn(check["grpc_health_check"].get("service_name", ""), self.health_names)
                noticed = (proto_duration(check["interval"]) * check["unhealthy_threshold"]
                           + proto_duration(check.get("interval_jitter", "0s")))
                self.assertLess(noticed, drain,
                                f"{name}: NOT_SERVING must be seen within drain_delay")

    def test_envoy_routes_suit_watches_and_waits(self):
        hcm, routes, _ = self.envoy()
        watch = self.effective["watch"]
        heartbeat, max_wait = humantime(watch["heartbeat_default"]), humantime(watch["max_wait"])
        stream_idle = proto_duration(hcm["stream_idle_timeout"])
        self.assertGreater(stream_idle, max_wait, "a WaitTask is silent until it answers")
        paths = {f"/{svc}/{m}": streams
                 for svc, ms in self.services_served.items() for m, streams in ms.items()}
        streaming = {path for path, streams in paths.items() if streams}
        reads = {path for path in paths if is_idempotent_read(path.rpartition("/")[2])}
        upstreams = self.effective["upstreams"]
        slowest_read = max(humantime(u["request_timeout"]) * (1 + u["read_retries"])
                           for u in upstreams)
        seen = set()  # Envoy takes the first route that matches
        for route in routes:
            methods, action = self.route_methods(route) - seen, route["route"]
            seen |= methods
            self.assertEqual(proto_duration(action["timeout"]), 0,
                             "the route timeout (Envoy's default: 15 s) would cut streams")
            idle = proto_duration(action.get("idle_timeout", hcm["stream_idle_timeout"]))
            bound = proto_duration(action["max_stream_duration"]["max_stream_duration"])
            if methods & streaming:
                self.assertEqual(methods, streaming, "the watch route serves the streams alone")
                self.assertLess(heartbeat, idle, "keep heartbeat_interval < stream idle timeout")
                self.assertGreater(bound, idle)
            else:
                self.assertGreater(idle, max_wait, route["match"])
                self.assertGreater(bound, max(max_wait, slowest_read), route["match"])
            if "retry_policy" in action:
                self.assertLessEqual(methods, reads, "only idempotent reads are retried")
                self.assertEqual(methods, reads, "the read route matches every read")
        self.assertEqual(seen, set(paths), "every method of the contract is routed")


# --- Dockerfile parsing ------------------------------------------------------------------------

def dockerfile_stages():
    """Each stage's FROM, name, RUN commands, COPY arguments, USER, EXPOSE, ENTRYPOINT, CMD."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            image, _, name = rest.partition(" AS ") if " AS " in rest else rest.partition(" as ")
            stages.append({"from": image.strip(), "name": name.strip(), "run": [], "copy": [],
                           "user": "", "expose": [], "entrypoint": [], "cmd": []})
        elif word == "RUN":
            stages[-1]["run"].append(" ".join(rest.split()))
        elif word == "COPY":
            stages[-1]["copy"].append(rest)
        elif word == "USER":
            stages[-1]["user"] = rest
        elif word == "EXPOSE":
            stages[-1]["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif word in ("ENTRYPOINT", "CMD"):
            stages[-1][word.lower()] = json.loads(rest)
    return stages


def version(text):
    return tuple(int(x) for x in text.split(".")[:2])


def dockerfile_rust_version():
    return version(re.match(r"rust:(\d+\.\d+)", dockerfile_stages()[0]["from"]).group(1))


if __name__ == "__main__":
    unittest.main()

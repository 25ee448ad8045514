"""Packaging and deployment files, checked without a container engine.

- Every YAML file under deploy/ and examples/ parses (PyYAML, Debian's
  python3-yaml), and the Kubernetes and compose files agree with the sluice
  configuration they carry (ports, probes, grace periods).
- Every sluice configuration under examples/ and deploy/ (files, and the
  one embedded in the Kubernetes ConfigMap) passes `sluice --check`. The
  certificate paths they name (/etc/sluice/tls/...) do not exist here, so
  each is checked as a temporary copy in which exactly those path strings
  are replaced by a throwaway pair made with the openssl CLI; nothing else
  in the text changes, so line numbers in any error are the original's.
- The compose and Kubernetes configurations route as their READMEs say:
  run with their upstream names pointed at `sluice-bench origin`s.
- The Dockerfile builds with the README's commands (install script,
  `release` preset, unit tests), ships the libraries the binaries link, and
  its entrypoint raises the open-files soft limit and still execs sluice.
- `sluice-bench probe` (the image's HEALTHCHECK) exits 0 on a 2xx answer
  from a live admin /healthz and 1, with one line on stderr, otherwise.
- The metric names docs/OPERATIONS.md alerts on exist on a live /metrics,
  and its rules pass `promtool check rules`.
"""

import glob
import json
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import harness

try:
    import yaml
except ImportError:  # python3-yaml
    yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def need_yaml():
    if yaml is None:
        pytest.fail("PyYAML is not installed: Debian package python3-yaml (deploy/install-deps.sh)", pytrace=False)
    return yaml


def rel(path):
    return os.path.relpath(path, REPO)


def yaml_files():
    out = []
    for top in ("deploy", "examples"):
        for ext in ("yaml", "yml"):
            out += glob.glob(os.path.join(REPO, top, "**", f"*.{ext}"), recursive=True)
    return sorted(out)


def load_docs(path):
    with open(path) as f:
        return [d for d in need_yaml().safe_load_all(f) if d is not None]


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def run(argv, timeout=15.0, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def port_of(bind):
    return int(str(bind).rsplit(":", 1)[1])


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    assert m, f"not a duration: {text!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --------------------------------------------------------------------------
# (a) YAML files parse


EXPECTED_YAML = [
    "deploy/compose/compose.yaml",
    "deploy/compose/sluice.yaml",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/deployment.yaml",
    "deploy/kubernetes/service.yaml",
    "deploy/kubernetes/backend-headless.yaml",
    "deploy/kubernetes/pdb.yaml",
    "deploy/kubernetes/networkpolicy.yaml",
    "deploy/kubernetes/kustomization.yaml",
    "examples/quickstart.yaml",
]


def test_the_deployment_files_are_all_found():
    found = {rel(p) for p in yaml_files()}
    missing = [p for p in EXPECTED_YAML if p not in found]
    assert not missing, f"not found by the glob: {missing}"


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_file_parses(path):
    docs = load_docs(path)
    assert docs, f"{rel(path)}: no YAML document in it"
    for d in docs:
        assert isinstance(d, dict), f"{rel(path)}: a document is a {type(d).__name__}, not a mapping"


def k8s_objects():
    objs = {}
    for path in glob.glob(os.path.join(REPO, "deploy", "kubernetes", "*.yaml")):
        for d in load_docs(path):
            if "apiVersion" in d and "metadata" in d:
                objs[(d["kind"], d["metadata"]["name"])] = (os.path.basename(path), d)
    return objs


def k8s_sluice_config():
    _, cm = k8s_objects()[("ConfigMap", "sluice")]
    return need_yaml().safe_load(cm["data"]["sluice.yaml"])


def test_kustomization_lists_every_manifest():
    kust = load_docs(os.path.join(REPO, "deploy", "kubernetes", "kustomization.yaml"))[0]
    manifests = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "deploy", "kubernetes", "*.yaml"))}
    manifests.discard("kustomization.yaml")
    assert set(kust["resources"]) == manifests
    kinds = {kind for kind, _ in k8s_objects()}
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


def test_kubernetes_deployment_matches_its_config():
    objs = k8s_objects()
    cfg = k8s_sluice_config()
    _, dep = objs[("Deployment", "sluice")]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    admin_port = port_of(cfg["admin"]["bind"])
    assert cfg["config"]["watch"] is True
    assert cfg["admin"]["bind"].startswith("0.0.0.0:"), "the admin listener must bind the pod IP for probes"
    assert ports["admin"] == admin_port
    assert sorted(port_of(l["bind"]) for l in cfg["listeners"]) == sorted([ports["http"], ports["https"]])
    assert spec["replicas"] >= 2
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # The kubelet's SIGKILL must come after the preStop sleep and the whole drain.
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    grace = duration_s(cfg["timeouts"]["shutdown_grace"])
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + grace
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert str(cfg["workers"]) == str(c["resources"]["limits"]["cpu"]).strip('"'), "workers = the CPU limit"
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(admin_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The certificate paths of the config are where the projected volume puts the Secret.
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")["mountPath"]
    vol = next(v for v in pod["volumes"] if v["name"] == "config")["projected"]["sources"]
    projected = {os.path.join(mount, i["path"]) for s in vol for src in s.values() for i in src["items"]}
    for listener in cfg["listeners"]:
        for cert in listener.get("tls", {}).get("certificates", []):
            assert cert["cert_file"] in projected and cert["key_file"] in projected
    assert os.path.join(mount, "sluice.yaml") in projected


def test_kubernetes_service_policy_and_budget():
    objs = k8s_objects()
    cfg = k8s_sluice_config()
    admin_port = port_of(cfg["admin"]["bind"])
    _, svc = objs[("Service", "sluice")]
    assert svc["spec"]["type"] in ("LoadBalancer", "NodePort")
    assert {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {(80, "http"), (443, "https")}
    _, headless = objs[("Service", "backend")]
    assert headless["spec"]["clusterIP"] == "None"
    backend = next(u for u in cfg["upstreams"] if u["name"] == "backend")
    assert backend["servers"][0]["address"] == f"backend:{headless['spec']['ports'][0]['port']}"
    _, pdb = objs[("PodDisruptionBudget", "sluice")]
    _, netpol = objs[("NetworkPolicy", "sluice")]
    _, dep = objs[("Deployment", "sluice")]
    # All three select the Deployment's pods.
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    selectors = [svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"],
                 netpol["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert selector and selector.items() <= pod_labels.items(), (selector, pod_labels)
    rules = netpol["spec"]["ingress"]
    open_ports = {p["port"] for r in rules if "from" not in r for p in r["ports"]}
    assert admin_port not in open_ports
    admin_rules = [r for r in rules if any(p["port"] == admin_port for p in r["ports"])]
    assert admin_rules and all(r.get("from") for r in admin_rules), "the admin port only from named peers"


def test_compose_file_matches_its_config():
    compose = load_docs(os.path.join(REPO, "deploy", "compose", "compose.yaml"))[0]
    cfg = load_docs(os.path.join(REPO, "deploy", "compose", "sluice.yaml"))[0]
    s = compose["services"]["sluice"]
    published = {}
    for p in s["ports"]:
        host, container = str(p).rsplit(":", 1)
        published[int(container)] = int(host.rsplit(":", 1)[-1])
    assert published == {port_of(l["bind"]): want for l, want in zip(cfg["listeners"], (80, 443))}
    assert cfg["admin"]["bind"].startswith("127.0.0.1:")
    assert port_of(cfg["admin"]["bind"]) not in published
    assert cfg["config"]["watch"] is True
    assert duration_s(s["stop_grace_period"]) > duration_s(cfg["timeouts"]["shutdown_grace"])
    assert s["stop_signal"] == "SIGTERM"
    assert any(v["target"] == "/etc/sluice" and v["type"] == "bind" for v in s["volumes"] if isinstance(v, dict))
    for dep, cond in s["depends_on"].items():
        assert cond["condition"] == "service_healthy", dep
        assert "healthcheck" in compose["services"][dep], dep
    assert any(n.get("external") for n in compose["networks"].values())
    backend = next(u for u in cfg["upstreams"] if u["name"] == "backend")
    assert backend["balance"] == "least_conn"
    assert backend["request_buffering"] is True
    assert backend["timeouts"]["response"] == "120s"
    assert backend["servers"] == [{"address": "backend:8000"}]
    assert "--timeout=120" in compose["services"]["backend"]["command"]


# --------------------------------------------------------------------------
# (b) every sluice config passes --check


def sluice_configs():
    """(label, text) of every sluice configuration under examples/ and deploy/:
    YAML files whose document has `listeners`, and ConfigMap values that do."""
    out = []
    for path in yaml_files():
        for d in load_docs(path):
            if "listeners" in d:
                out.append((rel(path), read(rel(path))))
            elif d.get("kind") == "ConfigMap":
                for key, text in d.get("data", {}).items():
                    if isinstance(text, str) and "listeners" in (need_yaml().safe_load(text) or {}):
                        out.append((f"{rel(path)}:data.{key}", text))
    return out


def make_pair(directory, name):
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", f"/CN={name}.test", "-keyout", key, "-out", cert])
    assert p.returncode == 0, p.stderr.decode()
    return cert, key


def with_throwaway_certs(text, tmpdir):
    """`text` with every cert_file/key_file path replaced by a fresh pair in tmpdir."""
    cfg = need_yaml().safe_load(text)
    out = text
    n = 0
    for listener in cfg["listeners"]:
        for entry in listener.get("tls", {}).get("certificates", []):
            cert, key = make_pair(tmpdir, f"pair{n}")
            n += 1
            for field, new in (("cert_file", cert), ("key_file", key)):
                old = entry[field]
                assert out.count(old) == 1, f"{old} appears {out.count(old)} times; cannot rewrite it alone"
                out = out.replace(old, new)
    return out, n


def test_every_sluice_config_is_found():
    labels = [label for label, _ in sluice_configs()]
    for want in ("examples/quickstart.yaml", "deploy/compose/sluice.yaml",
                 "deploy/kubernetes/configmap.yaml:data.sluice.yaml"):
        assert want in labels, labels


@pytest.mark.parametrize("label,text", sluice_configs(), ids=[label for label, _ in sluice_configs()])
def test_sluice_config_passes_check(label, text, tmp_path, sluice_bin):
    rewritten, pairs = with_throwaway_certs(text, str(tmp_path))
    if "/etc/sluice/tls/" in text:
        assert pairs > 0 and "/etc/sluice/tls/" not in rewritten
    path = tmp_path / "sluice.yaml"
    path.write_text(rewritten)
    p = harness.run_sluice(sluice_bin, ["--config", str(path), "--check"])
    assert p.returncode == 0 and "config ok" in p.stdout.decode().splitlines(), \
        f"{label}:\n{p.stdout.decode()}{p.stderr.decode()}"


# --------------------------------------------------------------------------
# The shipped configurations route as documented


def localise(cfg, tmpdir, origins):
    """The config with binds on free loopback ports, DNS names replaced by
    origins ({name: Origin}), health checks on the origins' /health, and
    throwaway certificates."""
    cfg = json.loads(json.dumps(cfg))
    cfg["workers"] = 1
    cfg.pop("config", None)
    cfg["timeouts"]["shutdown_grace"] = "2s"
    for listener in cfg["listeners"]:
        listener["bind"] = f"127.0.0.1:{harness.free_port()}"
        for i, entry in enumerate(listener.get("tls", {}).get("certificates", [])):
            entry["cert_file"], entry["key_file"] = make_pair(tmpdir, f"{listener['name']}{i}")
    for u in cfg["upstreams"]:
        for s in u["servers"]:
            s["address"] = origins[s["address"].split(":")[0]].address
        if "health_check" in u:
            u["health_check"]["path"] = "/health"
    cfg["admin"]["bind"] = f"127.0.0.1:{harness.free_port()}"
    return cfg


def tls_get(port, sni, target):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with harness.TlsHttpClient(port, ctx, server_hostname=sni, timeout=5.0) as c:
        return c.get(target, host=sni)


ROUTES = {
    "compose": ("deploy/compose/sluice.yaml", ["backend", "frontend", "marketing"], [
        ("app.example.com", "/api/users", "backend"),
        ("app.example.com", "/", "frontend"),
        ("app.example.com", "/src/main.ts", "frontend"),
        ("api.example.com", "/v1/", "backend"),
        ("www.example.com", "/", "marketing"),
        ("example.com", "/pricing", "marketing"),
        ("unknown.example.org", "/", None),
    ]),
    "kubernetes": ("deploy/kubernetes/configmap.yaml", ["backend", "frontend"], [
        ("app.example.com", "/api/users", "backend"),
        ("api.example.com", "/", "backend"),
        ("app.example.com", "/", "frontend"),
        ("www.example.com", "/", None),
    ]),
}


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_shipped_config_routes_as_documented(name, env):
    path, upstream_names, cases = ROUTES[name]
    cfg = k8s_sluice_config() if name == "kubernetes" else load_docs(os.path.join(REPO, path))[0]
    origins = {n: env.origin(n) for n in upstream_names}
    proxy = env.sluice(localise(cfg, env.tmp, origins))
    http_port, https_port = (port_of(l["bind"]) for l in proxy.config["listeners"])
    # Plain HTTP: a permanent redirect to the same URL on https, default port.
    r = harness.http_get(http_port, "/api/x?y=1", host="app.example.com")
    assert r.status == 308 and r.header("Location") == "https://app.example.com/api/x?y=1", r
    for host, target, want in cases:
        r = tls_get(https_port, host, target)
        if want is None:
            assert r.status == 404 and r.header("X-Origin") is None, (host, target, r)
        else:
            assert r.header("X-Origin") == want, (host, target, r)


# --------------------------------------------------------------------------
# (c) the Dockerfile builds with the README's commands


def dockerfile_instructions():
    """[(stage index, INSTRUCTION, argument)] with continuation lines joined."""
    out, stage, current = [], -1, ""
    for line in read("Dockerfile").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if line.rstrip().endswith("\\"):
            continue
        instr, _, arg = current.partition(" ")
        current = ""
        if instr.upper() == "FROM":
            stage += 1
        out.append((stage, instr.upper(), arg.strip()))
    return out


def shell_commands(text):
    """Commands of a shell snippet: split on && ; and newlines, comments and
    RUN flags (--mount=...) dropped, whitespace collapsed."""
    cmds = []
    for line in text.splitlines():
        line = re.sub(r"\s#.*$", "", line)
        for part in re.split(r"&&|;", line):
            words = [w for w in part.split() if not w.startswith("--mount=")]
            if words:
                cmds.append(" ".join(words))
    return cmds


def readme_commands():
    blocks = re.findall(r"```sh\n(.*?)```", read("README.md"), re.S)
    return shell_commands("\n".join(blocks))


def makefile_recipe(target):
    lines = read("Makefile").splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(rf"^{target}\s*:", l))
    recipe = []
    for l in lines[start + 1:]:
        if not l.startswith("\t"):
            break
        recipe.append(l.strip())
    return recipe


def build_stage_commands():
    return [c for stage, instr, arg in dockerfile_instructions() if stage == 0 and instr == "RUN"
            for c in shell_commands(arg)]


def test_dockerfile_runs_the_readme_install_script():
    docker = build_stage_commands()
    assert "bash deploy/install-deps.sh" in docker, docker
    assert "bash deploy/install-deps.sh" in readme_commands()
    assert makefile_recipe("deps") == ["bash deploy/install-deps.sh"]
    copies = [arg for stage, instr, arg in dockerfile_instructions() if stage == 0 and instr == "COPY"]
    assert "deploy/install-deps.sh deploy/install-deps.sh" in copies
    assert os.path.isfile(os.path.join(REPO, "deploy", "install-deps.sh"))


def test_dockerfile_configures_builds_and_tests_like_the_readme():
    docker = build_stage_commands()
    readme = readme_commands()
    make_build = makefile_recipe("build")
    configure = [c for c in docker if c.startswith("cmake --preset")]
    build = [c for c in docker if c.startswith("cmake --build")]
    test = [c for c in docker if c.startswith("ctest")]
    # Exactly the Makefile's and the README's commands: no extra -D options,
    # no --target, the same preset.
    assert configure == ["cmake --preset release"], docker
    assert build == ["cmake --build --preset release"], docker
    assert test == ["ctest --preset release -L unit"], docker
    assert make_build == ["cmake --preset release", "cmake --build --preset release"]
    for c in configure + build + test:
        assert c in readme, f"{c!r} is not one of the README's commands"
    # The label the unit tests carry.
    assert re.search(r"catch_discover_tests\([^)]*LABELS\s+unit\b", read("tests/CMakeLists.txt"))
    order = [docker.index(c) for c in ("bash deploy/install-deps.sh", configure[0], build[0], test[0])]
    assert order == sorted(order), docker


def test_dockerfile_runtime_stage():
    instrs = dockerfile_instructions()
    froms = [arg for _, instr, arg in instrs if instr == "FROM"]
    assert froms == ["debian:bookworm AS build", "debian:bookworm-slim"]
    final = {}
    for stage, instr, arg in instrs:
        if stage == 1:
            final.setdefault(instr, []).append(arg)
    user = final["USER"][-1].split(":")
    assert all(u.isdigit() and int(u) != 0 for u in user), final["USER"]
    assert final["STOPSIGNAL"] == ["SIGTERM"]
    assert "curl" not in " ".join(final["RUN"])
    copies = " ".join(final["COPY"])
    assert "/out/sluice " in copies + " " and "/out/sluice-bench" in copies
    # The HEALTHCHECK probes the admin /healthz of the config the image ships.
    (health,) = final["HEALTHCHECK"]
    argv = json.loads(health.split("CMD", 1)[1])
    assert argv[:2] == ["/usr/local/bin/sluice-bench", "probe"]
    default_cfg = next(a.split()[0] for a in final["COPY"] if a.endswith("/etc/sluice/sluice.yaml"))
    admin = re.search(r'^admin:\s*\n\s+bind:\s*"?([^"\s]+)', read(default_cfg), re.M).group(1)
    assert argv[2] == f"http://127.0.0.1:{port_of(admin)}/healthz"
    assert json.loads(final["CMD"][0]) == ["--config", "/etc/sluice/sluice.yaml"]


def dpkg_package(path):
    for candidate in (path, os.path.realpath(path)):
        p = run(["dpkg", "-S", candidate])
        if p.returncode == 0:
            return p.stdout.decode().split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {path}")


def test_runtime_packages_are_exactly_what_the_binaries_link(sluice_bin, bench_bin):
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system (dpkg)")
    needed = set()
    for binary in (sluice_bin, bench_bin):
        p = run(["ldd", binary])
        assert p.returncode == 0, p.stderr.decode()
        if re.search(r"lib(asan|tsan|ubsan)\.so", p.stdout.decode()):
            pytest.skip("a sanitizer build links its runtime; the image ships the release build")
        for m in re.finditer(r"=>\s+(/\S+)", p.stdout.decode()):
            needed.add(dpkg_package(m.group(1)))
    in_base = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:bookworm-slim (apt needs them)
    runs = [arg for stage, instr, arg in dockerfile_instructions() if stage == 1 and instr == "RUN"]
    install = next(r for r in runs if "apt-get install" in r)
    listed = {w for w in install.split("--no-install-recommends", 1)[1].split("&&")[0].split()}
    assert listed == needed - in_base, f"Dockerfile installs {sorted(listed)}, binaries need {sorted(needed - in_base)}"


def test_entrypoint_raises_the_soft_open_files_limit_and_execs(tmp_path, sluice_bin):
    entry = next(json.loads(arg) for _, instr, arg in dockerfile_instructions() if instr == "ENTRYPOINT")
    assert entry[:2] == ["/bin/sh", "-c"] and "/usr/local/bin/sluice" in entry[2]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard // 2)  # what recent engines start containers with; below the hard limit

    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    # A stand-in for sluice that reports its limit and arguments.
    fake = tmp_path / "fake-sluice"
    fake.write_text('#!/bin/sh\necho "soft=$(ulimit -Sn) hard=$(ulimit -Hn) args=$*"\n')
    fake.chmod(0o755)
    script = entry[2].replace("/usr/local/bin/sluice", str(fake))
    p = run([entry[0], entry[1], script, *entry[3:], "--config", "/etc/sluice/sluice.yaml"],
            preexec_fn=low_soft_limit)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == [f"soft={hard}", f"hard={hard}", "args=--config", "/etc/sluice/sluice.yaml"]
    # The real binary, with the arguments passed through.
    script = entry[2].replace("/usr/local/bin/sluice", sluice_bin)
    p = run([entry[0], entry[1], script, *entry[3:], "--version"], preexec_fn=low_soft_limit)
    assert p.returncode == 0 and p.stdout.decode().startswith("sluice "), p


def test_dockerignore_keeps_build_trees_out_and_sources_in():
    lines = [l.strip() for l in read(".dockerignore").splitlines() if l.strip() and not l.startswith("#")]
    assert "build/" in lines and ".git/" in lines
    for needed in ("CMakeLists.txt", "CMakePresets.json", "proxy", "config", "tls", "bench", "tests",
                   "deploy/install-deps.sh", "examples/quickstart.yaml"):
        assert needed not in lines and needed + "/" not in lines, needed


# --------------------------------------------------------------------------
# (d) sluice-bench probe


def probe(bench_bin, *args, timeout=15.0):
    start = time.monotonic()
    p = run([bench_bin, "probe", *args], timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode(), time.monotonic() - start


def one_line(text):
    return len(text.splitlines()) == 1 and text.endswith("\n")


def test_probe_exits_0_on_live_healthz_and_1_otherwise(env, bench_bin):
    proxy = env.proxy(routes=[{"match": {"path_prefix": "/"}, "respond": {"status": 503, "body": "down\n"}}],
                      upstreams=[])
    healthz = f"http://127.0.0.1:{proxy.admin_port}/healthz"
    rc, out, err, _ = probe(bench_bin, healthz, "--timeout", "2s")
    assert (rc, out, err) == (0, "", "")
    rc, _, err, _ = probe(bench_bin, f"http://localhost:{proxy.admin_port}/ready")
    assert (rc, err) == (0, "")
    # A non-2xx answer.
    url = f"http://127.0.0.1:{proxy.port}/"
    rc, _, err, _ = probe(bench_bin, url)
    assert rc == 1 and one_line(err) and f"{url}: status 503" in err, err
    # Nothing listening.
    dead = f"http://127.0.0.1:{harness.free_port()}/healthz"
    rc, out, err, _ = probe(bench_bin, dead, "--timeout", "2s")
    assert rc == 1 and out == "" and one_line(err) and dead in err and "connect" in err, err


def test_probe_gives_up_at_its_timeout(bench_bin):
    # Accepts (the kernel completes the handshake) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/healthz"
        rc, _, err, elapsed = probe(bench_bin, url, "--timeout", "300ms")
    assert rc == 1 and one_line(err) and "no answer within 300ms" in err, err
    assert 0.25 <= elapsed < 5.0, elapsed


def test_probe_usage(bench_bin):
    rc, out, _, _ = probe(bench_bin, "--help")
    assert rc == 0 and out.startswith("usage: sluice-bench probe URL")
    # Bad usage is 1 too: container engines reserve exit code 2 for health checks.
    for args in ([], ["https://127.0.0.1:1/"], ["http://127.0.0.1:1/", "--timeout", "soon"], ["--bogus"]):
        rc, _, err, _ = probe(bench_bin, *args)
        assert rc == 1 and one_line(err), (args, rc, err)
    p = run([bench_bin, "--help"])
    assert "sluice-bench probe URL" in p.stdout.decode()


# --------------------------------------------------------------------------
# docs/OPERATIONS.md


def test_operations_metric_names_exist_and_rules_check(env, tmp_path):
    docs = read("docs/OPERATIONS.md") + read("deploy/compose/README.md") + read("deploy/kubernetes/README.md")
    named = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bsluice_[a-z_]+", docs)}
    assert len(named) >= 8, named
    proxy = env.proxy(routes=[{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "ok\n"}}],
                      upstreams=[])
    r = harness.http_get(proxy.admin_port, "/metrics")
    assert r.status == 200
    families = set(re.findall(r"^# TYPE (\S+) ", r.text(), re.M))
    assert not named - families, f"named in the docs but not exported: {sorted(named - families)}"
    rules = re.findall(r"```yaml\n(.*?)```", read("docs/OPERATIONS.md"), re.S)
    assert len(rules) == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    path = tmp_path / "rules.yaml"
    path.write_text(rules[0])
    p = run([promtool, "check", "rules", str(path)])
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bsluice_[a-z_]+", rules[0])}
    assert used and not used - families

"""`regmon check -f` over a folder of deployment files: is it bound by the registry or by parsing?

    .venv/bin/python bench/check_files.py [--manifests 500] [--images 300] [--repeats 3]
                                          [--latency-ms 0]

Starts /usr/bin/docker-registry (noauth) on loopback in a temp dir and pushes --images
distinct tags (seeded, one OCI manifest each). Writes a folder of --manifests files as a
platform team has them: Kubernetes Deployments (two containers and an init container),
StatefulSets, CronJobs, Helm-style streams with comments and `---`, and compose files;
together they reference every pushed image, most of them several times.

Then, per repeat:

* parse: `images_in_paths` + `gather` in this process (what `check -f` does before its
  first request): files read, YAML composed, images extracted, references parsed and
  de-duplicated;
* check -f: `python -m monitor check -f <folder>` as a subprocess, wall time (start-up,
  imports, parsing, one HEAD per distinct image, output);
* check args: the same distinct references given as arguments (no files), wall time.

The difference between the last two is what reading the files costs end to end.
``--latency-ms`` puts a proxy in front of the registry that answers every request that
much later, as a registry across a network would.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.report import gather  # noqa: E402
from monitor.sources.files import images_in_paths  # noqa: E402
from tests.support.faults import CountingProxy, RecordedRequest, Reply  # noqa: E402
from tests.support.images import ImagePusher  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

DEPLOYMENT = """\
# Source: {team}/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {team}
  labels: {{app.kubernetes.io/name: {name}, app.kubernetes.io/managed-by: Helm}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{prometheus.io/scrape: "true", prometheus.io/port: "9090"}}
    spec:
      serviceAccountName: {name}
      initContainers:
        - name: migrate
          image: {init}
          command: ["/app", "migrate", "--wait"]
      containers:
        - name: app
          image: {main}
          ports: [{{name: http, containerPort: 8080}}]
          env:
            - {{name: LOG_LEVEL, value: info}}
            - {{name: DATABASE_URL, valueFrom: {{secretKeyRef: {{name: db, key: url}}}}}}
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
            limits: {{memory: 256Mi}}
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 5}}
        - name: proxy
          image: {sidecar}
          args: ["--upstream", "127.0.0.1:8080"]
---
# Source: {team}/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {team}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: http}}]
"""

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata: {{name: {name}, namespace: {team}}}
spec:
  schedule: "{minute} 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          initContainers: [{{name: wait, image: {init}}}]
          containers:
            - name: job
              image: {main}
"""

STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}, namespace: {team}}}
spec:
  serviceName: {name}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: db
          image: {main}
          volumeMounts: [{{name: data, mountPath: /data}}]
        - name: exporter
          image: {sidecar}
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 10Gi}}}}}}
"""

COMPOSE = """\
# {name}: local stack
services:
  app:
    image: ${{REGISTRY:-{host}}}/{main_path}
    ports: ["8080:8080"]
  worker:
    image: ${{REGISTRY:-{host}}}/{sidecar_path}
    profiles: [jobs]
  init:
    image: ${{REGISTRY:-{host}}}/{init_path}
"""


class DelayProxy(CountingProxy):
    """The registry as if across a network: every answer ``delay`` seconds late."""

    def __init__(self, upstream_host: str, delay: float) -> None:
        super().__init__(upstream_host)
        self.delay = delay

    def respond(self, request: RecordedRequest) -> Reply:
        time.sleep(self.delay)
        return super().respond(request)


def write_folder(folder: Path, host: str, refs: list[str], count: int) -> None:
    rng = random.Random(42)
    queue = list(refs)  # every image used at least once, then random reuse
    rng.shuffle(queue)

    def pick() -> str:
        return f"{host}/{queue.pop()}" if queue else f"{host}/{rng.choice(refs)}"

    for i in range(count):
        team = f"team{i % 12}"
        name = f"svc-{i:03d}"
        kind = i % 10
        main, sidecar = pick(), pick()
        init = pick() if kind < 8 or kind == 9 else ""
        if kind < 6:
            text, ext = DEPLOYMENT.format(team=team, name=name, main=main, sidecar=sidecar,
                                          init=init), "yaml"  # fmt: skip
        elif kind < 8:
            queue.append(sidecar.split("/", 1)[1])  # no sidecar in a CronJob: keep it for later
            text, ext = CRONJOB.format(team=team, name=name, main=main, init=init,
                                       minute=i % 60), "yaml"  # fmt: skip
        elif kind == 8:
            text, ext = STATEFULSET.format(team=team, name=name, main=main, sidecar=sidecar), "yml"
        else:
            strip = len(host) + 1
            text = COMPOSE.format(name=name, host=host, main_path=main[strip:],
                                  sidecar_path=sidecar[strip:], init_path=init[strip:])  # fmt: skip
            sub = folder / team / name
            sub.mkdir(parents=True, exist_ok=True)
            (sub / "compose.yaml").write_text(text)
            continue
        sub = folder / team
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{name}.{ext}").write_text(text)


def run(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DOCKER_CONFIG": "/nonexistent-regmon-bench", "PYTHONPATH": str(ROOT)}
    env.pop("REGISTRY", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    return time.perf_counter() - started, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=500)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added per request")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="regmon-bench-") as tmp:
        work = Path(tmp)
        with RegistryServer(work / "registry") as registry:
            refs = [f"bench/app{i // 10:02d}:v{i % 10}" for i in range(opts.images)]
            started = time.perf_counter()
            with ImagePusher(registry.url) as pusher:
                for ref in refs:
                    repo, tag = ref.split(":")
                    pusher.push_image(repo, tag, "oci", seed=ref)
            print(f"pushed {len(refs)} images in {time.perf_counter() - started:.1f} s")
            host = registry.host
            proxy = None
            if opts.latency_ms > 0:
                proxy = DelayProxy(registry.host, opts.latency_ms / 1000).start()
                host = proxy.host
            folder = work / "deploy"
            write_folder(folder, host, refs, opts.manifests)
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            size = sum(p.stat().st_size for p in files)
            found = images_in_paths([str(folder)], {})
            items = gather([], found)
            print(f"{len(files)} files, {size / 1024:.0f} KiB, {len(found)} image uses, "
                  f"{len(items)} distinct references")  # fmt: skip
            assert len(items) == opts.images, len(items)

            parse, with_files, with_args = [], [], []
            arguments = [str(item.reference) for item in items]
            for _ in range(opts.repeats):
                started = time.perf_counter()
                gather([], images_in_paths([str(folder)], {}))
                parse.append(time.perf_counter() - started)
                elapsed, proc = run(["check", "-f", str(folder)])
                assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
                assert len(proc.stdout.splitlines()) == opts.images
                with_files.append(elapsed)
                elapsed, proc = run(["check", *arguments])
                assert proc.returncode == 0, proc.stderr[-2000:]
                with_args.append(elapsed)
            if proxy is not None:
                proxy.close()

    def show(label: str, values: list[float]) -> None:
        cells = " ".join(f"{v:6.2f}" for v in values)
        print(f"{label:<34} median {statistics.median(values):6.2f} s   runs: {cells}")

    print()
    show("parse (in process)", parse)
    show("check -f FOLDER (subprocess)", with_files)
    show("check REF... (same refs, no files)", with_args)
    share = statistics.median(parse) / statistics.median(with_files)
    print(f"parsing is {share:.0%} of check -f's wall time")


if __name__ == "__main__":
    main()

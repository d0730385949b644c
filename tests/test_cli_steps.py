"""The step 3-5 commands as a user runs them: exit codes and what they print."""

from __future__ import annotations

import os
import re
import subprocess

import lc
import yaml

from conftest import EXAMPLE, copy_service, tool
from opslib.spec.loader import load_spec
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold


def test_deploy_schedule_verify_logs_from_the_shell(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"], data["job"]["name"] = lc.unique("cli"), lc.unique("job")
    data["deploy"]["min_instances"] = 0
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    folder = tmp_path / "service"
    copy_service(folder)
    spec = load_spec(params)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}

    def opslib(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [tool("opslib"), *args], capture_output=True, text=True, env=env, timeout=300
        )

    deployed = opslib("deploy", str(params), "--service-dir", str(folder))
    assert deployed.returncode == 0, deployed.stderr
    assert "gcloud run deploy" in deployed.stdout and "100" in deployed.stdout
    scheduled = opslib("schedule", str(params))
    assert scheduled.returncode == 0, scheduled.stderr
    assert (
        "gcloud scheduler jobs create http" in scheduled.stdout and "next runs" in scheduled.stdout
    )
    assert opslib("schedule", str(params), "pause").returncode == 0
    again = opslib("schedule", str(params))
    assert again.returncode == 0 and "create" not in again.stdout.split("equivalent")[0]
    verified = opslib("verify", str(params), "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    banner = verified.stdout.rstrip().splitlines()[-1]  # the verdict, last: what, run id, time
    assert re.fullmatch(rf"PASSED  verify {spec.job.name}  run [0-9a-f]+  \d{{4}}-.+", banner)
    logs = opslib("logs", str(params), "--since", "1h")
    assert logs.returncode == 0 and spec.job.name in logs.stdout
    data["schedule"]["audience"] = "https://wrong.example"
    params.write_text(yaml.safe_dump(data))
    assert opslib("schedule", str(params)).returncode == 0
    failed = opslib("verify", str(params), "--quiet")
    assert failed.returncode == 1 and "UNAUTHENTICATED" in failed.stdout

"""The retraining DAG run by Dagster's own in-process executor on the tiny world (the real
library, no mock): every op succeeds and the registry ends with a promoted v2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsd.registry import Registry

dg = pytest.importorskip(
    "dagster", reason="the orchestration extra: pip install mlsd[orchestration]"
)
pytestmark = pytest.mark.slow


def test_the_daily_job_is_the_pipeline_steps_in_order() -> None:
    from mlsd.orchestration import STEPS
    from mlsd.orchestration.dagster import daily_retrain, defs, retrain_job

    assert [n.name for n in retrain_job.graph.node_defs] == list(STEPS)
    assert daily_retrain.cron_schedule == "0 3 * * *"
    assert defs.get_job_def("retrain_job").name == "retrain_job"


def test_the_dag_retrains_end_to_end_in_process(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    from mlsd.orchestration.dagster import RetrainResource, retrain_job

    cfg = {"name": "videorec", "registry_uri": registry_uri, "new": [str(world[1])],
           "work_dir": str(tmp_path / "runs"), "backtest_windows": 0, "eval_users": 300,
           "auto_promote": True}  # fmt: skip
    result = retrain_job.execute_in_process(
        resources={"retrain": RetrainResource(config_json=json.dumps(cfg))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    done = [e.node_name for e in result.get_step_success_events()]
    assert done == ["collect", "validate", "train", "evaluate", "gates", "register", "promote"]
    run_dir = Path(result.output_for_node("promote"))
    assert (run_dir / "report.html").is_file()
    assert sorted(p.stem for p in (run_dir / "steps").glob("*.json")) == sorted(done)
    reg = Registry(registry_uri)
    assert reg.alias("videorec", "champion").version == 2

"""A real two-process ``torchrun`` run of ``radclip train clip`` (gloo on CPU, tiny towers, seconds).

The monkeypatched two-rank test checks the all-gather arithmetic; this one checks the wiring a real
job needs: the label vectors gathered like the embeddings, rank 0's initial weights broadcast (each
rank seeds with seed + rank), one log and one checkpoint writer, and replicas that stay identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.train.test_clip_train_synthetic import _write_data


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_rank_torchrun_trains_in_sync(tmp_path: Path) -> None:
    manifest, iu = _write_data(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "radclip.cli", "train", "clip", "--out-dir", str(out), "--manifest", str(manifest), "--iu-reports", str(iu),
           "--model", "tiny", "--train-image-trunk", "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "8",
           "--extra-texts", "4", "--lr", "1e-3", "--warmup-steps", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # rank 0 alone writes the log
    state = json.loads((out / "train_state.json").read_text())
    assert state["ddp"]["world_size"] == 2
    assert state["ddp"]["replica_max_abs_diff"] == 0.0  # 5.4 without the initial broadcast
    assert len(state["history"]) == 2 and (out / "best.safetensors").is_file()

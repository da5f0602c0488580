"""One SGD step on 2 real gloo ranks x batch b equals one step in 1 process x batch 2b (the DDP all-gather's gradient).

Nothing is replaced: the ranks are two processes joined by ``torch.distributed`` (gloo, CPU), seeded
differently and synchronised by :func:`broadcast_model` as the trainer does; the embeddings go through
:func:`gather_features`, label rows through :func:`gather_rows`, the gradients through the trainer's averaging.
A gather that gives each rank the gradient of its own rows only (open_clip's ``local_loss`` bug)
halves the step here, and the weights differ by 1.5 (measured).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

B = 4  # rows per rank
DIM_IMG, DIM_TXT, DIM_EMB = 6, 5, 3
LR = 0.5
SCALE = 10.0


def _towers(seed: int = 0) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    return torch.nn.ModuleDict(
        {"img": torch.nn.Linear(DIM_IMG, DIM_EMB), "txt": torch.nn.Linear(DIM_TXT, DIM_EMB)}
    ).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2 * B, DIM_IMG, generator=g).double(), torch.randn(
        2 * B, DIM_TXT, generator=g
    ).double()


def _step(towers: torch.nn.ModuleDict, x_img: torch.Tensor, x_txt: torch.Tensor, info) -> None:  # type: ignore[no-untyped-def]
    from radclip.train.clip_trainer import _all_reduce_grads
    from radclip.train.distributed import gather_features
    from radclip.train.losses import clip_loss

    img = F.normalize(towers["img"](x_img), dim=-1)
    txt = F.normalize(towers["txt"](x_txt), dim=-1)
    g_img, g_txt = gather_features(img, txt, info)
    clip_loss(g_img, g_txt, SCALE)["contrastive"].backward()
    params = list(towers.parameters())
    _all_reduce_grads(params, info)
    with torch.no_grad():
        for p in params:
            p -= LR * p.grad


def _rank_main(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    from radclip.train.distributed import DistInfo, broadcast_model, gather_rows, replica_divergence

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, local_rank=rank, world_size=2)
        towers = _towers(
            seed=rank
        )  # as the trainer: each rank seeds with seed + rank, then rank 0's weights win
        before = replica_divergence(towers, info)
        broadcast_model(towers, info)
        x_img, x_txt = _data()
        mine = slice(rank * B, (rank + 1) * B)
        rows = gather_rows(
            torch.arange(B)[:, None] + 10 * rank, info
        )  # e.g. the label vectors, in rank order
        _step(towers, x_img[mine], x_txt[mine], info)
        after = replica_divergence(towers, info)
        torch.save(
            {"state": towers.state_dict(), "rows": rows, "before": before, "after": after}, f"{out}.{rank}"
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_ranks_step_like_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    from radclip.train.distributed import DistInfo

    ref = _towers()
    x_img, x_txt = _data()
    start = {k: v.clone() for k, v in ref.state_dict().items()}
    _step(ref, x_img, x_txt, DistInfo())
    out = str(tmp_path / "weights")
    torch.multiprocessing.spawn(_rank_main, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}")
        assert (
            got["before"] > 0.1 and got["after"] == 0.0
        )  # replicas differ before the broadcast, agree after the step
        assert got["rows"].squeeze(1).tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
        for name, want in ref.state_dict().items():
            assert not torch.allclose(want, start[name]), f"{name}: the reference step did not move it"
            assert torch.allclose(got["state"][name], want, rtol=0, atol=1e-6), (
                f"rank {rank} {name}: max |diff| {float((got['state'][name] - want).abs().max()):.2e} after one step"
            )

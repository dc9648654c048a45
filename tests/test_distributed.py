"""DistributedDataParallel (gloo, 2 CPU processes): every rank holds identical parameters after jumps."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import weightcast as wc

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = wc.ForecastSGD(ddp.parameters(), lr=0.05, momentum=0.9, forecaster="linear", window=3, horizon=4)
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(12):
        x, y = torch.randn(16, 10, generator=g), torch.randint(0, 4, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    torch.save({"gathered": gathered, "jumps": opt.num_jumps}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ranks_stay_identical_after_jumps(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["jumps"] == 4
        assert torch.equal(result["gathered"][0], result["gathered"][1])

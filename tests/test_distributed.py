"""DistributedDataParallel and FSDP2 (gloo, 2 CPU processes): ranks stay consistent through jumps."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import weightcast as wc

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def _join(rank: int, world: int, init_file: str) -> None:
    """A spawned rank's setup: one thread, the gloo process group, seed 0 (the same initial model on every rank)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)


def _leave() -> None:
    dist.barrier()  # both ranks done with gloo before either tears it down (a race there aborts a rank)
    dist.destroy_process_group()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    _join(rank, world, init_file)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = wc.ForecastSGD(ddp.parameters(), lr=0.05, momentum=0.9, forecaster="linear", window=3, horizon=4)
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(12):
        x, y = torch.randn(16, 10, generator=g), torch.randint(0, 4, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    _gather_save_and_close(model, world, os.path.join(out_dir, f"rank{rank}.pt"), jumps=opt.num_jumps)


def _gather_save_and_close(model: torch.nn.Module, world: int, path: str, **extra) -> None:
    """Save every rank's parameters (all-gathered) with ``extra`` to ``path``, then leave the process group."""
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    torch.save({"gathered": gathered, **extra}, path)
    _leave()


def test_ranks_stay_identical_after_jumps(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["jumps"] == 4
        assert torch.equal(result["gathered"][0], result["gathered"][1])


def _guard_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    _join(rank, world, init_file)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = wc.ForecastSGD(ddp.parameters(), lr=0.2, momentum=0.9, forecaster="linear", window=3, record_every=2,
                         jump_every=6, horizon=24)
    g = torch.Generator().manual_seed(100 + rank)  # each rank judges a jump on its own guard batch
    gx, gy = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    opt.guard_jumps(lambda: torch.nn.functional.cross_entropy(model(gx), gy))
    data = torch.Generator().manual_seed(7 + rank)
    for _ in range(36):
        x, y = torch.randn(32, 8, generator=data), torch.randint(0, 3, (32,), generator=data)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    _gather_save_and_close(model, world, os.path.join(out_dir, f"guard{rank}.pt"),
                           counts=(opt.num_jumps, opt.num_rejected_jumps))


def test_a_guarded_jump_is_decided_alike_on_every_rank(tmp_path):
    """Rank-local guard batches disagree about some jumps; the criteria are averaged over the ranks, so every
    rank takes the same decision and the replicas stay identical."""
    world = 2
    mp.spawn(_guard_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    results = [torch.load(tmp_path / f"guard{rank}.pt") for rank in range(world)]
    assert results[0]["counts"] == results[1]["counts"]
    assert sum(results[0]["counts"]) == 6 and results[0]["counts"][1] > 0  # both outcomes occur
    for result in results:
        assert torch.equal(result["gathered"][0], result["gathered"][1])


def _fsdp_run(forecaster, jump_every, world, window=3):
    """Train a small FSDP2 model (every rank sees the same data); return (local shards, full parameters, jumps)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 33), torch.nn.ReLU(), torch.nn.Linear(33, 4))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster=forecaster, window=window,
                         horizon=4, jump_every=jump_every)
    _train(model, opt)
    shards = [p.to_local().detach().clone() for p in model.parameters()]
    full = [p.full_tensor().detach().clone() for p in model.parameters()]
    return shards, full, opt.num_jumps


def _train(model, opt):
    g = torch.Generator().manual_seed(100)  # the same data on every rank
    for _ in range(12):
        x, y = torch.randn(16, 10, generator=g), torch.randint(0, 4, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _fsdp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    _join(rank, world, init_file)
    plain = _fsdp_run(None, None, world)
    no_jump = _fsdp_run("linear", 10 ** 6, world)
    jumps = _fsdp_run("linear", None, world)
    try:
        _fsdp_run("wnn", None, world, window=5)
        refused = ""
    except ValueError as exc:
        refused = str(exc)
    torch.save({"plain": plain, "no_jump": no_jump, "jumps": jumps, "refused": refused},
               os.path.join(out_dir, f"fsdp{rank}.pt"))
    _leave()


def test_fsdp2_shards_match_plain_runs_and_a_single_process_run(tmp_path):
    """FSDP2 (fully_shard, gloo, CPU, 2 ranks): without a jump every rank's shards equal those of plain SGD; with
    jumps the full parameters equal a single-process run of the same schedule; whole-tensor forecasters are
    refused at construction."""
    pytest.importorskip("torch.distributed.fsdp")
    world = 2
    mp.spawn(_fsdp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 33), torch.nn.ReLU(), torch.nn.Linear(33, 4))
    opt = wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster="linear", window=3, horizon=4)
    _train(model, opt)
    for rank in range(world):
        result = torch.load(tmp_path / f"fsdp{rank}.pt")
        assert result["no_jump"][2] == 0 and result["jumps"][2] == opt.num_jumps == 4
        for a, b in zip(result["plain"][0], result["no_jump"][0]):
            assert torch.equal(a, b)
        for a, b in zip(result["jumps"][1], model.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-7)
        assert "cannot forecast DTensor (FSDP2) shards" in result["refused"]

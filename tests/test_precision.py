"""--precision: what auto picks, BCE in fp32 under bf16 autocast, and a bf16 run that resumes bit-identically."""

import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from ganlab import devices
from ganlab.errors import GanlabError
from ganlab.models import build_models
from ganlab.train import gan_step
from helpers import final_weights, only_run, run_train, train_command, wait_for_checkpoint

BF16_RUN = ["--arch", "mlp-small", "--precision", "bf16", "--train-images", "640", "--epochs", "12", "--eval-every",
            "0", "--seed", "5"]


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux's /proc/cpuinfo to know the CPU")
def test_auto_picks_bf16_exactly_where_the_cpu_multiplies_bf16_natively():
    native = bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})
    cpu = torch.device("cpu")
    assert devices.has_native_bf16(cpu) == native
    assert devices.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert devices.resolve_precision("bf16", cpu) == "bf16" and devices.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(GanlabError, match="unknown --precision 'fp8'"):
        devices.resolve_precision("fp8", cpu)


@pytest.mark.parametrize("arch", ["mlp-small", "cnn"])
def test_under_bf16_autocast_d_gives_fp32_probabilities_and_bce_is_the_fp32_formula(arch):
    torch.manual_seed(0)
    generator, discriminator = build_models(arch)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_images, latents = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 100)
    cpu = torch.device("cpu")

    # What the G step should compute, from the weights before it: -mean log D(G(z)) in fp32.
    with torch.no_grad(), devices.autocast(cpu, "bf16"):
        fake_images = generator(latents)
        d_on_generated = discriminator(fake_images)
    assert fake_images.dtype == torch.bfloat16 and d_on_generated.dtype == torch.float32
    expected_loss_g = -d_on_generated.log().clamp(min=-100).mean()

    values = gan_step(generator, discriminator, optimizer_g, optimizer_d, real_images, latents,
                      autocast=lambda: devices.autocast(cpu, "bf16"))
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    assert values[0] == pytest.approx(float(expected_loss_g), rel=1e-5)
    assert all(parameter.dtype == torch.float32 for parameter in generator.parameters())  # weights stay fp32
    assert all(value.dtype == torch.float32 for state in optimizer_g.state.values() for name, value in state.items()
               if name != "step")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bce_under_cuda_autocast_is_computed_and_finite():
    """CUDA refuses BCE on autocast outputs; ganlab computes it in fp32 outside the autocast region."""
    cuda = torch.device("cuda")
    torch.manual_seed(0)
    generator, discriminator = (model.to(cuda) for model in build_models("cnn"))
    values = gan_step(generator, discriminator, torch.optim.Adam(generator.parameters()),
                      torch.optim.Adam(discriminator.parameters()), torch.rand(8, 1, 28, 28, device=cuda) * 2 - 1,
                      torch.randn(8, 100, device=cuda), autocast=lambda: devices.autocast(cuda, "bf16"))
    assert values.dtype == torch.float32 and torch.isfinite(values).all()


def test_a_bf16_run_logs_its_precision_and_resumes_to_the_same_weights(repo_root, data_dir, tmp_path):
    reference_store = f"sqlite:///{tmp_path}/reference/mlflow.db"
    assert run_train(repo_root, reference_store, data_dir, *BF16_RUN).returncode == 0
    reference_client = MlflowClient(reference_store)
    reference_run = only_run(reference_client)
    assert reference_run.data.params["precision"] == "bf16"
    assert reference_run.data.params["precision_resolved"] == "bf16"

    store_dir = tmp_path / "interrupted"
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, *BF16_RUN), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoint(store_dir, process, epoch=2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    assert run_train(repo_root, store_uri, data_dir, "--resume", run_id).returncode == 0

    weights = final_weights(client, run_id, tmp_path / "download")
    reference = final_weights(reference_client, reference_run.info.run_id, tmp_path / "reference-download")
    assert weights.keys() == reference.keys()
    for name, tensor in weights.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, reference[name]), name

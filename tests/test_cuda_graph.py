"""The CUDA-graph step's parts that run anywhere: warm-up steps leave no trace, a capturable Adam's checkpoint
resumes eagerly, and when CUDA stays eager. The capture itself is checked on a GPU (tests/test_gpu.py)."""

import torch

from ganlab import cuda_graph
from ganlab.train import TrainConfig, gan_step
from ganlab.training_state import TrainingState, load_optimizer

CPU = torch.device("cpu")


def fresh_state() -> TrainingState:
    return TrainingState.create(TrainConfig(arch="mlp-small", seed=4), CPU, num_images=256, steps_per_epoch=4)


def one_step(state: TrainingState, images: torch.Tensor) -> torch.Tensor:
    latents = torch.randn(16, 100, generator=state.latent_rng)
    return gan_step(state.generator, state.discriminator, state.optimizer_g, state.optimizer_d, images, latents,
                    instance_noise=0.1, noise_rng=state.latent_rng)


def test_warm_up_steps_are_undone_so_training_continues_as_if_they_never_ran():
    images = torch.rand(16, 1, 28, 28) * 2 - 1
    for steps_before in (0, 2):  # a fresh run (Adam has no state yet) and a resumed one
        reference, warmed = fresh_state(), fresh_state()
        for state in (reference, warmed):
            for _ in range(steps_before):
                one_step(state, images)
        before = cuda_graph._snapshot(warmed)
        for _ in range(cuda_graph.WARMUP_STEPS):
            one_step(warmed, images)
        cuda_graph._restore(warmed, before)

        for _ in range(3):
            assert torch.equal(one_step(warmed, images), one_step(reference, images))
        for name, tensor in reference.state_dict().items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, warmed.state_dict()[name]), name


def test_a_capturable_adam_checkpoint_resumes_in_an_eager_optimizer():
    state = fresh_state()
    one_step(state, torch.rand(16, 1, 28, 28) * 2 - 1)
    saved = state.optimizer_g.state_dict()
    for group in saved["param_groups"]:
        group["capturable"] = True  # as a CUDA-graph run checkpoints it
    eager = fresh_state()
    load_optimizer(eager.optimizer_g, saved)
    assert [group["capturable"] for group in eager.optimizer_g.param_groups] == [False]
    one_step(eager, torch.rand(16, 1, 28, 28) * 2 - 1)  # a CPU step: capturable Adam would refuse it


def test_cuda_steps_eagerly_only_where_the_graph_cannot_apply():
    cuda = torch.device("cuda")
    assert cuda_graph.eager_reason(cuda, d_update_every=1, is_distributed=False) is None
    assert "every 2 steps" in cuda_graph.eager_reason(cuda, d_update_every=2, is_distributed=False)
    assert "torchrun" in cuda_graph.eager_reason(cuda, d_update_every=1, is_distributed=True)
    assert cuda_graph.eager_reason(CPU, d_update_every=1, is_distributed=False) == "not on CUDA"

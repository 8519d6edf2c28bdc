"""What a finished training run leaves in MLflow besides its metrics: the model files and the training curves.

`model/` is ganlab's generator format, written here and read back by `tracking.load_generator`: the weights of
both networks as safetensors and `config.json`, all that rebuilds G, with no pickle anywhere.
"""

import json

import numpy as np
import torch
from mlflow import MlflowClient
from torch import nn

import ganlab
from ganlab import tracking
from ganlab.models import IMAGE_SHAPE
from ganlab.plots import separate_loss_curves, training_curves

MODEL_FORMAT = "ganlab-generator-v1"


def log_final_model(run_logger: tracking.RunLogger, config, generator: nn.Module, discriminator: nn.Module,
                    run_id: str, epochs_trained: int, global_step: int) -> None:
    """model/: both networks as safetensors and the JSON that `tracking.load_generator` rebuilds G from."""
    model_config = {
        "format": MODEL_FORMAT, "arch": config.arch, "latent_dim": config.latent_dim,
        "image_shape": list(IMAGE_SHAPE), "pixel_range": [-1, 1], "run_id": run_id,
        "epochs_trained": epochs_trained, "global_step": global_step,
        "ganlab_version": ganlab.__version__, "torch_version": torch.__version__,
    }
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        tensors = {key: value.detach().cpu().clone().contiguous() for key, value in module.state_dict().items()}
        run_logger.log_tensors(tensors, f"model/{name}.safetensors")
    run_logger.log_text(json.dumps(model_config, indent=2), "model/config.json")


def log_curves(run_logger: tracking.RunLogger, client: MlflowClient, run_id: str, steps_per_epoch: int) -> None:
    """plots/losses.png, losses_d_g.png (the D and G losses apart, as the second report draws them) and
    d_outputs.png from the whole history in the store (resumes included)."""
    history = {}
    for name in tracking.STEP_METRIC_NAMES:
        by_step = {metric.step: metric.value for metric in client.get_metric_history(run_id, name)}
        steps = np.array(sorted(by_step))
        history[name] = np.array([by_step[step] for step in steps])
    run_logger.log_figure(training_curves(steps, {"G loss": history["loss_g"], "D loss": history["loss_d"]},
                                          steps_per_epoch, "Generator and discriminator losses", "BCE loss"),
                          "plots/losses.png")
    run_logger.log_figure(separate_loss_curves(steps, history["loss_d"], history["loss_g"], steps_per_epoch),
                          "plots/losses_d_g.png")
    run_logger.log_figure(training_curves(steps, {"D(x)": history["d_real"], "D(G(z))": history["d_fake"]},
                                          steps_per_epoch, "Discriminator outputs", "mean D output"),
                          "plots/d_outputs.png")

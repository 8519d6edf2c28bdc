"""The generator as an MLflow pyfunc model, from code: latents in, images out, rebuilt without pickle.

MLflow copies this file into every logged generator model (`ganlab.model_registry`) and runs it when the model is
loaded: `load_context` rebuilds G with `ganlab.models.build_generator` from the model's `config.json` and loads
its `generator.safetensors`. Nothing is unpickled. The ganlab code it imports travels in the model's `code/`.

    model = mlflow.pyfunc.load_model("models:/fashion-gan@champion")
    images = model.predict(np.random.randn(8, 100).astype(np.float32))   # (8, 1, 28, 28) in [-1, 1]
"""

import json
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel
from safetensors.torch import load_file

from ganlab.models import build_generator


class GeneratorModel(PythonModel):
    """G in eval mode on the CPU; `predict` maps a float32 batch [N, latent_dim] to images [N, 1, 28, 28]."""

    def load_context(self, context) -> None:
        config = json.loads(Path(context.artifacts["config"]).read_text())
        self.generator = build_generator(config["arch"], config["latent_dim"])
        self.generator.load_state_dict(load_file(context.artifacts["weights"], device="cpu"))
        self.generator.eval()

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        # The model's signature has checked dtype and shape already (np.ndarray: MLflow infers nothing from the hint).
        latents = torch.from_numpy(np.ascontiguousarray(np.asarray(model_input, dtype=np.float32)))
        with torch.no_grad():
            return self.generator(latents).numpy()


mlflow.models.set_model(GeneratorModel())

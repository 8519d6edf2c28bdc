"""The generator as an MLflow Model: logged from every finished run, registered by name, `champion` by FID, and
read back from a run id or a model URI.

A run's `model/` folder holds ganlab's own files (`tracking.load_generator`). The MLflow Model wraps the same
safetensors + JSON with a signature, an input example, pinned requirements and the code that rebuilds G
(`ganlab/generator_pyfunc.py`, models from code), so the UI's Models view lists it, the registry versions it,
`mlflow models serve` serves it and another project loads it with `mlflow.pyfunc.load_model`. Nothing is pickled.
"""

import argparse
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import safetensors
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
from safetensors.torch import load_file
from torch import nn

from ganlab import metrics, run_context, tracking
from ganlab.errors import GanlabError, first_line
from ganlab.models import IMAGE_SHAPE, build_generator

# MLflow's own pyfunc logging says "Validating input example against model signature" at INFO on every save.
logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)

MODEL_NAME = "generator"  # the logged model's name: `runs:/RUN_ID/generator` loads it (the run's model/ stays ganlab's)
MODEL_FORMAT = "ganlab-generator-v1"  # the config.json format that generator_pyfunc.py reads
CHAMPION_ALIAS = "champion"
GENERATOR_CODE = Path(__file__).with_name("generator_pyfunc.py")
# The ganlab files G needs, bundled into the model's code/ so that it loads where ganlab is not installed.
BUNDLED_CODE = ("__init__.py", "errors.py", "models/*.py")
INPUT_EXAMPLE_SEED = 0
PROTOCOL_TAGS = tuple(metrics.protocol(0))  # eval.feature_space, eval.classifier_sha256, eval.samples, eval.reference
MODEL_URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID"
_MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class Registration:
    """A registered version and where `champion` points after it, with the reason, for the summary line."""

    name: str
    version: str
    fid: float | None
    champion_version: str | None
    reason: str  # why champion moved to this version or stayed where it was

    def summary(self) -> str:
        fid = f"FID {self.fid:.3f}" if self.fid is not None else "no FID"
        return (f"registered as models:/{self.name}/{self.version} ({fid}); models:/{self.name}@{CHAMPION_ALIAS} is "
                f"version {self.champion_version or '-'} ({self.reason})")


def check_model_name(name: str | None) -> None:
    """Refuse a registry name that would break `models:/NAME@ALIAS` before any training starts."""
    if name is not None and not _MODEL_NAME_PATTERN.fullmatch(name):
        raise GanlabError(f"--register-model {name!r}: use letters, digits, '.', '_' and '-' (at most 100, starting "
                          f"with a letter or digit)")


def signature(latent_dim: int) -> ModelSignature:
    """float32 latents [N, latent_dim] → float32 images [N, 1, 28, 28] in [-1, 1]."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, latent_dim))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *IMAGE_SHAPE))]))


def pip_requirements() -> list[str]:
    """Exactly what predict needs, pinned to what trained it (MLflow's inference would load the model once more)."""
    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"safetensors=={safetensors.__version__}", f"numpy=={np.__version__}"]


def log_generator_model(client: MlflowClient, run_id: str) -> str:
    """Log a finished run's G (from its `model/` files) as an MLflow Model linked to the run, with the final
    evaluation's metrics attached. Returns the model's id. Logging twice reuses the first."""
    model = logged_generator(client, run_id) or _log_model_in_scratch(client, run_id)
    return model.model_id


def logged_generator(client: MlflowClient, run_id: str):
    """The run's logged generator model (a LoggedModel), or None."""
    with tracking.store_errors(f"reading the models of run {run_id}"):
        run = client.get_run(run_id)
        for output in reversed(run.outputs.model_outputs if run.outputs else []):
            model = client.get_logged_model(output.model_id)
            if model.tags.get("ganlab.format") == MODEL_FORMAT and model.status == LoggedModelStatus.READY:
                return model
    return None


def register_generator(client: MlflowClient, run_id: str, name: str) -> Registration:
    """A version of `name` for the run's generator (logged first if the run has none; an existing version of the
    same model is reused), tagged with its FID and protocol; `champion` moves to it only if its FID is lower than
    the champion's under the same protocol."""
    check_model_name(name)
    model = logged_generator(client, run_id) or _log_model_in_scratch(client, run_id)
    protocol = _protocol(model.tags)
    fid = _final_metrics(model).get("fid")
    with tracking.store_errors(f"registering the generator of run {run_id} as {name!r}"):
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="Fashion-MNIST GAN generators (ganlab): latents → "
                                                             f"images; `{CHAMPION_ALIAS}` has the lowest FID")
        version = _version_of_model(client, name, model.model_id)
        if version is None:
            version = _create_version(client, name, model, run_id, protocol, fid)
        try:
            champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            champion = None
        move, reason = _champion_decision(version, fid, protocol, champion)
        if move:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
        client.set_model_version_tag(name, version.version, "ganlab.champion_decision", reason)
    champion_version = version.version if move else champion.version if champion else None
    return Registration(name, str(version.version), fid, str(champion_version) if champion_version else None, reason)


def _create_version(client: MlflowClient, name: str, model, run_id: str, protocol: dict[str, str], fid: float | None):
    """A new version of `name` for the logged model, linked both ways as `mlflow.register_model` links them."""
    # The source is the model's folder, not models:/m-ID: MLflow's SQL registry resolves that through the global
    # tracking URI instead of this client's store, and keeps no model id; the tag ganlab.model_id keeps it.
    version = client.create_model_version(
        name, source=model.artifact_location, run_id=run_id, model_id=model.model_id,
        tags={**protocol, "ganlab.model_id": model.model_id, "ganlab.arch": model.tags.get("ganlab.arch", ""),
              **({"fid": repr(fid)} if fid is not None else {})},
        description=f"{model.tags.get('ganlab.arch', '')} generator of run {run_id}"
                    + (f", FID {fid:.3f} ({_describe_protocol(protocol)})" if fid is not None else ""))
    registered = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    client.set_logged_model_tags(model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(
        [*registered, {"name": name, "version": version.version}])})
    return version


def _version_of_model(client: MlflowClient, name: str, model_id: str):
    """The version of `name` registered from this logged model, or None."""
    return next((version for version in client.search_model_versions(f"name = '{name}'")
                 if version.tags.get("ganlab.model_id") == model_id), None)


def _champion_decision(version, fid: float | None, protocol: dict[str, str], champion) -> tuple[bool, str]:
    """Whether `champion` moves to `version`: only to a strictly lower FID measured the same way."""
    if champion is not None and str(champion.version) == str(version.version):
        return False, "it is this version already"
    if fid is None:
        return False, "this run has no final FID (it trained with --eval-every 0)"
    if champion is None:
        return True, "the first version with an FID"
    champion_protocol = _protocol(champion.tags)
    if champion_protocol != protocol or "fid" not in champion.tags:
        return False, (f"version {champion.version} was measured under another protocol "
                       f"({_describe_protocol(champion_protocol) or 'none'}); FIDs are comparable only under the same one")
    champion_fid = float(champion.tags["fid"])
    if fid < champion_fid:
        return True, f"FID {fid:.3f} < {champion_fid:.3f} of version {champion.version}"
    return False, f"FID {fid:.3f} is not below {champion_fid:.3f} of version {champion.version}"


def _protocol(tags: dict[str, str]) -> dict[str, str]:
    """The tags that make two FIDs comparable: feature space, classifier weights, sample count, reference set."""
    return {key: tags[key] for key in PROTOCOL_TAGS if key in tags}


def _describe_protocol(protocol: dict[str, str]) -> str:
    if not protocol:
        return ""
    return (f"{protocol.get('eval.feature_space')}, {protocol.get('eval.samples')} samples vs "
            f"{protocol.get('eval.reference')}")


def _log_model_in_scratch(client: MlflowClient, run_id: str):
    with tempfile.TemporaryDirectory() as scratch:
        return _log_model(client, run_id, Path(scratch))


def _log_model(client: MlflowClient, run_id: str, scratch: Path):
    """The steps of `mlflow.pyfunc.log_model`, through this client (no global tracking URI, no active run)."""
    run = tracking.get_run(client, run_id)
    if run.info.status in ("KILLED", "FAILED"):
        raise GanlabError(f"run {run_id} is {run.info.status}; finish it with `python experiments/train.py --resume "
                          f"{run_id}` before logging its generator as a model")
    files_dir = _download_run_model_files(client, run_id, scratch / "files")
    config = json.loads((files_dir / "config.json").read_text())
    final_metrics = _final_evaluation(client, run_id, config["epochs_trained"])
    protocol = _protocol(run.data.tags) if final_metrics else {}
    code_dir = _bundle_code(scratch / "code")

    with tracking.store_errors(f"logging the generator of run {run_id} as an MLflow Model"):
        model = client.create_logged_model(
            run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, model_type="gan-generator",
            params=dict(run.data.params),
            tags={"ganlab.format": MODEL_FORMAT, "ganlab.arch": config["arch"],
                  "ganlab.global_step": str(config["global_step"]), **protocol})
        try:
            latents = torch.randn(2, config["latent_dim"], generator=torch.Generator().manual_seed(INPUT_EXAMPLE_SEED))
            mlflow.pyfunc.save_model(
                str(scratch / "model"), python_model=str(GENERATOR_CODE),
                artifacts={"weights": str(files_dir / "generator.safetensors"), "config": str(files_dir / "config.json")},
                signature=signature(config["latent_dim"]), input_example=latents.numpy().round(4),
                pip_requirements=pip_requirements(), code_paths=[str(code_dir)],
                mlflow_model=Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                                   model_id=model.model_id))
            client.log_model_artifacts(model.model_id, str(scratch / "model"))
            client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=config["epochs_trained"])])
            # The run's own final metrics, logged again with the model id (same timestamp, so the run's history does
            # not grow) and the reference set they were measured against: the model page shows them.
            test_set = run_context.TEST_SET
            client.log_batch(run_id, metrics=[
                Metric(metric.key, metric.value, metric.timestamp, metric.step, model_id=model.model_id,
                       dataset_name=test_set.name, dataset_digest=test_set.digest, run_id=run_id)
                for metric in final_metrics.values()])
        except BaseException:
            client.finalize_logged_model(model.model_id, "FAILED")
            raise
        return client.finalize_logged_model(model.model_id, "READY")


def _download_run_model_files(client: MlflowClient, run_id: str, folder: Path) -> Path:
    """The run's model/config.json and model/generator.safetensors, in one local folder."""
    folder.mkdir(parents=True)
    for name in ("config.json", "generator.safetensors"):
        try:
            local_path = Path(client.download_artifacts(run_id, f"model/{name}", str(folder)))
        except (MlflowException, OSError) as error:
            raise GanlabError(f"run {run_id} has no model/{name} to log as an MLflow Model; only finished training "
                              f"runs have one") from error
    return local_path.parent


def _final_evaluation(client: MlflowClient, run_id: str, last_epoch: int) -> dict[str, Metric]:
    """The headline quality metrics logged at the run's last epoch (none when it trained with --eval-every 0)."""
    final = {}
    with tracking.store_errors(f"reading the final metrics of run {run_id}"):
        for name in metrics.HEADLINE_METRICS:
            at_last_epoch = [metric for metric in client.get_metric_history(run_id, name) if metric.step == last_epoch]
            if at_last_epoch:
                final[name] = at_last_epoch[-1]
    return final


def _final_metrics(model) -> dict[str, float]:
    """The metrics attached to a logged model, by name."""
    return {metric.key: metric.value for metric in model.metrics or []}


def _bundle_code(folder: Path) -> Path:
    """A copy of the few ganlab files that rebuild G, as a package the model's code/ folder can hold."""
    package_root = Path(__file__).parent
    bundle = folder / "ganlab"
    for pattern in BUNDLED_CODE:
        for source in package_root.glob(pattern):
            target = bundle / source.relative_to(package_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return bundle


# Reading a generator back, from a run id or a model URI.

@dataclass
class LoadedGenerator:
    """G in eval mode, and the training run it came from (the run a derived analysis is linked to)."""

    generator: nn.Module
    run_id: str
    model_uri: str | None  # as given, when it came from --model-uri


def add_generator_flags(parser: argparse.ArgumentParser, purpose: str, where_results_go: str):
    """--run-id or --model-uri, one of them: the two ways a script names the generator it works on."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help=f"the training run whose generator {purpose}")
    source.add_argument("--model-uri", help=f"the generator of this MLflow Model ({MODEL_URI_FORMS}); "
                                            f"{where_results_go}")
    return source


def open_generator(client: MlflowClient, run_id: str | None = None, model_uri: str | None = None,
                   device: str | torch.device = "cpu") -> LoadedGenerator:
    """The generator behind `--run-id RUN_ID` or `--model-uri URI` (one of them), rebuilt from safetensors + JSON."""
    if (run_id is None) == (model_uri is None):
        raise GanlabError("give --run-id or --model-uri, one of them")
    if run_id is not None or model_uri.startswith("runs:/"):
        run_id = run_id or _run_id_of_runs_uri(model_uri)
        return LoadedGenerator(tracking.load_generator(run_id, client.tracking_uri, device), run_id, model_uri)
    model = _resolve_logged_model(client, model_uri)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            files_dir = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model.artifact_location.rstrip('/')}/artifacts", dst_path=scratch,
                tracking_uri=client.tracking_uri))
            config = json.loads((files_dir / "config.json").read_text())
            weights = load_file(str(files_dir / "generator.safetensors"), device="cpu")
        except (MlflowException, OSError, json.JSONDecodeError) as error:
            raise GanlabError(f"{model_uri}: the files of model {model.model_id} are not readable "
                              f"({first_line(error)})") from error
    generator = build_generator(config["arch"], config["latent_dim"])
    generator.load_state_dict(weights)
    return LoadedGenerator(generator.to(device).eval(), model.source_run_id, model_uri)


def source_run_id(client: MlflowClient, model_uri: str) -> str:
    """The training run behind a model URI, without loading its weights."""
    if model_uri.startswith("runs:/"):
        return tracking.get_run(client, _run_id_of_runs_uri(model_uri)).info.run_id
    return _resolve_logged_model(client, model_uri).source_run_id


def _run_id_of_runs_uri(model_uri: str) -> str:
    run_id = model_uri.removeprefix("runs:/").split("/")[0]
    if not run_id:
        raise GanlabError(f"--model-uri {model_uri!r} names no run; use one of {MODEL_URI_FORMS}")
    return run_id


def _resolve_logged_model(client: MlflowClient, model_uri: str):
    """models:/m-ID, models:/NAME/VERSION or models:/NAME@ALIAS → the LoggedModel, or one line saying what is wrong."""
    if not model_uri.startswith("models:/"):
        raise GanlabError(f"--model-uri {model_uri!r} is not a model URI; use one of {MODEL_URI_FORMS}")
    reference = model_uri.removeprefix("models:/").rstrip("/")
    by_alias = re.fullmatch(r"([^/@]+)@([^/@]+)", reference)
    by_version = re.fullmatch(r"([^/@]+)/(\d+)", reference)
    try:
        if by_alias or by_version:
            name, alias_or_number = (by_alias or by_version).groups()
            _require_registered_model(client, name, model_uri)
            find, missing = ((client.get_model_version_by_alias, f"alias {alias_or_number!r}") if by_alias
                             else (client.get_model_version, f"version {alias_or_number}"))
            try:
                version = find(name, alias_or_number)
            except MlflowException as error:
                raise GanlabError(f"{model_uri}: model {name!r} has no {missing}") from error
            model_id = version.tags.get("ganlab.model_id")
        elif re.fullmatch(r"m-[0-9a-f]+", reference):
            model_id = reference
        else:
            raise GanlabError(f"--model-uri {model_uri!r} is not understood; use one of {MODEL_URI_FORMS}")
        if not model_id:
            raise GanlabError(f"{model_uri} is not a ganlab generator (its version has no ganlab.model_id tag)")
        model = client.get_logged_model(model_id)
    except MlflowException as error:
        raise GanlabError(f"{model_uri}: {first_line(error)}") from error
    if model.tags.get("ganlab.format") != MODEL_FORMAT:
        raise GanlabError(f"{model_uri} is not a ganlab generator (its logged model {model.model_id} has no "
                          f"ganlab.format={MODEL_FORMAT} tag)")
    return model


def _require_registered_model(client: MlflowClient, name: str, model_uri: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        raise GanlabError(f"{model_uri}: no registered model named {name!r} in {client.tracking_uri}") from error

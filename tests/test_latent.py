"""The latent study: effect statistics on generators whose answer is known, then analysis/latent_effects.py as a real
subprocess against a real tracked run."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from ganlab.errors import GanlabError
from ganlab.latent import (EffectMeter, check_dims, ganspace_directions, random_directions, sefa_directions,
                           unit_dim, wilson_interval)
from ganlab.latent_study import load_latent_file
from ganlab.metrics.classifier import load_classifier
from ganlab.models import build_generator
from helpers import SMALL_STUDY, artifact_paths, assert_one_line_error, only_run, run_train

STUDY_FILES = {"base.png", "perturbation_grid.png", "magnitude_comparison.png", "dimension_comparison.png",
               "set_value_comparison.png", "base.json", "perturbation_grid.json", "magnitude_comparison.json",
               "dimension_comparison.json", "set_value_comparison.json", "effects.csv", "directions.csv",
               "effect_vs_offset.png", "class_shift_heatmap.png", "dim_ranking.png", "direction_comparison.png",
               "summary.md", "study.json"}


def generator_that_only_reads(dim: int) -> torch.nn.Module:
    """The second report's small G with every weight from z cut except those from `dim`: only that dim matters."""
    torch.manual_seed(0)
    generator = build_generator("mlp-small", 100)
    with torch.no_grad():
        kept = generator.fc1.weight[:, dim].clone() * 3
        generator.fc1.weight.zero_()
        generator.fc1.weight[:, dim] = kept
    return generator.eval()


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("cpu")


def test_only_the_dim_the_generator_reads_changes_anything(classifier):
    generator = generator_that_only_reads(7)
    latents = torch.randn(200, 100, generator=torch.Generator().manual_seed(0))
    meter = EffectMeter(generator, classifier, latents, "cpu")
    read, ignored = meter.offset(unit_dim(7, 100), 4.0), meter.offset(unit_dim(8, 100), 4.0)
    assert read.l2_mean > 1 and read.l2_ci > 0
    assert ignored.l2_mean == 0 and ignored.flip_rate == 0 and ignored.class_shift == [0.0] * 10
    assert meter.set_value(8, 100.0).l2_mean == 0
    # Bigger offsets move the images further (the generator is monotone along its one input).
    assert meter.offset(unit_dim(7, 100), 8.0).l2_mean > read.l2_mean


def test_an_offset_of_zero_changes_nothing(classifier):
    torch.manual_seed(1)
    meter = EffectMeter(build_generator("mlp", 100).eval(), classifier, torch.randn(64, 100), "cpu")
    for direction in [unit_dim(37, 100), *random_directions(2, 100, seed=0)]:
        unchanged = meter.offset(direction, 0.0)
        assert (unchanged.l2_mean, unchanged.flip_rate, max(map(abs, unchanged.class_shift))) == (0, 0, 0)


def test_sefa_and_ganspace_find_the_one_dim_that_matters():
    generator = generator_that_only_reads(7)
    (sefa_top,) = sefa_directions(generator, 1)
    assert torch.allclose(sefa_top.vector, unit_dim(7, 100).vector, atol=1e-5)
    # GANSpace regresses z on the principal component, so the other 99 entries carry sampling noise.
    (ganspace_top,) = ganspace_directions(generator, 100, 1, seed=0)
    assert int(ganspace_top.vector.abs().argmax()) == 7 and float(ganspace_top.vector[7]) > 0.95


def test_sefa_directions_are_orthonormal_and_ordered_by_how_much_they_move_the_first_layer():
    torch.manual_seed(2)
    generator = build_generator("cnn", 100)
    directions = sefa_directions(generator, 5)
    vectors = torch.stack([direction.vector for direction in directions])
    assert torch.allclose(vectors @ vectors.T, torch.eye(5), atol=1e-5)
    weight = generator.linear[0].weight.detach()
    gains = [float((weight @ vector).norm()) for vector in vectors]
    assert gains == sorted(gains, reverse=True)
    random_gain = max(float((weight @ direction.vector).norm()) for direction in random_directions(20, 100, 0))
    assert gains[0] > random_gain


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_out_of_range_dims_and_bad_latent_files_are_refused(tmp_path):
    with pytest.raises(GanlabError, match="0-based"):
        check_dims([10, 100], 100)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GanlabError, match="cannot read"):
        load_latent_file(tmp_path / "objects.npy", 100)
    np.save(tmp_path / "short.npy", np.zeros((8, 99)))
    with pytest.raises(GanlabError, match=r"need \[N, 100\]"):
        load_latent_file(tmp_path / "short.npy", 100)


# --- analysis/latent_effects.py as a subprocess -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, repo_root, data_dir):
    store_dir = tmp_path_factory.mktemp("latent")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "1280",
                       "--epochs", "1", "--eval-every", "0")
    assert result.returncode == 0, result.stderr
    return store_uri, only_run(MlflowClient(store_uri)).info.run_id


def run_latent_effects(repo_root, *arguments: str):
    return subprocess.run([sys.executable, "analysis/latent_effects.py", *arguments], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


def test_study_logs_every_figure_and_table_and_repeats_exactly(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    outputs = []
    for attempt in ("first", "second"):
        out_dir = tmp_path / attempt
        result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri,
                                    "--out", str(out_dir), *SMALL_STUDY)
        assert result.returncode == 0, result.stderr
        assert f"latent study of run {source_run_id} logged as run" in result.stdout
        outputs.append(out_dir)
    first, second = outputs
    assert {path.name for path in first.iterdir()} == STUDY_FILES
    for name in STUDY_FILES - {"study.json"}:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    with (first / "effects.csv").open() as handle:
        effects = list(csv.DictReader(handle))
    # Every dim at ±4, the 5 study dims and 3 random controls at the 8 other signed offsets, 5 dims × 3 values.
    assert len(effects) == 2 * (100 + 4 + 2 * 2) + 8 * (5 + 3) + 5 * 3
    assert {row["family"] for row in effects} == {"dim", "random", "sefa", "ganspace"}
    assert all(0 <= float(row["flip_low"]) <= float(row["flip_rate"]) <= float(row["flip_high"]) <= 1
               for row in effects)
    summary = (first / "summary.md").read_text()
    assert "fmnist-cnn-v1" in summary and "The study's dims [10, 20, 37, 53, 67] rank" in summary

    client = MlflowClient(store_uri)
    experiment_id = client.get_run(source_run_id).info.experiment_id
    analyses = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'latent-analysis'")
    assert len(analyses) == 2
    analysis = analyses[0]
    assert analysis.info.status == "FINISHED"
    assert analysis.data.tags["ganlab.source_run_id"] == source_run_id
    assert analysis.data.params["dims"] == "10,20,37,53,67" and analysis.data.params["stats_samples"] == "64"
    assert artifact_paths(client, analysis.info.run_id) == STUDY_FILES
    assert 0 <= analysis.data.metrics["latent.median_dim_flip_rate"] <= 1


def test_a_user_latent_file_sets_the_display_batch(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32))
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, "--z-file",
                                str(tmp_path / "z.npy"), "--dims", "2,71,99", "--values=-10,10,100",
                                "--out", str(tmp_path / "out"), *SMALL_STUDY)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "set_value_comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows][:3] == ["base", "dim 2 = -10", "dim 2 = 10"]
    assert all(len(row["predicted_classes"]) == 3 for row in rows)


@pytest.mark.parametrize("arguments, fragment", [
    (["--dims", "10,20,37,53,100"], "latent dim 100 is out of range: dims are 0-based"),
    (["--offsets", "2,x"], "--offsets takes comma-separated numbers"),
    (["--z-seed", "1", "--z-file", "z.npy"], "not both"),
    (["--stats-samples", "1"], "--stats-samples must be at least 2"),
])
def test_bad_settings_are_one_line_errors(repo_root, tracked_run, arguments, fragment):
    store_uri, source_run_id = tracked_run
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, *arguments)
    assert_one_line_error(result, fragment)


def test_unknown_run_generatorless_run_and_used_out_dir_are_one_line_errors(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    client = MlflowClient(store_uri)
    experiment_id = client.get_run(source_run_id).info.experiment_id
    empty_run = client.create_run(experiment_id, tags={"ganlab.kind": "train"}).info.run_id
    assert_one_line_error(run_latent_effects(repo_root, "--run-id", "feedface", "--tracking-uri", store_uri),
                          "no run 'feedface'")
    assert_one_line_error(run_latent_effects(repo_root, "--run-id", empty_run, "--tracking-uri", store_uri),
                          "has no readable generator")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert_one_line_error(run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri,
                                             "--out", str(tmp_path / "used")), "nothing is overwritten")
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"

"""The latent study: effect statistics on generators whose answer is known, then analysis/latent_effects.py as a real
subprocess against a real tracked run."""

import csv
import json
import sys

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from ganlab.errors import GanlabError
from ganlab.latent import (EffectMeter, base_latents, check_dims, ganspace_directions, random_directions,
                           sefa_directions, unit_dim, wilson_interval)
from ganlab.latent_study import LatentStudyConfig, SetBlock, load_latent_file, parse_set_values
from ganlab.metrics.classifier import load_classifier
from ganlab.models import build_generator
from ganlab.claims import CLAIMS
from helpers import SMALL_STUDY, artifact_paths, assert_one_line_error, only_run, run_script, run_train

ANALYSIS_FIGURES = {"effect_vs_offset.png", "class_shift_heatmap.png", "dim_ranking.png", "direction_comparison.png"}
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
    with pytest.raises(GanlabError, match=r"0-based indices 0…99 .* the 100th is 99"):
        check_dims([10, 100], 100)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GanlabError, match="cannot read"):
        load_latent_file(tmp_path / "objects.npy", 100)
    np.save(tmp_path / "short.npy", np.zeros((8, 99)))
    with pytest.raises(GanlabError, match=r"need \[N, 100\]"):
        load_latent_file(tmp_path / "short.npy", 100)


def test_set_values_place_the_unchanged_row_where_the_report_did():
    blocks = parse_set_values(("1=0,10,100", "70=-10,base,10,100", "99=-50,-10,10"), 100)
    assert blocks == [SetBlock(1, [None, 0.0, 10.0, 100.0]), SetBlock(70, [-10.0, None, 10.0, 100.0]),
                      SetBlock(99, [None, -50.0, -10.0, 10.0])]
    assert blocks[1].values == [-10.0, 10.0, 100.0]
    for specs, fragment in [(("1=0,x",), "DIM=V1,V2"), (("one=0",), "DIM=V1,V2"), (("1=",), "at least one"),
                            (("1=base,0,base",), "more than once"), (("1=0", "1=5"), "names dim 1 twice"),
                            (("100=-50",), "the 100th is 99")]:
        with pytest.raises(GanlabError, match=fragment):
            parse_set_values(specs, 100)


def test_a_preset_sets_the_reports_study_and_flags_beside_it_win():
    config = LatentStudyConfig.from_flags({"preset": "report-2025", "samples": 4})
    assert (config.dims, config.offsets, config.grid_offset, config.magnitude_dim, config.samples) == \
        ("10,20,37,53,67", "2,4,6,8,10", 2.0, 10, 4)
    assert LatentStudyConfig.from_flags({}) == LatentStudyConfig()
    with pytest.raises(GanlabError, match="unknown --preset 'report-2024'"):
        LatentStudyConfig.from_flags({"preset": "report-2024"})


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
    return run_script([sys.executable, "analysis/latent_effects.py", *arguments], cwd=repo_root, timeout=300)


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
    assert analysis.data.params["preset"] == "None" and analysis.data.tags["ganlab.preset"] == "none"
    assert artifact_paths(client, analysis.info.run_id) == STUDY_FILES
    assert 0 <= analysis.data.metrics["latent.median_dim_flip_rate"] <= 1


def test_a_user_latent_file_sets_the_display_batch(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32))
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, "--z-file",
                                str(tmp_path / "z.npy"), "--dims", "1,70,99", "--values=-10,10,100",
                                "--out", str(tmp_path / "out"), *SMALL_STUDY)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "set_value_comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows][:3] == ["base", "dim 1 = -10", "dim 1 = 10"]
    assert all(len(row["predicted_classes"]) == 3 for row in rows)


def read_rows(folder, name: str) -> list[dict]:
    return json.loads((folder / f"{name}.json").read_text())["rows"]


def test_preset_report_2023_draws_the_second_reports_three_blocks_in_its_row_order(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    out = tmp_path / "out"
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, "--preset",
                                "report-2023", "--z-seed", "3", "--out", str(out), *SMALL_STUDY)
    assert result.returncode == 0, result.stderr
    drawn = {path.name for path in out.glob("*.png")}
    assert drawn == {"base.png", "set_value_comparison.png", *ANALYSIS_FIGURES}
    # 作业三 §四: the 2nd number → 0, 10, 100 under the original; the 71st → −10, original, 10, 100; the 100th →
    # 10, original, −10, −50 (top to bottom as the report lists them); 8 images from torch.randn(8, 100) each.
    rows = read_rows(out, "set_value_comparison")
    assert [(row.get("dim"), row.get("amount")) for row in rows] == [
        (None, None), (1, 0), (1, 10), (1, 100),
        (70, -10), (None, None), (70, 10), (70, 100),
        (99, 10), (None, None), (99, -10), (99, -50)]
    assert [row["label"] for row in rows[4:8]] == ["dim 70 = -10", "base", "dim 70 = 10", "dim 70 = 100"]
    display = base_latents(8, 100, seed=3)  # --z-seed given beside the preset wins
    assert json.loads((out / "study.json").read_text())["display_latents"] == display.tolist()
    base_classes = read_rows(out, "base")[0]["predicted_classes"]
    for row in rows:
        assert len(row["predicted_classes"]) == 8
        if row["mode"] == "base":
            assert row["predicted_classes"] == base_classes and "z_values" not in row
        else:
            assert row["z_values"] == [row["amount"]] * 8
    summary = (out / "summary.md").read_text()
    assert "(preset report-2023: that report's study exactly)" in summary
    assert "The reports' claims" not in summary  # --no-claims

    client = MlflowClient(store_uri)
    experiment_id = client.get_run(source_run_id).info.experiment_id
    (study,) = client.search_runs([experiment_id], "tags.`ganlab.preset` = 'report-2023'")
    assert study.data.params["preset"] == "report-2023" and study.data.params["dims"] == "1,70,99"
    assert study.data.params["z_seed"] == "3"


def test_preset_report_2025_draws_the_grid_at_2_and_all_25_comparisons(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    out = tmp_path / "out"
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, "--preset",
                                "report-2025", "--out", str(out), *SMALL_STUDY)
    assert result.returncode == 0, result.stderr
    assert {path.name for path in out.glob("*.png")} == {"base.png", "perturbation_grid.png",
                                                         "magnitude_comparison.png", *ANALYSIS_FIGURES}
    base_z = np.array(json.loads((out / "study.json").read_text())["display_latents"])
    dims, offsets = (10, 20, 37, 53, 67), (2, 4, 6, 8, 10)

    def assert_offset_rows(rows, expected):
        assert [(row["dim"], row["amount"]) for row in rows] == expected
        for row in rows:
            assert np.allclose(row["z_values"], base_z[:, row["dim"]] + row["amount"], atol=1e-6)
            assert len(row["predicted_classes"]) == 8

    # Lab04 §5.5: the 15×8 grid is the five dims at −2, unchanged, +2 (Fig. 5.15–5.19) ...
    assert_offset_rows(read_rows(out, "perturbation_grid"), [(dim, sign * 2) for dim in dims for sign in (-1, 0, 1)])
    # ... dim 10 at every offset (Fig. 5.10–5.14) ...
    magnitude = read_rows(out, "magnitude_comparison")
    assert magnitude[0]["mode"] == "base"
    assert_offset_rows(magnitude[1:], [(10, sign * offset) for offset in offsets for sign in (-1, 1)])
    # ... and the 25 comparisons, each −a, unchanged, +a.
    comparisons = sorted(path.name for path in (out / "offset_comparisons").glob("*.png"))
    assert comparisons == sorted(f"dim_{dim}_offset_{offset}.png" for dim in dims for offset in offsets)
    for dim in dims:
        for offset in offsets:
            assert_offset_rows(read_rows(out / "offset_comparisons", f"dim_{dim}_offset_{offset}"),
                               [(dim, -offset), (dim, 0), (dim, offset)])
    with (out / "effects.csv").open() as handle:
        sweep = {float(row["amount"]) for row in csv.DictReader(handle) if row["family"] == "random"}
    assert {-2.0, 2.0} <= sweep  # every dim is measured at the report's ±2


def test_the_study_puts_the_reports_claims_to_the_test_on_its_generator(repo_root, tracked_run, tmp_path):
    store_uri, source_run_id = tracked_run
    out = tmp_path / "out"
    result = run_latent_effects(repo_root, "--run-id", source_run_id, "--tracking-uri", store_uri, "--out", str(out),
                                "--figures", "grid", *SMALL_STUDY, "--claims", "--stats-samples", "16")
    assert result.returncode == 0, result.stderr
    summary = (out / "summary.md").read_text()
    section = summary.split("## The reports' claims on this generator", 1)[1]
    claim_lines = [line for line in section.splitlines() if line.startswith("- **")]
    assert [line.split("**")[1] for line in claim_lines] == [claim.key for claim in CLAIMS]
    assert all(" on this G:** " in line for line in claim_lines)
    with (out / "claims.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["claim"] for row in rows] == [claim.key for claim in CLAIMS]
    assert {row["run_id"] for row in rows} == {source_run_id} and {row["holds"] for row in rows} <= {"True", "False"}


@pytest.mark.parametrize("arguments, fragment", [
    (["--dims", "10,20,37,53,100"], "latent dim 100 is out of range: dims are 0-based indices 0…99"),
    (["--set", "99=-50,-10,10", "--set", "100=0"], "the 100th is 99"),
    (["--set", "1=0,ten"], "--set takes DIM=V1,V2"),
    (["--figures", "grid,movie"], "--figures takes a comma-separated subset"),
    (["--preset", "report-2024"], "invalid choice: 'report-2024'"),
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

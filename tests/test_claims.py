"""The reports' claims: each test checked on generators whose answer is known, the verdict rule, the cross-generator
consistency of an index, then analysis/claims.py as a real subprocess against tiny trained runs."""

import csv
import json
import sys

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from ganlab import data
from ganlab.claim_verdicts import DEPENDS, DOES_NOT_HOLD, HOLDS, consistency, judge
from ganlab.claims import CLAIMS, Check, ClaimsSettings, Measurements, SourceRun, check_all, mann_whitney_greater
from ganlab.metrics.classifier import load_classifier
from ganlab.models import build_generator
from helpers import artifact_paths, assert_one_line_error, run_script, run_train

TINY = ClaimsSettings(stats_samples=12, stats_seed=1, random_directions=6)
CLAIMS_FILES = {"claims.md", "claims.csv", "claim_numbers.csv", "verdicts.json", "consistency.csv",
                "consistency.png"}


class BlendGenerator(nn.Module):
    """Draws a blend of two real images in which only z[dim] sets the share of the second (growing with
    sign·z[dim]): a generator whose latent index has a known meaning."""

    def __init__(self, first: torch.Tensor, second: torch.Tensor, dim: int, sign: int = 1):
        super().__init__()
        self.latent_dim, self.dim, self.sign = 100, dim, sign
        self.register_buffer("first", first)
        self.register_buffer("second", second)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        # Share of the second image: 0.12 at 0, 0.27 at 10, 0.95 at 50, ~1 at 100 (for sign +1).
        share = torch.sigmoid((self.sign * latents[:, self.dim] - 20) / 10).view(-1, 1, 1, 1)
        return (1 - share) * self.first + share * self.second


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("cpu")


def real_image(data_dir, class_name: str) -> torch.Tensor:
    images, labels = data.load_images(data_dir, train=False)
    index = int((labels == data.CLASS_NAMES.index(class_name)).nonzero()[0])
    return data.to_training_tensor(images[index:index + 1], "cpu")[0]


def test_a_generator_whose_2nd_number_draws_a_coat_passes_that_claim_and_no_other(data_dir, classifier):
    generator = BlendGenerator(real_image(data_dir, "Trouser"), real_image(data_dir, "Coat"), dim=1)
    checks = check_all(Measurements(generator, classifier, "cpu", TINY))
    assert {key for key, check in checks.items() if check.holds} == {"2nd-number-long-sleeves"}
    long_sleeves = checks["2nd-number-long-sleeves"].numbers
    assert long_sleeves["p.0"] < 0.5 < long_sleeves["p.100"] and long_sleeves["rank"] == 1
    assert long_sleeves["dims_passing"] == 1  # no other index does anything
    # The other indices change nothing, so nothing grows with the offset and dim 67 rewrites nothing.
    assert checks["larger-offsets-change-more"].numbers["steps_up"] == 0
    assert checks["dim-67-rewrites-globally"].numbers["rank"] >= 90


def test_a_generator_drawing_trousers_as_its_100th_number_falls_passes_the_trouser_claim(data_dir, classifier):
    generator = BlendGenerator(real_image(data_dir, "Bag"), real_image(data_dir, "Trouser"), dim=99, sign=-1)
    checks = check_all(Measurements(generator, classifier, "cpu", TINY))
    assert checks["100th-number-trousers"].holds
    trousers = checks["100th-number-trousers"].numbers
    assert trousers["p.10"] < trousers["p.-10"] < trousers["p.-50"] and trousers["rank"] == 1
    assert not any(checks[key].holds for key in ("2nd-number-long-sleeves", "71st-number-t-shirts",
                                                 "larger-offsets-change-more", "dims-are-semantic-axes"))


def test_a_claim_holds_does_not_hold_or_depends_on_the_generators_of_its_reports_architecture():
    claim = next(claim for claim in CLAIMS if claim.key == "2nd-number-long-sleeves")  # the 2023 report: mlp-small
    small = [SourceRun(f"run{seed}", f"mlp-small-s{seed}", "mlp-small", str(seed)) for seed in range(3)]
    other = SourceRun("big", "mlp-s0", "mlp", "0")

    def verdict(holds: list[bool], other_holds: bool = True):
        checks = {run: Check(held, "") for run, held in zip(small, holds)} | {other: Check(other_holds, "")}
        return judge(claim, checks)

    assert verdict([True, True, True], other_holds=False).verdict == HOLDS
    assert verdict([False, False, False]).verdict == DOES_NOT_HOLD  # the mlp generator does not vote
    assert verdict([True, False, True]).verdict == DEPENDS
    assert verdict([True, False, True]).held_on == [small[0], small[2]]
    only_other = judge(claim, {other: Check(True, "")})
    assert only_other.verdict == HOLDS and only_other.voters == [other]  # no mlp-small given: judged on what is


def test_mann_whitney_tells_a_shifted_sample_from_an_equal_one():
    low, high = torch.linspace(0, 1, 50).numpy(), torch.linspace(0.5, 1.5, 50).numpy()
    assert mann_whitney_greater(high, low) < 0.001 and mann_whitney_greater(low, high) > 0.999
    assert mann_whitney_greater(low, low) == pytest.approx(0.5, abs=0.05)


def test_an_index_means_the_same_in_a_copy_of_a_generator_and_nothing_once_its_inputs_are_relabelled(classifier):
    torch.manual_seed(0)
    generator = build_generator("mlp-small", 100).eval()
    relabelled = build_generator("mlp-small", 100).eval()
    relabelled.load_state_dict(generator.state_dict())
    with torch.no_grad():  # index i of the relabelled generator is index i+1 of the original
        relabelled.fc1.weight.copy_(generator.fc1.weight.roll(-1, dims=1))
    settings = ClaimsSettings(stats_samples=8, stats_seed=1, random_directions=4)
    original = Measurements(generator, classifier, "cpu", settings)
    runs = [SourceRun(name, name, "mlp-small", "0") for name in ("a", "b")]

    same = consistency("mlp-small", runs, [original, original], seed=0)
    assert len(same.consistent_dims) == 100 and len(same.agreeing_dims) == 100
    moved = consistency("mlp-small", runs, [original, Measurements(relabelled, classifier, "cpu", settings)], seed=0)
    assert len(moved.consistent_dims) <= 2 < len(same.consistent_dims)
    assert moved.same_index.mean() < 0.2 < same.same_index.mean()


# --- analysis/claims.py as a subprocess ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, repo_root, data_dir):
    """Two mlp-small generators trained for a few steps with different seeds."""
    store_uri = f"sqlite:///{tmp_path_factory.mktemp('claims')}/mlflow.db"
    for seed in ("0", "1"):
        result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "640",
                           "--max-steps", "20", "--eval-every", "0", "--seed", seed)
        assert result.returncode == 0, result.stderr
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"])
    return store_uri, [run.info.run_id for run in runs]


def run_claims(repo_root, *arguments: str):
    return run_script([sys.executable, "analysis/claims.py", *arguments], cwd=repo_root, timeout=300)


def test_claims_script_judges_every_claim_on_every_generator_and_logs_one_run(repo_root, tiny_runs, tmp_path):
    store_uri, run_ids = tiny_runs
    out = tmp_path / "out"
    result = run_claims(repo_root, *[flag for run_id in run_ids for flag in ("--run-id", run_id)], "--tracking-uri",
                        store_uri, "--stats-samples", "16", "--random-directions", "4", "--out", str(out),
                        "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "| claim | report | judged on | verdict | holds on |" in result.stdout
    assert "claims tested on 2 generators, logged as run" in result.stdout
    assert {path.name for path in out.iterdir()} == CLAIMS_FILES

    claims_md = (out / "claims.md").read_text(encoding="utf-8")
    for claim in CLAIMS:  # each claim quoted in the report's words, translated, with a verdict
        assert claim.original in claims_md and claim.translation in claims_md
    verdicts = json.loads((out / "verdicts.json").read_text(encoding="utf-8"))
    assert [entry["claim"] for entry in verdicts] == [claim.key for claim in CLAIMS]
    assert all(entry["verdict"] in (HOLDS, DOES_NOT_HOLD, DEPENDS) for entry in verdicts)
    # Both generators are mlp-small: the 2023 report's claims are judged on them, the 2025 report's (mlp) too,
    # for want of an mlp.
    assert all(entry["judged_on"] == run_ids for entry in verdicts)
    with (out / "claims.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(CLAIMS)
    with (out / "consistency.csv").open() as handle:
        consistency_rows = list(csv.DictReader(handle))
    assert [int(row["dim"]) for row in consistency_rows] == list(range(100))
    assert "Does any latent index mean the same thing across generators?" in claims_md
    assert "**mlp-small** (2 generators)" in claims_md

    client = MlflowClient(store_uri)
    experiment_id = client.get_run(run_ids[0]).info.experiment_id
    (run,) = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'latent-claims'")
    assert run.info.status == "FINISHED" and run.info.run_name == "latent-claims-2-generators"
    assert run.data.tags["ganlab.source_run_ids"] == ",".join(run_ids)
    assert run.data.params["stats_samples"] == "16" and run.data.params["feature_space"] == "fmnist-cnn-v1"
    assert artifact_paths(client, run.info.run_id) == CLAIMS_FILES
    assert sum(run.data.metrics[f"claims.{name}"] for name in ("holds", "does_not_hold",
                                                               "depends_on_the_trained_G")) == len(CLAIMS)


def test_claims_script_refuses_a_generator_given_twice_and_bad_settings(repo_root, tiny_runs):
    store_uri, run_ids = tiny_runs
    assert_one_line_error(run_claims(repo_root, "--run-id", run_ids[0], "--run-id", run_ids[0], "--tracking-uri",
                                     store_uri), "given twice")
    assert_one_line_error(run_claims(repo_root, "--run-id", run_ids[0], "--stats-samples", "1", "--tracking-uri",
                                     store_uri), "--stats-samples must be at least 2")
    assert_one_line_error(run_claims(repo_root, "--run-id", "feedface", "--tracking-uri", store_uri), "feedface")

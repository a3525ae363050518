"""hwnas search: result files, infeasible budgets, resume of an interrupted refinement, workers sharing a study."""

import json
import logging
import re
import shutil
import sqlite3
import subprocess
import sys

import optuna
import pytest
from killing import kill_when

from hwnas.run import open_run
from hwnas.search.budgeted import SearchSettings
from hwnas.search.budgeted import search as search_run
from profilers import Protocol

QUICK = Protocol.quick()


def search(run, table, budget, show_progress=False, **settings):
    """The search's result as its JSON (what result.json and --json hold)."""
    return search_run(run, table, budget, SearchSettings(**settings), show_progress).to_dict()


def test_search_writes_result_front_and_plot(tiny_run, tiny_table):
    run = open_run(tiny_run)
    typed = search_run(run, tiny_table, 10.0, SearchSettings(refine_trials=3, protocol=QUICK), show_progress=False)
    result = typed.to_dict()
    # the architecture travels as the space's value; its string appears only in the JSON
    assert typed.chosen.arch == run.space.parse(result["chosen"]["arch"]) and not isinstance(typed.chosen.arch, str)
    assert all(not isinstance(f.arch, str) for f in typed.chosen.measured.finalists)
    assert json.loads(open(typed.files["result"]).read())["chosen"] == result["chosen"]
    chosen = result["chosen"]
    assert run.space.parse(chosen["arch"])
    assert chosen["measured_ms"] > 0 and chosen["predicted_ms"] > 0 and chosen["within_budget"]
    assert result["timm_arch_def"][0] == ["ds_r1_k3_s1_e1_c16_se0.25"]
    assert result["params"] > 0 and result["macs"] > 0 and result["table"] == str(tiny_table)
    assert result["refinement"]["trials"] == 3 and result["refinement"]["failed"] == 0
    assert "measurement_warning" in chosen and chosen["finalist_passes_measured_over_predicted"]
    # kernels wider than the 1x1 map of the last block are twins: the search rated 6 candidates, 2 functions
    assert result["rating_families"][5] == {"rated": 6, "functions": 2}
    assert result["rating_families"][0]["rated"] == result["rating_families"][0]["functions"]
    front = json.loads(open(result["files"]["front"]).read())
    assert len(front) == result["front_size"] >= 2
    assert all(a["cost"] < b["cost"] and a["rating"] > b["rating"] for a, b in zip(front, front[1:]))
    assert open(result["files"]["plot"], "rb").read(4) == b"\x89PNG"


def test_macs_objective_needs_no_table(tiny_run):
    run = open_run(tiny_run)
    result = search(run, None, budget=2.0, objective="macs", show_progress=False)
    assert result["macs"] / 1e6 <= 2.0 + 1e-9 and result["unit"] == "Mmacs"


def test_naswot_chooses_among_the_best_rated_by_mean_rank(tiny_run, tiny_table):
    # the K best-rated front points under the budget, each with its NASWOT at initialisation: the pick is the best mean
    # rank of (rating, NASWOT), computed here again from the recorded values
    from hwnas.search.proxies import rank_mean

    run = open_run(tiny_run)
    plain = search(run, None, budget=2.0, objective="macs")
    result = search(run, None, budget=2.0, objective="macs", naswot_candidates=4)["chosen"]
    table = result["naswot"]
    assert len(table) == 4 and plain["chosen"]["arch"] in table  # the rating's own pick is a candidate
    archs = list(table)
    means = rank_mean([[-table[a]["rating"] for a in archs], [table[a]["naswot"] for a in archs]])
    assert [table[a]["rank_mean"] for a in archs] == means
    assert result["arch"] == max(archs, key=lambda a: (table[a]["rank_mean"], -table[a]["rating"]))
    assert result["source"] == "combiner + NASWOT" and result["cost"] <= 2.0 + 1e-9
    # a latency search: the front points join the measured finalists, and the pick is among those that fit
    measured = search(run, tiny_table, 10.0, refine_trials=0, protocol=QUICK, naswot_candidates=3)["chosen"]
    assert set(measured["naswot"]) <= set(measured["finalists"]) and len(measured["finalists"]) == 3
    assert measured["arch"] in measured["naswot"] and measured["source"].endswith(" + NASWOT")


def test_infeasible_budget_gives_the_fastest_achievable(tiny_run, tiny_table):
    with pytest.raises(ValueError, match="below the cheapest architecture of mbconv-tiny: .* ms predicted"):
        search(open_run(tiny_run), tiny_table, budget=0.001, refine_trials=0, protocol=QUICK, show_progress=False)


def test_table_of_another_space_is_refused(tiny_run, tmp_path, tiny_table):
    data = json.loads(tiny_table.read_text())
    data["metadata"]["space"] = "vit-tiny"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="measured for space='vit-tiny'"):
        search(open_run(tiny_run), other, budget=1.0, refine_trials=0, show_progress=False)


SEARCH = [sys.executable, "-m", "hwnas.cli", "search", "--quick", "--json"]


def _finished(database, name=None) -> int:
    try:
        connection = sqlite3.connect(database)
        return connection.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'FAIL')").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_interrupted_refinement_resumes(tiny_run, tiny_table, tmp_path):
    database = tmp_path / "study.db"
    args = SEARCH + ["--run", str(tiny_run), "--table", str(tiny_table), "--budget-ms", "10",
                     "--storage", f"sqlite:///{database}"]
    kill_when(args + ["--refine-trials", "200"], lambda: _finished(database) >= 3)
    before = _finished(database)
    assert 3 <= before < 200
    done = subprocess.run(args + ["--refine-trials", str(before + 2)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (name,) = optuna.get_all_study_names(f"sqlite:///{database}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{database}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == before + 2
    assert json.loads(done.stdout)["refinement"]["trials"] >= before + 2


def test_two_workers_share_one_study(tiny_run, tiny_table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = SEARCH + ["--run", str(tiny_run), "--table", str(tiny_table), "--budget-ms", "10", "--storage", storage,
                     "--refine-trials", "6"]
    workers = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read()
    (name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    # the combiner's starting points were enqueued once (not once per worker), and each was evaluated once
    enqueued = [t for t in study.trials if "fixed_params" in t.system_attrs]
    assert enqueued and len({t.user_attrs["arch"] for t in enqueued}) == len(enqueued)
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    # each trial carries its latency constraint (measured - budget), which the sampler reads for feasibility
    assert complete and all(
        t.constraints == {"measured_ms_over_budget": pytest.approx(t.user_attrs["measured_ms"] - 10)} for t in complete)


def test_changed_ratings_start_their_own_study(tiny_run, tiny_table, tmp_path):
    """A study is resumed only for the ratings it refined: after block 0 is trained further and rated again (or for
    another run sharing --storage), the search starts a new study whose trials carry the new ratings, instead of
    resuming the old study's finished trials and their stale ratings."""
    import shutil

    from hwnas.supernet.distill import DistillConfig, distill
    from hwnas.supernet.ratings import load_ratings, rate

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = search(open_run(tiny_run), tiny_table, budget=10.0, refine_trials=3, storage=storage, protocol=QUICK,
                   show_progress=False)
    copy = tmp_path / "trained-further"
    shutil.copytree(tiny_run, copy)
    run = open_run(copy)
    distill(run, block=0, config=DistillConfig(epochs=2), show_progress=False)
    rate(run, show_progress=False)
    second = search(run, tiny_table, budget=10.0, refine_trials=3, storage=storage, protocol=QUICK,
                    show_progress=False)
    assert first["refinement"]["study"] != second["refinement"]["study"]
    assert set(optuna.get_all_study_names(storage)) == {first["refinement"]["study"], second["refinement"]["study"]}
    assert second["refinement"]["complete"] == 3 and second["refinement"]["failed"] == 0
    ratings = load_ratings(run)
    study = optuna.load_study(study_name=second["refinement"]["study"], storage=storage)
    for trial in study.trials:
        arch = run.space.parse(trial.user_attrs["arch"])
        rating = sum(ratings[b][str(c)] for b, c in enumerate(run.space.blocks_of(arch)))
        assert trial.user_attrs["rating"] == pytest.approx(rating)
    # the same ratings again resume their study rather than starting another
    again = search(run, tiny_table, budget=10.0, refine_trials=3, storage=storage, protocol=QUICK,
                   show_progress=False)
    assert again["refinement"]["study"] == second["refinement"]["study"]
    assert len(optuna.get_all_study_names(storage)) == 2


def test_failed_measurements_are_recorded_with_their_error(tiny_run, tiny_table, tmp_path):
    from hwnas.search.combiner import Combiner
    from hwnas.search.costs import latency_cost
    from hwnas.search.refine import StudySettings, refine
    from hwnas.supernet.ratings import open_ratings
    from profilers.predictor import LatencyPredictor
    from profilers.table import LatencyTable

    run = open_run(tiny_run)
    space = run.space
    predictor = LatencyPredictor(LatencyTable.load(tiny_table, space), space)
    cost = latency_cost(predictor)
    ratings = open_ratings(run)
    combiner = Combiner(space, ratings.blocks, cost.unit_cost, cost.base)
    calls = []

    def flaky(arch):
        calls.append(arch)
        if len(calls) % 2 == 0:
            raise RuntimeError("device went away")
        return 0.05

    for multi in (False, True):
        study = refine(combiner, ratings, 10.0, flaky,
                       StudySettings(f"sqlite:///{tmp_path / 's.db'}", f"flaky-{multi}", trials=4, multi_objective=multi),
                       show_progress=False)
        states = [t.state for t in study.trials if t.state.is_finished()]
        assert len(states) == 4
        failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
        assert failed and all(t.user_attrs["error"] == "RuntimeError: device went away" for t in failed)
        assert len(study.directions) == (2 if multi else 1)


def test_perturbed_measurements_are_flagged():
    from hwnas.search.remeasure import perturbation_warning

    assert perturbation_warning([]) is None
    assert perturbation_warning([2.14, 1.08]) is None  # the second pass agreed with the table
    assert perturbation_warning([0.91]) is None
    assert perturbation_warning([0.86]) is not None  # one tolerance, profilers.drift: 10%
    text = perturbation_warning([2.14, 1.29, 1.46])
    assert text is not None and "1.29-2.14x" in text and "quiet machine" in text
    assert "0.70-0.80x" in (perturbation_warning([0.80, 0.70]) or "")  # faster than the table: clock changed


def _combiner_and_predictor(run_path, table):
    from hwnas.search.combiner import Combiner
    from hwnas.search.costs import latency_cost
    from hwnas.supernet.ratings import load_ratings
    from profilers.predictor import LatencyPredictor
    from profilers.table import LatencyTable

    run = open_run(run_path)
    predictor = LatencyPredictor(LatencyTable.load(table, run.space), run.space)
    cost = latency_cost(predictor)
    return Combiner(run.space, load_ratings(run), cost.unit_cost, cost.base), predictor


@pytest.fixture(scope="module")
def graded_run(tiny_run, tmp_path_factory):
    """The tiny run with ratings that favour bigger candidates (more expansion x kernel area per layer): the
    best-rated architecture is the largest, so the combiner's front spans the space's whole latency range whatever
    the 1-epoch supernets learned (on CI's machine their front once spanned only 1.08x)."""
    path = tmp_path_factory.mktemp("graded") / "tiny"
    shutil.copytree(tiny_run, path)
    ratings_file = path / "ratings.json"
    data = json.loads(ratings_file.read_text())
    for block in data["blocks"]:
        for name, scores in block["ratings"].items():
            size = sum(int(e) * int(k) ** 2 for e, k in re.findall(r"e(\d+)k(\d+)", name.split(":", 1)[1]))
            assert size > 0, name
            for key in scores:
                scores[key] = 1.0 / size
    ratings_file.write_text(json.dumps(data))
    return path


def _spread(combiner) -> float:
    return combiner.front[-1].cost / combiner.min_cost


def test_step_down_takes_the_best_expected_to_fit_at_the_machines_reading(graded_run, tiny_table):
    from hwnas.search.remeasure import step_down

    combiner, predictor = _combiner_and_predictor(graded_run, tiny_table)
    low, high = combiner.min_cost, combiner.front[-1].cost
    assert _spread(combiner) > 1.2, f"the graded front spans {_spread(combiner):.2f}x only: too narrow for this test"
    budget = high
    ratio = min(1.3, 0.9 * high / low)  # above 1, and every scaled budget still above the cheapest architecture
    added = step_down(combiner, budget, ratio)
    assert added and added[0] == combiner.best_under(budget / ratio).arch
    for arch in added:
        assert predictor.predict(arch) <= budget / ratio + 1e-9
    expected = [combiner.best_under(budget * m / ratio) for m in (1.0, 0.95, 0.9)]
    assert added == list(dict.fromkeys(p.arch for p in expected))  # best rated first
    assert step_down(combiner, budget, ratio, exclude=added) == []
    assert step_down(combiner, budget, 0.8) == step_down(combiner, budget, 1.0)  # faster than the table: no scaling
    cheapest = combiner.front[0].arch
    assert step_down(combiner, low * 0.5, 1.0) == [cheapest]  # nothing fits: the cheapest


def _optimistic_table(table, slower: float, folder):
    """The table with its calibration divided by ``slower``: it predicts 1/slower of what this machine measures."""
    data = json.loads(table.read_text())
    for key in ("intercept", "slope", "per_layer"):
        data["calibration"][key] = float(data["calibration"].get(key, 0.0)) / slower
    optimistic = folder / f"optimistic{slower:g}.json"
    optimistic.write_text(json.dumps(data))
    return optimistic


def test_search_steps_down_when_no_finalist_measures_within_budget(graded_run, tiny_table, tmp_path):
    # a table that predicts 1/1.2 of what this machine measures: the combiner's choice at the budget measures about
    # 1.2x the budget, and the search measures the best architectures expected to fit at that reading
    combiner, _ = _combiner_and_predictor(graded_run, tiny_table)
    spread = _spread(combiner)
    # the best-rated one at the budget measures 20% over it, and cheaper ones exist that fit (at worst the cheapest,
    # which measures about 1.2x its prediction: the front must span more than that)
    assert spread > 1.3, f"the graded front spans {spread:.2f}x only: too narrow for this test"
    optimistic = _optimistic_table(tiny_table, 1.2, tmp_path)
    combiner, predictor = _combiner_and_predictor(graded_run, optimistic)
    budget = combiner.front[-1].cost
    result = search(open_run(graded_run), optimistic, budget=budget, refine_trials=0, protocol=QUICK,
                    show_progress=False)
    chosen = result["chosen"]
    stepped = chosen["stepped_down"]
    first = str(combiner.best_under(budget).arch)
    assert stepped is not None and chosen["finalists"][first]["measured_ms"] > budget
    assert stepped["ratio"] > 1.05, stepped  # the machine read about 1.2x this table
    assert first not in stepped["added"]
    for arch in stepped["added"]:
        bound = max(budget / stepped["ratio"], combiner.min_cost)  # the cheapest when nothing else can fit
        assert predictor.predict(combiner.space.parse(arch)) <= bound + 1e-9
    assert set(chosen["finalists"]) == {first, *stepped["added"]}
    feasible = {a: v for a, v in chosen["finalists"].items() if v["measured_ms"] <= budget}
    assert feasible, chosen["finalists"]  # the last added one has 10% of room at the machine's reading
    assert chosen["within_budget"] and chosen["arch"] in stepped["added"]
    assert chosen["rating"] == min(v["rating"] for v in feasible.values())
    assert chosen["source"] == "combiner, stepped down"


def test_search_warns_when_nothing_measures_within_budget(graded_run, tiny_table, tmp_path, caplog):
    # predicted at 1/slower of what it measures, with slower 3x the front's span, nothing of this space fits the top
    # of the scaled front: even the cheapest architecture, stepped down to, measures over the budget (unless the
    # quick table over-predicts the cheapest by 3x; at 1.5x a machine where small networks run 1.5x faster than the
    # 6-network calibration says failed this test)
    combiner, _ = _combiner_and_predictor(graded_run, tiny_table)
    slower = 3 * _spread(combiner)
    optimistic = _optimistic_table(tiny_table, slower, tmp_path)
    combiner, _ = _combiner_and_predictor(graded_run, optimistic)
    budget = combiner.front[-1].cost
    logger = logging.getLogger("hwnas")  # the CLI's tests leave it unpropagated: listen on it directly
    logger.addHandler(caplog.handler)
    try:
        chosen = search(open_run(graded_run), optimistic, budget=budget, refine_trials=0, protocol=QUICK,
                        show_progress=False)["chosen"]
    finally:
        logger.removeHandler(caplog.handler)
    assert chosen["stepped_down"]["added"] == [str(combiner.front[0].arch)]  # the cheapest was tried
    assert not chosen["within_budget"]
    assert chosen["measured_ms"] == min(v["measured_ms"] for v in chosen["finalists"].values())  # the fastest
    err = caplog.text
    assert f"no architecture measured within the {budget:g} ms budget" in err and "raise --budget-ms" in err

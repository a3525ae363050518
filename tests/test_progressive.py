"""DNA+'s progressive rounds on the tiny space: each round distils, rates, searches at the budget and at the
teacher's cost, trains both children, and promotes the scaled-up child when it beats the teacher; rounds resume
and stop."""

import json

import pytest

from hwnas.cli import main
from hwnas.progressive import ProgressiveSettings, progress_file, progressive
from hwnas.run import create_or_open_run, open_run
from hwnas.search.costs import arch_cost, counted_cost
from hwnas.supernet.distill import DistillConfig
from hwnas.supernet.teacher import open_teacher, train_teacher

BUDGET = 0.7  # million MACs: about the middle of mbconv-tiny


def _settings(rounds, min_gain):
    return ProgressiveSettings(rounds=rounds, budget=BUDGET, child_epochs=1, distill=DistillConfig(epochs=1),
                               min_gain=min_gain)


@pytest.fixture()
def untrained_run(tmp_path):
    run = create_or_open_run(tmp_path / "run", "mbconv-tiny", "digits")
    train_teacher(run, train=False, show_progress=False)  # an untrained teacher: any trained child beats it
    return run


def test_rounds_promote_a_better_child_then_stop_when_it_no_longer_wins(untrained_run):
    run = untrained_run
    space, macs = run.space, counted_cost(run.space, "macs")
    first_teacher = open_teacher(run).description["arch"]
    record = progressive(run, _settings(rounds=1, min_gain=-0.99), show_progress=False)
    (one,) = record["rounds"]
    assert one["teacher"]["arch"] == first_teacher and one["promoted"] and record["finished"]
    assert one["searched"]["cost"] <= BUDGET + 1e-9
    assert one["scaled"]["cost"] <= arch_cost(space, macs, space.parse(first_teacher)) + 1e-9
    # the scaled-up child is the teacher now, with the weights it was trained to
    teacher = open_teacher(open_run(run.path))
    assert teacher.description["arch"] == one["scaled"]["arch"] != first_teacher
    assert len(list((run.path / "teachers").iterdir())) == 1 and not (run.path / "ratings.json").exists()

    # round 2 must gain 99 points over its teacher: it cannot, so the rounds stop there
    record = progressive(open_run(run.path), _settings(rounds=3, min_gain=0.99), show_progress=False)
    assert [r["round"] for r in record["rounds"]] == [1, 2] and not record["rounds"][1]["promoted"]
    assert record["rounds"][1]["teacher"]["arch"] == one["scaled"]["arch"]
    assert "did not beat the teacher" in record["stopped"] or "the teacher itself" in record["stopped"]
    assert open_teacher(open_run(run.path)).description["arch"] == one["scaled"]["arch"]  # kept
    assert (progress_file(run).with_name("progress.png")).stat().st_size > 0
    # a rerun finds the rounds stopped and does nothing more
    again = progressive(open_run(run.path), _settings(rounds=3, min_gain=0.99), show_progress=False)
    assert again["rounds"] == json.loads(progress_file(run).read_text())["rounds"] and len(again["rounds"]) == 2


def test_other_settings_or_a_foreign_teacher_are_refused(untrained_run, tmp_path, capsys):
    progress_file(untrained_run).write_text(json.dumps({"settings": {"budget": 9.0}, "rounds": []}))
    assert main(["progressive", "--run", str(untrained_run.path), "--rounds", "1", "--budget", str(BUDGET)]) == 2
    assert "records rounds run with other settings" in capsys.readouterr().err
    other = create_or_open_run(tmp_path / "timm", "mbconv-tiny", "digits")
    train_teacher(other, timm_name="efficientnet_b0", train=False, show_progress=False)
    assert main(["progressive", "--run", str(other.path), "--rounds", "1", "--budget", str(BUDGET)]) == 2
    assert "is not a member of mbconv-tiny" in capsys.readouterr().err
    assert main(["progressive", "--run", str(other.path), "--rounds", "1", "--budget", "1", "--objective",
                 "latency"]) == 2
    assert "need --table" in capsys.readouterr().err


def test_a_promotion_cut_off_after_its_round_was_recorded_is_finished_on_resume(untrained_run, monkeypatch):
    import hwnas.progressive as rounds

    real = rounds.set_teacher

    def killed(*args, **kwargs):  # the process dies between writing the round and promoting its child
        raise KeyboardInterrupt

    monkeypatch.setattr(rounds, "set_teacher", killed)
    first_teacher = open_teacher(untrained_run).description["arch"]
    with pytest.raises(KeyboardInterrupt):
        progressive(untrained_run, _settings(rounds=1, min_gain=-0.99), show_progress=False)
    recorded = json.loads(progress_file(untrained_run).read_text())["rounds"]
    assert recorded[0]["promoted"] and open_teacher(open_run(untrained_run.path)).description["arch"] == first_teacher
    monkeypatch.setattr(rounds, "set_teacher", real)
    record = progressive(open_run(untrained_run.path), _settings(rounds=1, min_gain=-0.99), show_progress=False)
    assert record["rounds"] == recorded  # nothing trained again
    assert open_teacher(open_run(untrained_run.path)).description["arch"] == recorded[0]["scaled"]["arch"]

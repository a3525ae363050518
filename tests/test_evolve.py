"""NSE's evolving search space (``hwnas evolve``) and the derived spaces it makes (``BASE[op,...]``)."""

import json
import random
import shutil

import pytest
import torch

from hwnas.cli import main
from hwnas.run import open_run
from hwnas.search.budgeted import SearchSettings, search
from search_spaces import get_space


def test_a_derived_space_is_a_space_like_any_other(tmp_path):
    space = get_space("mbconv-tiny[e6k9,e3k3]")
    assert space.name == "mbconv-tiny[e3k3,e6k9]" and get_space(space.name).definition_hash() == space.definition_hash()
    arch = space.sample(random.Random(1))
    assert space.parse(str(arch)) == arch and space.build(arch)(space.example_input()).shape == (1, 10)
    assert {str(op) for op in space.ops} == {"e3k3", "e6k9"} and space.count() < get_space("mbconv-tiny").count()
    with pytest.raises(ValueError, match="op"):
        space.parse(str(arch).replace("e3k3", "e6k5").replace("e6k9", "e6k5"))  # e6k5 is not in it
    file = tmp_path / "space.json"
    file.write_text(json.dumps({"space": space.name}))
    assert get_space(str(file)).definition_hash() == space.definition_hash()
    for bad, message in (("mbconv-tiny[e6k4]", "odd kernels"), ("vit-tiny[e3k3]", "MBConv"),
                         ("nope[e3k3]", "unknown search space"), ("mbconv-tiny[]", "at least one op")):
        with pytest.raises(ValueError, match=message):
            get_space(bad)
    file.write_text('{"spaces": 1}')
    with pytest.raises(ValueError, match="not a space file"):
        get_space(str(file))


def test_evolve_adds_inherits_prunes_and_the_result_is_searchable(tiny_run, tmp_path, capsys):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("supernet", "ratings*", "children", "search*", "seeds"))
    command = ["evolve", "--run", str(path), "--rounds", "2", "--pool", "e6k9,e4k5", "--start", "e3k3,e6k5",
               "--epochs", "1", "--json", "-q"]
    assert main(command) == 0
    record = json.loads(capsys.readouterr().out)
    first, second = record["rounds"]
    assert first["added"] == ["e6k9"] and second["added"] == ["e4k5"]  # the pool's order, a slice per round
    assert set(first["ops"]) == {"e3k3", "e6k5", "e6k9"} and first["inherited_tensors"] == [0] * 6
    assert set(second["ops"]) == set(first["kept"]) | {"e4k5"}
    assert sum(second["inherited_tensors"]) > 0  # kept ops' layers and the adapters carried over
    assert set(second["kept"]) | set(second["pruned"]) == set(second["ops"]) and second["kept"]
    space = get_space(str(path / "evolve" / "space.json"))
    assert {str(op) for op in space.ops} == set(second["kept"]) and space.name == record["space"]
    final = open_run(path / "evolve" / "final")
    result = search(final, None, 1.2, SearchSettings(objective="macs", refine_trials=0), show_progress=False)
    assert result.chosen.arch == space.parse(str(result.chosen.arch))
    round2 = open_run(path / "evolve" / "round2")
    saved = torch.load(round2.supernet_checkpoint(0), weights_only=True)
    assert saved["epoch"] == 1 and saved["config"]["epochs"] == 1
    before = (path / "evolve" / "evolution.json").read_text()
    assert main(command) == 0 and (path / "evolve" / "evolution.json").read_text() == before  # nothing to redo
    capsys.readouterr()
    assert main(command[:3] + ["--rounds", "3"] + command[5:]) == 2
    assert "other settings" in capsys.readouterr().err and (path / "evolve" / "evolution.json").read_text() == before


def test_evolve_refuses_bad_input_before_writing(tiny_run, tmp_path, capsys):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("children", "search*"))
    for args, message in ((["--rounds", "0", "--pool", "e6k9"], "--rounds"),
                          (["--rounds", "1", "--pool", "e6k8"], "odd kernels"),
                          (["--rounds", "1", "--pool", "e6k5"], "adds no op")):
        assert main(["evolve", "--run", str(path), *args]) == 2
        assert message in capsys.readouterr().err
    assert not (path / "evolve").exists()


def test_a_resumed_evolution_goes_on_from_a_round_that_pruned(tiny_run, tmp_path, monkeypatch, capsys):
    import hwnas.evolve as evolve_module

    path = tmp_path / "run"
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("supernet", "ratings*", "children", "search*", "seeds"))
    monkeypatch.setattr(evolve_module, "front_ops", lambda space, ratings, cost: {space.ops[0]})  # prune all but one
    command = ["evolve", "--run", str(path), "--pool", "e6k9,e4k5", "--start", "e3k3,e6k5", "--epochs", "1", "--json",
               "-q"]
    assert main(command + ["--rounds", "1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["rounds"][0]["pruned"] and len(record["rounds"][0]["kept"]) == 1
    shutil.move(path / "evolve" / "evolution.json", tmp_path / "one_round.json")
    settings = json.loads((tmp_path / "one_round.json").read_text())
    settings["settings"]["rounds"] = 2  # as if a 2-round evolution had been cut off after its first round
    (path / "evolve" / "evolution.json").write_text(json.dumps(settings))
    assert main(command + ["--rounds", "2"]) == 0
    second = json.loads(capsys.readouterr().out)["rounds"][1]
    assert set(second["ops"]) == set(record["rounds"][0]["kept"]) | {"e4k5"} and sum(second["inherited_tensors"]) > 0
